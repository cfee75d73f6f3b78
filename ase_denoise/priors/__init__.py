"""Priors: pair terms the network does not have to learn (docs/priors.md).

A coarse-grained model knows nothing below the closest approach in its data: MD that gets there
(more likely the larger sigma is) falls into a hole no sample ever reached. And a long-ranged term
such as screened Coulomb is better given than learned. The kinds of prior below, each a potential
evaluated in float64 numpy, stored with the model (``PhysicsConfig.priors``, JSON) and shown in its
card:

:class:`RepulsiveWall`
    per element pair, zero at and beyond ``r_on`` (the pair's closest approach in the training data,
    :func:`fit_repulsive_wall`) and ``U = epsilon * ((r_on - r) / width)^4`` below it: smooth (energy,
    force and its derivative vanish at ``r_on``) and steep (16 epsilon at ``2 width`` inside).
    It acts only where the data have no samples, so it is *not* part of the training target (at noisy
    inputs its labels would blow up); :func:`ase_denoise.inference.predict` adds it to the forces.
:class:`NonBondedWall`
    the same wall on a molecule's non-bonded pairs only: the pairs its bonded priors hold (each
    bond's atoms, each angle's ends) are excluded, as a molecular force field excludes them, and
    each element pair's ``r_on`` is the closest approach of its non-bonded instances (all-atom
    alanine dipeptide: two hydrogens four bonds apart, 1.95 A apart at their closest in the data,
    were not stopped by anything at 0.8 A; benchmarks/ala2/README.md). ``priors=["bonded",
    "nonbonded_wall"]`` fits it.
:class:`DSFCoulomb`
    damped shifted force Coulomb (Fennell and Gezelter, J. Chem. Phys. 124, 234104 (2006)) with
    per-element charges (e), a relative permittivity, the damping ``alpha`` (1/Angstrom) and a cutoff
    (Angstrom): the same functional form as LAMMPS' ``pair_style coul/dsf alpha cutoff`` with
    ``dielectric eps_r`` (and an OpenMM ``CustomNonbondedForce`` of the same expression), so an MD
    engine can compute the identical term itself and the model's copy be switched off there. It acts
    where data are, so the network learns the residual (delta learning): training subtracts
    ``sigma * F_prior(y) / kT`` from the target at the noisy input ``y`` (:mod:`ase_denoise.training.losses`).
:class:`EwaldCoulomb`
    the full periodic Coulomb sum of the charges in a dielectric (Ewald: real-space ``erfc`` pairs
    within a cutoff plus the reciprocal-space sum), the term LAMMPS computes with ``pair_style
    coul/long`` + ``kspace_style pppm`` (or ``ewald``) + ``kspace_modify gewald alpha`` +
    ``dielectric eps_r``: the design paper's set-up for ionic CG systems, where LAMMPS brings the
    electrostatics. Also learned as a residual. :func:`ase_denoise.integrations.lammps.coulomb_commands`
    writes the LAMMPS commands of the identical term; :mod:`ase_denoise.priors.coulomb_torch`
    computes it in torch (torch-pme's Ewald or PME) on any device.
:class:`HarmonicBonds`, :class:`HarmonicAngles`
    bonded terms of a molecule, on atom *indices* (the molecule's topology), fitted by Boltzmann
    inversion of each bond's length and each angle's distribution in the data (mean and ``kT /
    variance``, as CGnet does: Wang et al., ACS Cent. Sci. 5, 755 (2019)): :func:`fit_bonded_priors`.
    They act where data are, so they are learned as a residual; stiff modes are then given rather
    than learned, the network learns what the harmonic picture leaves out.
:class:`PairTable`
    a tabulated pair correction per element pair, made after training by structure refinement
    (:func:`ase_denoise.refine.refine_structure`: iterative Boltzmann inversion of the model's
    MD RDFs against the data's). Added at inference only, like the wall.

Forces are in eV/Angstrom, energies in eV, lengths in Angstrom.

Where each kind lives: :mod:`~ase_denoise.priors.base` (the :class:`Prior` interface, pair
geometry, sums over priors), :mod:`~ase_denoise.priors.pair` (walls and tables),
:mod:`~ase_denoise.priors.coulomb`, :mod:`~ase_denoise.priors.bonded`,
:mod:`~ase_denoise.priors.torsions` (torsion priors and the label-free torsion corrections),
:mod:`~ase_denoise.priors.registry` (the JSON kinds) and :mod:`~ase_denoise.priors.specs` (the
short forms ``"wall"``, ``"bonded"``, ``"ewald:Li=1,Cl=-1,eps=94"``... that ``train`` and the command
line accept, fitted to the data). A new kind: its class, one line in the registry, and its short form.
"""

from .base import (
    PairGeometry,
    Prior,
    describe,
    replicas_total_energy_and_forces,
    species_name,
    total_energy_and_forces,
    total_forces,
    union_geometry,
)
from .bonded import HarmonicAngles, HarmonicBonds, fit_bonded_priors, molecule_topology
from .coulomb import COULOMB_EV_A, DSFCoulomb, EwaldCoulomb
from .pair import NonBondedWall, PairTable, RepulsiveWall, fit_repulsive_wall
from .registry import prior_from_dict
from .specs import SHORT_FORMS, FittedPrior, fit_priors, pairs_held_by_priors, parse_dihedrals, parse_prior
from .torsions import (
    DihedralCorrection,
    DihedralPairCorrection,
    Dihedrals,
    dihedral_angles,
    fit_dihedral_correction,
    fit_dihedral_pair_correction,
    fit_dihedral_priors,
)

__all__ = [
    "COULOMB_EV_A", "SHORT_FORMS", "DSFCoulomb", "FittedPrior", "fit_priors", "parse_prior", "DihedralCorrection", "DihedralPairCorrection", "Dihedrals", "EwaldCoulomb",
    "HarmonicAngles", "HarmonicBonds", "NonBondedWall", "PairGeometry", "PairTable", "Prior", "RepulsiveWall",
    "describe", "dihedral_angles", "fit_bonded_priors", "fit_dihedral_correction", "fit_dihedral_pair_correction",
    "fit_dihedral_priors", "fit_repulsive_wall", "molecule_topology", "pairs_held_by_priors", "parse_dihedrals",
    "prior_from_dict", "replicas_total_energy_and_forces", "species_name", "total_energy_and_forces", "total_forces",
    "union_geometry",
]



