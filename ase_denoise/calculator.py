"""An ASE calculator around a trained denoiser (docs/design.md, "Calculator contract").

``forces = kT * eps_hat / sigma`` (= ``kT * g / sigma^2``), eV/Angstrom, with kT and sigma taken
from the model (they belong to its training data and are never guessed here); the scaling itself
is :func:`ase_denoise.model.forces_from_output`, reached through :func:`ase_denoise.inference.predict`.
The vector and edge heads give forces only. The energy head (``ModelConfig.head="energy"``) gives
``energy`` = ``free_energy`` = ``A(x)`` too, a free energy of the coarse-grained coordinates at the
training state point, defined up to a constant, with ``forces = -dA/dx`` (docs/energy-head.md).

A committee (``DenoiseCalculator([model_a, model_b, ...])``: the same recipe trained with different
seeds) returns the members' mean forces and, as MACE's committee calculator does, the members' own
forces as ``forces_comm`` [n_members, n_atoms, 3]; their spread is a label-free uncertainty. Averaging
K members divides the part of the error that changes from one training run to the next by about K in
variance (docs/noise-ladder.md, "Committees").
"""

from __future__ import annotations

import os
from typing import Any, Dict, List, Optional, Sequence, Union

import numpy as np
import torch
from ase import Atoms
from ase.calculators.calculator import Calculator, PropertyNotImplementedError, all_changes

from .checkpoint import load_model_file
from .data.neighbours import SkinNeighbourList
from .forces import ForcesChoice, as_forces_choice, evaluation_levels, refuse_old_keywords
from .inference import predict, predict_free_energy, prior_forces, structure_frame
from .model import DenoiserMACE, copy_model
from .zoo import load_model, load_zoo_model

_WHY_NO_ENERGY = (
    "a denoiser with a {head!r} head learns forces (the score of the Boltzmann density) from coordinates "
    "alone, not an energy; DenoiseCalculator implements only 'forces' for it. To relax a structure use "
    "ase_denoise.relax(atoms) or the forces-only optimizers (ase_denoise.md.ForcesOnlyFIRE, ForcesOnlyBFGS, "
    "...); for MD logs ase_denoise.md.ForcesOnlyMDLogger; for a free energy train with --head energy"
)
#: the keywords of ase.calculators.calculator.Calculator that mean something here; any other is refused
_ASE_KEYWORDS = ("label", "atoms", "directory")
_DTYPES = {"float32": torch.float32, "float64": torch.float64}


def _as_dtype(dtype: Union[None, str, torch.dtype]) -> Optional[torch.dtype]:
    """``torch.float32``/``torch.float64`` or their names (``"float64"``, as MACE's ``default_dtype``)."""
    if dtype is None or dtype in (torch.float32, torch.float64):
        return dtype
    if isinstance(dtype, str) and dtype.replace("torch.", "") in _DTYPES:
        return _DTYPES[dtype.replace("torch.", "")]
    raise ValueError(f"dtype={dtype!r}: choose torch.float32 or torch.float64 (or 'float32', 'float64')")
_WHY_NO_STRESS = (
    "the energy head's A(x) is a free energy of coarse-grained coordinates at one state point: its strain "
    "derivative misses the explicit volume dependence of a CG free energy, so it is not the CG pressure; "
    "stress is not implemented (NPT is not supported)"
)


ModelLike = Union[DenoiserMACE, str, os.PathLike]


def _prior_specs(model: DenoiserMACE) -> List[dict]:
    return [p.to_dict() for p in model.priors]


def check_committee(models: Sequence[DenoiserMACE]) -> None:
    """Raise ``ValueError`` unless ``models`` can be averaged as one force field: the same training
    temperature (their forces are kT-scaled scores), element table, cutoff (one neighbour list) and head."""
    first = models[0]
    for k, m in enumerate(models[1:], start=1):
        for what, a, b in (
            ("temperature_K", first.temperature_K, m.temperature_K),
            ("atomic_numbers", tuple(first.config.atomic_numbers), tuple(m.config.atomic_numbers)),
            ("r_max", first.config.r_max, m.config.r_max),
            ("head", first.config.head, m.config.head),
        ):
            if a != b:
                raise ValueError(f"committee member {k} has {what} {b!r} but member 0 has {a!r}: "
                                 "the members of a committee must be the same kind of model")


class DenoiseCalculator(Calculator):
    """ASE calculator exposing the forces of a trained denoiser (eV/Angstrom), and for an energy-head
    model its free energy (``energy`` and ``free_energy``, eV, up to a constant); never ``stress``.

    Parameters
    ----------
    model:
        a :class:`~ase_denoise.model.DenoiserMACE`, a model file or a zoo name (:func:`ase_denoise.zoo.load_model`),
        or a list or tuple of them: a committee (module docstring) whose members share temperature,
        elements, cutoff and head (:func:`check_committee`).
    device:
        torch device for the forward pass (default ``"cpu"``).
    dtype:
        ``torch.float32`` or ``torch.float64`` for the forward pass (default: the model's own).
    skin:
        Verlet skin, Angstrom: the neighbour list (cutoff ``r_max + skin``) is reused until an atom
        has moved more than ``skin / 2``; results equal a fresh list's. ``0`` rebuilds every call.
    forces:
        which forces, for a model trained at several noise levels
        (:class:`~ase_denoise.forces.ForcesChoice`): by default the model's stored default (what its
        recipe was validated with, e.g. the zoo's ``licl-cg-300K`` returns its smallest level), else
        the forces corrected to sigma -> 0 (all levels in one batched forward, extrapolated in
        sigma^2); ``ForcesChoice(noise_std=s)``: that trained level's smoothed forces;
        ``ForcesChoice(extrapolation_order=k)``: the extrapolation of degree ``k``.
    exclude_priors:
        kinds of the model's priors to leave out (e.g. ``("coulomb_dsf",)`` when the MD engine
        computes the identical term itself); all priors are added by default.
    """

    implemented_properties: List[str] = ["forces"]  # our own list: never share ASE's class attribute
    name = "DenoiseCalculator"

    def __init__(
        self,
        model: Union[ModelLike, Sequence[ModelLike]],
        device: Union[str, torch.device] = "cpu",
        dtype: Union[None, str, torch.dtype] = None,
        skin: float = 1.0,
        forces: Optional[ForcesChoice] = None,
        exclude_priors: Sequence[str] = (),
        **kwargs,
    ):
        refuse_old_keywords(kwargs, "DenoiseCalculator")
        if "default_dtype" in kwargs:  # MACE's MACECalculator spelling
            if dtype is not None:
                raise TypeError("DenoiseCalculator: give dtype or default_dtype, not both")
            dtype = kwargs.pop("default_dtype")
        unknown = sorted(set(kwargs) - set(_ASE_KEYWORDS))
        if unknown:
            raise TypeError(f"DenoiseCalculator got unknown keyword(s) {unknown}; it takes model, device, dtype, skin, "
                            f"forces, exclude_priors and ASE's {list(_ASE_KEYWORDS)}")
        dtype = _as_dtype(dtype)
        super().__init__(**kwargs)
        forces = as_forces_choice(forces)
        self._sources = [m if isinstance(m, (str, os.PathLike)) else None
                         for m in (model if isinstance(model, (list, tuple)) else [model])]
        members = list(model) if isinstance(model, (list, tuple)) else [model]
        if not members:
            raise ValueError("a committee needs at least one model")
        members = [m if isinstance(m, DenoiserMACE) else load_model(m) for m in members]
        check_committee(members)
        for m in members:
            evaluation_levels(m, forces)  # refuses an untrained level or too high an order
        known = {p.kind for m in members for p in m.priors}
        unknown = sorted(set(exclude_priors) - known)
        if unknown:
            raise ValueError(f"exclude_priors={unknown}: the model has no such prior (it has {sorted(known)})")
        self.forces_choice = forces
        self.exclude_priors = tuple(exclude_priors)
        self.device = torch.device(device)
        parameter = next(members[0].parameters())
        self.dtype = dtype or parameter.dtype
        converted = []
        for m in members:
            p = next(m.parameters())
            if (self.dtype, self.device) != (p.dtype, p.device):  # never convert the caller's model
                m = copy_model(m, dtype=self.dtype, device=self.device)
            converted.append(m.eval())
        self.models: List[DenoiserMACE] = converted
        self.model = converted[0]
        # members with identical priors: the network parts are averaged and the priors added once
        self._shared_priors = all(_prior_specs(m) == _prior_specs(self.model) for m in converted[1:])
        self.implemented_properties = list(self.implemented_properties)
        if self.model.config.head == "energy":
            self.implemented_properties = ["energy", "free_energy", "forces"]
        if len(converted) > 1:
            self.implemented_properties += ["forces_comm"]
            if self.model.config.head == "energy":
                self.implemented_properties += ["energy_comm", "energy_var"]
        # Verlet list: rebuilt only when an atom moved more than skin/2 (ase_denoise.data.neighbours)
        self.neighbours = SkinNeighbourList(self.model.config.r_max, skin)
        self.skin = float(skin)

    def todict(self) -> Dict[str, Any]:
        """The calculator's settings as plain values (ASE writes them into trajectories): the model(s)
        as given (file or zoo name, or ``None`` for an object), what they are, and how they are run."""
        return {
            "model": [None if m is None else os.fspath(m) for m in self._sources] if len(self.models) > 1
            else (None if self._sources[0] is None else os.fspath(self._sources[0])),
            "head": self.model.config.head, "elements": self.model.config.symbols,
            "temperature_K": self.temperature_K, "noise_std": list(self.noise_levels),
            "forces": {"noise_std": self.forces_choice.noise_std,
                       "extrapolation_order": self.forces_choice.extrapolation_order},
            "exclude_priors": list(self.exclude_priors), "device": str(self.device),
            "dtype": str(self.dtype).replace("torch.", ""), "skin": self.skin,
        }

    def __repr__(self) -> str:
        members = f"{len(self.models)} models" if len(self.models) > 1 else repr(self.todict()["model"] or "model")
        return (f"DenoiseCalculator({members}, {self.model.config.head} head, {'/'.join(self.model.config.symbols)}, "
                f"{self.temperature_K:g} K, sigma {'/'.join(f'{s:g}' for s in self.noise_levels)} A, "
                f"forces: {self.forces_choice.label}, {str(self.dtype).replace('torch.', '')} on {self.device})")

    @classmethod
    def from_file(cls, path: Union[str, os.PathLike], **kwargs) -> "DenoiseCalculator":
        """Load a model file (safetensors; never unpickled) and wrap it."""
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
        return cls(load_zoo_model(name, models_dir), **kwargs)

    @property
    def noise_levels(self):
        """The model's trained noise level(s) sigma, Angstrom (a committee: its first member's)."""
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
        if len(self.models) > 1:
            self._calculate_committee(frame)
            return
        if self.model.config.head == "energy":
            energy, forces = predict_free_energy(
                self.model, [frame], forces=self.forces_choice, exclude_priors=self.exclude_priors,
                neighbour_lists=[self.neighbours],
            )
            self.results.update(energy=float(energy[0]), free_energy=float(energy[0]), forces=forces)
            return
        self.results["forces"] = predict(
            self.model, [frame], forces=self.forces_choice, exclude_priors=self.exclude_priors,
            neighbour_lists=[self.neighbours],
        )

    def _calculate_committee(self, frame) -> None:
        """Every member on ``frame`` (one forward each, the Verlet list shared); the mean and the members."""
        common = dict(forces=self.forces_choice, exclude_priors=self.exclude_priors, neighbour_lists=[self.neighbours])
        if self.model.config.head == "energy":  # priors per member: their energies are part of each A
            pairs = [predict_free_energy(m, [frame], **common) for m in self.models]
            energies = np.array([float(e[0]) for e, _ in pairs])  # [n_members], eV
            members = np.stack([f for _, f in pairs])  # [n_members, n_atoms, 3], eV/A
            energy = float(energies.mean())
            self.results.update(energy=energy, free_energy=energy, energy_comm=energies, energy_var=float(energies.var()))
        else:
            shared = self._shared_priors and bool(self.model.priors)
            members = np.stack([predict(m, [frame], priors=not shared, **common) for m in self.models])
            if shared:  # identical priors: computed once (the Ewald sum is not cheap)
                members += prior_forces(self.model, [frame], exclude=self.exclude_priors,
                                        neighbour_lists=[self.neighbours])[None]
        self.results["forces"] = members.mean(axis=0)
        self.results["forces_comm"] = members
