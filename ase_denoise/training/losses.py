"""What the network is trained to output: targets and loss terms (docs/design.md, "The estimator").

Every target is in the units of the network output ``eps_hat`` (unit variance for the denoising
target), so one formula turns any model's output into forces: ``kT * eps_hat / sigma``
(:func:`ase_denoise.model.forces_from_output`).

* ``denoising``: input the noisy positions ``x = r + N``, target ``-N / sigma``
  (:func:`denoising_target`). The MSE-optimal output is ``sigma * grad log rho_sigma(x)``.
* ``force_matching``: input the clean positions, target ``sigma * F / kT`` for force labels ``F``
  (:func:`force_target`), so that ``kT * eps_hat / sigma`` returns ``F``. With instantaneous forces
  of a finer model as labels this is classic force-matching coarse graining (optimum: the mean force).
* ``hybrid``: the denoising term plus ``force_weight`` times the force-matching term of the frames
  in the batch that carry labels.
* ``mixed`` (variance-reduced labels, docs/noise-ladder.md, "Mixed labels when forces exist"): noisy positions in, and for a frame
  with force labels ``f`` the target ``a * sigma * f / kT + (1 - a) * (-N / sigma)``. Both parts are
  unbiased estimates of the same ``sigma * grad log rho_sigma(x)`` (for coarse-grained data
  ``E[f | r] = F(r)``, the mean force), so any mixture is; :class:`LabelMixing` picks ``a`` per
  species and sigma to minimise the label variance. Frames without labels get the denoising target.

Priors (:mod:`ase_denoise.priors`) that act where data are are learned as a residual: every target
above is lowered by ``sigma * F_prior / kT`` evaluated at the network's input (``residual``). With
``TrainConfig.smoothed_priors`` a noisy input's ``F_prior`` is the prior as the noise smooths it
(:meth:`ase_denoise.priors.Prior.smoothed_forces`: a bond's stiffness ``k / (1 + 2 k sigma^2 / kT)``),
which is what the prior contributes to ``grad log rho_sigma``; the residual then carries no
smoothed stiff mode, and its extrapolation to sigma -> 0 stays accurate at a sigma above a bond's width.

Each term is a mean squared error per component; a batch's loss is the weighted sum of its terms'
means (:func:`combine`). A denoiser that predicts no noise scores 1 per component; a perfect one
scores ``1 - sigma^2 <|grad log rho_sigma|^2> / 3``, near 1 where the noise is small against the
structure's widths (a liquid) and lower where it is not (a solid): the noise is mostly unpredictable,
so judge models by forces and structure, not by the loss value.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from ..data.frames import Frame
from ..priors import Prior, total_forces
from .sampler import NoisyBatch

DENOISING, FORCES = "denoising", "forces"

#: forces (eV/A) [n, 3] of the residual priors on frame ``frame`` at ``positions``, for a network input
#: at noise level ``noise_std`` (A; 0 for clean coordinates): the raw forces, or with
#: ``TrainConfig.smoothed_priors`` the bonded priors' noise-smoothed ones
Residual = Callable[[Frame, np.ndarray, float], np.ndarray]


def denoising_target(noise: torch.Tensor, noise_std) -> torch.Tensor:
    """Training target for a noise draw ``noise`` (Angstrom): ``-noise / sigma`` (unit variance).
    ``noise_std``: sigma, Angstrom (a number, or a tensor broadcastable to ``noise``)."""
    return -noise / noise_std


def force_target(forces: torch.Tensor, noise_std, kT: float) -> torch.Tensor:
    """Force-matching target ``sigma * F / kT`` for labels ``F`` (eV/A): the output ``eps`` for which
    :func:`ase_denoise.model.forces_from_output` (``kT * eps / sigma``) returns ``F``."""
    return forces * (noise_std / kT)


@dataclass
class LossInputs:
    """One forward pass worth of inputs and the targets of each loss term.

    ``frame_ids``/``positions``/``noise_std``: per graph (Angstrom). ``targets``: per term, the
    first node row of the term in the forward output and its target array [n_rows, 3]."""

    frame_ids: List[int] = field(default_factory=list)
    positions: List[np.ndarray] = field(default_factory=list)
    noise_std: List[float] = field(default_factory=list)
    targets: Dict[str, Tuple[int, np.ndarray]] = field(default_factory=dict)
    weights: Dict[str, np.ndarray] = field(default_factory=dict)  # per term, a weight per row [n_rows, 1]


@dataclass
class LabelMixing:
    """Weight ``a`` of the force label in the ``mixed`` target, per species and sigma.

    For noisy input ``x = r + N`` the two labels ``A = sigma f(r) / kT`` and ``B = -N / sigma`` both
    have the conditional mean ``T(x) = sigma grad log rho_sigma(x)``. The mixture's mean squared
    error around it is ``E[(a A + (1 - a) B)^2] - E[T^2]`` (``T`` is the conditional mean of any
    mixture), and ``E[A B] = 0`` because the noise is drawn independently of the frame, so
    ``a* = E[B^2] / (E[A^2] + E[B^2])``: the raw second moments decide, even though the two labels'
    errors around ``T`` are anti-correlated. Per component, ``E[B^2] = 1`` and
    ``E[A^2] = sigma^2 m_s / kT^2`` with ``m_s`` the mean squared force-label component of species
    ``s`` (after subtracting residual priors), so ``a = 1 / (1 + sigma^2 m_s / kT^2)``: labels win
    at small sigma, exactly where denoising is noisiest.
    """

    second_moment: Dict[int, float]  # species index -> m_s, (eV/A)^2
    kT: float

    def weight(self, species: np.ndarray, noise_std: float) -> np.ndarray:
        """``a`` [n, 1] for atoms of ``species`` (indices into the element table) at ``noise_std``."""
        m = np.array([self.second_moment.get(int(s), 0.0) for s in species])
        return (1.0 / (1.0 + noise_std**2 * m / self.kT**2))[:, None]

    @classmethod
    def from_frames(cls, frames: Sequence[Frame], kT: float, residual: Optional[Residual] = None) -> "LabelMixing":
        sums: Dict[int, float] = {}
        counts: Dict[int, int] = {}
        for f in frames:
            if f.ref_forces is None:
                continue
            labels = f.ref_forces - (residual(f, f.positions, 0.0) if residual is not None else 0.0)
            for s in np.unique(f.species):
                mask = f.species == s
                sums[int(s)] = sums.get(int(s), 0.0) + float((labels[mask] ** 2).sum())
                counts[int(s)] = counts.get(int(s), 0) + 3 * int(mask.sum())
        return cls({s: sums[s] / counts[s] for s in sums}, kT)


def prior_residual(priors: Sequence[Prior], atomic_numbers: Sequence[int], kT: float,
                   smoothed: bool) -> Optional[Residual]:
    """The forces (eV/A) the network does not learn: those of the ``priors`` marked ``in_residual``, at a
    frame's (noisy) positions, as the noise smooths them at a level ``sigma > 0`` when ``smoothed``
    (``TrainConfig.smoothed_priors``); ``None`` when no prior is a residual."""
    residual = [p for p in priors if p.in_residual]
    if not residual:
        return None
    numbers = np.asarray(atomic_numbers)

    def forces(frame: Frame, positions: np.ndarray, sigma: float) -> np.ndarray:
        z = numbers[frame.species]
        if smoothed and sigma > 0:
            return sum(p.smoothed_forces(z, positions, frame.cell, frame.pbc, sigma, kT) for p in residual)
        return total_forces(residual, z, positions, frame.cell, frame.pbc)

    return forces


def _residual(residual: Optional[Residual], frame: Frame, positions: np.ndarray, noise_std: float, kT: float,
              input_noise: float):
    """``sigma * F_prior(positions) / kT`` (``input_noise``: the noise level of ``positions``, 0 for a
    clean frame), or 0 without residual priors."""
    return 0.0 if residual is None else residual(frame, positions, input_noise) * (noise_std / kT)


def loss_inputs(
    mode: str,
    batch: NoisyBatch,
    frames: Sequence[Frame],
    kT: float,
    residual: Optional[Residual] = None,
    mixing: Optional[LabelMixing] = None,
    level_weight: Optional[Callable[[float], float]] = None,
) -> LossInputs:
    """The graphs to evaluate and the targets of ``mode``'s terms for one batch.

    Noisy copies come first (the denoising term; in ``mixed`` mode their targets mix in the force
    labels where a frame has them), then, for ``force_matching`` and ``hybrid``, the clean frames of
    the batch that carry force labels, each once (the force term). ``residual``: forces of the
    priors the network is trained as a residual to; ``mixing``: the ``mixed`` mode's weights;
    ``level_weight``: a weight per noise level for the noisy copies' squared errors (default 1)."""
    out = LossInputs()
    if mode != "force_matching":
        out.frame_ids += list(batch.frame_ids)
        out.positions += list(batch.positions)
        out.noise_std += list(batch.noise_std)
        targets = []
        for i, noise, pos, s in zip(batch.frame_ids, batch.noise, batch.positions, batch.noise_std):
            target = denoising_target(noise, s)
            if mode == "mixed" and frames[i].ref_forces is not None:
                a = mixing.weight(frames[i].species, s)  # type: ignore[union-attr]
                target = a * force_target(frames[i].ref_forces, s, kT) + (1.0 - a) * target
            targets.append(target - _residual(residual, frames[i], pos, s, kT, s))
        out.targets[DENOISING] = (0, np.concatenate(targets) if targets else np.zeros((0, 3)))
        if level_weight is not None:
            rows = [np.full((len(p), 1), level_weight(s)) for p, s in zip(batch.positions, batch.noise_std)]
            out.weights[DENOISING] = np.concatenate(rows) if rows else np.zeros((0, 1))
    if mode in ("force_matching", "hybrid"):
        start = sum(len(p) for p in out.positions)
        level = {i: s for i, s in zip(batch.frame_ids, batch.noise_std)}
        labelled = [i for i in dict.fromkeys(batch.frame_ids) if frames[i].ref_forces is not None]
        out.frame_ids += labelled
        out.positions += [frames[i].positions for i in labelled]
        out.noise_std += [level[i] for i in labelled]
        targets = [
            force_target(frames[i].ref_forces, level[i], kT)
            - _residual(residual, frames[i], frames[i].positions, level[i], kT, 0.0)
            for i in labelled
        ]
        out.targets[FORCES] = (start, np.concatenate(targets) if targets else np.zeros((0, 3)))
    return out


def squared_errors(output: torch.Tensor, inputs: LossInputs) -> Dict[str, Tuple[torch.Tensor, float]]:
    """Per term: (sum of squared errors, number of components) of ``output`` [n_rows, 3]."""
    terms = {}
    for name, (start, target) in inputs.targets.items():
        t = torch.as_tensor(target, dtype=output.dtype, device=output.device)
        squared = (output[start : start + len(t)] - t) ** 2
        if name in inputs.weights:
            squared = squared * torch.as_tensor(inputs.weights[name], dtype=output.dtype, device=output.device)
        terms[name] = (torch.sum(squared), float(t.numel()))
    return terms


def inverse_square_level_weight(levels: Sequence[float]) -> Callable[[float], float]:
    """``(sigma_ref / sigma)^2`` with ``sigma_ref`` the geometric mean of ``levels``: every level's
    squared error counted in units of the network's own output (a multi-level model scales its output by
    ``sigma / sigma_ref``), so the small levels, which the sigma -> 0 extrapolation weights most, are
    not fitted less closely than the large ones."""
    reference = float(np.exp(np.mean(np.log(levels))))
    return lambda s: (reference / s) ** 2


def term_weight(mode: str, name: str, force_weight: float) -> float:
    """``force_weight`` for the force term of the hybrid loss, 1 otherwise."""
    return force_weight if (name == FORCES and mode == "hybrid") else 1.0
