"""The exponential moving average of the weights that training validates and saves.

torch's ``get_ema_multi_avg_fn`` also averages integer buffers, in integer arithmetic:
``18 * 0.9 + 18 * 0.1`` truncates to 17, so with ``ema_decay=0.9`` the averaged model's element table
(the ``atomic_numbers`` buffer) drifted from argon to chlorine. Here floating tensors are averaged and
every other tensor is copied from the live model.
"""

from __future__ import annotations

import warnings
from typing import Callable, List

import torch
from torch.optim.swa_utils import AveragedModel


def ema_update(decay: float) -> Callable[[List[torch.Tensor], List[torch.Tensor], torch.Tensor], None]:
    """``multi_avg_fn`` for :class:`AveragedModel`: ``ema <- decay * ema + (1 - decay) * live`` for floating
    tensors, ``ema <- live`` for integer and boolean ones (labels, not weights)."""
    if not 0.0 <= decay <= 1.0:
        raise ValueError(f"ema_decay must be in [0, 1], got {decay}")

    @torch.no_grad()
    def update(averaged: List[torch.Tensor], live: List[torch.Tensor], _n_averaged: torch.Tensor) -> None:
        # AveragedModel groups tensors by dtype, so a group is all floating or none is
        if averaged[0].is_floating_point() or averaged[0].is_complex():
            torch._foreach_lerp_(averaged, live, 1.0 - decay)
        else:
            for a, b in zip(averaged, live):
                a.copy_(b)

    return update


def averaged_model(model: torch.nn.Module, decay: float) -> AveragedModel:
    """An :class:`AveragedModel` of ``model`` (parameters and buffers) with :func:`ema_update`."""
    with warnings.catch_warnings():  # its deep copy recompiles e3nn's kernels with TorchScript, warning
        warnings.simplefilter("ignore")
        return AveragedModel(model, multi_avg_fn=ema_update(decay), use_buffers=True)
