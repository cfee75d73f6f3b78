"""The configurational temperature: a label-free measure of whether a model's forces have the size of
the data's.

For frames drawn from ``rho ∝ exp(-U / kT)`` and any smooth vector field ``F`` (a model's forces),
integrating by parts gives Stein's identity

    < F_true . F >  =  -kT < div F >

(periodic cells and densities that vanish at infinity alike). So without a single force label,

    T_conf / T  =  < |F|^2 >  /  ( -kT < div F > )  =  < |F|^2 > / < F_true . F >

is 1 when the model's forces have the data's size and ``s`` when they are ``s`` times too strong
(Rugh's configurational temperature of the data, measured with the model's forces: ``T_conf``). The
divergence is estimated as Hutchinson's trace, ``div F ≈ v . (F(x + h v) - F(x - h v)) / (2 h)`` with a
random sign vector ``v`` per frame, so a check costs three force calls per frame and no MD.

What it does not see: an error orthogonal to the true forces changes ``< |F|^2 >`` but not ``< F_true . F
>``, so it reads as a slightly high ratio, and an error that is small on average but large in rare
regions is diluted like any average over the data. Judge structure by MD
(:func:`ase_denoise.refine.check_structure`); this measures the scale of the forces, cheaply and
precisely (about 1% with 300 frames of 100 atoms).
"""

from __future__ import annotations

import dataclasses
import logging
import math
from dataclasses import dataclass
from typing import Optional, Sequence, Union

import numpy as np
from ase import Atoms
from ase.units import kB

from ..data.frames import Frame
from ..forces import ForcesChoice
from ..inference import as_frames, predict
from ..model import DenoiserMACE
from .replica_md import require_model_temperature

logger = logging.getLogger(__name__)

#: the finite-difference step of the divergence (Angstrom): well inside the forces' smooth range, far
#: above float32 rounding of positions
DIVERGENCE_STEP_A = 0.005


@dataclass
class ForceScale:
    """``ratio``: ``T_conf / T`` (1: the model's forces have the data's size; 1.03: 3% too strong; NaN
    when they do not point along the data's on average),
    ``error``: its standard error over the frames; ``temperature_K``: the data's temperature the model
    was trained at; ``force_sq`` and ``force_dot`` (eV^2/A^2, per frame): ``|F|^2`` summed over atoms and
    the label-free estimate of ``F_true . F`` (``-kT div F``), for comparisons of several models on
    the same frames and sign vectors."""

    ratio: float
    error: float
    temperature_K: float
    n_frames: int
    force_sq: np.ndarray
    force_dot: np.ndarray

    @property
    def configurational_temperature_K(self) -> float:
        return self.ratio * self.temperature_K

    def line(self) -> str:
        if not math.isfinite(self.ratio):
            return (f"the model's forces do not point along the data's on average (-kT <div F> = "
                    f"{float(np.mean(self.force_dot)):.3g} eV^2/A^2 per frame, {self.n_frames} frames): no force scale")
        return (f"configurational temperature of the data with the model's forces {self.configurational_temperature_K:.0f} K "
                f"at {self.temperature_K:g} K: force scale {self.ratio:.3f} +- {self.error:.3f} "
                f"(1 = the data's; {self.n_frames} frames, no labels)")


def configurational_temperature(
    model: DenoiserMACE,
    frames: Sequence[Union[Atoms, Frame]],
    forces: Optional[ForcesChoice] = None,
    *,
    max_frames: int = 300,
    step_A: float = DIVERGENCE_STEP_A,
    seed: int = 0,
    batch_size: int = 8,
) -> ForceScale:
    """The data's configurational temperature measured with ``model``'s forces (``forces``: which,
    default the model's own), on at most ``max_frames`` of ``frames`` evenly spaced (the frames must be
    at the model's temperature). Module docstring for the identity. ``step_A``: the divergence's
    finite-difference step (Angstrom); ``seed``: the sign vectors' generator (its own; no global state)."""
    if not step_A > 0 or max_frames < 2:
        raise ValueError(f"need step_A > 0 (Angstrom) and max_frames >= 2, got {step_A}, {max_frames}")
    frames = list(frames)
    atoms = [f for f in frames if isinstance(f, Atoms)]
    require_model_temperature(model, atoms, "its configurational temperature is measured at the data's own")
    if len(frames) > max_frames:
        frames = [frames[i] for i in np.linspace(0, len(frames) - 1, max_frames).round().astype(int)]
    frames = as_frames(model, frames)
    if len(frames) < 2:
        raise ValueError("the configurational temperature needs at least two frames")
    rng = np.random.default_rng(seed)
    kT = kB * model.temperature_K
    force_sq, force_dot = np.empty(len(frames)), np.empty(len(frames))
    chunk = max(1, batch_size // 3)
    for start in range(0, len(frames), chunk):
        part = frames[start:start + chunk]
        signs = [rng.choice([-1.0, 1.0], size=f.positions.shape) for f in part]
        shifted = []
        for f, v in zip(part, signs):
            shifted += [f, dataclasses.replace(f, positions=f.positions + step_A * v),
                        dataclasses.replace(f, positions=f.positions - step_A * v)]
        out = predict(model, shifted, forces=forces, batch_size=batch_size)
        offset = 0
        for k, (f, v) in enumerate(zip(part, signs)):
            n = f.n_atoms
            here, plus, minus = (out[offset + j * n: offset + (j + 1) * n] for j in range(3))
            offset += 3 * n
            force_sq[start + k] = float((here * here).sum())
            force_dot[start + k] = -kT * float((v * (plus - minus)).sum()) / (2.0 * step_A)
    mean_dot = float(force_dot.mean())
    if math.isfinite(mean_dot) and mean_dot > 0:
        ratio = float(force_sq.mean()) / mean_dot
        # delta method for a ratio of means: var(sq - ratio * dot) / (n mean(dot)^2)
        error = float(np.std(force_sq - ratio * force_dot, ddof=1) / (math.sqrt(len(frames)) * mean_dot))
    else:  # the forces do not point along the data's on average: no scale to speak of
        ratio = error = float("nan")
    result = ForceScale(ratio, error, model.temperature_K, len(frames), force_sq, force_dot)
    (logger.info if math.isfinite(ratio) else logger.warning)("%s", result.line())
    return result
