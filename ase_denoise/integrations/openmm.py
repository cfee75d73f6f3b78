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

Coulomb priors: :func:`coulomb_force` builds the OpenMM force of a model's Ewald or DSF Coulomb prior
(PME with the prior's splitting parameter, or a ``CustomNonbondedForce`` of the DSF expression), so
the System computes that term and the model runs with ``exclude_priors=[prior.kind]``.
"""

from __future__ import annotations

from typing import Optional, Sequence, Union

import numpy as np
import torch
from ase import Atoms, units

from scipy.special import erfc

from ..calculator import DenoiseCalculator
from ..forces import ForcesChoice
from ..model import DenoiserMACE
from ..priors import COULOMB_EV_A, DSFCoulomb, EwaldCoulomb, Prior

#: kJ/mol per eV
EV_IN_KJ_PER_MOL = units.mol * units.eV / units.kJ


def require_openmm():
    """The ``openmm`` module, or an ``ImportError`` saying how to install it (the ``openmm`` extra, OpenMM >= 8.4)."""
    try:  # the optional engine, imported on first use (an ImportError then says which extra to install)
        import openmm
        import openmm.unit
    except ImportError as exc:  # pragma: no cover - exercised only without the extra
        raise ImportError("the OpenMM integration needs openmm: pip install 'ase_denoise[openmm]'") from exc
    if not hasattr(openmm, "PythonForce"):
        raise ImportError(f"openmm {openmm.__version__} has no PythonForce (added in OpenMM 8.4): upgrade openmm")
    return openmm


def denoiser_force(
    model: Union[DenoiserMACE, Sequence[DenoiserMACE]],
    numbers: Sequence[int],
    *,
    periodic: bool = True,
    forces: Optional[ForcesChoice] = None,
    exclude_priors: Sequence[str] = (),
    dtype: Optional[torch.dtype] = None,
    device: str = "cpu",
):
    """An ``openmm.PythonForce`` giving the model's forces to the particles ``0 .. len(numbers) - 1``
    (atomic numbers ``numbers``, in particle order); ``model``: one model or a committee (a list: their
    mean forces, as :class:`DenoiseCalculator`). ``periodic``: the System has a periodic box
    (all three directions, as OpenMM's periodic forces do); otherwise the model must be non-periodic.
    ``forces``, ``exclude_priors``, ``dtype``, ``device``: as :class:`DenoiseCalculator` (e.g.
    ``exclude_priors=("coulomb_ewald",)`` when the System computes that term itself, with :func:`coulomb_force`).
    The calculator is kept as ``force.calculator`` (its Verlet list persists between steps)."""
    openmm = require_openmm()
    calc = DenoiseCalculator(model, device=device, dtype=dtype, forces=forces, exclude_priors=exclude_priors)
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
    openmm = require_openmm()
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


def coulomb_force(prior: Prior, numbers: Sequence[int], box_A: Optional[Sequence[float]] = None):
    """The OpenMM force of a Coulomb prior for particles with atomic numbers ``numbers`` (in order).

    :class:`~ase_denoise.priors.EwaldCoulomb`: a ``NonbondedForce`` with PME, the prior's cutoff and
    splitting parameter, charges ``q / sqrt(eps_r)`` (OpenMM has no dielectric for Ewald sums) and a
    grid of ``ceil(2 alpha L / (3 accuracy^(1/5)))`` points per box edge ``L`` (OpenMM's own rule;
    ``box_A``: the box edges in Angstrom). Agrees with the prior to about 1e-8 eV/A for LiCl at
    accuracy 1e-6 (``tests/test_openmm.py``).
    :class:`~ase_denoise.priors.DSFCoulomb`: a ``CustomNonbondedForce`` of the same expression,
    cut off at the prior's cutoff (periodic)."""
    openmm = require_openmm()
    charges = [prior.charges.get(int(z), 0.0) for z in numbers] if hasattr(prior, "charges") else None
    if isinstance(prior, EwaldCoulomb):
        if box_A is None:
            raise ValueError("an Ewald prior in OpenMM needs the box edges (box_A) to size the PME grid")
        force = openmm.NonbondedForce()
        force.setNonbondedMethod(openmm.NonbondedForce.PME)
        force.setCutoffDistance(prior.r_cut / 10.0)  # nm
        alpha = prior.alpha * 10.0  # 1/nm
        grid = [int(np.ceil(2.0 * alpha * (edge / 10.0) / (3.0 * prior.accuracy**0.2))) for edge in box_A]
        force.setPMEParameters(alpha, *grid)
        scale = 1.0 / np.sqrt(prior.relative_permittivity)
        for q in charges:
            force.addParticle(q * scale, 0.1, 0.0)
        return force
    if isinstance(prior, DSFCoulomb):
        a, rc = prior.alpha, prior.r_cut
        erfc_rc = float(erfc(a * rc))
        shift = float(erfc_rc / rc**2 + 2.0 * a / np.sqrt(np.pi) * np.exp(-((a * rc) ** 2)) / rc)
        pref = COULOMB_EV_A * EV_IN_KJ_PER_MOL / prior.relative_permittivity  # kJ/mol * A
        force = openmm.CustomNonbondedForce(
            f"{pref!r}*q1*q2*(erfc({a!r}*x)/x - {erfc_rc / rc!r} + {shift!r}*(x - {rc!r})); x = 10*r"
        )
        force.addPerParticleParameter("q")
        force.setNonbondedMethod(openmm.CustomNonbondedForce.CutoffPeriodic)
        force.setCutoffDistance(rc / 10.0)
        for q in charges:
            force.addParticle([q])
        return force
    raise ValueError(f"no OpenMM form for a prior of kind {prior.kind!r}: only Coulomb priors "
                     "(coulomb_ewald, coulomb_dsf) are computed by OpenMM")
