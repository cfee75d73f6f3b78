"""One model through every front-end: the same forces whichever way a model is run.

A model runs through five front-ends: the ASE calculator, the batched replicas
(:class:`~ase_denoise.md.ReplicaLangevin`), OpenMM, LAMMPS and torch-sim. Each takes the same
:class:`~ase_denoise.forces.ForcesChoice` (``forces=``), and each must return the calculator's forces
for it. :func:`front_end_forces` evaluates one structure through each of them;
:func:`validate_front_ends` compares every front-end with the calculator and raises a ``ValueError``
naming the ones that disagree, as torch-sim ships ``validate_model_outputs`` beside its
``ModelInterface``. The engines are optional extras: a front-end whose engine is not installed raises
``ImportError`` saying which extra to install, never passes silently.

Units: Angstrom, eV/Angstrom (OpenMM's kJ/mol/nm are converted back).
"""

from __future__ import annotations

from typing import Callable, Dict, Optional, Sequence

import numpy as np
import torch
from ase import Atoms

from ..calculator import DenoiseCalculator
from ..forces import ForcesChoice, as_forces_choice
from ..md.replicas import ReplicaLangevin
from ..model import DenoiserMACE

FRONT_ENDS = ("calculator", "replicas", "openmm", "lammps", "torchsim")
#: relative agreement required of every front-end with the calculator: rounding of the model's dtype
#: (other batching, other neighbour-list order) plus the engines' unit conversions
RTOL = {torch.float32: 1e-5, torch.float64: 1e-10}


def _calculator(model: DenoiserMACE, atoms: Atoms, forces: ForcesChoice) -> np.ndarray:
    return DenoiseCalculator(model, forces=forces).get_forces(atoms.copy())


def _replicas(model: DenoiserMACE, atoms: Atoms, forces: ForcesChoice) -> np.ndarray:
    # two copies of the structure in one batched forward: each must get the single structure's forces
    batch = ReplicaLangevin(model, [atoms, atoms], temperature_K=model.temperature_K, thermalize=False, forces=forces)
    first, second = batch.forces
    tol = RTOL[next(model.parameters()).dtype] * max(float(np.abs(first).max()), 1e-30)
    if not np.abs(first - second).max() <= tol:
        raise ValueError(f"replicas: two copies of one structure in one batch got different forces "
                         f"(max difference {np.abs(first - second).max():.3g} eV/A)")
    return first


def _openmm(model: DenoiserMACE, atoms: Atoms, forces: ForcesChoice) -> np.ndarray:
    from .openmm import EV_IN_KJ_PER_MOL, denoiser_force, require_openmm, system_from_atoms  # the optional engine

    openmm = require_openmm()
    periodic = bool(atoms.pbc.any())
    system = system_from_atoms(atoms)
    system.addForce(denoiser_force(model, atoms.numbers, periodic=periodic, forces=forces))
    context = openmm.Context(system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("Reference"))
    context.setPositions(atoms.positions * 0.1)  # nm
    kj_per_nm = openmm.unit.kilojoule_per_mole / openmm.unit.nanometer
    out = context.getState(getForces=True).getForces(asNumpy=True).value_in_unit(kj_per_nm)
    return np.asarray(out) / (EV_IN_KJ_PER_MOL * 10.0)


def _lammps(model: DenoiserMACE, atoms: Atoms, forces: ForcesChoice) -> np.ndarray:
    from .lammps import attach_denoiser, lammps_from_atoms  # the optional engine

    lmp, type_to_element = lammps_from_atoms(atoms)
    try:
        lmp.commands_string(f"pair_style zero {model.config.r_max}\npair_coeff * *")
        attach_denoiser(lmp, model, type_to_element, forces=forces)
        lmp.command("run 0")
        n = len(atoms)
        out = np.array(lmp.numpy.extract_atom("f")[:n])
        tags = np.array(lmp.numpy.extract_atom("id")[:n])
        return out[np.argsort(tags)]
    finally:
        lmp.close()


def _torchsim(model: DenoiserMACE, atoms: Atoms, forces: ForcesChoice) -> np.ndarray:
    from .torchsim import DenoiserTorchSimModel, ts  # the optional engine

    front_end = DenoiserTorchSimModel(model, forces=forces)
    state = ts.io.atoms_to_state([atoms], device=front_end.device, dtype=front_end.dtype)
    return front_end(state)["forces"].detach().to("cpu", torch.float64).numpy()


_EVALUATE: Dict[str, Callable[[DenoiserMACE, Atoms, ForcesChoice], np.ndarray]] = {
    "calculator": _calculator, "replicas": _replicas, "openmm": _openmm, "lammps": _lammps, "torchsim": _torchsim,
}


def front_end_forces(
    model: DenoiserMACE, atoms: Atoms, forces: Optional[ForcesChoice] = None, front_ends: Sequence[str] = FRONT_ENDS,
) -> Dict[str, np.ndarray]:
    """The forces (eV/A, float64 [n_atoms, 3]) on ``atoms`` from each of ``front_ends``, every one asked
    for the same ``forces`` (default: the model's own). OpenMM and LAMMPS need a box they can hold:
    periodic in all three directions with a reduced cell (a along x, b in the xy plane), atoms inside it."""
    forces = as_forces_choice(forces)
    unknown = sorted(set(front_ends) - set(FRONT_ENDS))
    if unknown:
        raise ValueError(f"unknown front-end(s) {unknown}; choose from {FRONT_ENDS}")
    return {name: _EVALUATE[name](model, atoms, forces) for name in front_ends}


def validate_front_ends(
    model: DenoiserMACE, atoms: Atoms, forces: Optional[ForcesChoice] = None, front_ends: Sequence[str] = FRONT_ENDS,
    rtol: Optional[float] = None,
) -> Dict[str, float]:
    """Every front-end's forces against the calculator's for the same ``forces``: returns
    ``{front_end: max |F - F_calculator| / max |F_calculator|}`` and raises ``ValueError`` naming each
    front-end beyond ``rtol`` (default :data:`RTOL` of the model's dtype)."""
    names = ["calculator", *[n for n in front_ends if n != "calculator"]]
    results = front_end_forces(model, atoms, forces, names)
    reference = results["calculator"]
    scale = max(float(np.abs(reference).max()), 1e-30)
    tol = RTOL[next(model.parameters()).dtype] if rtol is None else float(rtol)
    errors = {name: float(np.abs(f - reference).max()) / scale for name, f in results.items() if name != "calculator"}
    bad = {name: err for name, err in errors.items() if not err <= tol}  # NaN fails too
    if bad:
        raise ValueError(f"front-ends disagree with the calculator for {as_forces_choice(forces).label} "
                         f"(relative tolerance {tol:g}): " + ", ".join(f"{k} {v:.3g}" for k, v in bad.items()))
    return errors
