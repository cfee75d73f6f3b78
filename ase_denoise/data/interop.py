"""pymatgen interoperability: training frames from ``Structure``/``Molecule`` lists or a ``Trajectory``.

Conversion goes through pymatgen's own :class:`pymatgen.io.ase.AseAtomsAdaptor`; positions stay in
Angstrom, cells in Angstrom, temperatures in K, forces in eV/Angstrom. What these helpers add to a
bare ``AseAtomsAdaptor.get_atoms`` call:

* the sampling temperature: ``temperature_K`` (K) is written to ``atoms.info["temperature_K"]``
  (the library's convention, :func:`ase_denoise.data.data_temperature`); a frame that already
  states another temperature (``Structure.properties["temperature_K"]`` or a trajectory's
  ``frame_properties``) is refused instead of overwritten;
* force labels (for evaluation, and for the losses that train on labels): a ``"forces"`` site property or a
  ``"forces"`` entry of a trajectory's ``frame_properties`` becomes ``atoms.arrays["ref_forces"]``;
* a ``Trajectory`` is expanded frame by frame (its lattice may be constant or per frame), and a
  single ``Structure`` is one frame, not a list of sites.

The results are ordinary frames for :func:`ase_denoise.train` and, with a calculator attached,
for ASE MD: ``atoms = AseAtomsAdaptor.get_atoms(structure); atoms.calc = DenoiseCalculator(...)``.
"""

from __future__ import annotations

import logging
from typing import Any, Iterable, List, Optional, Sequence, Union

import numpy as np
from ase import Atoms
from pymatgen.core import IMolecule, IStructure, Molecule, Structure
from pymatgen.core.trajectory import Trajectory
from pymatgen.io.ase import AseAtomsAdaptor

from ..errors import DataError

logger = logging.getLogger(__name__)

_FORCE_KEYS = ("ref_forces", "forces")


def _is_trajectory(obj: Any) -> bool:
    return isinstance(obj, Trajectory)


def _is_pymatgen_structure(obj: Any) -> bool:
    return isinstance(obj, (IStructure, IMolecule))


def _set_temperature(atoms: Atoms, temperature_K: Optional[float], what: str) -> None:
    if temperature_K is None:
        return
    temperature_K = float(temperature_K)
    if not np.isfinite(temperature_K) or temperature_K <= 0:
        raise DataError(f"temperature_K={temperature_K} K must be a positive number")
    stated = atoms.info.get("temperature_K")
    if stated is not None and abs(float(stated) - temperature_K) > 1e-6 * temperature_K:
        raise DataError(
            f"{what} states temperature_K={stated} K, which disagrees with temperature_K={temperature_K} K"
        )
    atoms.info["temperature_K"] = temperature_K


def _move_forces(atoms: Atoms, extra: Optional[dict] = None) -> None:
    """Put reference forces (site property / frame property ``forces``) into ``arrays['ref_forces']``."""
    n = len(atoms)
    forces = None
    for key in _FORCE_KEYS:
        if key in atoms.arrays:
            forces = atoms.arrays[key]
            if key != "ref_forces":
                del atoms.arrays[key]
            break
    for source in (extra or {}, atoms.info):
        if forces is None and "forces" in source:
            forces = source["forces"]
    atoms.info.pop("forces", None)
    if forces is None:
        return
    forces = np.asarray(forces, dtype=np.float64)
    if forces.shape != (n, 3):
        raise DataError(f"reference forces have shape {forces.shape}, expected ({n}, 3) (eV/Angstrom)")
    atoms.arrays["ref_forces"] = forces


def structure_to_atoms(
    structure: Union[Structure, Molecule], temperature_K: Optional[float] = None, *, what: str = "structure"
) -> Atoms:
    """One pymatgen ``Structure`` (periodic) or ``Molecule`` (not periodic) as an ``ase.Atoms`` frame.

    ``temperature_K`` (K): sampling temperature, stored in ``atoms.info["temperature_K"]``.
    Site property ``forces`` (eV/Angstrom) becomes ``atoms.arrays["ref_forces"]``.
    """
    if isinstance(structure, Atoms):
        atoms = structure.copy()
    elif _is_pymatgen_structure(structure):
        atoms = AseAtomsAdaptor.get_atoms(structure)
    else:
        raise DataError(f"{what}: expected a pymatgen Structure or Molecule, got {type(structure).__name__}")
    _move_forces(atoms)
    _set_temperature(atoms, temperature_K, what)
    return atoms


def structures_to_frames(
    structures: Union[Structure, Molecule, Iterable[Union[Structure, Molecule]], Trajectory],
    temperature_K: Optional[float] = None,
) -> List[Atoms]:
    """Frames from a list of ``Structure``/``Molecule`` (a single one, or a ``Trajectory``, works too).

    ``temperature_K`` (K) is stored in every frame's ``info``; see the module docstring.
    Raises :class:`~ase_denoise.data.DataError` for an empty input or an item that is not a structure.
    """
    if _is_trajectory(structures):
        return trajectory_to_frames(structures, temperature_K)
    if _is_pymatgen_structure(structures) or isinstance(structures, Atoms):
        items: Sequence[Any] = [structures]
    else:
        items = list(structures)
    frames = [structure_to_atoms(s, temperature_K, what=f"structure {i}") for i, s in enumerate(items)]
    if not frames:
        raise DataError("no structures given")
    return frames


def trajectory_to_frames(trajectory: Trajectory, temperature_K: Optional[float] = None) -> List[Atoms]:
    """Frames of a pymatgen ``Trajectory`` (one ``Atoms`` per frame).

    Per-frame ``frame_properties`` become ``atoms.info`` (so ``{"temperature_K": T}`` there is honoured)
    except ``forces`` (eV/Angstrom), which becomes ``atoms.arrays["ref_forces"]``.
    ``temperature_K`` (K) is stored in every frame (refused if a frame states another one).
    """
    if not _is_trajectory(trajectory):
        raise DataError(f"expected a pymatgen Trajectory, got {type(trajectory).__name__}")
    n = len(trajectory)
    if n == 0:
        raise DataError("the trajectory has no frames")
    frames = []
    for i in range(n):
        frames.append(structure_to_atoms(trajectory[i], temperature_K, what=f"trajectory frame {i}"))
    return frames


def atoms_to_structure(atoms: Atoms) -> Union[Structure, Molecule]:
    """One frame as a pymatgen ``Structure`` (any periodic axis) or ``Molecule`` (no periodicity).

    ``info`` goes to ``properties`` (so ``temperature_K`` survives) and ``arrays["ref_forces"]`` to the
    site property ``ref_forces``. A partially periodic frame becomes a ``Structure`` (pymatgen
    structures are periodic along all three axes): a warning is logged.
    """
    adaptor = AseAtomsAdaptor
    if not atoms.pbc.any():
        return adaptor.get_molecule(atoms, cls=Molecule)
    if not atoms.pbc.all():
        logger.warning("frame with pbc=%s becomes a fully periodic pymatgen Structure", atoms.pbc.tolist())
    return adaptor.get_structure(atoms)


def frames_to_structures(frames: Iterable[Atoms]) -> List[Union[Structure, Molecule]]:
    """Frames (``ase.Atoms``) as pymatgen structures; see :func:`atoms_to_structure`."""
    return [atoms_to_structure(a) for a in frames]


def frames_to_trajectory(frames: Sequence[Atoms]) -> Trajectory:
    """Periodic frames as a pymatgen ``Trajectory`` (per-frame lattices; ``info`` as ``frame_properties``).

    Reference forces (``arrays["ref_forces"]``, eV/Angstrom) are stored as ``frame_properties[i]["forces"]``.
    """
    frames = list(frames)
    if not frames:
        raise DataError("no frames given")
    if not all(a.pbc.all() for a in frames):
        raise DataError("frames_to_trajectory needs fully periodic frames (pymatgen structures are periodic)")
    species = frames[0].get_chemical_symbols()
    if any(a.get_chemical_symbols() != species for a in frames):
        raise DataError("all frames of a Trajectory must have the same species in the same order")
    props = []
    for a in frames:
        p = {k: v for k, v in a.info.items() if isinstance(v, (int, float, str, bool))}
        if "ref_forces" in a.arrays:
            p["forces"] = np.asarray(a.arrays["ref_forces"], dtype=np.float64).tolist()
        props.append(p)
    return Trajectory(
        lattice=np.array([a.cell.array for a in frames]),
        species=species,
        coords=np.array([a.get_scaled_positions(wrap=False) for a in frames]),
        coords_are_displacement=False,
        constant_lattice=False,
        frame_properties=props,
    )
