"""Torsion refinement: a molecule model's torsion distributions corrected towards its data's, without
labels (docs/refine.md, "Correcting a molecule's torsions towards the data's")."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Callable, List, Optional, Sequence, Tuple

import numpy as np
from ase import Atoms
from ase.units import kB

from ..model import DenoiserMACE, with_prior
from ..priors import dihedral_angles, fit_dihedral_correction, fit_dihedral_pair_correction
from .replica_md import require_model_temperature, run_replicas, spread_starts

logger = logging.getLogger(__name__)


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
    starts = spread_starts(frames, n_replicas) if start_frames is None else list(start_frames)
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
