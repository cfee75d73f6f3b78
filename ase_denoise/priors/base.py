"""The prior interface and what every kind shares: pair geometry, indexed (bonded) terms, sums.

Forces are in eV/Angstrom, energies in eV, lengths in Angstrom.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
from ase import Atoms
from ase.data import chemical_symbols
from ase.geometry import find_mic

from ..data.neighbours import neighbour_graph


#: the largest cutoff (Angstrom) a prior may have, as for the network (config.MAX_CUTOFF)
MAX_PRIOR_CUTOFF = 30.0
#: the most integer reciprocal-lattice points an Ewald sum may scan (a 30 A box at the default accuracy and alpha
#: 1 /A scans about 4e5; more means a hostile or mistaken alpha, and a sum that would not finish)
MAX_KVECTORS = 2_000_000


def check_range(kind: str, name: str, value: Any, low: float, high: float, unit: str = "") -> None:
    """Refuse a prior parameter outside its documented range ``[low, high]`` (NaN and inf included),
    naming the prior and the parameter: a file's numbers must not make a force call hang."""
    try:
        ok = math.isfinite(float(value)) and low <= float(value) <= high
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ValueError(f"{kind} prior: {name}={value!r} must be between {low:g} and {high:g}{unit}")


def pair_key(z1: int, z2: int) -> Tuple[int, int]:
    return (min(int(z1), int(z2)), max(int(z1), int(z2)))


def species_name(z: int, names: Optional[Dict[int, str]] = None) -> str:
    """A species' name in messages: its bead name where ``names`` ({number: name}, a coarse-grained
    model's ``ModelConfig.bead_names``) has one, else its chemical symbol."""
    named = {int(k): str(v) for k, v in (names or {}).items()}
    return named.get(int(z), chemical_symbols[int(z)] if 0 <= int(z) < len(chemical_symbols) else str(z))


@dataclass
class PairGeometry:
    """Directed pairs within a cutoff: ``receiver``/``sender`` atom indices, distances ``d`` [n_pairs]
    and unit vectors ``u`` [n_pairs, 3] pointing from sender to receiver. Each unordered pair appears
    twice (once per direction)."""

    receiver: np.ndarray
    sender: np.ndarray
    d: np.ndarray
    u: np.ndarray

    @classmethod
    def of(cls, positions: np.ndarray, cell: np.ndarray, pbc: Sequence[bool], cutoff: float) -> "PairGeometry":
        (sender, receiver), shifts = neighbour_graph(positions, cell, pbc, cutoff)
        return cls.from_edges(positions, np.stack((sender, receiver)), shifts @ np.asarray(cell, dtype=np.float64))

    @classmethod
    def from_edges(cls, positions: np.ndarray, edge_index: np.ndarray, shifts: np.ndarray) -> "PairGeometry":
        """From a directed edge list (``edge_index`` [2, n] as (sender, receiver), Cartesian
        ``shifts`` [n, 3]), e.g. the model's own Verlet list: no second neighbour search."""
        sender, receiver = edge_index
        vectors = positions[receiver] - positions[sender] + shifts
        d = np.sqrt((vectors**2).sum(axis=1))
        return cls(receiver, sender, d, vectors / np.maximum(d, 1e-300)[:, None])


def union_geometry(parts: Sequence[PairGeometry], n_atoms: int) -> PairGeometry:
    """The pairs of ``len(parts)`` disjoint copies of an ``n_atoms`` system as one geometry: copy
    ``c``'s atom ``i`` becomes atom ``c * n_atoms + i``."""
    offsets = [np.full(len(g.d), c * n_atoms, dtype=np.int64) for c, g in enumerate(parts)]
    offset = np.concatenate(offsets) if offsets else np.zeros(0, dtype=np.int64)
    cat = (lambda xs: np.concatenate(xs)) if parts else (lambda xs: np.zeros(0))
    return PairGeometry(cat([g.receiver for g in parts]) + offset, cat([g.sender for g in parts]) + offset,
                        cat([g.d for g in parts]), np.concatenate([g.u for g in parts]) if parts else np.zeros((0, 3)))


class Prior:
    """A pair potential ``U(r)`` on element pairs. ``in_residual``: the network is trained on the
    residual after subtracting this prior's forces (True), or the prior only acts at inference."""

    kind: str = ""
    in_residual: bool = False

    @property
    def cutoff(self) -> float:
        raise NotImplementedError

    def pair_terms(self, zi: np.ndarray, zj: np.ndarray, d: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        """Energy ``U(d)`` (eV) and ``-dU/dd`` (eV/A) of each pair (numbers ``zi``, ``zj``)."""
        raise NotImplementedError

    def energy_and_forces(
        self, numbers: np.ndarray, positions: np.ndarray, cell: np.ndarray, pbc: Sequence[bool],
        geometry: Optional[PairGeometry] = None,
    ) -> Tuple[float, np.ndarray]:
        """Total energy (eV) and forces [n, 3] (eV/A) of a structure."""
        positions = np.asarray(positions, dtype=np.float64)
        if geometry is None:
            geometry = PairGeometry.of(positions, cell, pbc, self.cutoff)
        keep = geometry.d < self.cutoff
        rec, snd, d, u = geometry.receiver[keep], geometry.sender[keep], geometry.d[keep], geometry.u[keep]
        energy, minus_du = self.pair_terms(numbers[rec], numbers[snd], d)
        forces = np.zeros_like(positions)
        np.add.at(forces, rec, minus_du[:, None] * u)  # on the receiver, along sender -> receiver
        return 0.5 * float(energy.sum()), forces

    def smoothed_forces(
        self, numbers: np.ndarray, positions: np.ndarray, cell: np.ndarray, pbc: Sequence[bool], noise_std: float,
        kT: float,
    ) -> np.ndarray:
        """The prior's forces (eV/A) as seen through Gaussian noise of std ``noise_std`` (A) on every
        atom, at temperature ``kT`` (eV): what the prior contributes to the score of the smoothed
        density. For a pair term over distances of a few Angstrom the smoothing is negligible at
        the noise levels used, so these are the raw forces; bonded terms override it."""
        return self.energy_and_forces(numbers, positions, cell, pbc)[1]

    def replicas_energy_and_forces(
        self, numbers: np.ndarray, positions: np.ndarray, cell: np.ndarray, pbc: Sequence[bool],
        geometry: Optional[PairGeometry] = None,
    ) -> Tuple[float, np.ndarray]:
        """``R`` copies of one system in one cell, in one call: ``numbers`` [n], ``positions``
        [R, n, 3] (A), ``geometry`` the pairs of the copies' disjoint union (indices into the flattened
        [R * n] atoms; default: searched per copy). Returns the energy summed over the copies (eV) and
        the forces [R, n, 3] (eV/A), equal to calling :meth:`energy_and_forces` per copy, without the
        per-copy Python loop (batched replicas: :class:`ase_denoise.md.replicas.ReplicaLangevin`).
        A pair term needs nothing more than the union's pairs."""
        positions = np.asarray(positions, dtype=np.float64)
        copies, n = positions.shape[:2]
        if geometry is None:
            geometry = union_geometry([PairGeometry.of(x, cell, pbc, self.cutoff) for x in positions], n)
        energy, forces = self.energy_and_forces(np.tile(numbers, copies), positions.reshape(-1, 3), cell, pbc, geometry)
        return energy, forces.reshape(copies, n, 3)

    def forces(self, atoms: Atoms) -> np.ndarray:
        """Forces (eV/A) on ``atoms``."""
        return self.energy_and_forces(atoms.numbers, atoms.positions, atoms.cell.array, atoms.pbc)[1]

    def to_dict(self) -> Dict[str, Any]:
        raise NotImplementedError

    def describe(self, names: Optional[Dict[int, str]] = None) -> str:
        """One line for logs and model cards; ``names``: bead names of placeholder numbers."""
        raise NotImplementedError


def check_indices(kind: str, index: np.ndarray, n_atoms: int) -> None:
    if len(index) and index.max() >= n_atoms:
        raise ValueError(f"{kind} prior refers to atom {int(index.max())} but the structure has {n_atoms} atoms: "
                         "bonded priors belong to one molecule's atom order")


def bond_vectors(positions: np.ndarray, cell: np.ndarray, pbc: Sequence[bool], i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """``r_j - r_i`` [..., n, 3] (A) for positions [..., n_atoms, 3], minimum image in periodic directions."""
    vectors = positions[..., j, :] - positions[..., i, :]
    if any(bool(p) for p in pbc):

        vectors = find_mic(vectors.reshape(-1, 3), cell, pbc)[0].reshape(vectors.shape)
    return vectors


def scatter_atoms(shape: Tuple[int, ...], index: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Zeros of ``shape`` [..., n_atoms, 3] with ``values`` [..., m, 3] added at atoms ``index`` [m]."""
    out = np.zeros(shape)
    moved = np.moveaxis(out, -2, 0)  # a view [n_atoms, ..., 3]
    np.add.at(moved, index, np.moveaxis(values, -2, 0))
    return out


class IndexedTerm(Prior):
    """A term on atom *indices* of one molecule (bonds, angles, dihedrals): no neighbour search, and
    positions [R, n_atoms, 3] of ``R`` copies broadcast through its own ``energy_and_forces``."""

    @property
    def cutoff(self) -> float:
        return 0.0  # not a pair term on a neighbour list

    def replicas_energy_and_forces(self, numbers, positions, cell, pbc, geometry=None):
        return self.energy_and_forces(numbers, positions, cell, pbc)


def total_energy_and_forces(
    priors: Sequence[Prior], numbers: np.ndarray, positions: np.ndarray, cell: np.ndarray, pbc: Sequence[bool],
    residual_only: bool = False, geometry: Optional[PairGeometry] = None,
) -> Tuple[float, np.ndarray]:
    """Sum of the priors' energies (eV) and forces [n, 3] (eV/A); ``residual_only``: only the priors
    the network was trained as a residual to (those subtracted from the training target).
    ``geometry``: pairs that cover every chosen prior's cutoff (default: searched here)."""
    positions = np.asarray(positions, dtype=np.float64)
    chosen = [p for p in priors if p.in_residual or not residual_only]
    energy, forces = 0.0, np.zeros_like(positions)
    if not chosen:
        return energy, forces
    pair_cutoff = max(p.cutoff for p in chosen)  # 0 for bonded priors, which need no neighbour search
    if geometry is None and pair_cutoff > 0:
        geometry = PairGeometry.of(positions, cell, pbc, pair_cutoff)
    for prior in chosen:
        e, f = prior.energy_and_forces(numbers, positions, cell, pbc, geometry)
        energy, forces = energy + e, forces + f
    return energy, forces


def replicas_total_energy_and_forces(
    priors: Sequence[Prior], numbers: np.ndarray, positions: np.ndarray, cell: np.ndarray, pbc: Sequence[bool],
    geometry: Optional[PairGeometry] = None,
) -> Tuple[float, np.ndarray]:
    """:func:`total_energy_and_forces` of ``R`` copies of one system in one cell at once: ``numbers``
    [n], ``positions`` [R, n, 3] (A); ``geometry``: the pairs of the copies' disjoint union (copy
    ``c``'s atom ``i`` is ``c * n + i``; default: searched here). Returns the energy summed over the
    copies (eV) and the forces [R, n, 3] (eV/A)."""
    positions = np.asarray(positions, dtype=np.float64)
    energy, forces = 0.0, np.zeros_like(positions)
    if not priors:
        return energy, forces
    pair_cutoff = max(p.cutoff for p in priors)
    if geometry is None and pair_cutoff > 0:
        geometry = union_geometry([PairGeometry.of(x, cell, pbc, pair_cutoff) for x in positions], positions.shape[1])
    for prior in priors:
        e, f = prior.replicas_energy_and_forces(numbers, positions, cell, pbc, geometry)
        energy, forces = energy + e, forces + f
    return energy, forces


def total_forces(
    priors: Sequence[Prior], numbers: np.ndarray, positions: np.ndarray, cell: np.ndarray, pbc: Sequence[bool],
    residual_only: bool = False,
) -> np.ndarray:
    """The forces [n, 3] (eV/A) of :func:`total_energy_and_forces`."""
    return total_energy_and_forces(priors, numbers, positions, cell, pbc, residual_only)[1]


def describe(priors: Sequence[Prior], names: Optional[Dict[int, str]] = None) -> List[str]:
    return [p.describe(names) for p in priors]
