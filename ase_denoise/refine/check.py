"""Check a model's MD against the structure of its own training data, without force labels.

A noise-ladder model can return its forces in several ways (the sigma -> 0 extrapolation of degree 2
or 1, or one trained level alone), and which one gives the best MD depends on the data: the
extrapolation removes the smoothing bias where the data are dense and amplifies the levels' errors
where they are thin (``docs/noise-ladder.md``, "Which forces a ladder model returns"). Force
labels cannot decide it (a user may have none, and on LiCl the choice with the smallest force error
gave the worst MD). The data can: the pair structure of the frames the model was trained on is
what its MD has to reproduce.

:func:`check_structure` runs ``n_replicas`` independent Langevin replicas (one batched forward per step,
:class:`~ase_denoise.md.replicas.ReplicaLangevin`) from frames spread evenly over the data, pools their
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
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
from ase import Atoms

from ..forces import ForcesChoice, forces_choices
from ..model import DenoiserMACE, with_default_forces
from .rdf import compare_with_reference, reference_structure
from .replica_md import require_model_temperature, run_replicas, spread_starts

logger = logging.getLogger(__name__)


@dataclass
class StructureCheck:
    """The figures of :func:`check_structure` for one choice of forces (RDFs dimensionless)."""

    forces: ForcesChoice  # the forces the MD ran with
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
        return f"{self.forces.label}: {self.figures()}"


def check_structure(
    model: DenoiserMACE,
    frames: Sequence[Atoms],
    forces: ForcesChoice = ForcesChoice(),
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
    """MD of ``model`` (its ``forces``: :class:`~ase_denoise.forces.ForcesChoice`, default the model's own) against the pair structure of ``frames``.

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
        model, spread_starts(frames, n_replicas) if start_frames is None else list(start_frames),
        temperature_K=model.temperature_K,
        equilibration_ps=equilibration_ps, production_ps=production_ps, timestep_fs=timestep_fs,
        friction_per_fs=friction_per_fs, sample_every=steps_per_sample, seeds=seeds, forces=forces, progress=progress)
    collapsed = sum(c is not None for c in info["collapsed_at_step"])
    if info["stopped"] or not all(kept):
        nan = float("nan")
        return StructureCheck(forces, nan, nan, nan, {}, max(collapsed, 1 if info["stopped"] else 0), n_replicas,
                              float(np.min(info["closest_approach_A"])), info["mean_temperature_K"], info["wall_s"])
    figs = compare_with_reference(reference, kept, pairs, np.random.default_rng(seed))
    return StructureCheck(
        forces=forces, rdf_error=figs["rdf_error"], rdf_error_noise=figs["rdf_error_noise"],
        systematic_error=figs["systematic_error"], systematic_per_pair=figs["systematic_per_pair"],
        collapsed=collapsed, n_replicas=n_replicas, closest_approach_A=float(np.min(info["closest_approach_A"])),
        mean_temperature_K=info["mean_temperature_K"], wall_s=info["wall_s"], rdfs=figs["rdfs"],
        rdf_errors=figs["rdf_errors"],
    )


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
        check = check_structure(model, frames, forces=choice, reference=reference, **kwargs)
        logger.info("%s", check.line())
        checks.append(check)
    best = best_check(checks)
    return with_default_forces(model, best.forces), checks


def best_check(checks: Sequence[StructureCheck]) -> StructureCheck:
    """The check with the smallest ``systematic_error`` among those with no collapsed replica (ties: the
    earlier one). Raises ``RuntimeError`` naming every choice's figures when all collapsed."""
    intact = [c for c in checks if c.collapsed == 0 and np.isfinite(c.systematic_error)]
    if not intact:
        raise RuntimeError("every choice of forces collapsed in MD: " + "; ".join(c.line() for c in checks))
    return min(intact, key=lambda c: c.systematic_error)
