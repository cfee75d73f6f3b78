"""An ASE calculator around a trained denoiser (docs/design.md, "Calculator contract").

``forces = kT * eps_hat / sigma`` (= ``kT * g / sigma^2``), eV/Angstrom, with kT and sigma taken
from the model (they belong to its training data and are never guessed here); the scaling itself
is :func:`ase_denoise.model.forces_from_output`, reached through :func:`ase_denoise.inference.predict`.
The vector and edge heads give forces only. The energy head (``ModelConfig.head="energy"``) gives
``energy`` = ``free_energy`` = ``A(x)`` too, a free energy of the coarse-grained coordinates at the
training state point, defined up to a constant, with ``forces = -dA/dx`` (docs/energy-head.md).
"""

from __future__ import annotations

import copy
import os
from typing import List, Optional, Sequence, Union

import numpy as np
import torch
from ase import Atoms
from ase.calculators.calculator import Calculator, PropertyNotImplementedError, all_changes

from .inference import evaluation_levels, predict, predict_free_energy, structure_frame
from .model import DenoiserMACE
from .neighbours import SkinNeighbourList
from .zoo import load_model

_WHY_NO_ENERGY = (
    "a denoiser with a {head!r} head learns forces (the score of the Boltzmann density) from coordinates "
    "alone, not an energy; DenoiseCalculator implements only 'forces' for it (train with --head energy "
    "for a free energy)"
)
_WHY_NO_STRESS = (
    "the energy head's A(x) is a free energy of coarse-grained coordinates at one state point: its strain "
    "derivative misses the explicit volume dependence of a CG free energy, so it is not the CG pressure; "
    "stress is not implemented (NPT is not supported)"
)


class DenoiseCalculator(Calculator):
    """ASE calculator exposing the forces of a trained denoiser (eV/Angstrom), and for an energy-head
    model its free energy (``energy`` and ``free_energy``, eV, up to a constant); never ``stress``.

    Parameters
    ----------
    model:
        a :class:`~ase_denoise.model.DenoiserMACE`, a model file or a zoo name (:func:`ase_denoise.zoo.load_model`).
    device:
        torch device for the forward pass (default ``"cpu"``).
    dtype:
        ``torch.float32`` or ``torch.float64`` for the forward pass (default: the model's own).
    skin:
        Verlet skin, Angstrom: the neighbour list (cutoff ``r_max + skin``) is reused until an atom
        has moved more than ``skin / 2``; results equal a fresh list's. ``0`` rebuilds every call.
    noise_std:
        for a model trained at several noise levels: ``None`` (default) returns the forces corrected
        to sigma -> 0 (all levels in one batched forward, extrapolated in sigma^2,
        :mod:`ase_denoise.inference`); a trained level (Angstrom) returns that level's smoothed forces.
    exclude_priors:
        kinds of the model's priors to leave out (e.g. ``("coulomb_dsf",)`` when the MD engine
        computes the identical term itself); all priors are added by default.
    """

    implemented_properties: List[str] = ["forces"]  # our own list: never share ASE's class attribute

    def __init__(
        self,
        model: Union[DenoiserMACE, str, os.PathLike],
        device: Union[str, torch.device] = "cpu",
        dtype: Optional[torch.dtype] = None,
        skin: float = 1.0,
        noise_std: Optional[float] = None,
        exclude_priors: Sequence[str] = (),
        **kwargs,
    ):
        super().__init__(**kwargs)
        if not isinstance(model, DenoiserMACE):
            model = load_model(model)
        evaluation_levels(model, noise_std)  # refuses a level the model was not trained at
        unknown = sorted(set(exclude_priors) - {p.kind for p in model.priors})
        if unknown:
            raise ValueError(f"exclude_priors={unknown}: the model has no such prior (it has {[p.kind for p in model.priors]})")
        self.noise_std = noise_std
        self.exclude_priors = tuple(exclude_priors)
        self.device = torch.device(device)
        parameter = next(model.parameters())
        self.dtype = dtype or parameter.dtype
        if (self.dtype, self.device) != (parameter.dtype, parameter.device):  # never convert the caller's model
            model = copy.deepcopy(model)
        self.model = model.to(device=self.device, dtype=self.dtype).eval()
        self.implemented_properties = list(self.implemented_properties)
        if model.config.head == "energy":
            self.implemented_properties = ["energy", "free_energy", "forces"]
        # Verlet list: rebuilt only when an atom moved more than skin/2 (ase_denoise.neighbours)
        self.neighbours = SkinNeighbourList(model.config.r_max, skin)

    @classmethod
    def from_file(cls, path: Union[str, os.PathLike], **kwargs) -> "DenoiseCalculator":
        """Load a model file (safetensors; never unpickled) and wrap it."""
        from .checkpoint import load_model_file

        return cls(load_model_file(path), **kwargs)

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
    def noise_levels(self):
        """The model's trained noise level(s) sigma, Angstrom."""
        return self.model.noise_levels

    @property
    def temperature_K(self) -> float:
        """Temperature of the training data, K."""
        return self.model.temperature_K

    def get_property(self, name, atoms=None, allow_calculation=True):
        if name not in self.implemented_properties:
            why = _WHY_NO_STRESS if self.model.config.head == "energy" else _WHY_NO_ENERGY.format(head=self.model.config.head)
            raise PropertyNotImplementedError(f"{name!r} is not available: {why}")
        return super().get_property(name, atoms, allow_calculation)

    def check_structure(self, atoms: Atoms) -> None:
        """Raise ``ase_denoise.data.DataError`` if ``atoms`` does not fit the model.

        Atoms outside a periodic cell are fine (MD never wraps): see
        :func:`ase_denoise.inference.structure_frame`.
        """
        structure_frame(atoms, self.model)

    def calculate(self, atoms=None, properties=("forces",), system_changes=all_changes):
        Calculator.calculate(self, atoms, properties, system_changes)
        frame = structure_frame(self.atoms, self.model)
        if self.model.config.head == "energy":
            energy, forces = predict_free_energy(
                self.model, [frame], noise_std=self.noise_std, exclude_priors=self.exclude_priors,
                neighbour_lists=[self.neighbours],
            )
            self.results.update(energy=float(energy[0]), free_energy=float(energy[0]), forces=forces)
            return
        self.results["forces"] = predict(
            self.model, [frame], noise_std=self.noise_std, exclude_priors=self.exclude_priors,
            neighbour_lists=[self.neighbours],
        )
