"""The learned force field as an OpenMM force (``PythonForce``, OpenMM >= 8.4).

    from ase_denoise.integrations.openmm import denoiser_force, system_from_atoms
    system = system_from_atoms(atoms)                  # particles with the atoms' masses, the box
    system.addForce(denoiser_force(model, atoms.numbers, periodic=True))
    integrator = openmm.LangevinMiddleIntegrator(300 * kelvin, 10 / picosecond, 1 * femtosecond)

Each force evaluation hands OpenMM's positions (nm) and box to a
:class:`~ase_denoise.calculator.DenoiseCalculator` (Angstrom) and returns its forces in kJ/mol/nm:
``1 eV/A = 964.853 kJ/mol/nm``. The particles are the atoms in the order of ``numbers``, so the model's
element table is mapped through the atomic numbers given here, not through OpenMM's topology.

Energy: a forces-only model (vector or edge head) has none, so the force reports 0 kJ/mol and OpenMM's
potential energy then holds only the other forces of the System. An energy-head model reports its
free energy ``A`` (docs/energy-head.md). Integrators use forces only; energy-based tools (minimisers,
Monte Carlo barostats) need the energy head, and barostats are not supported in either case (the
model has no pressure).
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
import torch
from ase import Atoms, units

from ..calculator import DenoiseCalculator
from ..model import DenoiserMACE

#: kJ/mol per eV
EV_IN_KJ_PER_MOL = units.mol * units.eV / units.kJ


def _openmm():
    try:
        import openmm
        import openmm.unit
    except ImportError as exc:  # pragma: no cover - exercised only without the extra
        raise ImportError("the OpenMM integration needs openmm: pip install 'ase_denoise[openmm]'") from exc
    if not hasattr(openmm, "PythonForce"):
        raise ImportError(f"openmm {openmm.__version__} has no PythonForce (added in OpenMM 8.4): upgrade openmm")
    return openmm


def denoiser_force(
    model: DenoiserMACE,
    numbers: Sequence[int],
    *,
    periodic: bool = True,
    noise_std: Optional[float] = None,
    exclude_priors: Sequence[str] = (),
    dtype: Optional[torch.dtype] = None,
    device: str = "cpu",
):
    """An ``openmm.PythonForce`` giving the model's forces to the particles ``0 .. len(numbers) - 1``
    (atomic numbers ``numbers``, in particle order). ``periodic``: the System has a periodic box
    (all three directions, as OpenMM's periodic forces do); otherwise the model must be non-periodic.
    ``noise_std``, ``exclude_priors``, ``dtype``, ``device``: as :class:`DenoiseCalculator` (e.g.
    ``exclude_priors=("coulomb_dsf",)`` when the System computes that term itself).
    The calculator is kept as ``force.calculator`` (its Verlet list persists between steps)."""
    openmm = _openmm()
    calc = DenoiseCalculator(model, device=device, dtype=dtype, noise_std=noise_std, exclude_priors=exclude_priors)
    atoms = Atoms(numbers=np.asarray(numbers), pbc=periodic)
    has_energy = "energy" in calc.implemented_properties
    nm = openmm.unit.nanometer

    def compute(state):
        atoms.positions = state.getPositions(asNumpy=True).value_in_unit(nm) * 10.0  # Angstrom
        if periodic:
            atoms.cell = state.getPeriodicBoxVectors(asNumpy=True).value_in_unit(nm) * 10.0
        forces = calc.get_forces(atoms)  # eV/A
        energy = calc.get_potential_energy(atoms) if has_energy else 0.0
        return energy * EV_IN_KJ_PER_MOL, forces * (EV_IN_KJ_PER_MOL * 10.0)  # kJ/mol, kJ/mol/nm

    force = openmm.PythonForce(compute)
    force.setUsesPeriodicBoundaryConditions(bool(periodic))
    force.calculator = calc
    return force


def system_from_atoms(atoms: Atoms):
    """An ``openmm.System`` with one particle per atom (ASE masses, amu) and, for a periodic
    ``atoms``, its cell as the default box (OpenMM needs a reduced triclinic box: the first vector
    along x, the second in the xy plane; ``atoms`` is rejected otherwise)."""
    openmm = _openmm()
    system = openmm.System()
    for mass in atoms.get_masses():
        system.addParticle(float(mass))
    if atoms.pbc.any():
        if not atoms.pbc.all():
            raise ValueError("OpenMM boxes are periodic in all three directions; atoms.pbc is " + str(atoms.pbc))
        cell = np.asarray(atoms.cell.array) / 10.0  # nm
        if abs(cell[0, 1]) > 1e-12 or abs(cell[0, 2]) > 1e-12 or abs(cell[1, 2]) > 1e-12:
            raise ValueError("OpenMM needs a reduced box (a along x, b in the xy plane): rotate the cell first")
        system.setDefaultPeriodicBoxVectors(*[openmm.Vec3(*row) * openmm.unit.nanometer for row in cell])
    return system
