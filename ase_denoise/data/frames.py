"""Frames: reading and checking data, and the arrays a model needs.

A *frame* is an equilibrium snapshot (``ase.Atoms``). Per-atom force labels, when a frame has them,
are ``atoms.arrays["ref_forces"]`` or, failing that, forces stored by a single-point calculator
(e.g. read from an extxyz file): the ``force_matching`` and ``hybrid`` losses train on them, and
validation and ``ase-denoise eval`` compare predictions with them; the ``denoising`` loss never
sees them. The sampling temperature may be given per frame in ``atoms.info["temperature_K"]``; a
data set must have a single temperature.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Dict, Iterable, List, Optional, Sequence, Tuple, Union

import ase.io
import ase.io.formats
import numpy as np
from ase import Atoms
from ase.data import chemical_symbols

from ..errors import DataError
from ..files import PathLike
from .neighbours import cell_heights


#: the largest distance (Angstrom) of an atom from its structure's centre: beyond it, the coordinates are
#: not in Angstrom or not of one structure (float32 edge vectors would lose their precision too)
MAX_EXTENT = 1e6


def check_atoms(
    atoms: Atoms,
    *,
    atomic_numbers: Optional[Sequence[int]] = None,
    pbc: Optional[Sequence[bool]] = None,
    r_max: Optional[float] = None,
    what: str = "structure",
    far_atoms_ok: bool = False,
    bead_names: Optional[Dict[int, str]] = None,
) -> None:
    """Raise :class:`DataError` with a precise message if ``atoms`` cannot be fed to a model.

    Checks: at least two atoms; finite positions; elements in ``atomic_numbers`` (named by
    ``bead_names`` for a coarse-grained model's placeholder numbers); periodicity equal
    to ``pbc``; a periodic cell with finite entries and non-zero volume, every periodic height >=
    ``r_max`` and (unless ``far_atoms_ok``: the calculator moves such atoms back itself) no atom more
    than one cell length outside it.
    """
    if not isinstance(atoms, Atoms):
        raise DataError(f"{what}: expected ase.Atoms, got {type(atoms).__name__}")
    n = len(atoms)
    if n == 0:
        raise DataError(f"{what} is empty (0 atoms)")
    if n == 1:
        raise DataError(f"{what} has a single atom: a denoiser needs neighbours to predict forces")
    pos = atoms.positions
    if not np.all(np.isfinite(pos)):
        bad = np.unique(np.nonzero(~np.isfinite(pos))[0])
        raise DataError(f"{what} has non-finite (NaN or inf) positions for atoms {bad[:10].tolist()}")
    extent = float(np.abs(pos - pos.mean(axis=0)).max())
    if extent > MAX_EXTENT:
        raise DataError(f"{what}: its atoms are spread over {extent:.3g} Angstrom from their centre (more than "
                        f"{MAX_EXTENT:g}); are the coordinates in Angstrom?")
    if atomic_numbers is not None:
        known = set(int(z) for z in atomic_numbers)
        unknown = sorted(set(int(z) for z in atoms.numbers) - known)
        if unknown:
            names = [chemical_symbols[z] if 0 <= z < len(chemical_symbols) else str(z) for z in unknown]
            if bead_names:  # a coarse-grained model: placeholder numbers of named bead types
                table = [f"{z} ({bead_names.get(z, chemical_symbols[z])})" for z in sorted(known)]
                raise DataError(f"{what} contains bead number(s) {unknown} outside the model's bead table {table}")
            table = [chemical_symbols[z] for z in sorted(known)]
            raise DataError(f"{what} contains element(s) {names} outside the model's element table {table}")
    if pbc is not None and tuple(bool(p) for p in atoms.pbc) != tuple(bool(p) for p in pbc):
        raise DataError(
            f"{what} has periodicity pbc={tuple(bool(p) for p in atoms.pbc)} but the model was trained "
            f"with pbc={tuple(bool(p) for p in pbc)}"
        )
    if atoms.pbc.any():
        cell = atoms.cell.array
        if not np.all(np.isfinite(cell)):
            raise DataError(f"{what} is periodic but its cell has non-finite (NaN or inf) entries: {cell.tolist()}")
        if abs(np.linalg.det(cell)) < 1e-9:
            raise DataError(f"{what} is periodic but its cell has zero volume: {cell.tolist()}")
        heights = cell_heights(cell)
        if r_max is not None:
            small = [i for i in range(3) if atoms.pbc[i] and heights[i] < r_max]
            if small:
                raise DataError(
                    f"{what}: periodic cell too small, heights {np.round(heights, 3).tolist()} Angstrom "
                    f"are below the model cutoff r_max={r_max} along axes {small}"
                )
        if far_atoms_ok:
            return
        far = np.nonzero(far_from_cell(atoms.cell.scaled_positions(pos), atoms.pbc))[0]
        if len(far):
            raise DataError(
                f"{what}: atoms {far[:10].tolist()} lie more than one cell length outside the periodic cell "
                "(wrap them with atoms.wrap() if this is intended)"
            )


#: atoms closer than this (Angstrom) sit on top of each other: no structure a model is fed or trained on has them
#: (MD stops much earlier: ase_denoise.md.langevin.OVERLAP_DISTANCE)
COINCIDENT_DISTANCE = 0.01
#: the cutoff (Angstrom) of the neighbour search that finds them, the pairs then filtered by distance
OVERLAP_SEARCH_BIN = 1.0


def overlapping_pairs(positions: np.ndarray, cell: np.ndarray, pbc: Sequence[bool],
                      within: float = COINCIDENT_DISTANCE) -> List[Tuple[int, int, float]]:
    """Pairs of atoms ``(i, j, distance)`` (i < j, periodic images included) closer than ``within`` (Angstrom)."""
    from .neighbours import neighbour_graph  # the project's own search, as for the model's graph

    positions = np.asarray(positions, dtype=np.float64)
    # searched with bins of OVERLAP_SEARCH_BIN: a cell-list search with 0.01 A bins takes seconds per frame
    edge_index, unit_shifts = neighbour_graph(positions, np.asarray(cell, dtype=np.float64), pbc,
                                              max(within, OVERLAP_SEARCH_BIN))
    if not edge_index.shape[1]:
        return []
    sender, receiver = edge_index
    d = np.linalg.norm(positions[receiver] - positions[sender] + unit_shifts @ np.asarray(cell, dtype=np.float64), axis=1)
    return sorted({(int(min(i, j)), int(max(i, j)), float(x)) for i, j, x in zip(sender, receiver, d) if x < within})


def refuse_overlaps(positions: np.ndarray, cell: np.ndarray, pbc: Sequence[bool], what: str = "structure") -> None:
    """Raise :class:`DataError` naming the atoms of ``what`` that overlap (closer than :data:`COINCIDENT_DISTANCE`)."""
    pairs = overlapping_pairs(positions, cell, pbc)
    if pairs:
        shown = ", ".join(f"{i} and {j} ({d:.2g} A)" for i, j, d in pairs[:5])
        raise DataError(f"{what}: atoms {shown} overlap (closer than {COINCIDENT_DISTANCE} A){' and more' if len(pairs) > 5 else ''}; "
                        "no force field is defined there")


def far_from_cell(scaled_positions: np.ndarray, pbc: Sequence[bool]) -> np.ndarray:
    """[n] mask of atoms more than one cell length outside the cell along a periodic axis."""
    return np.any(((scaled_positions < -1.0) | (scaled_positions > 2.0)) & np.asarray(pbc, dtype=bool), axis=1)


def fold_far_atoms(positions: np.ndarray, cell: np.ndarray, pbc: Sequence[bool]) -> None:
    """Move atoms more than one cell length outside a periodic cell back by whole lattice vectors, in
    place (forces do not change; atoms within one cell length stay, so Verlet lists are not rebuilt
    each time an atom crosses a face)."""
    if not any(pbc):
        return
    scaled = np.linalg.solve(np.asarray(cell, dtype=np.float64).T, positions.T).T
    far = far_from_cell(scaled, pbc)
    if far.any():
        positions[far] -= np.where(pbc, np.floor(scaled[far]), 0.0) @ cell


def reference_forces(atoms: Atoms) -> Optional[np.ndarray]:
    """Per-atom force labels (eV/Angstrom) stored with a frame; ``None`` if absent."""
    if "ref_forces" in atoms.arrays:
        return np.asarray(atoms.arrays["ref_forces"], dtype=np.float64)
    calc = atoms.calc
    if calc is not None and "forces" in getattr(calc, "results", {}):
        return np.asarray(calc.results["forces"], dtype=np.float64)
    return None


def read_frames(source: Union[PathLike, Atoms, Iterable], index: str = ":") -> List[Atoms]:
    """Read frames from any file ASE can read, a list of ``Atoms``, or pymatgen structures.

    Raises :class:`DataError` if the file is missing, in an unknown format, or holds no frames.
    """
    if isinstance(source, Atoms):
        frames = [source]
    elif isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        if not os.path.exists(path):
            raise DataError(f"data file {path!r} does not exist")
        try:
            frames = ase.io.read(path, index=index)
        except Exception as exc:  # ASE raises many types for unreadable files
            if os.path.isfile(path) and os.path.getsize(path) == 0:
                raise DataError(f"data file {path!r} is empty (0 bytes): no frames") from exc
            if type(exc).__name__ == "UnknownFileTypeError":
                raise DataError(f"could not read frames from {path!r}: ASE does not know its format ({exc}); "
                                "write the frames as extxyz (ase.io.write('frames.extxyz', frames))") from exc
            try:
                guessed = f" as {ase.io.formats.filetype(path, read=True)!r}, the format ASE guessed from its name and content"
            except Exception:  # noqa: BLE001 - only for the message
                guessed = ""
            raise DataError(f"could not read frames from {path!r}{guessed}: {type(exc).__name__}: {exc}; write the "
                            "frames as extxyz (ase.io.write('frames.extxyz', frames))") from exc
        if isinstance(frames, Atoms):
            frames = [frames]
    else:
        frames = [_to_atoms(item) for item in source]
    frames = list(frames)
    if not frames:
        raise DataError(f"no frames in {source!r}")
    return frames


def _to_atoms(item) -> Atoms:
    if isinstance(item, Atoms):
        return item
    try:  # pymatgen Structure / Molecule / Trajectory frames
        from pymatgen.io.ase import AseAtomsAdaptor  # pymatgen input only: a slow import (start-up cost)

        return AseAtomsAdaptor.get_atoms(item)
    except Exception as exc:
        raise DataError(f"cannot convert {type(item).__name__} to ase.Atoms: {exc}") from exc


def data_temperature(frames: Sequence[Atoms], temperature_K: Optional[float] = None) -> float:
    """The one temperature (K) of a data set.

    Uses ``temperature_K`` if given; frames that state ``info["temperature_K"]`` must all agree with
    each other and with it (within 1e-6 relative). Raises :class:`DataError` otherwise.
    """
    stated_by_frame = {}
    for i, a in enumerate(frames):
        if "temperature_K" in a.info:
            value = a.info["temperature_K"]
            try:
                stated_by_frame[i] = float(value)
            except (TypeError, ValueError):
                stated_by_frame[i] = float("nan")
            if isinstance(value, bool) or not (np.isfinite(stated_by_frame[i]) and stated_by_frame[i] > 0):
                raise DataError(f"frame {i} states info['temperature_K']={value!r}: a temperature is a positive "
                                "number of kelvin")
    stated = sorted(set(stated_by_frame.values()))
    if len(stated) > 1 and (stated[-1] - stated[0]) > 1e-6 * stated[-1]:
        raise DataError(
            f"frames have different temperatures {stated[:5]} K (info['temperature_K']); "
            "a denoiser learns the force field of one Boltzmann ensemble: train one model per temperature"
        )
    if temperature_K is None:
        if not stated:
            raise DataError("the training temperature is unknown: pass temperature_K (K) or set info['temperature_K']")
        temperature_K = stated[0]
    elif stated and abs(stated[0] - temperature_K) > 1e-6 * max(abs(temperature_K), 1.0):
        raise DataError(f"temperature_K={temperature_K} K disagrees with the frames' info['temperature_K']={stated[0]} K")
    if not np.isfinite(temperature_K) or temperature_K <= 0:
        raise DataError(f"temperature_K={temperature_K} K must be a positive number")
    return float(temperature_K)


def check_kinetic_temperature(frames: Sequence[Atoms], temperature_K: float) -> Optional[float]:
    """Frames that carry momenta say their temperature: refuse a ``temperature_K`` (K) their mean
    kinetic temperature contradicts (off by more than 10 % and five standard errors, the error of a
    mean over ``F`` frames of ``N`` atoms being ``T sqrt(2 / (3 N F))``). Returns that kinetic
    temperature, or ``None`` when no frame has momenta."""
    moving = [a for a in frames if "momenta" in a.arrays and np.any(a.arrays["momenta"])]
    if not moving:
        return None
    kinetic = float(np.mean([a.get_temperature() for a in moving]))
    n_atoms = float(np.mean([len(a) for a in moving]))
    error = temperature_K * np.sqrt(2.0 / (3.0 * n_atoms * len(moving)))
    if abs(kinetic - temperature_K) > max(0.1 * temperature_K, 5.0 * error):
        raise DataError(
            f"temperature_K={temperature_K:g} K, but the momenta of {len(moving)} frames say {kinetic:.0f} K (their mean "
            f"kinetic temperature): a denoiser's forces are kT times its output, so the temperature must be the one "
            f"the frames were sampled at; if the momenta are not of this ensemble, drop them (atoms.set_momenta(None))")
    return kinetic


def describe_periodicity(frames: Sequence[Atoms]) -> Tuple[str, bool]:
    """One line on the periodicity a data set will be trained with, and whether it looks like a mistake:
    non-periodic frames of at least 50 atoms packed like a liquid or solid (under 30 A^3 per atom in their
    bounding box), as a plain .xyz file of a periodic box reads (it holds no cell)."""
    pbc = data_pbc(frames)
    if any(pbc):
        heights = cell_heights(frames[0].cell)
        return f"periodic along {', '.join('xyz'[i] for i in range(3) if pbc[i])} (cell heights {np.round(heights, 2).tolist()} A)", False
    atoms = frames[0]
    span = np.ptp(atoms.positions, axis=0) if len(atoms) else np.zeros(3)
    dense = len(atoms) >= 50 and float(np.prod(np.maximum(span, 1e-9))) / len(atoms) < 30.0
    line = "not periodic: a molecule or cluster in vacuum (the frames have no periodic cell)"
    if dense:
        line += (f"; but {len(atoms)} atoms packed at {float(np.prod(span)) / len(atoms):.1f} A^3 per atom look like a "
                 "periodic box read without its cell (plain .xyz holds none): give the frames with their cell "
                 "(extxyz with Lattice=..., or set atoms.cell and atoms.pbc)")
    return line, dense


def data_pbc(frames: Sequence[Atoms]) -> Tuple[bool, bool, bool]:
    """The one periodicity of a data set; mixed periodicity raises :class:`DataError`."""
    kinds = {tuple(bool(p) for p in a.pbc) for a in frames}
    if len(kinds) > 1:
        raise DataError(f"frames mix periodicities {sorted(kinds)}; use one periodicity per data set")
    return next(iter(kinds))  # type: ignore[return-value]


@dataclass
class Frame:
    """A clean frame in the arrays the model needs (float64 numpy, Angstrom)."""

    positions: np.ndarray  # [n, 3]
    species: np.ndarray  # [n] index into the element table
    cell: np.ndarray  # [3, 3]
    pbc: Tuple[bool, bool, bool]
    ref_forces: Optional[np.ndarray] = None  # [n, 3] eV/Angstrom: force labels, if the frame has them

    @property
    def n_atoms(self) -> int:
        return len(self.positions)


def species_index(numbers: np.ndarray, atomic_numbers: Sequence[int]) -> np.ndarray:
    lookup = {int(z): i for i, z in enumerate(atomic_numbers)}
    return np.array([lookup[int(z)] for z in numbers], dtype=np.int64)


def bead_numbers(bead_types: Sequence[str]) -> Dict[str, int]:
    """Placeholder atomic numbers 1, 2, ... for coarse-grained bead types, in order of first
    appearance in ``bead_types``. ASE has no particle types other than elements, so beads travel as
    ``Atoms`` whose numbers are these placeholders (masses set explicitly: :func:`bead_atoms`);
    train with ``bead_names={number: name}`` (:class:`~ase_denoise.config.ModelConfig`) so the model
    file and its table say what each number is."""
    numbers: Dict[str, int] = {}
    for name in bead_types:
        numbers.setdefault(str(name), len(numbers) + 1)
    return numbers


def bead_atoms(
    bead_types: Sequence[str], positions: np.ndarray, masses: Dict[str, float], numbers: Dict[str, int],
    cell: Optional[np.ndarray] = None, pbc: bool = False, forces: Optional[np.ndarray] = None,
) -> Atoms:
    """A coarse-grained structure: beads of types ``bead_types`` at ``positions`` (A), with
    placeholder atomic numbers ``numbers`` ({type: number}, e.g. from :func:`bead_numbers`) and
    ``masses`` ({type: amu}, e.g. the summed masses of the mapped atoms). ``forces`` (eV/A): mapped
    force labels, stored as ``arrays['ref_forces']``."""
    missing = sorted({str(t) for t in bead_types} - set(numbers) | ({str(t) for t in bead_types} - set(masses)))
    if missing:
        raise DataError(f"bead types {missing} have no placeholder number or no mass")
    atoms = Atoms(numbers=[numbers[str(t)] for t in bead_types], positions=positions,
                  masses=[masses[str(t)] for t in bead_types], cell=cell, pbc=pbc)
    if forces is not None:
        atoms.arrays["ref_forces"] = np.asarray(forces, dtype=np.float64)
    return atoms


def to_frame(atoms: Atoms, atomic_numbers: Sequence[int]) -> Frame:
    return Frame(
        positions=np.array(atoms.positions, dtype=np.float64),
        species=species_index(atoms.numbers, atomic_numbers),
        cell=np.array(atoms.cell.array, dtype=np.float64),
        pbc=tuple(bool(p) for p in atoms.pbc),  # type: ignore[arg-type]
        ref_forces=reference_forces(atoms),
    )
