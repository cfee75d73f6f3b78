"""Check a model's MD against the structure of its own training data, without force labels.

A noise-ladder model can return its forces in several ways (the sigma -> 0 extrapolation of degree 2
or 1, or one trained level alone), and which one gives the best MD depends on the data: the
extrapolation removes the smoothing bias where the data are dense and amplifies the levels' errors
where they are thin (``docs/beyond-one-sigma.md``, "Which forces a ladder model returns"). Force
labels cannot decide it (a user may have none, and on LiCl the choice with the smallest force error
gave the worst MD). The data can: the pair structure of the frames the model was trained on is
what its MD has to reproduce.

:func:`check_structure` runs ``n_replicas`` independent Langevin replicas (one batched forward per step,
:class:`~ase_denoise.replicas.ReplicaLangevin`) from frames spread evenly over the data, pools their
frames after the equilibration, and compares the partial RDFs with the data's:

* ``rdf_error``: RMS difference over the bins, mean over the element pairs (the LiCl study's figure);
* ``rdf_error_noise``: its standard error from resampling the replicas (bootstrap over replicas);
* ``systematic_error``: the RMS difference with both RDFs' sampling variances subtracted bin by bin
  (the MD's from the bootstrap, the data's from block averages): an estimate of the model's own RDF
  error that does not grow when the run or the data are short. Zero for a perfect model.

:func:`choose_default_forces` does this for each way the model can return forces
(:func:`forces_choices`) and returns a copy of the model whose stored default
(:class:`~ase_denoise.config.PhysicsConfig` ``default_noise_std`` / ``default_extrapolation_order``)
is the choice with the smallest systematic error among those whose replicas did not collapse.
The choice is only as good as the MD behind it: ``rdf_error_noise`` says how well it is resolved.

:func:`refine_structure` goes one step further: it turns the difference between the MD's and the
data's partial RDFs into a tabulated pair correction (iterative Boltzmann inversion,
:func:`pair_correction`, stored as a :class:`ase_denoise.priors.PairTable` prior), checks again, and
keeps the best model (``docs/beyond-one-sigma.md``, "Correcting the pair structure").
:mod:`ase_denoise.mean_force` corrects the same pair structure without MD, from Kirkwood's relation
on the data frames.

Units: Angstrom, ps, K, eV; RDFs are dimensionless.
"""

from __future__ import annotations

import copy
import logging
import time
from dataclasses import dataclass, field, replace
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
from ase import Atoms

from .model import DenoiserMACE, with_prior

logger = logging.getLogger(__name__)

#: the RDF bin width (Angstrom)
BIN_WIDTH = 0.1
#: two atoms closer than this (Angstrom) mark a replica as collapsed; its later frames are dropped
COLLAPSE_DISTANCE = 1.0
N_BOOTSTRAP = 200


@dataclass(frozen=True)
class ForcesChoice:
    """One way to turn a model's trained levels into forces: the keywords of
    :class:`~ase_denoise.calculator.DenoiseCalculator` (both ``None``: the model's stored default)."""

    noise_std: Optional[float] = None  # one trained level, Angstrom
    extrapolation_order: Optional[int] = None  # degree in sigma^2 of the sigma -> 0 extrapolation

    @property
    def label(self) -> str:
        if self.noise_std is not None:
            return f"level {self.noise_std:g} A alone"
        if self.extrapolation_order is not None:
            return f"extrapolated to sigma -> 0, degree {self.extrapolation_order} in sigma^2"
        return "the model's default"


def forces_choices(model: DenoiserMACE) -> List[ForcesChoice]:
    """The ways ``model`` can return forces: for a ladder of L levels the extrapolations of degree
    ``min(L - 1, 2)`` down to 1, then the smallest level alone; a single-level model has one."""
    levels = list(model.noise_levels)
    if len(levels) == 1:
        return [ForcesChoice()]
    orders = range(min(len(levels) - 1, 2), 0, -1)
    return [ForcesChoice(extrapolation_order=k) for k in orders] + [ForcesChoice(noise_std=min(levels))]


def element_pairs(atoms: Atoms) -> List[Tuple[str, str]]:
    """Unordered pairs of the chemical symbols in ``atoms`` (in order of first appearance)."""
    symbols = list(dict.fromkeys(atoms.get_chemical_symbols()))
    return [(a, b) for i, a in enumerate(symbols) for b in symbols[i:]]


def pair_rdfs(frames: Sequence[Atoms], pairs: Sequence[Tuple[str, str]], r_max: float,
              bin_width: float = BIN_WIDTH) -> Dict[str, np.ndarray]:
    """Partial RDFs of ``frames``: ``{"r": bin centres, "A-B": g}`` (:func:`ase_denoise.analysis.rdf`)."""
    from .analysis import rdf

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
    from .analysis import _box_heights

    pairs = element_pairs(frames[0]) if pairs is None else list(pairs)
    r_max = float(np.floor(0.5 * _box_heights(frames[0]).min() / bin_width) * bin_width)
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


def run_replicas(
    model: DenoiserMACE,
    starts: Sequence[Atoms],
    *,
    temperature_K: float,
    equilibration_ps: float,
    production_ps: float,
    timestep_fs: float = 1.0,
    friction_per_fs: float = 0.01,
    sample_every: int = 100,
    seeds: Optional[Sequence[int]] = None,
    choice: ForcesChoice = ForcesChoice(),
    collapse_distance: float = COLLAPSE_DISTANCE,
    progress: Optional[Callable[[int], None]] = None,
) -> Tuple[List[List[Atoms]], Dict[str, object]]:
    """Langevin replicas of ``model`` from ``starts`` (one each), all in one batched forward per step.

    Returns each replica's frames of the production part (one every ``sample_every`` steps) and a
    dict: ``collapsed_at_step`` (per replica, ``None`` or the step at which two atoms came closer
    than ``collapse_distance``: its frames stop there), ``closest_approach_A``, ``mean_temperature_K``
    (production), ``wall_s``, ``batch_steps_per_s``, ``stopped`` (a non-finite force ends the run).
    ``progress``: called with the steps done after each chunk (e.g. a tqdm bar's ``update``)."""
    from .md import min_pair_distance
    from .replicas import ReplicaLangevin

    n = len(starts)
    rep = ReplicaLangevin(model, starts, temperature_K=temperature_K, timestep_fs=timestep_fs,
                          friction_per_fs=friction_per_fs, seeds=seeds, noise_std=choice.noise_std,
                          extrapolation_order=choice.extrapolation_order)
    n_equil = int(round(equilibration_ps * 1000 / timestep_fs))
    n_total = n_equil + int(round(production_ps * 1000 / timestep_fs))
    kept: List[List[Atoms]] = [[] for _ in range(n)]
    collapsed_at: List[Optional[int]] = [None] * n
    closest = np.full(n, np.inf)
    temps: List[np.ndarray] = []
    seen = set()

    def observe(step: int, positions, velocities) -> None:  # run() also observes at each call's start
        if step in seen:
            return
        seen.add(step)
        for i in range(n):
            if collapsed_at[i] is not None:
                continue
            atoms = rep.atoms(i)
            d = min_pair_distance(atoms, 4.0)
            closest[i] = min(closest[i], d)
            if d < collapse_distance:
                collapsed_at[i] = step
                logger.warning("replica %d: two atoms %.2f A apart at step %d (collapsed; its frames stop here)", i, d, step)
            elif step > n_equil:
                kept[i].append(atoms)
        if step > n_equil:
            temps.append(rep.temperatures())

    t0 = time.perf_counter()
    stopped = None
    while rep.steps_done < n_total and stopped is None:
        res = rep.run(min(10 * sample_every, n_total - rep.steps_done), interval=sample_every, observers=[observe])
        stopped = res["stopped"]
        if progress is not None:
            progress(res["steps"])
    wall = time.perf_counter() - t0
    return kept, dict(
        collapsed_at_step=collapsed_at, closest_approach_A=closest.tolist(), stopped=stopped, wall_s=wall,
        batch_steps_per_s=rep.steps_done / max(wall, 1e-12),
        mean_temperature_K=float(np.mean(temps)) if temps else float("nan"),
    )


@dataclass
class StructureCheck:
    """The figures of :func:`check_structure` for one choice of forces (RDFs dimensionless)."""

    choice: ForcesChoice
    rdf_error: float  # RMS difference to the data's RDFs, mean over pairs
    rdf_error_noise: float  # its bootstrap standard error over replicas
    systematic_error: float  # the RMS difference with both sampling variances subtracted
    systematic_per_pair: Dict[str, float]
    collapsed: int  # replicas in which two atoms came closer than COLLAPSE_DISTANCE
    n_replicas: int
    closest_approach_A: float
    mean_temperature_K: float
    wall_s: float
    rdfs: Dict[str, np.ndarray] = field(repr=False, default_factory=dict)
    rdf_errors: Dict[str, np.ndarray] = field(repr=False, default_factory=dict)  # per bin, bootstrap over replicas

    def figures(self) -> str:
        return (f"systematic RDF error {self.systematic_error:.3f} (RMS difference {self.rdf_error:.3f} ± "
                f"{self.rdf_error_noise:.3f}), {self.collapsed}/{self.n_replicas} replicas collapsed, "
                f"{self.mean_temperature_K:.0f} K, {self.wall_s:.0f} s")

    def line(self) -> str:
        return f"{self.choice.label}: {self.figures()}"


def _start_frames(frames: Sequence[Atoms], n_replicas: int) -> List[Atoms]:
    idx = np.linspace(0, len(frames) - 1, n_replicas).round().astype(int)
    return [frames[i] for i in idx]


def require_model_temperature(model: DenoiserMACE, frames: Sequence[Atoms], why: str) -> None:
    """Refuse frames whose ``info["temperature_K"]`` is not the model's training temperature (``why``:
    the end of the message)."""
    temps = {float(a.info["temperature_K"]) for a in frames if "temperature_K" in a.info}
    if temps and any(abs(t - model.temperature_K) > 1e-6 for t in temps):
        raise ValueError(f"the frames say temperature_K {sorted(temps)}, the model was trained at "
                         f"{model.temperature_K} K: {why}")


def table_cutoff(model: DenoiserMACE, cutoff: Optional[float], r_range: float, who: str) -> float:
    """The range (Angstrom) of a pair-table correction: ``cutoff`` or the model's ``r_max``, at most
    ``r_range`` (the data's RDF range); refused when shorter than the taper plus four bins."""
    cutoff = min(float(model.config.r_max) if cutoff is None else float(cutoff), float(r_range))
    if not cutoff >= 4 * BIN_WIDTH + REFINE_TAPER_A:
        raise ValueError(f"{who} needs a table cutoff of at least {4 * BIN_WIDTH + REFINE_TAPER_A:g} A "
                         f"(the taper is {REFINE_TAPER_A:g} A), got {cutoff:g} A")
    return cutoff


def check_structure(
    model: DenoiserMACE,
    frames: Sequence[Atoms],
    choice: ForcesChoice = ForcesChoice(),
    *,
    n_replicas: int = 8,
    equilibration_ps: float = 5.0,
    production_ps: float = 20.0,
    timestep_fs: float = 1.0,
    friction_per_fs: float = 0.01,
    seed: int = 0,
    reference: Optional[Dict[str, np.ndarray]] = None,
    start_frames: Optional[Sequence[Atoms]] = None,
    progress: Optional[Callable[[int], None]] = None,
) -> StructureCheck:
    """MD of ``model`` (forces as ``choice`` says) against the pair structure of ``frames``.

    ``n_replicas`` Langevin replicas at the model's training temperature, one from each of
    ``n_replicas`` frames evenly spaced over ``frames`` (so the starts are as independent as the data
    allow), thermostat seeds ``1000 * (seed + 1) + i``; ``equilibration_ps`` discarded, a frame every
    0.1 ps of ``production_ps`` kept (Langevin, ``timestep_fs``, ``friction_per_fs`` in 1/fs).
    ``reference``: the data's RDFs if already computed (:func:`reference_structure` of ``frames``);
    ``start_frames``: other start structures (one per replica) instead of frames of the data."""
    frames = list(frames)
    require_model_temperature(model, frames, "its MD can only be checked against data of its own temperature")
    if reference is None:
        reference = reference_structure(frames)
    pairs = [tuple(k.split("-")) for k in reference if f"{k}_err" in reference]
    steps_per_sample = max(1, int(round(100.0 / timestep_fs)))
    if start_frames is not None:
        n_replicas = len(start_frames)
    seeds = [1000 * (seed + 1) + i for i in range(n_replicas)]
    kept, info = run_replicas(
        model, _start_frames(frames, n_replicas) if start_frames is None else list(start_frames),
        temperature_K=model.temperature_K,
        equilibration_ps=equilibration_ps, production_ps=production_ps, timestep_fs=timestep_fs,
        friction_per_fs=friction_per_fs, sample_every=steps_per_sample, seeds=seeds, choice=choice, progress=progress)
    collapsed = sum(c is not None for c in info["collapsed_at_step"])
    if info["stopped"] or not all(kept):
        nan = float("nan")
        return StructureCheck(choice, nan, nan, nan, {}, max(collapsed, 1 if info["stopped"] else 0), n_replicas,
                              float(np.min(info["closest_approach_A"])), info["mean_temperature_K"], info["wall_s"])
    figs = compare_with_reference(reference, kept, pairs, np.random.default_rng(seed))
    return StructureCheck(
        choice=choice, rdf_error=figs["rdf_error"], rdf_error_noise=figs["rdf_error_noise"],
        systematic_error=figs["systematic_error"], systematic_per_pair=figs["systematic_per_pair"],
        collapsed=collapsed, n_replicas=n_replicas, closest_approach_A=float(np.min(info["closest_approach_A"])),
        mean_temperature_K=info["mean_temperature_K"], wall_s=info["wall_s"], rdfs=figs["rdfs"],
        rdf_errors=figs["rdf_errors"],
    )


def with_default_forces(model: DenoiserMACE, choice: ForcesChoice) -> DenoiserMACE:
    """A copy of ``model`` that returns ``choice``'s forces by default (stored in its physics and
    saved with it); ``model`` itself is not changed."""
    out = copy.deepcopy(model)
    out.physics = replace(out.physics, default_noise_std=choice.noise_std,
                          default_extrapolation_order=choice.extrapolation_order)
    return out


def choose_default_forces(
    model: DenoiserMACE,
    frames: Sequence[Atoms],
    choices: Optional[Sequence[ForcesChoice]] = None,
    **kwargs,
) -> Tuple[DenoiserMACE, List[StructureCheck]]:
    """Run :func:`check_structure` for each of ``choices`` (default :func:`forces_choices`) and return
    a copy of ``model`` storing the best as its default forces, with every choice's figures.

    Best: :func:`best_check`. Every choice runs from the same start frames with the same thermostat
    seeds. Raises ``RuntimeError`` when every choice collapsed."""
    choices = list(forces_choices(model) if choices is None else choices)
    reference = kwargs.pop("reference", None) or reference_structure(frames)
    checks = []
    for choice in choices:
        check = check_structure(model, frames, choice, reference=reference, **kwargs)
        logger.info("%s", check.line())
        checks.append(check)
    best = best_check(checks)
    return with_default_forces(model, best.choice), checks


def best_check(checks: Sequence[StructureCheck]) -> StructureCheck:
    """The check with the smallest ``systematic_error`` among those with no collapsed replica (ties: the
    earlier one). Raises ``RuntimeError`` naming every choice's figures when all collapsed."""
    intact = [c for c in checks if c.collapsed == 0 and np.isfinite(c.systematic_error)]
    if not intact:
        raise RuntimeError("every choice of forces collapsed in MD: " + "; ".join(c.line() for c in checks))
    return min(intact, key=lambda c: c.systematic_error)


# --------------------------------------------------------------------------------------------------
# Structure refinement: a pair correction from the data's RDFs (iterative Boltzmann inversion)
# --------------------------------------------------------------------------------------------------

#: bins where neither RDF reaches this are unsampled: the correction is interpolated across them
REFINE_G_MIN = 0.05
#: added to both RDFs inside the logarithm, so thinly sampled bins give damped, finite corrections
REFINE_REGULARIZATION = 0.02
#: the correction goes smoothly to zero over this distance (Angstrom) before the table's cutoff
REFINE_TAPER_A = 1.0


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
    from ase.data import atomic_numbers, chemical_symbols
    from ase.units import kB

    from .priors import PairTable

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


# --------------------------------------------------------------------------------------------------
# Torsion refinement: a dihedral correction from the data's torsion distributions (molecules)
# --------------------------------------------------------------------------------------------------

#: bin width (degrees) of the torsion histograms behind :func:`torsion_marginal_kl`
TORSION_BIN_DEG = 20.0


def torsion_marginal_kl(reference: np.ndarray, sampled: np.ndarray, bin_deg: float = TORSION_BIN_DEG) -> np.ndarray:
    """Per dihedral, ``KL(reference || sampled)`` (nats) of the one-dimensional histograms of two
    samples of angles [n, n_dihedrals] (radians), ``bin_deg``-degree bins with half a count added to
    every bin of both (so a bin one sample missed is finite). 0 for identical histograms."""
    edges = np.radians(np.linspace(-180.0, 180.0, int(round(360.0 / bin_deg)) + 1))
    reference = (np.atleast_2d(reference) + np.pi) % (2 * np.pi) - np.pi  # into [-pi, pi)
    sampled = (np.atleast_2d(sampled) + np.pi) % (2 * np.pi) - np.pi
    out = []
    for a, b in zip(reference.T, sampled.T):
        p, q = np.histogram(a, edges)[0] + 0.5, np.histogram(b, edges)[0] + 0.5
        p, q = p / p.sum(), q / q.sum()
        out.append(float((p * np.log(p / q)).sum()))
    return np.array(out)


def torsion_pair_kl(reference: np.ndarray, sampled: np.ndarray, bin_deg: float = TORSION_BIN_DEG) -> np.ndarray:
    """Per pair of consecutive columns (dihedrals 1 and 2, 3 and 4, ...), ``KL(reference || sampled)``
    (nats) of the two-dimensional histograms of two samples of angles [n, 2 n_pairs] (radians),
    ``bin_deg``-degree bins per angle with half a count added to every bin of both: the KL over a
    peptide's phi/psi plane when the pair is (phi, psi). 0 for identical histograms."""
    edges = np.radians(np.linspace(-180.0, 180.0, int(round(360.0 / bin_deg)) + 1))
    reference = (np.atleast_2d(reference) + np.pi) % (2 * np.pi) - np.pi  # into [-pi, pi)
    sampled = (np.atleast_2d(sampled) + np.pi) % (2 * np.pi) - np.pi
    out = []
    for c in range(0, reference.shape[1] - 1, 2):
        p = np.histogram2d(reference[:, c], reference[:, c + 1], [edges, edges])[0] + 0.5
        q = np.histogram2d(sampled[:, c], sampled[:, c + 1], [edges, edges])[0] + 0.5
        p, q = p / p.sum(), q / q.sum()
        out.append(float((p * np.log(p / q)).sum()))
    return np.array(out)


@dataclass
class TorsionRefinement:
    """The result of :func:`refine_torsions`: ``marginal_kl[i]`` (per dihedral, nats) of the MD after
    ``i`` corrections (0: the model as given), ``joint_kl[i]`` (per dihedral pair, with ``joint``;
    else empty), ``models[i]`` that model, ``model`` the one with the smallest mean marginal KL (with
    ``joint``: mean joint KL) among those whose MD stayed intact (``chosen`` its index), ``sampled`` the
    MD's angles [n, n_dihedrals] (radians) per check."""

    model: DenoiserMACE
    chosen: int
    marginal_kl: List[np.ndarray]
    intact: List[bool]
    mean_temperature_K: List[float]
    models: List[DenoiserMACE] = field(repr=False, default_factory=list)
    sampled: List[np.ndarray] = field(repr=False, default_factory=list)
    joint_kl: List[np.ndarray] = field(default_factory=list)

    def score(self, i: int) -> float:
        """What the refinement ranks check ``i`` by: the mean joint KL with ``joint``, else the mean
        marginal KL (nats)."""
        return float(np.mean(self.joint_kl[i] if len(self.joint_kl) and len(self.joint_kl[i]) else self.marginal_kl[i]))

    def figures(self, i: int) -> str:
        kl = self.marginal_kl[i]
        joint = self.joint_kl[i] if len(self.joint_kl) else []
        return (f"torsion marginal KL {np.mean(kl):.3f} (per dihedral {', '.join(f'{x:.3f}' for x in kl)}), "
                + (f"joint KL per pair {', '.join(f'{x:.3f}' for x in joint)}, " if len(joint) else "")
                + f"{'intact' if self.intact[i] else 'a replica collapsed'}, {self.mean_temperature_K[i]:.0f} K")


def refine_torsions(
    model: DenoiserMACE,
    frames: Sequence[Atoms],
    dihedrals: Optional[Sequence[Tuple[int, int, int, int]]] = None,
    *,
    iterations: int = 1,
    damping: float = 1.0,
    n_replicas: int = 8,
    equilibration_ps: float = 5.0,
    production_ps: float = 20.0,
    timestep_fs: float = 1.0,
    friction_per_fs: float = 0.05,
    seed: int = 0,
    collapse_distance: float = 0.5,
    start_frames: Optional[Sequence[Atoms]] = None,
    progress: Optional[Callable[[int], None]] = None,
    joint: bool = False,
) -> TorsionRefinement:
    """Correct a molecule model's torsion distributions towards its data's, without labels.

    The torsions of a molecule are where a coordinates-only denoiser is weakest (their forces are
    small against the label noise ``kT / sigma``) and where its MD's free energy goes wrong first
    (alanine dipeptide's phi/psi populations, ``benchmarks/ala2/README.md``). The data's distribution
    of each named dihedral is measured well. So: run the model's replicas (as
    :func:`check_structure`: ``n_replicas`` starts spread over ``frames``, thermostat seeds ``1000 *
    (seed + i + 1) + r`` for the check after ``i`` corrections), measure each dihedral's distribution,
    and add ``damping * kT ln(p_md / p_data)`` (:func:`ase_denoise.priors.fit_dihedral_correction`,
    Fourier fits of both) to a :class:`ase_denoise.priors.DihedralCorrection` (saved with the model,
    shown in its card, added at inference only); ``iterations`` times, checking after each.

    ``dihedrals``: atom quadruples (default: those of the model's torsion prior, ``dihedrals`` kind).
    ``collapse_distance`` (Angstrom): two atoms closer than this end a replica (bonded hydrogens sit
    near 1 A, so lower than the liquids' default). What each check measures is what the correction is
    fitted to: judge the refined model also by what it was not fitted to (the joint distribution of
    several torsions, populations against an independent reference).

    ``joint``: correct the joint distribution of the dihedrals in pairs (the first with the second,
    the third with the fourth, ...; a peptide's phi and psi) instead: each step is a two-dimensional
    iterative Boltzmann step (:func:`ase_denoise.priors.fit_dihedral_pair_correction`, 3 orders per
    angle) in a :class:`ase_denoise.priors.DihedralPairCorrection`, kept beside a one-dimensional
    correction the model already carries, and the checks are ranked by the pairs' joint KL
    (:func:`torsion_pair_kl`). Run it after a one-dimensional refinement: the joint step's low orders
    reach the coupling and the marginals' coarse shape, the one-dimensional one the marginals' detail."""
    from ase.units import kB

    from .priors import dihedral_angles, fit_dihedral_correction, fit_dihedral_pair_correction

    if iterations < 0 or not 0.0 < damping <= 1.0:
        raise ValueError(f"refine_torsions needs iterations >= 0 and 0 < damping <= 1, got {iterations}, {damping}")
    frames = list(frames)
    require_model_temperature(model, frames, "its torsions can only be refined against data of its own temperature")
    if dihedrals is None:
        named = [p for p in model.priors if p.kind == "dihedrals"]
        if not named:
            raise ValueError("refine_torsions needs the dihedrals to refine: the model has no torsion prior to take "
                             "them from; pass dihedrals=[(i, j, k, l), ...]")
        dihedrals = named[0].dihedrals
    dihedrals = [tuple(int(x) for x in q) for q in dihedrals]
    target = dihedral_angles(frames, dihedrals)
    kT = kB * model.temperature_K
    starts = _start_frames(frames, n_replicas) if start_frames is None else list(start_frames)
    steps_per_sample = max(1, int(round(100.0 / timestep_fs)))
    pairs = [(dihedrals[c], dihedrals[c + 1]) for c in range(0, len(dihedrals) - 1, 2)] if joint else []
    if joint and len(dihedrals) % 2:
        raise ValueError(f"a joint torsion refinement needs the dihedrals in pairs (an even number), got {len(dihedrals)}")
    old = [p for p in model.priors if p.kind == ("dihedral_pair_correction" if joint else "dihedral_correction")]
    wanted = pairs if joint else dihedrals
    held = (old[0].pairs if joint else [tuple(q) for q in old[0].dihedrals]) if old else wanted
    if held != wanted:
        raise ValueError(f"the model already carries a torsion correction on {held}, not on {wanted}: refine the "
                         "same dihedrals, or start from the model without it")
    correction = old[0] if old else None
    models, kls, joint_kls, intact, temps, sampled = [model], [], [], [], [], []
    for i in range(iterations + 1):
        kept, info = run_replicas(
            models[-1], starts, temperature_K=model.temperature_K, equilibration_ps=equilibration_ps,
            production_ps=production_ps, timestep_fs=timestep_fs, friction_per_fs=friction_per_fs,
            sample_every=steps_per_sample, seeds=[1000 * (seed + i + 1) + r for r in range(len(starts))],
            collapse_distance=collapse_distance, progress=progress)
        ok = not info["stopped"] and all(c is None for c in info["collapsed_at_step"]) and all(kept)
        angles = dihedral_angles([a for rep in kept for a in rep], dihedrals) if any(kept) else np.zeros((0, len(dihedrals)))
        kls.append(torsion_marginal_kl(target, angles) if len(angles) else np.full(len(dihedrals), np.nan))
        if joint:
            joint_kls.append(torsion_pair_kl(target, angles) if len(angles) else np.full(len(pairs), np.nan))
        intact.append(ok)
        temps.append(info["mean_temperature_K"])
        sampled.append(angles)
        logger.info("torsion refinement, %d correction(s): marginal KL %s, %s", i, np.round(kls[-1], 3),
                    "intact" if ok else "a replica collapsed")
        if i == iterations:
            break
        if not ok or len(angles) < 2:
            logger.warning("torsion refinement stopped: the MD after %d correction(s) did not stay intact", i)
            break
        if joint:
            correction = fit_dihedral_pair_correction(angles, target, kT, pairs, previous=correction, damping=damping)
        else:
            correction = fit_dihedral_correction(angles, target, kT, dihedrals, previous=correction, damping=damping)
        models.append(with_prior(model, correction))
    result = TorsionRefinement(model=model, chosen=0, marginal_kl=kls, intact=intact, mean_temperature_K=temps,
                               models=models[: len(kls)], sampled=sampled, joint_kl=joint_kls)
    usable = [i for i in range(len(kls)) if intact[i] and np.isfinite(result.score(i))]
    result.chosen = min(usable, key=result.score) if usable else 0
    result.model = result.models[result.chosen]
    return result
