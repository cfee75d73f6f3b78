"""Which forces a model returns: one trained level, or the sigma -> 0 extrapolation through its levels.

A model trained at several noise levels ``sigma_1 < ... < sigma_L`` predicts the smoothed forces
``F_sigma`` at each of them, and ``F_sigma = F_0 + c_1 sigma^2 + c_2 sigma^4 + ...``.
:func:`extrapolation_weights` fits a polynomial in ``sigma^2`` of degree ``order`` (default
``min(L - 1, 2)``) through the levels by least squares and returns its value at 0 as fixed weights
``F_0 = sum_i w_i F_sigma_i`` (docs/beyond-one-sigma.md, "Which forces a ladder model returns").

:class:`ForcesChoice` is that choice as one value: one trained level (``noise_std``), the
extrapolation of a given degree (``extrapolation_order``), or neither, which means the model's stored
default (``PhysicsConfig.default_noise_std`` / ``default_extrapolation_order``: what its recipe was
validated with), else the extrapolation of degree :func:`default_order`. The same value goes through
training (the default stored with a model), inference, the calculator, the batched replicas and every
engine front-end.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, List, Optional, Sequence, Tuple

import numpy as np

if TYPE_CHECKING:  # typing only: the model imports this module
    from .model import DenoiserMACE


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


def default_order(n_levels: int) -> int:
    """Degree in sigma^2 of the extrapolation through ``n_levels`` levels: ``min(n_levels - 1, 2)``."""
    return min(n_levels - 1, 2)


def extrapolation_weights(levels: Sequence[float], order: Optional[int] = None) -> np.ndarray:
    """Weights ``w`` [L] with ``F_0 ~ sum_i w_i F(sigma_i)``: the value at ``sigma = 0`` of the
    least-squares polynomial of degree ``order`` in ``sigma^2`` through the levels (exact
    interpolation when ``order = L - 1``). The weights sum to 1; ``sqrt(sum w_i^2)`` is how much
    independent errors of the levels are amplified."""
    levels = np.asarray(levels, dtype=np.float64)
    order = default_order(len(levels)) if order is None else int(order)
    if not 0 <= order < len(levels):
        raise ValueError(f"extrapolation order {order} needs more than {order} noise levels, got {len(levels)}")
    x = (levels / levels.max()) ** 2
    return np.linalg.pinv(np.vander(x, order + 1, increasing=True))[0]


def evaluation_levels(
    model: DenoiserMACE, noise_std: Optional[float], extrapolation_order: Optional[int] = None
) -> Tuple[List[float], np.ndarray]:
    """The levels to evaluate and their weights: one trained level ``noise_std`` (weight 1), or for
    ``None`` the model's only level, or all levels with the sigma -> 0 extrapolation weights of degree
    ``extrapolation_order`` in sigma^2 (1 amplifies the levels' own errors less: weights 0.96 / 0.46 /
    -0.42 against 2.13 / -1.37 / 0.24 for the auto ladder). Given neither, the model's stored
    defaults apply (``model.physics.default_noise_std`` or ``default_extrapolation_order``), else
    the extrapolation of degree :func:`default_order`."""
    levels = list(model.noise_levels)
    if noise_std is None and extrapolation_order is None:  # what the model was validated with, if stored
        noise_std, extrapolation_order = model.physics.default_noise_std, model.physics.default_extrapolation_order
    if noise_std is not None:
        level = model.physics.trained_level(noise_std)
        if level is None:
            raise ValueError(f"noise_std={noise_std} A is not a trained level of this model {tuple(levels)}")
        return [level], np.ones(1)
    if len(levels) == 1:
        return levels, np.ones(1)
    return levels, extrapolation_weights(levels, extrapolation_order)


def forces_choices(model: DenoiserMACE) -> List[ForcesChoice]:
    """The ways ``model`` can return forces: for a ladder of L levels the extrapolations of degree
    ``min(L - 1, 2)`` down to 1, then the smallest level alone; a single-level model has one."""
    levels = list(model.noise_levels)
    if len(levels) == 1:
        return [ForcesChoice()]
    orders = range(min(len(levels) - 1, 2), 0, -1)
    return [ForcesChoice(extrapolation_order=k) for k in orders] + [ForcesChoice(noise_std=min(levels))]


def with_default_forces(model: DenoiserMACE, choice: ForcesChoice) -> DenoiserMACE:
    """A copy of ``model`` that returns ``choice``'s forces by default (stored in its physics and
    saved with it); ``model`` itself is not changed."""
    out = copy.deepcopy(model)
    out.physics = replace(out.physics, default_noise_std=choice.noise_std,
                          default_extrapolation_order=choice.extrapolation_order)
    return out
