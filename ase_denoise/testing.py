"""Reusable numerical checks of a denoiser (for this project's tests and for users' own models).

Each check returns the largest absolute deviation, in the model's output units (``eps_hat``,
unitless), so callers choose their tolerance (e.g. 1e-8 in float64, 1e-4 in float32).
"""

from __future__ import annotations

from typing import Dict, Optional

import numpy as np
import torch
from ase import Atoms

from .data import collate, to_frame
from .model import DenoiserMACE


def model_output(model: DenoiserMACE, atoms: Atoms) -> np.ndarray:
    """``eps_hat`` [n_atoms, 3] of ``model`` for ``atoms`` (no noise added), float64 numpy."""
    dtype = next(model.parameters()).dtype
    frame = to_frame(atoms, model.config.atomic_numbers)
    data = collate([frame.positions], [frame], len(model.config.atomic_numbers), model.config.r_max, dtype)
    with torch.no_grad():
        return model(data).double().numpy()


def random_rotation(seed: int = 0) -> np.ndarray:
    """A uniformly random proper rotation matrix (det +1)."""
    q, r = np.linalg.qr(np.random.default_rng(seed).normal(size=(3, 3)))
    q = q @ np.diag(np.sign(np.diag(r)))
    if np.linalg.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return q


def _transformed(atoms: Atoms, matrix: np.ndarray, shift: Optional[np.ndarray] = None) -> Atoms:
    out = atoms.copy()
    out.set_cell(atoms.cell.array @ matrix.T, scale_atoms=False)
    out.positions = atoms.positions @ matrix.T + (0.0 if shift is None else shift)
    return out


def equivariance_errors(model: DenoiserMACE, atoms: Atoms, seed: int = 0) -> Dict[str, float]:
    """Max deviations under rotation (output rotates), inversion (output flips: forces are 1o),
    translation (unchanged) and permutation of atoms (output permuted)."""
    ref = model_output(model, atoms)
    R = random_rotation(seed)
    rng = np.random.default_rng(seed)
    errors = {
        "rotation": np.abs(model_output(model, _transformed(atoms, R)) - ref @ R.T).max(),
        "inversion": np.abs(model_output(model, _transformed(atoms, -np.eye(3))) + ref).max(),
        "translation": np.abs(model_output(model, _transformed(atoms, np.eye(3), rng.normal(size=3) * 3.0)) - ref).max(),
    }
    perm = rng.permutation(len(atoms))
    errors["permutation"] = np.abs(model_output(model, atoms[perm]) - ref[perm]).max()
    return {k: float(v) for k, v in errors.items()}


def net_force(model: DenoiserMACE, atoms: Atoms) -> float:
    """|sum_i eps_hat_i|_max: zero (to rounding) for a head that obeys Newton's third law."""
    return float(np.abs(model_output(model, atoms).sum(axis=0)).max())
