"""Reusable numerical checks of a denoiser (for this project's tests and for users' own models).

Each check returns the largest absolute deviation, in the model's output units (``eps_hat``,
unitless), so callers choose their tolerance (e.g. 1e-8 in float64, 1e-4 in float32). The checks of
the energy head's free energy (:func:`free_energy_gradient_error`, :func:`free_energy_invariance_errors`)
return relative deviations.
"""

from __future__ import annotations

import contextlib
from typing import Dict, Iterator, Optional, Union

import numpy as np
import torch
from ase import Atoms
from scipy.spatial.transform import Rotation

from .forces import ForcesChoice
from .inference import predict, predict_free_energy, structure_frame
from .model import DenoiserMACE


def model_output(model: DenoiserMACE, atoms: Atoms, noise_std: Optional[float] = None) -> np.ndarray:
    """``eps_hat`` [n_atoms, 3] of ``model`` for ``atoms`` (no noise added), float64 numpy.
    ``noise_std``: the level of a multi-level model (Angstrom)."""
    forces = ForcesChoice() if noise_std is None else ForcesChoice(noise_std=noise_std)
    return predict(model, [structure_frame(atoms, model)], output="eps_hat", forces=forces)


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


def free_energy(model: DenoiserMACE, atoms: Atoms, forces: Optional[ForcesChoice] = None):
    """Energy head: ``(A, forces)`` of ``atoms``: the free energy (eV, priors included; a multi-level
    model's corrected value unless ``forces`` says otherwise) and its forces [n_atoms, 3] (eV/A)."""
    energy, out = predict_free_energy(model, [structure_frame(atoms, model)], forces=forces)
    return float(energy[0]), out


def free_energy_gradient_error(
    model: DenoiserMACE, atoms: Atoms, step: float = 1e-4, n_components: int = 6, seed: int = 0,
    forces: Optional[ForcesChoice] = None,
) -> float:
    """Energy head: ``max |F_fd - F| / max |F|`` over ``n_components`` random Cartesian components,
    with ``F_fd = -(A(x + h) - A(x - h)) / 2h`` (central differences, ``h = step`` Angstrom). In float64
    the truncation error is ``~h^2``: about 1e-8 relative for ``h = 1e-4`` A."""
    _, out = free_energy(model, atoms, forces)
    rng = np.random.default_rng(seed)
    worst = 0.0
    for flat in rng.choice(out.size, size=min(n_components, out.size), replace=False):
        i, k = divmod(int(flat), 3)
        energies = []
        for sign in (1.0, -1.0):
            moved = atoms.copy()
            moved.positions[i, k] += sign * step
            energies.append(free_energy(model, moved, forces)[0])
        worst = max(worst, abs(-(energies[0] - energies[1]) / (2 * step) - out[i, k]))
    return worst / float(np.abs(out).max())


def free_energy_invariance_errors(
    model: DenoiserMACE, atoms: Atoms, seed: int = 0, forces: Optional[ForcesChoice] = None
) -> Dict[str, float]:
    """Energy head: ``|A(T x) - A(x)| / max(|A(x)|, 1e-12 eV)`` for a rotation, an inversion, a
    translation and a permutation of the atoms ``T``; the forces' own equivariance is
    :func:`equivariance_errors`."""
    ref = free_energy(model, atoms, forces)[0]
    R = random_rotation(seed)
    rng = np.random.default_rng(seed)
    moved = {
        "rotation": _transformed(atoms, R),
        "inversion": _transformed(atoms, -np.eye(3)),
        "translation": _transformed(atoms, np.eye(3), rng.normal(size=3) * 3.0),
        "permutation": atoms[rng.permutation(len(atoms))],
    }
    scale = max(abs(ref), 1e-12)
    return {k: abs(free_energy(model, a, forces)[0] - ref) / scale for k, a in moved.items()}


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
