"""A model's pair mean forces against its data's pair structure: a check and a correction, without
labels and without MD.

Kirkwood's relation (the first Yvon-Born-Green equation, for a pair distance): in the Boltzmann
ensemble of a force field, the force along the separation of two particles ``i`` (element A) and
``j`` (element B), averaged over every configuration in which they are ``r`` apart, is the slope of
their potential of mean force::

    < (F_i - F_j) . u_ij / 2 >_{r_ij = r}  =  dW_AB/dr,    W_AB(r) = -kT ln g_AB(r),

with ``u_ij = (r_j - r_i) / r_ij`` (so a positive value is an attraction) and ``F`` the total forces.
It holds for the exact force field *on the data's own frames*. A trained model can therefore be
checked where its MD is slow to tell: evaluate it on its training frames (one forward pass per frame),
average the projected pair force by distance, integrate it to the model's ``W_model(r)``, and compare
with the data's ``W_data(r)`` from the partial RDFs. No MD is involved, so the comparison does not
wait for slow processes (LiCl's ion pairing relaxes over hundreds of picoseconds) to equilibrate.

The integral is what matters. Where pairs are rare (LiCl: the barrier between contact and
solvent-separated pairs, a few dozen pairs in 500 frames) neither the data's RDF nor any fit of the
forces is precise bin by bin, but the *free-energy difference across* the rare region is fixed by the
well-sampled bins on either side (the contact and solvent-separated peaks). A denoiser whose forces
over-attract on the barrier integrates to too deep a contact well, and its MD over-pairs.

:func:`correct_mean_forces` removes the mismatch with a tabulated pair prior
(:class:`ase_denoise.priors.PairTable`): ``dU = W_data - W_model`` per element pair on the bins the
data sample (shrunk where the difference is within the data's noise, interpolated across unsampled
bins, tapered to zero at the cutoff), added to the model and iterated. Iterating takes care of the
table's forces on the *other* pairs of each atom (the indirect terms of the YBG equation): at the
fixed point the corrected model satisfies Kirkwood's relation on the data, as in the generalised YBG
method (Mullinax and Noid, J. Chem. Phys. 131, 104110 (2009)), here applied to the residual of a
trained model. Each iteration costs the table's forces on the frames, not a model evaluation.

What it assumes: the frames are a fair sample of one Boltzmann ensemble at the model's temperature
(the denoiser's own assumption), periodic, with enough frames that the peaks of each partial RDF are
well sampled. What it cannot fix: errors that are not pair-like (angles, many-body order). It fits
the data's RDFs through the forces, so judge a corrected model also by what it was not fitted to
(its MD against an independent trajectory, force errors where labels exist).
docs/refine.md, "Mean forces against the data's pair structure".

Units: Angstrom, eV, K.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
from ase import Atoms
from ase.data import atomic_numbers, chemical_symbols
from ase.units import kB

from ..data.frames import to_frame
from ..inference import predict
from ..model import DenoiserMACE
from ..priors import PairGeometry, PairTable
from .pair_table import REFINE_TAPER_A, finish_correction, table_cutoff, taper_switch, with_pair_table
from .rdf import reference_structure
from .replica_md import require_model_temperature

logger = logging.getLogger(__name__)

#: bin width (Angstrom) of the projected-force averages that are integrated to W_model
FORCE_BIN_A = 0.05
#: Whittaker smoothing strength of the binned mean force (per bin, in units of pairs): bins with many
#: pairs keep their average, bins with a few are pulled towards a smooth curve, empty ones interpolated
SMOOTHING = 10.0


@dataclass
class MeanForceCorrection:
    """Result of :func:`correct_mean_forces`. ``mismatch[i]`` is the mean-force mismatch after ``i``
    iterations, per element pair (``"Li-Cl"``): the RMS of ``W_data - W_model`` over the sampled bins,
    each weighted by the inverse variance of ``W_data`` there, in units of kT (0 for a model that
    satisfies Kirkwood's relation on the data). ``model``: a copy of the given model with the pair table
    ``table`` (the given model is not changed); ``correction_at``: the table's ``U(r)`` (eV) on its grid."""

    model: DenoiserMACE
    table: object
    mismatch: List[Dict[str, float]]
    r: np.ndarray = field(repr=False)
    correction_at: Dict[str, np.ndarray] = field(repr=False)

    @property
    def before(self) -> Dict[str, float]:
        return self.mismatch[0]

    @property
    def after(self) -> Dict[str, float]:
        return self.mismatch[-1]


def _pairs_of(frames: Sequence[Atoms], cutoff: float) -> Tuple[np.ndarray, ...]:
    """Every ordered pair closer than ``cutoff`` in every frame, indices into the concatenated atoms:
    receiver, sender [P], distances [P] (A), unit vectors sender -> receiver [P, 3], and the atomic
    numbers of all atoms."""
    rec, snd, dist, unit, numbers, start = [], [], [], [], [], 0
    for atoms in frames:
        g = PairGeometry.of(atoms.positions, atoms.cell.array, atoms.pbc, cutoff)
        keep = g.d < cutoff
        rec.append(g.receiver[keep] + start)
        snd.append(g.sender[keep] + start)
        dist.append(g.d[keep])
        unit.append(g.u[keep])
        numbers.append(atoms.numbers)
        start += len(atoms)
    return (np.concatenate(rec), np.concatenate(snd), np.concatenate(dist), np.concatenate(unit),
            np.concatenate(numbers))


def _whittaker(y: np.ndarray, weights: np.ndarray, smoothing: float) -> np.ndarray:
    """Minimise ``sum w (y - f)^2 + smoothing * sum (second difference of f)^2`` (Whittaker smoother):
    weighted averages where the weights are large, a smooth (locally linear) curve where they are not."""
    n = len(y)
    d2 = np.diff(np.eye(n), 2, axis=0)
    return np.linalg.solve(np.diag(weights) + smoothing * d2.T @ d2, weights * y)


def model_pmf(distances: np.ndarray, along: np.ndarray, r: np.ndarray, cutoff: float, *,
              bin_width: float = FORCE_BIN_A, smoothing: float = SMOOTHING) -> np.ndarray:
    """``W_model`` on the grid ``r`` (eV, zero at distance 0): the projected pair forces ``along`` (eV/A,
    attraction > 0) of pairs at ``distances`` (A), averaged in bins of ``bin_width`` up to ``cutoff``,
    smoothed (:func:`_whittaker`, each bin weighted by its number of pairs) and integrated."""
    edges = np.arange(0.0, cutoff + 1e-9, bin_width)
    n_bins = len(edges) - 1
    idx = np.digitize(distances, edges) - 1  # pairs beyond the last edge fall out below
    counts = np.bincount(idx, minlength=n_bins)[:n_bins].astype(float)
    sums = np.bincount(idx, weights=along, minlength=n_bins)[:n_bins]
    mean = np.where(counts > 0, sums / np.maximum(counts, 1.0), 0.0)
    smooth = _whittaker(mean, counts, smoothing)
    return np.interp(r, edges, np.concatenate([[0.0], np.cumsum(smooth * bin_width)]))


def _pmfs(pairs: Tuple[np.ndarray, ...], forces: np.ndarray, keys: Sequence[str], r: np.ndarray, cutoff: float,
          smoothing: float) -> Dict[str, np.ndarray]:
    """``W`` per element pair (``"A-B"``) on the grid ``r`` from ``forces`` [n_atoms_total, 3] (eV/A) and
    the pairs of :func:`_pairs_of`."""
    rec, snd, dist, unit, z = pairs
    along = -0.5 * np.einsum("pk,pk->p", forces[rec] - forces[snd], unit)  # dW/dr in expectation
    out = {}
    for key in keys:
        a, b = (atomic_numbers[x] for x in key.split("-"))
        sel = (z[rec] == a) & (z[snd] == b)
        out[key] = model_pmf(dist[sel], along[sel], r, cutoff, smoothing=smoothing)
    return out


def pmf_from_forces(frames: Sequence[Atoms], forces: np.ndarray, r: np.ndarray, cutoff: float,
                    keys: Sequence[str], *, smoothing: float = SMOOTHING) -> Dict[str, np.ndarray]:
    """The potential of mean force per element pair (``{"A-B": W}``, eV on the grid ``r``, zero at
    distance 0) that Kirkwood's relation gives for ``forces`` [n_atoms_total, 3] (eV/A, the frames'
    atoms concatenated) on ``frames``: the projected pair force averaged by distance (pairs closer than
    ``cutoff``, A) and integrated. For the exact forces of a Boltzmann sample it equals ``-kT ln g(r)``
    up to a constant wherever the pairs are sampled."""
    return _pmfs(_pairs_of(frames, cutoff), np.asarray(forces, dtype=np.float64), keys, np.asarray(r), cutoff, smoothing)


def correct_mean_forces(
    model: DenoiserMACE,
    frames: Sequence[Atoms],
    *,
    iterations: int = 6,
    damping: float = 1.0,
    cutoff: Optional[float] = None,
    g_min: float = 0.05,
    smoothing: float = SMOOTHING,
    reference: Optional[Dict[str, np.ndarray]] = None,
    batch_size: int = 8,
) -> MeanForceCorrection:
    """Check ``model``'s pair mean forces against the pair structure of ``frames`` (module docstring)
    and correct them with a tabulated pair prior; ``iterations=0`` only checks.

    ``frames``: periodic frames of one Boltzmann ensemble at the model's temperature (its training
    frames are the natural choice). ``cutoff`` (A): the table's range (default the model's ``r_max``,
    at most half the box). ``g_min``: bins where the data's RDF stays below this are unsampled (the
    correction is interpolated across them). ``damping``: the fraction of ``W_data - W_model`` added per
    iteration. ``reference``: the data's RDFs with block errors if already computed
    (:func:`ase_denoise.refine.reference_structure`). A pair table the model already has is
    continued (the new correction is added to it). The model's default forces are used (its stored
    level or extrapolation, with its priors).

    Cost: one forward pass over the frames, then per iteration the table's forces on the frames
    (LiCl, 500 frames of 48 ions: about 3 s for 6 iterations on one core)."""
    if iterations < 0 or not damping > 0:
        raise ValueError(f"correct_mean_forces needs iterations >= 0 and damping > 0, got {iterations}, {damping}")
    frames = list(frames)
    require_model_temperature(model, frames, "Kirkwood's relation needs data of the model's own temperature")
    if reference is None:
        reference = reference_structure(frames)  # refuses non-periodic frames and too few of them
    r_all = np.asarray(reference["r"])
    cutoff = table_cutoff(model, cutoff, float(r_all[-1]), "correct_mean_forces")
    keep = r_all <= cutoff + 1e-9
    r = r_all[keep]
    switch = taper_switch(r)
    far = r >= r[-1] - REFINE_TAPER_A  # W_data - W_model is anchored to zero on average here
    kT = kB * model.temperature_K
    keys = [k for k in reference if f"{k}_err" in reference]

    numbers = model.config.atomic_numbers
    old = [p for p in model.priors if p.kind == "pair_table"]
    forces0 = predict(model, [to_frame(a, numbers) for a in frames], exclude_priors=("pair_table",),
                      batch_size=batch_size)  # [n_atoms_total, 3] eV/A, the model without any pair table
    pairs = _pairs_of(frames, cutoff)
    rec, snd, dist, unit, z = pairs

    def table_forces(table: PairTable) -> np.ndarray:
        """The table's forces on every atom of the frames [n_atoms_total, 3] (eV/A), from the pairs found
        once above (the table ends inside ``cutoff``): ``Prior.energy_and_forces`` without a new search."""
        _, minus_du = table.pair_terms(z[rec], z[snd], dist)
        out = np.zeros_like(forces0)
        np.add.at(out, rec, minus_du[:, None] * unit)  # on the receiver, along sender -> receiver
        return out

    table_u: Dict[str, np.ndarray] = {key: np.zeros_like(r) for key in keys}
    if old:  # continue an earlier table on this grid
        for (a, b), v in old[0].u.items():
            for key in (f"{chemical_symbols[a]}-{chemical_symbols[b]}", f"{chemical_symbols[b]}-{chemical_symbols[a]}"):
                if key in table_u:
                    table_u[key] = np.interp(r, old[0].r, v, right=0.0)
                    break

    def make_table(n_done: int) -> PairTable:
        return PairTable(
            r.tolist(), {tuple(atomic_numbers[x] for x in key.split("-")): v.tolist() for key, v in table_u.items()},
            source=(f"mean-force correction (Kirkwood / first YBG equation): {n_done} iteration(s) "
                    f"(damping {damping:g}) against the partial RDFs of {len(frames)} frames, no MD"))

    table = make_table(0) if old else None
    history: List[Dict[str, float]] = []
    for it in range(iterations + 1):
        forces = forces0 if table is None else forces0 + table_forces(table)
        w_models = _pmfs(pairs, forces, keys, r, cutoff, smoothing)
        mismatch, steps = {}, {}
        for key in keys:
            w_model = w_models[key]
            g, g_err = np.asarray(reference[key])[keep], np.asarray(reference[f"{key}_err"])[keep]
            sampled = g > g_min
            se = kT * g_err / np.where(sampled, g, 1.0)  # standard error of W_data = -kT ln g
            diff = np.where(sampled, -kT * np.log(np.where(sampled, g, 1.0)) - w_model, 0.0)
            inv_var = np.where(sampled, 1.0 / np.maximum(se, 1e-3 * kT) ** 2, 0.0)
            anchor = far & sampled
            diff = diff - (np.average(diff[anchor], weights=inv_var[anchor]) if anchor.any() else 0.0)
            mismatch[key] = float(np.sqrt(np.sum(inv_var * diff ** 2) / np.sum(inv_var)) / kT) if sampled.any() else 0.0
            steps[key] = finish_correction(r, diff, se, sampled, switch)
        history.append(mismatch)
        logger.info("mean-force mismatch after %d iteration(s) (kT): %s", it,
                    ", ".join(f"{k} {v:.3f}" for k, v in mismatch.items()))
        if it == iterations:
            break
        for key in keys:
            table_u[key] = table_u[key] + damping * steps[key]
        table = make_table(it + 1)
    if table is None:  # iterations=0 and no earlier table: nothing to add
        return MeanForceCorrection(model=model, table=None, mismatch=history, r=r, correction_at={})
    return MeanForceCorrection(model=with_pair_table(model, table), table=table, mismatch=history, r=r,
                               correction_at={k: v.copy() for k, v in table_u.items()})
