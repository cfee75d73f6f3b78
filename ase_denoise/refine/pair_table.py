"""Structure refinement: the difference between a model's MD RDFs and its data's, turned into a
tabulated pair correction (iterative Boltzmann inversion, :class:`ase_denoise.priors.PairTable`),
checked after each step, the best model kept (docs/refine.md, "Correcting the pair structure towards
the data's").

The pieces that make a correction safe to add (:func:`finish_correction`, :func:`taper_switch`,
:func:`table_cutoff`) are shared with the mean-force correction (:mod:`ase_denoise.refine.mean_force`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
from ase import Atoms
from ase.data import atomic_numbers, chemical_symbols
from ase.units import kB

from ..model import DenoiserMACE, with_prior
from ..priors import PairTable
from .check import StructureCheck, check_structure
from .rdf import BIN_WIDTH, reference_structure

logger = logging.getLogger(__name__)


#: bins where neither RDF reaches this are unsampled: the correction is interpolated across them
REFINE_G_MIN = 0.05


#: added to both RDFs inside the logarithm, so thinly sampled bins give damped, finite corrections
REFINE_REGULARIZATION = 0.02


#: the correction goes smoothly to zero over this distance (Angstrom) before the table's cutoff
REFINE_TAPER_A = 1.0


def table_cutoff(model: DenoiserMACE, cutoff: Optional[float], r_range: float, who: str) -> float:
    """The range (Angstrom) of a pair-table correction: ``cutoff`` or the model's ``r_max``, at most
    ``r_range`` (the data's RDF range); refused when shorter than the taper plus four bins."""
    cutoff = min(float(model.config.r_max) if cutoff is None else float(cutoff), float(r_range))
    if not cutoff >= 4 * BIN_WIDTH + REFINE_TAPER_A:
        raise ValueError(f"{who} needs a table cutoff of at least {4 * BIN_WIDTH + REFINE_TAPER_A:g} A "
                         f"(the taper is {REFINE_TAPER_A:g} A), got {cutoff:g} A")
    return cutoff


def pair_correction(
    reference: Dict[str, np.ndarray], rdfs: Dict[str, np.ndarray], rdf_errors: Dict[str, np.ndarray],
    kT: float, cutoff: float, *, g_min: float = REFINE_G_MIN, regularization: float = REFINE_REGULARIZATION,
    taper: float = REFINE_TAPER_A,
) -> Tuple[np.ndarray, Dict[str, np.ndarray]]:
    """One iterative-Boltzmann-inversion step per element pair (Reith, Puetz and Mueller-Plathe,
    J. Comput. Chem. 24, 1624 (2003)): ``dU(r) = kT ln(g_md(r) / g_data(r))`` (eV) on the RDF bins up to
    ``cutoff`` (Angstrom). Returns the grid (bin centres) and ``{"A-B": dU}``.

    Made robust for short MD and finite data: both RDFs get ``regularization`` added inside the
    logarithm; each bin's ``dU`` is shrunk by ``max(0, 1 - (se / |dU|)^2)`` with ``se`` its standard
    error from both RDFs' errors (``reference["A-B_err"]``, ``rdf_errors``), so a difference within the
    noise gives no correction; bins where neither RDF reaches ``g_min`` (never sampled) get values
    interpolated from their sampled neighbours, and below the first sampled bin the correction is
    constant (no force where no data are: the repulsive wall acts there); a 3-point smoothing; a
    cosine taper to zero over the last ``taper`` Angstrom."""
    r_all = np.asarray(reference["r"])
    keep = r_all <= cutoff + 1e-9
    r = r_all[keep]
    switch = taper_switch(r, taper)
    out = {}
    for key in [k for k in reference if f"{k}_err" in reference]:
        g_ref, g_md = np.maximum(np.asarray(reference[key])[keep], 0), np.maximum(np.asarray(rdfs[key])[keep], 0)
        e_ref, e_md = np.asarray(reference[f"{key}_err"])[keep], np.asarray(rdf_errors[key])[keep]
        du = kT * np.log((g_md + regularization) / (g_ref + regularization))
        se = kT * np.sqrt((e_md / (g_md + regularization)) ** 2 + (e_ref / (g_ref + regularization)) ** 2)
        out[key] = finish_correction(r, du, se, np.maximum(g_ref, g_md) > g_min, switch)
    return r, out


def taper_switch(r: np.ndarray, taper: float = REFINE_TAPER_A) -> np.ndarray:
    """1 up to ``r[-1] - taper``, then a cosine down to 0 at ``r[-1]`` (Angstrom)."""
    start = r[-1] - taper
    return np.where(r < start, 1.0, 0.5 * (1 + np.cos(np.pi * np.clip((r - start) / taper, 0, 1))))


def finish_correction(r: np.ndarray, du: np.ndarray, se: np.ndarray, sampled: np.ndarray,
                      switch: np.ndarray) -> np.ndarray:
    """A pair correction ``du`` (eV) on the bins ``r`` made safe to add: each bin shrunk by
    ``max(0, 1 - (se / |du|)^2)`` (``se`` its standard error: a difference within the noise gives
    nothing), values of bins that are not ``sampled`` interpolated from their sampled neighbours
    (constant beyond the first and last sampled bins: no force where no data are), a 3-point
    smoothing, times ``switch`` (the taper), zero at the last bin. All zeros if nothing is sampled."""
    if not np.any(sampled):
        return np.zeros_like(r)
    significant = np.abs(du) > se
    du = np.where(significant, du * (1 - (se / np.where(significant, np.abs(du), 1.0)) ** 2), 0.0)
    du = np.interp(r, r[sampled], du[sampled])
    du = np.convolve(np.pad(du, 1, mode="edge"), [0.25, 0.5, 0.25], mode="valid") * switch
    du[-1] = 0.0
    return du


@dataclass
class Refinement:
    """The result of :func:`refine_structure`: ``checks[0]`` is the model as given, ``checks[i]`` the
    model after ``i`` corrections; ``model`` is the one with the smallest systematic RDF error among
    those with no collapsed replica (``chosen`` its index; 0: no correction helped, the model as given)."""

    model: DenoiserMACE
    checks: List[StructureCheck]
    chosen: int
    models: List[DenoiserMACE] = field(repr=False, default_factory=list)


def with_pair_table(model: DenoiserMACE, table) -> DenoiserMACE:
    """A copy of ``model`` whose pair-table prior is ``table`` (any earlier one replaced); ``model``
    itself is not changed."""
    return with_prior(model, table)


def refine_structure(
    model: DenoiserMACE,
    frames: Sequence[Atoms],
    *,
    iterations: int = 1,
    damping: float = 1.0,
    cutoff: Optional[float] = None,
    n_replicas: int = 8,
    equilibration_ps: float = 5.0,
    production_ps: float = 10.0,
    timestep_fs: float = 1.0,
    friction_per_fs: float = 0.01,
    seed: int = 0,
    reference: Optional[Dict[str, np.ndarray]] = None,
    start_frames: Optional[Sequence[Atoms]] = None,
    progress: Optional[Callable[[int], None]] = None,
) -> Refinement:
    """Correct a trained model's pair structure towards its data's, without labels.

    A denoiser's forces are least certain where its data are thin (on LiCl, the barrier between
    contact and solvent-separated ion pairs, crossed by a few dozen pairs in 500 frames), and a small
    error there moves whole populations in MD: some training seeds over-pair. The data's partial RDFs
    are measured well everywhere a pair is often found. So: run the model's MD
    (:func:`check_structure`, its default forces), compare its partial RDFs with the data's, and add
    ``damping * kT ln(g_md / g_data)`` per element pair (:func:`pair_correction`) to a tabulated pair
    prior (:class:`ase_denoise.priors.PairTable`, saved with the model and shown in its card);
    ``iterations`` times, checking the MD after each. ``cutoff`` (Angstrom): the table's range
    (default: the model's ``r_max``, at most half the box). Each check uses thermostat seeds
    ``seed + i`` (other noise than the one the correction was measured on).

    Costs ``iterations + 1`` checks (each ``n_replicas`` x (``equilibration_ps`` + ``production_ps``)).
    The correction fits what :func:`check_structure` measures, so the checks after it are not an
    independent test: judge a refined model also by what it was not fitted to (force errors where labels
    exist, RDFs against an independent trajectory, other observables)."""
    if iterations < 0 or damping <= 0:
        raise ValueError(f"refine_structure needs iterations >= 0 and damping > 0, got {iterations}, {damping}")
    frames = list(frames)
    if reference is None:
        reference = reference_structure(frames)
    cutoff = table_cutoff(model, cutoff, float(reference["r"][-1]), "refine_structure")
    kT = kB * model.temperature_K
    kwargs = dict(n_replicas=n_replicas, equilibration_ps=equilibration_ps, production_ps=production_ps,
                  timestep_fs=timestep_fs, friction_per_fs=friction_per_fs, reference=reference,
                  start_frames=start_frames, progress=progress)
    old = [p for p in model.priors if p.kind == "pair_table"]
    models, checks = [model], []
    table_u: Dict[str, np.ndarray] = {}
    for i in range(iterations + 1):
        check = check_structure(models[-1], frames, seed=seed + i, **kwargs)
        logger.info("structure refinement, %d correction(s): %s", i, check.figures())
        checks.append(check)
        if i == iterations:
            break
        if check.collapsed or not np.isfinite(check.systematic_error):
            logger.warning("structure refinement stopped: the MD after %d correction(s) collapsed", i)
            break
        grid, du = pair_correction(reference, check.rdfs, check.rdf_errors, kT, cutoff)
        if not table_u and old:  # continue an earlier refinement on its grid
            start = old[0]
            table_u = {f"{chemical_symbols[a]}-{chemical_symbols[b]}": np.interp(grid, start.r, v, right=0.0)
                       for (a, b), v in start.u.items()}
        for key, d in du.items():
            pair_key = key if key in table_u else "-".join(reversed(key.split("-")))
            table_u[pair_key] = table_u.get(pair_key, np.zeros_like(grid)) + damping * d
        table = PairTable(
            grid.tolist(), {tuple(atomic_numbers[x] for x in key.split("-")): v.tolist() for key, v in table_u.items()},
            source=(f"structure refinement: {i + 1} iteration(s) of iterative Boltzmann inversion (damping {damping:g}) "
                    f"against the partial RDFs of {len(frames)} frames, {n_replicas} replicas x {production_ps:g} ps each"))
        models.append(with_pair_table(model, table))
    intact = [i for i, c in enumerate(checks) if c.collapsed == 0 and np.isfinite(c.systematic_error)]
    chosen = min(intact, key=lambda i: checks[i].systematic_error) if intact else 0
    return Refinement(model=models[chosen], checks=checks, chosen=chosen, models=models[: len(checks)])
