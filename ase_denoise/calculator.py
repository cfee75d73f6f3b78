"""A forces-only ASE calculator around a trained denoiser (DESIGN.md section 6).

``forces = kT * eps_hat / sigma`` (= ``kT * g / sigma^2``), eV/Angstrom, with kT and sigma taken
from the model (they belong to its training data and are never guessed here).
"""

from __future__ import annotations

import os
from typing import List, Optional, Union

import numpy as np
import torch
from ase import Atoms
from ase.calculators.calculator import Calculator, PropertyNotImplementedError, all_changes

from .checkpoint import load_model
from .data import SkinNeighbourList, check_atoms, collate, to_frame
from .model import DenoiserMACE

_WHY_NO_ENERGY = (
    "a denoiser learns forces (the score of the Boltzmann density) from coordinates alone, "
    "not an energy; DenoiseCalculator implements only 'forces'"
)


def far_atoms_into_cell(atoms: Atoms) -> Atoms:
    """``atoms``, or a copy in which every atom more than one cell length outside its periodic cell
    is moved back into the cell by whole lattice vectors (periodic directions only).

    In MD, atoms of a liquid diffuse out of the cell (ASE's integrators never wrap positions); the
    forces do not change under lattice translations of an atom (edge vectors carry their image
    shifts), so such atoms are accepted. Moving the far ones back keeps float32 edge vectors precise;
    atoms within one cell length stay where they are, so the Verlet list is not rebuilt every time
    an atom crosses a cell face. A structure with a non-finite or singular cell or non-finite
    positions is returned unchanged (``check_atoms`` names the problem).
    """
    pbc = np.asarray(atoms.pbc, dtype=bool)
    if not pbc.any() or len(atoms) == 0:
        return atoms
    cell, pos = atoms.cell.array, atoms.positions
    if not (np.all(np.isfinite(cell)) and np.all(np.isfinite(pos))) or abs(np.linalg.det(cell)) < 1e-9:
        return atoms
    frac = np.linalg.solve(cell.T, pos.T).T
    far = np.any(((frac < -1.0) | (frac > 2.0)) & pbc, axis=1)
    if not far.any():
        return atoms
    moved = atoms.copy()
    moved.positions[far] = pos[far] - np.where(pbc, np.floor(frac[far]), 0.0) @ cell
    return moved


class DenoiseCalculator(Calculator):
    """ASE calculator exposing the forces of a trained denoiser (eV/Angstrom), nothing else.

    Parameters
    ----------
    model:
        a :class:`~ase_denoise.model.DenoiserMACE` or a path to a model file.
    device:
        torch device for the forward pass (default ``"cpu"``).
    dtype:
        ``torch.float32`` or ``torch.float64`` for the forward pass (default: the model's own).
    skin:
        Verlet skin, Angstrom: the neighbour list (cutoff ``r_max + skin``) is reused until an atom
        has moved more than ``skin / 2``; results equal a fresh list's. ``0`` rebuilds every call.
    """

    implemented_properties: List[str] = ["forces"]  # our own list: never share ASE's class attribute

    def __init__(
        self,
        model: Union[DenoiserMACE, str, os.PathLike],
        device: Union[str, torch.device] = "cpu",
        dtype: Optional[torch.dtype] = None,
        skin: float = 1.0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if not isinstance(model, DenoiserMACE):
            model = load_model(model)
        self.device = torch.device(device)
        self.dtype = dtype or next(model.parameters()).dtype
        self.model = model.to(device=self.device, dtype=self.dtype).eval()
        self.implemented_properties = list(self.implemented_properties)
        # Verlet list: rebuilt only when an atom moved more than skin/2 (DESIGN.md section 4)
        self.neighbours = SkinNeighbourList(model.config.r_max, skin)

    @classmethod
    def from_file(cls, path: Union[str, os.PathLike], **kwargs) -> "DenoiseCalculator":
        """Load a model file (safetensors; never unpickled) and wrap it."""
        return cls(load_model(path), **kwargs)

    @classmethod
    def from_zoo(
        cls, name: str, *, models_dir: Optional[Union[str, os.PathLike]] = None, **kwargs
    ) -> "DenoiseCalculator":
        """Wrap the zoo model ``name`` (:func:`ase_denoise.zoo.list_models`).

        The file's sha256 is checked against the registry before loading (a mismatch is refused);
        nothing is downloaded. ``models_dir``: another zoo directory (default: the shipped one).
        Other keyword arguments go to the constructor (``device``, ``dtype``).
        """
        from .zoo import load_zoo_model

        return cls(load_zoo_model(name, models_dir), **kwargs)

    @property
    def noise_std(self) -> float:
        """sigma of the model, Angstrom."""
        return self.model.noise_std

    @property
    def temperature_K(self) -> float:
        """Temperature of the training data, K."""
        return self.model.temperature_K

    def get_property(self, name, atoms=None, allow_calculation=True):
        if name not in self.implemented_properties:
            raise PropertyNotImplementedError(f"{name!r} is not available: {_WHY_NO_ENERGY}")
        return super().get_property(name, atoms, allow_calculation)

    def check_structure(self, atoms: Atoms) -> None:
        """Raise ``ase_denoise.data.DataError`` if ``atoms`` does not fit the model.

        Atoms outside a periodic cell are fine (MD never wraps): see :func:`far_atoms_into_cell`.
        """
        cfg = self.model.config
        check_atoms(far_atoms_into_cell(atoms), atomic_numbers=cfg.atomic_numbers, pbc=cfg.pbc, r_max=cfg.r_max)

    def calculate(self, atoms=None, properties=("forces",), system_changes=all_changes):
        Calculator.calculate(self, atoms, properties, system_changes)
        atoms = far_atoms_into_cell(self.atoms)
        self.check_structure(atoms)
        cfg = self.model.config
        frame = to_frame(atoms, cfg.atomic_numbers)
        data = collate(
            [frame.positions], [frame], len(cfg.atomic_numbers), cfg.r_max, self.dtype, self.device,
            neighbour_lists=[self.neighbours],
        )
        with torch.no_grad():
            forces = self.model.forces(data)
        self.results["forces"] = forces.detach().to("cpu", torch.float64).numpy()
