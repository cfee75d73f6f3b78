"""Reusable numerical checks of a denoiser (for this project's tests and for users' own models).

Each check returns the largest absolute deviation, in the model's output units (``eps_hat``,
unitless), so callers choose their tolerance (e.g. 1e-8 in float64, 1e-4 in float32).
"""

from __future__ import annotations

import contextlib
from typing import Dict, Iterator, Optional, Union

import numpy as np
import torch
from ase import Atoms
from scipy.spatial.transform import Rotation

from .inference import predict, structure_frame
from .model import DenoiserMACE


def model_output(model: DenoiserMACE, atoms: Atoms, noise_std: Optional[float] = None) -> np.ndarray:
    """``eps_hat`` [n_atoms, 3] of ``model`` for ``atoms`` (no noise added), float64 numpy.
    ``noise_std``: the level of a multi-level model (Angstrom)."""
    return predict(model, [structure_frame(atoms, model)], output="eps_hat", noise_std=noise_std)


def random_rotation(seed: int = 0) -> np.ndarray:
    """A uniformly random proper rotation matrix (det +1)."""
    return Rotation.random(random_state=seed).as_matrix()


def _transformed(atoms: Atoms, matrix: np.ndarray, shift: Optional[np.ndarray] = None) -> Atoms:
    out = atoms.copy()
    out.set_cell(atoms.cell.array @ matrix.T, scale_atoms=False)
    out.positions = atoms.positions @ matrix.T + (0.0 if shift is None else shift)
    return out


def equivariance_errors(
    model: DenoiserMACE, atoms: Atoms, seed: int = 0, noise_std: Optional[float] = None
) -> Dict[str, float]:
    """Max deviations under rotation (output rotates), inversion (output flips: forces are 1o),
    translation (unchanged) and permutation of atoms (output permuted); ``noise_std``: the level of a
    multi-level model."""

    def out(a: Atoms) -> np.ndarray:
        return model_output(model, a, noise_std)

    ref = out(atoms)
    R = random_rotation(seed)
    rng = np.random.default_rng(seed)
    errors = {
        "rotation": np.abs(out(_transformed(atoms, R)) - ref @ R.T).max(),
        "inversion": np.abs(out(_transformed(atoms, -np.eye(3))) + ref).max(),
        "translation": np.abs(out(_transformed(atoms, np.eye(3), rng.normal(size=3) * 3.0)) - ref).max(),
    }
    perm = rng.permutation(len(atoms))
    errors["permutation"] = np.abs(out(atoms[perm]) - ref[perm]).max()
    return {k: float(v) for k, v in errors.items()}


def net_force(model: DenoiserMACE, atoms: Atoms, noise_std: Optional[float] = None) -> float:
    """|sum_i eps_hat_i|_max: zero (to rounding) for a head that obeys Newton's third law."""
    return float(np.abs(model_output(model, atoms, noise_std).sum(axis=0)).max())


@contextlib.contextmanager
def default_dtype(dtype: Union[torch.dtype, str]) -> Iterator[None]:
    """Set torch's default dtype inside a block (e.g. to build a MACE model in float64) and restore it
    afterwards, also when the block raises. (mace's ``tools.torch_tools.default_dtype`` restores it
    only when the block succeeds, so a failing test would leak float64 into every later test.)"""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(getattr(torch, dtype) if isinstance(dtype, str) else dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)
