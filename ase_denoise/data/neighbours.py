"""Neighbour lists: matscipy (what MACE itself uses), MACE's edge convention, and Verlet-style reuse.

Convention: ``edge_index = (sender, receiver)`` and ``vector = r[receiver] - r[sender] + shift``
with Cartesian ``shift = unit_shift @ cell`` (Angstrom).

Reuse (docs/design.md, "Neighbour lists"): MACE's radial envelope is exactly zero beyond ``r_max`` and
messages are divided by a fixed ``avg_num_neighbors``, so extra edges beyond ``r_max`` change
nothing. A list built with cutoff ``r_max + skin`` therefore serves every configuration in which no
atom has moved more than ``skin / 2`` from where the list was built: every noisy copy of a clean
frame during training, and many consecutive MD steps.
"""

from __future__ import annotations

from typing import Optional, Sequence, Tuple

import numpy as np
from ase.cell import Cell
from matscipy.neighbours import neighbour_list


def cell_heights(cell) -> np.ndarray:
    """Perpendicular heights of a cell (Angstrom): volume / area of the opposite face."""
    cell = Cell(np.asarray(cell, dtype=float))
    return cell.volume / cell.areas()


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
        # along open axes the edges do not depend on the origin: search about the structure's own corner,
        # so a molecule far from the origin gets a box of its own size (not one of 1e8 A, slow and imprecise)
        open_axes = ~np.asarray(pbc)
        positions = positions - np.where(open_axes, positions.min(axis=0), 0.0) if len(positions) else positions
        span = np.max(np.abs(positions)) + 1.0
        for axis in range(3):
            if not pbc[axis]:
                cell[axis] = 0.0
                cell[axis, axis] = span * 5.0 * cutoff + 1.0
    sender, receiver, unit_shifts = neighbour_list("ijS", pbc=pbc, cell=cell, positions=positions, cutoff=cutoff)
    keep = ~((sender == receiver) & np.all(unit_shifts == 0, axis=1))
    return np.stack((sender[keep], receiver[keep])), unit_shifts[keep]


def average_num_neighbors(frames: Sequence, cutoff: float) -> float:
    """Mean number of neighbours within ``cutoff`` (Angstrom) over the atoms of ``frames``
    (:class:`ase_denoise.data.Frame`; MACE's message normaliser ``avg_num_neighbors``)."""
    edges = atoms = 0
    for f in frames:
        edge_index, _ = neighbour_graph(f.positions, f.cell, f.pbc, cutoff)
        edges += edge_index.shape[1]
        atoms += f.n_atoms
    return max(edges / max(atoms, 1), 1.0)


def training_skin(noise_std: float) -> float:
    """Skin (Angstrom) of the per-frame lists used in training: noisy copies reuse a frame's list
    unless an atom moved more than skin/2 = max(0.25 A, 5 sigma) (then that copy gets a fresh list).
    ``noise_std``: the largest noise level, Angstrom."""
    return max(0.5, 10.0 * noise_std)


class SkinNeighbourList:
    """A Verlet-style neighbour list.

    Built with cutoff ``cutoff + skin`` and reused, filtered to ``cutoff``, until some atom has moved
    more than ``skin / 2`` from where the list was built (or the cell, periodicity or atom count
    changed). The result equals a fresh list's up to the order of the edges (see the module
    docstring for why that is exact for MACE). Positions must not be wrapped between calls (a
    wrapped atom looks like a large move and triggers a rebuild, which is correct but slower).
    """

    def __init__(self, cutoff: float, skin: float):
        if skin < 0:
            raise ValueError(f"skin={skin} Angstrom must be >= 0")
        self.cutoff, self.skin = float(cutoff), float(skin)
        self.n_builds = 0
        self._ref: Optional[Tuple[np.ndarray, np.ndarray, Tuple[bool, ...]]] = None
        self._edge_index = np.zeros((2, 0), dtype=np.int64)
        self._shifts = np.zeros((0, 3))
        self._wider: dict = {}

    def wider(self, cutoff: float) -> "SkinNeighbourList":
        """A second list at a larger ``cutoff`` (Angstrom) with the same skin, kept with this one:
        for terms that reach further than the model (e.g. a Coulomb prior's real-space sum), so
        they are not searched afresh every step."""
        cutoff = float(cutoff)
        if cutoff not in self._wider:
            self._wider[cutoff] = SkinNeighbourList(cutoff, self.skin)
        return self._wider[cutoff]

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


def reused_edges(
    lists: Sequence[SkinNeighbourList], positions: Sequence[np.ndarray], cells: Sequence[np.ndarray],
    pbcs: Sequence[Sequence[bool]],
) -> Optional[Tuple[np.ndarray, np.ndarray]]:
    """The edges of several graphs at once, when every list can be reused as it stands.

    Returns ``edge_index`` [2, n_edges] with node indices offset graph by graph (graph ``g``'s atoms
    follow graph ``g - 1``'s) and Cartesian ``shifts`` [n_edges, 3], equal, edge for edge and in the
    same order, to concatenating ``lists[g].edges(positions[g], ...)``; or ``None`` when some list
    would rebuild (never built, an atom moved more than its ``skin / 2``, another cell, periodicity
    or atom count): then call ``edges`` graph by graph. Checking and filtering a batch of small
    graphs (dimers, molecules in training) in a few array operations instead of a dozen per graph
    is what makes this worth having; nothing is rebuilt or stored.
    """
    if len(lists) == 0:
        return None
    refs = [nl._ref for nl in lists]
    for ref, pos, cell, pbc in zip(refs, positions, cells, pbcs):
        if ref is None or ref[0].shape != np.shape(pos) or len(pos) == 0 or ref[2] != tuple(bool(p) for p in pbc):
            return None
    if not np.array_equal(np.stack([ref[1] for ref in refs]), np.stack(cells)):  # type: ignore[index]
        return None
    sizes = np.array([len(p) for p in positions])
    starts = np.concatenate(([0], np.cumsum(sizes)[:-1]))
    current = np.concatenate(positions).astype(np.float64, copy=False)
    moved = ((current - np.concatenate([ref[0] for ref in refs])) ** 2).sum(axis=1)
    half_skin = np.array([nl.skin for nl in lists]) / 2.0
    if np.any(np.maximum.reduceat(moved, starts) > half_skin**2):
        return None
    n_edges = np.array([nl._edge_index.shape[1] for nl in lists])
    edge_index = np.concatenate([nl._edge_index for nl in lists], axis=1) + np.repeat(starts, n_edges)
    shifts = np.concatenate([nl._shifts for nl in lists])
    vectors = current[edge_index[1]] - current[edge_index[0]] + shifts
    cutoff_sq = np.repeat(np.array([nl.cutoff for nl in lists]) ** 2, n_edges)
    keep = (vectors**2).sum(axis=1) < cutoff_sq
    return np.ascontiguousarray(edge_index[:, keep]), shifts[keep]

