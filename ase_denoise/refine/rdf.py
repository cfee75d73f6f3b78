"""The data's pair structure and a model's MD against it.

* ``rdf_error``: RMS difference over the bins, mean over the element pairs;
* ``rdf_error_noise``: its standard error from resampling the replicas (bootstrap over replicas);
* ``systematic_error``: the RMS difference with both RDFs' sampling variances subtracted bin by bin
  (the MD's from the bootstrap, the data's from block averages): an estimate of the model's own RDF
  error that does not grow when the run or the data are short. Zero for a perfect model.

Units: Angstrom; RDFs are dimensionless.
"""

from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
from ase import Atoms

from ..analysis import rdf
from ..data.neighbours import cell_heights


#: the RDF bin width (Angstrom)
BIN_WIDTH = 0.1


N_BOOTSTRAP = 200


def element_pairs(atoms: Atoms) -> List[Tuple[str, str]]:
    """Unordered pairs of the chemical symbols in ``atoms`` (in order of first appearance)."""
    symbols = list(dict.fromkeys(atoms.get_chemical_symbols()))
    return [(a, b) for i, a in enumerate(symbols) for b in symbols[i:]]


def pair_rdfs(frames: Sequence[Atoms], pairs: Sequence[Tuple[str, str]], r_max: float,
              bin_width: float = BIN_WIDTH) -> Dict[str, np.ndarray]:
    """Partial RDFs of ``frames``: ``{"r": bin centres, "A-B": g}`` (:func:`ase_denoise.analysis.rdf`)."""
    n_bins = int(round(r_max / bin_width))
    out: Dict[str, np.ndarray] = {}
    for a, b in pairs:
        r, g = rdf(list(frames), r_max, n_bins=n_bins, elements=(a, b))
        out[f"{a}-{b}"] = g
    out["r"] = r
    return out


def reference_structure(frames: Sequence[Atoms], pairs: Optional[Sequence[Tuple[str, str]]] = None,
                        bin_width: float = BIN_WIDTH, n_blocks: int = 5) -> Dict[str, np.ndarray]:
    """The data's partial RDFs up to half the shortest box height, with the standard error of each
    bin from ``n_blocks`` consecutive blocks of frames (``"A-B_err"``)."""
    frames = list(frames)
    if not frames or not all(a.pbc.all() for a in frames):
        raise ValueError("the structure check needs periodic frames (RDFs of a box)")
    if len(frames) < n_blocks:
        raise ValueError(f"{len(frames)} frames: at least {n_blocks} are needed for the block errors of the data's RDFs")
    pairs = element_pairs(frames[0]) if pairs is None else list(pairs)
    r_max = float(np.floor(0.5 * cell_heights(frames[0].cell).min() / bin_width) * bin_width)
    out = pair_rdfs(frames, pairs, r_max, bin_width)
    edges = np.linspace(0, len(frames), n_blocks + 1).round().astype(int)
    blocks = [pair_rdfs(frames[a:b], pairs, r_max, bin_width) for a, b in zip(edges[:-1], edges[1:])]
    for a, b in pairs:
        key = f"{a}-{b}"
        out[f"{key}_err"] = np.std([blk[key] for blk in blocks], axis=0, ddof=1) / np.sqrt(n_blocks)
    return out


def compare_with_reference(reference: Dict[str, np.ndarray], per_replica: Sequence[Sequence[Atoms]],
                           pairs: Sequence[Tuple[str, str]], rng: np.random.Generator,
                           bin_width: float = BIN_WIDTH) -> Dict[str, object]:
    """RDF figures of the replicas' frames pooled against ``reference`` (:func:`reference_structure`
    keys): ``rdf_error``, ``rdf_error_noise`` (bootstrap over replicas), ``systematic_error`` and its
    per-pair values, and the pooled RDFs ``rdfs``."""
    r_max = float(reference["r"][-1] + bin_width / 2)
    gs = [pair_rdfs(frames, pairs, r_max, bin_width) for frames in per_replica]
    weights = np.array([len(f) for f in per_replica], dtype=float)
    keys = [f"{a}-{b}" for a, b in pairs]
    per_key = {k: np.stack([g[k] for g in gs]) for k in keys}  # [replicas, bins]

    def pooled(idx) -> Dict[str, np.ndarray]:
        # g is linear in the frames' pair counts: the pooled g is the frame-weighted mean of the replicas'
        w = weights[idx]
        return {k: w @ per_key[k][idx] / w.sum() for k in keys}

    def rms(g: Dict[str, np.ndarray]) -> float:
        return float(np.mean([np.sqrt(np.mean((g[k] - reference[k]) ** 2)) for k in keys]))

    g = pooled(np.arange(len(gs)))
    draws = [pooled(rng.integers(0, len(gs), len(gs))) for _ in range(N_BOOTSTRAP)] if len(gs) > 1 else []
    systematic = {}
    for k in keys:
        # E[(g - g_ref)^2] per bin = (systematic difference)^2 + var(g) + var(g_ref)
        md_var = np.var([d[k] for d in draws], axis=0, ddof=1) if draws else np.zeros_like(g[k])
        excess = np.mean((g[k] - reference[k]) ** 2) - np.mean(md_var) - np.mean(reference[f"{k}_err"] ** 2)
        systematic[k] = float(np.sqrt(max(excess, 0.0)))
    errors = {k: np.std([d[k] for d in draws], axis=0, ddof=1) if draws else np.zeros_like(g[k]) for k in keys}
    return dict(
        rdf_error=rms(g), rdf_error_noise=float(np.std([rms(d) for d in draws], ddof=1)) if draws else float("nan"),
        systematic_error=float(np.mean(list(systematic.values()))), systematic_per_pair=systematic,
        rdf_error_per_replica=[rms(gi) for gi in gs], rdfs={"r": reference["r"], **g}, rdf_errors=errors,
    )
