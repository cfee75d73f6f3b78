"""Frames in, graphs out: reading and checking data, neighbour lists, batching.

A *frame* is an equilibrium snapshot (``ase.Atoms``). Reference forces, when a frame has them,
are kept for evaluation only: ``atoms.arrays["ref_forces"]`` or, failing that, forces stored by a
single-point calculator (e.g. read from an extxyz file). The sampling temperature may be given per
frame in ``atoms.info["temperature_K"]``; a data set must have a single temperature.

Neighbour lists come from matscipy (what MACE itself uses) and follow MACE's convention:
``edge_index = (sender, receiver)`` and ``vector = r[receiver] - r[sender] + shift``.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Dict, Iterable, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from ase import Atoms
from ase.data import chemical_symbols
from matscipy.neighbours import neighbour_list

logger = logging.getLogger(__name__)

PathLike = Union[str, os.PathLike]


class DataError(ValueError):
    """Raised for input data the library cannot use; the message names the problem."""


def cell_heights(cell: np.ndarray) -> np.ndarray:
    """Perpendicular heights of a cell (Angstrom): volume / area of the opposite face."""
    cell = np.asarray(cell, dtype=float)
    volume = abs(np.linalg.det(cell))
    return np.array([volume / np.linalg.norm(np.cross(cell[(i + 1) % 3], cell[(i + 2) % 3])) for i in range(3)])


def check_atoms(
    atoms: Atoms,
    *,
    atomic_numbers: Optional[Sequence[int]] = None,
    pbc: Optional[Sequence[bool]] = None,
    r_max: Optional[float] = None,
    what: str = "structure",
) -> None:
    """Raise :class:`DataError` with a precise message if ``atoms`` cannot be fed to a model.

    Checks: at least two atoms; finite positions; elements in ``atomic_numbers``; periodicity equal
    to ``pbc``; a periodic cell with non-zero volume, every periodic height >= ``r_max`` and no atom
    far outside it.
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
    if atomic_numbers is not None:
        known = set(int(z) for z in atomic_numbers)
        unknown = sorted(set(int(z) for z in atoms.numbers) - known)
        if unknown:
            names = [chemical_symbols[z] if 0 <= z < len(chemical_symbols) else str(z) for z in unknown]
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
        frac = np.linalg.solve(cell.T, pos.T).T
        far = np.nonzero(np.any(((frac < -1.0) | (frac > 2.0)) & atoms.pbc, axis=1))[0]  # periodic axes only
        if len(far):
            raise DataError(
                f"{what}: atoms {far[:10].tolist()} lie more than one cell length outside the periodic cell "
                "(wrap them with atoms.wrap() if this is intended)"
            )


def reference_forces(atoms: Atoms) -> Optional[np.ndarray]:
    """True forces (eV/Angstrom) stored with a frame, for evaluation only; ``None`` if absent."""
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
        import ase.io

        path = os.fspath(source)
        if not os.path.exists(path):
            raise DataError(f"data file {path!r} does not exist")
        try:
            frames = ase.io.read(path, index=index)
        except Exception as exc:  # ASE raises many types for unreadable files
            if os.path.isfile(path) and os.path.getsize(path) == 0:
                raise DataError(f"data file {path!r} is empty (0 bytes): no frames") from exc
            why = "unknown or unsupported file format, " if type(exc).__name__ == "UnknownFileTypeError" else ""
            raise DataError(f"could not read frames from {path!r}: {why}{type(exc).__name__}: {exc}") from exc
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
        from pymatgen.io.ase import AseAtomsAdaptor

        return AseAtomsAdaptor.get_atoms(item)
    except Exception as exc:
        raise DataError(f"cannot convert {type(item).__name__} to ase.Atoms: {exc}") from exc


def data_temperature(frames: Sequence[Atoms], temperature_K: Optional[float] = None) -> float:
    """The one temperature (K) of a data set.

    Uses ``temperature_K`` if given; frames that state ``info["temperature_K"]`` must all agree with
    each other and with it (within 1e-6 relative). Raises :class:`DataError` otherwise.
    """
    stated = sorted({float(a.info["temperature_K"]) for a in frames if "temperature_K" in a.info})
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


def data_pbc(frames: Sequence[Atoms]) -> Tuple[bool, bool, bool]:
    """The one periodicity of a data set; mixed periodicity raises :class:`DataError`."""
    kinds = {tuple(bool(p) for p in a.pbc) for a in frames}
    if len(kinds) > 1:
        raise DataError(f"frames mix periodicities {sorted(kinds)}; use one periodicity per data set")
    return next(iter(kinds))  # type: ignore[return-value]


def neighbour_graph(
    positions: np.ndarray, cell: np.ndarray, pbc: Sequence[bool], cutoff: float
) -> Tuple[np.ndarray, np.ndarray]:
    """Edges within ``cutoff`` (Angstrom): ``edge_index`` [2, n_edges] (sender, receiver) and the
    integer cell shifts [n_edges, 3]; ``vector = r[receiver] - r[sender] + shifts @ cell``.

    Non-periodic directions get a box large enough that no image is within the cutoff (as MACE does).
    """
    positions = np.asarray(positions, dtype=np.float64)
    pbc = tuple(bool(p) for p in pbc)
    cell = np.array(cell, dtype=np.float64, copy=True)
    if not all(pbc):
        span = np.max(np.abs(positions)) + 1.0
        for axis in range(3):
            if not pbc[axis]:
                cell[axis] = 0.0
                cell[axis, axis] = span * 5.0 * cutoff + 1.0
    sender, receiver, unit_shifts = neighbour_list("ijS", pbc=pbc, cell=cell, positions=positions, cutoff=cutoff)
    keep = ~((sender == receiver) & np.all(unit_shifts == 0, axis=1))
    return np.stack((sender[keep], receiver[keep])), unit_shifts[keep]


class SkinNeighbourList:
    """A Verlet-style neighbour list (DESIGN.md section 4).

    Built with cutoff ``cutoff + skin`` and reused, filtered to ``cutoff``, until some atom has moved
    more than ``skin / 2`` from where the list was built (or the cell, periodicity or atom count
    changed). Because MACE's envelope is exactly zero beyond ``r_max`` and messages are divided by a
    fixed ``avg_num_neighbors``, the result equals a fresh list's up to the order of the edges.
    Positions must not be wrapped between calls (a wrapped atom looks like a large move and triggers
    a rebuild, which is correct but slower).
    """

    def __init__(self, cutoff: float, skin: float):
        if skin < 0:
            raise ValueError(f"skin={skin} Angstrom must be >= 0")
        self.cutoff, self.skin = float(cutoff), float(skin)
        self.n_builds = 0
        self._ref: Optional[Tuple[np.ndarray, np.ndarray, Tuple[bool, ...]]] = None
        self._edge_index = np.zeros((2, 0), dtype=np.int64)
        self._shifts = np.zeros((0, 3))

    def needs_rebuild(self, positions: np.ndarray, cell: np.ndarray, pbc: Sequence[bool]) -> bool:
        if self._ref is None:
            return True
        ref_pos, ref_cell, ref_pbc = self._ref
        if ref_pos.shape != positions.shape or tuple(pbc) != ref_pbc or not np.array_equal(ref_cell, cell):
            return True
        displacement = np.sqrt(((positions - ref_pos) ** 2).sum(axis=1)).max(initial=0.0)
        return bool(2.0 * displacement > self.skin)

    def edges(
        self, positions: np.ndarray, cell: np.ndarray, pbc: Sequence[bool], update: bool = True
    ) -> Tuple[np.ndarray, np.ndarray]:
        """``edge_index`` [2, n_edges] and Cartesian ``shifts`` [n_edges, 3] of pairs within the cutoff.

        ``update=False`` keeps the stored list (and its reference positions) even when a rebuild is
        needed: that one call gets a fresh list (used for noisy copies of one clean frame).
        """
        positions = np.asarray(positions, dtype=np.float64)
        cell = np.asarray(cell, dtype=np.float64)
        pbc = tuple(bool(p) for p in pbc)
        if self.needs_rebuild(positions, cell, pbc):
            self.n_builds += 1
            if not update:
                edge_index, unit_shifts = neighbour_graph(positions, cell, pbc, self.cutoff)
                return edge_index, unit_shifts @ cell
            edge_index, unit_shifts = neighbour_graph(positions, cell, pbc, self.cutoff + self.skin)
            self._edge_index, self._shifts = edge_index, unit_shifts @ cell
            self._ref = (positions.copy(), cell.copy(), pbc)
        sender, receiver = self._edge_index
        vectors = positions[receiver] - positions[sender] + self._shifts
        keep = (vectors**2).sum(axis=1) < self.cutoff**2
        return np.ascontiguousarray(self._edge_index[:, keep]), self._shifts[keep]


@dataclass
class Frame:
    """A clean frame in the arrays the model needs (float64 numpy, Angstrom)."""

    positions: np.ndarray  # [n, 3]
    species: np.ndarray  # [n] index into the element table
    cell: np.ndarray  # [3, 3]
    pbc: Tuple[bool, bool, bool]
    ref_forces: Optional[np.ndarray] = None  # [n, 3] eV/Angstrom, evaluation only

    @property
    def n_atoms(self) -> int:
        return len(self.positions)


def species_index(numbers: np.ndarray, atomic_numbers: Sequence[int]) -> np.ndarray:
    lookup = {int(z): i for i, z in enumerate(atomic_numbers)}
    return np.array([lookup[int(z)] for z in numbers], dtype=np.int64)


def to_frame(atoms: Atoms, atomic_numbers: Sequence[int]) -> Frame:
    return Frame(
        positions=np.array(atoms.positions, dtype=np.float64),
        species=species_index(atoms.numbers, atomic_numbers),
        cell=np.array(atoms.cell.array, dtype=np.float64),
        pbc=tuple(bool(p) for p in atoms.pbc),  # type: ignore[arg-type]
        ref_forces=reference_forces(atoms),
    )


def collate(
    positions: Sequence[np.ndarray],
    frames: Sequence[Frame],
    n_elements: int,
    cutoff: float,
    dtype: torch.dtype,
    device: Union[str, torch.device] = "cpu",
    neighbour_lists: Optional[Sequence[SkinNeighbourList]] = None,
    update_lists: bool = True,
) -> Dict[str, torch.Tensor]:
    """Batch graphs for the (possibly noisy) ``positions`` of ``frames`` (MACE's batch format).

    ``neighbour_lists``: one :class:`SkinNeighbourList` per item to reuse (its cutoff must be
    ``cutoff``; ``update_lists`` is passed on as ``update``); without them each graph gets a fresh list.
    """
    pos_list, attr_list, edge_list, shift_list, batch_list = [], [], [], [], []
    ptr = [0]
    offset = 0
    for g, (pos, frame) in enumerate(zip(positions, frames)):
        if neighbour_lists is None:
            edge_index, unit_shifts = neighbour_graph(pos, frame.cell, frame.pbc, cutoff)
            shifts = unit_shifts @ frame.cell
        else:
            edge_index, shifts = neighbour_lists[g].edges(pos, frame.cell, frame.pbc, update=update_lists)
        pos_list.append(pos)
        attr_list.append(frame.species)
        edge_list.append(edge_index + offset)
        shift_list.append(shifts)
        batch_list.append(np.full(len(pos), g, dtype=np.int64))
        offset += len(pos)
        ptr.append(offset)
    species = torch.from_numpy(np.concatenate(attr_list))
    return {
        "positions": torch.as_tensor(np.concatenate(pos_list), dtype=dtype, device=device),
        "node_attrs": torch.nn.functional.one_hot(species, n_elements).to(dtype=dtype, device=device),
        "edge_index": torch.as_tensor(np.concatenate(edge_list, axis=1), dtype=torch.int64, device=device),
        "shifts": torch.as_tensor(np.concatenate(shift_list), dtype=dtype, device=device),
        "batch": torch.as_tensor(np.concatenate(batch_list), device=device),
        "ptr": torch.as_tensor(ptr, dtype=torch.int64, device=device),
    }


def average_num_neighbors(frames: Sequence[Frame], cutoff: float) -> float:
    """Mean number of neighbours within ``cutoff`` over the atoms of ``frames`` (MACE's normaliser)."""
    edges = atoms = 0
    for f in frames:
        edge_index, _ = neighbour_graph(f.positions, f.cell, f.pbc, cutoff)
        edges += edge_index.shape[1]
        atoms += f.n_atoms
    return max(edges / max(atoms, 1), 1.0)
