"""Which forces a model returns: one trained level, or the sigma -> 0 extrapolation through its levels.

A model trained at several noise levels ``sigma_1 < ... < sigma_L`` predicts the smoothed forces
``F_sigma`` at each of them, and ``F_sigma = F_0 + c_1 sigma^2 + c_2 sigma^4 + ...``.
:func:`extrapolation_weights` fits a polynomial in ``sigma^2`` of degree ``order`` (default
``min(L - 1, 2)``) through the levels by least squares and returns its value at 0 as fixed weights
``F_0 = sum_i w_i F_sigma_i`` (docs/noise-ladder.md, "Which forces a ladder model returns").

:class:`ForcesChoice` is that choice as one value: one trained level (``noise_std``), the
extrapolation of a given degree (``extrapolation_order``), or neither, which means the model's stored
default (``PhysicsConfig.default_noise_std`` / ``default_extrapolation_order``: what its recipe was
validated with), else the extrapolation of degree :func:`default_order`. The same value goes through
training (the default stored with a model), inference, the calculator, the batched replicas and every
engine front-end.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

if TYPE_CHECKING:  # typing only: the model imports this module
    from .model import DenoiserMACE


@dataclass(frozen=True)
class ForcesChoice:
    """Which forces a model returns, as one value.

    * ``ForcesChoice()``: the model's stored default (``PhysicsConfig.default_noise_std`` or
      ``default_extrapolation_order``, what its recipe was validated with), else for a ladder the
      extrapolation of degree :func:`default_order` (a single-level model has only its level);
    * ``ForcesChoice(noise_std=0.04)``: one trained level alone (Angstrom): that level's
      sigma-smoothed forces;
    * ``ForcesChoice(extrapolation_order=1)``: every level, extrapolated to sigma -> 0 with a
      polynomial of that degree in sigma^2 (1 amplifies the levels' own errors less than 2).

    Giving both is refused. The calculator, the replicas, the engine front-ends, ``predict`` and
    ``train(default_forces=...)`` all take it as ``forces=``; the command line builds it from
    ``--noise-std`` and ``--extrapolation-order``.
    """

    noise_std: Optional[float] = field(default=None, metadata={
        "cli": "--noise-std", "type": float,
        "help": "return the forces of this trained noise level alone, Angstrom (default: the model's stored "
                "default, else a ladder's forces extrapolated to sigma -> 0)"})
    extrapolation_order: Optional[int] = field(default=None, metadata={
        "cli": "--extrapolation-order", "type": int,
        "help": "return a ladder's forces extrapolated to sigma -> 0 with a polynomial of this degree in sigma^2"})

    def __post_init__(self) -> None:
        if self.noise_std is not None and self.extrapolation_order is not None:
            raise ValueError(f"forces: give a trained level (noise_std={self.noise_std}) or an extrapolation order "
                             f"(extrapolation_order={self.extrapolation_order}), not both")
        if self.noise_std is not None:
            if isinstance(self.noise_std, bool) or not isinstance(self.noise_std, (int, float)) or not (
                    math.isfinite(self.noise_std) and self.noise_std > 0):
                raise ValueError(f"forces: noise_std={self.noise_std!r} must be a trained level, a finite number of "
                                 "Angstrom > 0")
            object.__setattr__(self, "noise_std", float(self.noise_std))
        order = self.extrapolation_order
        if order is not None and (isinstance(order, bool) or not isinstance(order, (int, np.integer)) or order < 0):
            raise ValueError(f"forces: extrapolation_order={order!r} must be an integer >= 0 (a degree in sigma^2)")
        if order is not None:
            object.__setattr__(self, "extrapolation_order", int(order))

    @property
    def is_default(self) -> bool:
        """Neither a level nor an order: the model decides (its stored default)."""
        return self.noise_std is None and self.extrapolation_order is None

    @property
    def label(self) -> str:
        if self.noise_std is not None:
            return f"level {self.noise_std:g} A alone"
        if self.extrapolation_order is not None:
            return f"extrapolated to sigma -> 0, degree {self.extrapolation_order} in sigma^2"
        return "the model's default"


def as_forces_choice(forces: Optional[ForcesChoice]) -> ForcesChoice:
    """``forces`` itself, or ``ForcesChoice()`` for ``None``; anything else is refused with the way to say it."""
    if forces is None:
        return ForcesChoice()
    if not isinstance(forces, ForcesChoice):
        raise TypeError(f"forces={forces!r}: pass a ForcesChoice, e.g. ForcesChoice(noise_std=0.04) for one trained "
                        "level or ForcesChoice(extrapolation_order=1)")
    return forces


def refuse_old_keywords(kwargs: Dict[str, Any], who: str) -> None:
    """Refuse ``noise_std=`` / ``extrapolation_order=`` given to ``who`` on their own: they are one
    ``forces=ForcesChoice(...)`` value (ASE's ``Calculator`` would otherwise keep them as unused parameters)."""
    stray = sorted(set(kwargs) & {"noise_std", "extrapolation_order"})
    if stray:
        given = ", ".join(f"{k}={kwargs[k]!r}" for k in stray)
        raise TypeError(f"{who}: {given} is now one value: forces=ForcesChoice({given})")


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


def evaluation_levels(model: DenoiserMACE, forces: Optional[ForcesChoice] = None) -> Tuple[List[float], np.ndarray]:
    """The levels to evaluate and their weights for ``forces``: one trained level (weight 1), the
    model's only level, or all levels with the sigma -> 0 extrapolation weights of the chosen degree
    in sigma^2 (1 amplifies the levels' own errors less: weights 0.96 / 0.46 / -0.42 against 2.13 /
    -1.37 / 0.24 for the auto ladder). The default choice takes the model's stored default
    (``model.physics.default_forces``), else the extrapolation of degree :func:`default_order`.
    An expansion model (``ModelConfig.noise_expansion = K``) returns its sigma -> 0 term as the one level
    ``0.0`` for the default and for any degree >= K. Refuses a level the model was not trained at and an
    order its levels cannot carry."""
    forces = as_forces_choice(forces)
    if forces.is_default:  # what the model was validated with, if stored
        forces = model.physics.default_forces
    levels = list(model.noise_levels)
    noise_std, extrapolation_order = forces.noise_std, forces.extrapolation_order
    if noise_std is not None:
        level = model.physics.trained_level(noise_std)
        if level is None:
            raise ValueError(f"noise_std={noise_std} A is not a trained level of this model {tuple(levels)}")
        return [level], np.ones(1)
    if len(levels) == 1:
        return levels, np.ones(1)
    weights = extrapolation_weights(levels, extrapolation_order)  # refuses an order the levels cannot carry
    if is_expansion_term(model.config.noise_expansion, forces):
        return [0.0], np.ones(1)  # one pass at sigma = 0
    return levels, weights


def is_expansion_term(degree: int, forces: ForcesChoice) -> bool:
    """Whether ``forces`` (a resolved choice, not the model's default) of a model whose head returns an
    expansion of ``degree`` in sigma^2 (``ModelConfig.noise_expansion``; 0: none) is that expansion's
    sigma -> 0 term: no single level and no extrapolation of lower degree. Any extrapolation of degree >=
    its own through its levels gives that term, since the levels are that polynomial."""
    return bool(degree) and forces.noise_std is None and (
        forces.extrapolation_order is None or forces.extrapolation_order >= degree)


def forces_choices(model: DenoiserMACE) -> List[ForcesChoice]:
    """The ways ``model`` can return forces: for a ladder of L levels the extrapolations of degree
    ``min(L - 1, 2)`` down to 1, then the smallest level alone; a single-level model has one."""
    levels = list(model.noise_levels)
    if len(levels) == 1:
        return [ForcesChoice()]
    degree = model.config.noise_expansion  # every order above an expansion's own degree gives its F_0 again
    orders = [k for k in range(min(len(levels) - 1, 2), 0, -1) if not degree or k <= degree]
    return [ForcesChoice(extrapolation_order=k) for k in orders] + [ForcesChoice(noise_std=min(levels))]
