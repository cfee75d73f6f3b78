"""Pair priors added at inference only: the repulsive walls below the data's closest approaches, and
tabulated pair corrections (made by the label-free refinements of :mod:`ase_denoise.refine`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np
from ase import Atoms
from scipy.interpolate import CubicSpline

from .base import PairGeometry, Prior, check_range, pair_key, species_name


@dataclass
class RepulsiveWall(Prior):
    """``U = epsilon * ((r_on - r) / width)^4`` for ``r < r_on``, else 0, per element pair.

    ``r_on``: {(z1, z2): Angstrom} (pairs not listed get no wall); ``epsilon`` (eV); ``width`` (A).
    """

    r_on: Dict[Tuple[int, int], float]
    epsilon: float
    width: float = 0.1
    kind: str = field(default="repulsive_wall", init=False)
    in_residual: bool = field(default=False, init=False)

    def __post_init__(self) -> None:
        self.r_on = {pair_key(*k): float(v) for k, v in self.r_on.items()}
        if not (self.epsilon > 0 and self.width > 0) or any(v <= 0 for v in self.r_on.values()):
            raise ValueError(f"repulsive wall needs epsilon > 0, width > 0 and r_on > 0, got {self}")
        check_range(self.kind, "epsilon", self.epsilon, 1e-9, 1e3, " eV")
        check_range(self.kind, "width", self.width, 1e-4, 10.0, " Angstrom")
        for r_on in self.r_on.values():
            check_range(self.kind, "r_on", r_on, 1e-3, 20.0, " Angstrom")

    @property
    def cutoff(self) -> float:
        return max(self.r_on.values(), default=0.0)

    def pair_terms(self, zi, zj, d):
        r_on = np.zeros_like(d)
        for (a, b), r in self.r_on.items():
            r_on[((zi == a) & (zj == b)) | ((zi == b) & (zj == a))] = r
        x = np.clip((r_on - d) / self.width, 0.0, None)
        return self.epsilon * x**4, 4.0 * self.epsilon / self.width * x**3

    def to_dict(self) -> Dict[str, Any]:
        return {
            "kind": self.kind, "epsilon": self.epsilon, "width": self.width,
            "r_on": [[a, b, r] for (a, b), r in sorted(self.r_on.items())],
        }

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> "RepulsiveWall":
        return cls({(int(a), int(b)): float(r) for a, b, r in d["r_on"]}, float(d["epsilon"]), float(d["width"]))

    def describe(self, names: Optional[Dict[int, str]] = None) -> str:
        pairs = ", ".join(f"{species_name(a, names)}-{species_name(b, names)} {r:.3f} A" for (a, b), r in sorted(self.r_on.items()))
        return (f"repulsive wall U = {self.epsilon:.4g} eV * ((r_on - r)/{self.width:g} A)^4 below r_on "
                f"(the closest approach in the training data): {pairs}; not in the training target")


def _pair_keys(pairs: Sequence[Tuple[int, int]], n_atoms: int) -> np.ndarray:
    """``i * n_atoms + j`` of each pair ``(i, j)``, ``i < j``: keys for :func:`_held_pairs`."""
    return np.array([i * n_atoms + j for i, j in pairs], dtype=np.int64)


def _held_pairs(receiver: np.ndarray, sender: np.ndarray, keys: np.ndarray, n_atoms: int) -> np.ndarray:
    """Which directed pairs are among ``keys`` (:func:`_pair_keys`) within one copy of an
    ``n_atoms`` molecule (atom ``c * n_atoms + i`` is copy ``c``'s atom ``i``)."""
    i, j = receiver % n_atoms, sender % n_atoms
    same_copy = receiver // n_atoms == sender // n_atoms
    return same_copy & np.isin(np.minimum(i, j) * n_atoms + np.maximum(i, j), keys)


@dataclass
class NonBondedWall(RepulsiveWall):
    """A :class:`RepulsiveWall` on the atom pairs of a molecule that no bonded prior holds: the pairs
    ``exclude`` [(i, j)] (indices into a structure of ``n_atoms`` atoms; its bonds' atoms and its
    angles' ends, the 1-2 and 1-3 pairs a molecular force field excludes from its non-bonded terms)
    get no wall, so each element pair's ``r_on`` is the closest approach of its *non-bonded*
    instances in the data (a C...H contact is not allowed down to a C-H bond's length).

    A structure of ``m * n_atoms`` atoms is read as ``m`` copies of the molecule (batched replicas,
    or a box of identical molecules in the same order): the pair ``(c n + i, c n + j)`` is excluded
    for every copy ``c``; any other atom count is refused. At inference only, like the wall.
    """

    exclude: List[Tuple[int, int]] = field(default_factory=list)
    n_atoms: int = 0
    kind: str = field(default="nonbonded_wall", init=False)

    def __post_init__(self) -> None:
        super().__post_init__()
        self.exclude = sorted({(min(int(i), int(j)), max(int(i), int(j))) for i, j in self.exclude})
        self.n_atoms = int(self.n_atoms)
        if self.n_atoms < 1 or any(i == j or i < 0 or j >= self.n_atoms for i, j in self.exclude):
            raise ValueError(f"a non-bonded wall needs n_atoms >= 1 and excluded pairs (i, j), i != j, of atoms "
                             f"0..n_atoms-1; got n_atoms={self.n_atoms}")
        self._keys = _pair_keys(self.exclude, self.n_atoms)

    def energy_and_forces(self, numbers, positions, cell, pbc, geometry=None):
        positions = np.asarray(positions, dtype=np.float64)
        n, total = self.n_atoms, len(positions)
        if total % n:
            raise ValueError(f"{self.kind}: its excluded pairs are for a molecule of {n} atoms; a structure of "
                             f"{total} atoms is not a whole number of copies of it")
        if geometry is None:
            geometry = PairGeometry.of(positions, cell, pbc, self.cutoff)
        rec, snd = geometry.receiver, geometry.sender
        keep = ~_held_pairs(rec, snd, self._keys, n)
        return super().energy_and_forces(numbers, positions, cell, pbc, PairGeometry(
            rec[keep], snd[keep], geometry.d[keep], geometry.u[keep]))

    def to_dict(self) -> Dict[str, Any]:
        return {**super().to_dict(), "exclude": [list(p) for p in self.exclude], "n_atoms": self.n_atoms}

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> "NonBondedWall":
        return cls({(int(a), int(b)): float(r) for a, b, r in d["r_on"]}, float(d["epsilon"]), float(d["width"]),
                   exclude=[tuple(p) for p in d["exclude"]], n_atoms=int(d["n_atoms"]))

    def describe(self, names: Optional[Dict[int, str]] = None) -> str:
        return (super().describe(names).replace("repulsive wall", "non-bonded repulsive wall", 1)
                + f"; on the pairs of the {self.n_atoms}-atom molecule not held by its bonded priors "
                f"({len(self.exclude)} bonded and angle-end pairs excluded)")


@dataclass
class PairTable(Prior):
    """A tabulated pair potential per element pair: ``U(r)`` on a uniform grid ``r`` (Angstrom, eV),
    interpolated by a cubic spline, ``-dU/dr`` its derivative. Below the grid's first point ``U`` is
    held at its first value (no force: the repulsive wall acts there), beyond the last it is zero (the
    table must end at zero; both makers below taper it so).

    Made by structure refinement (iterative Boltzmann inversion against the data's pair structure,
    :func:`ase_denoise.refine.refine_structure`) or by the mean-force correction (Kirkwood's
    relation on the data frames, :func:`ase_denoise.refine.mean_force.correct_mean_forces`): a correction the
    network does not have, added at inference only, so it is *not* part of the training target.
    ``source`` says how it was made.
    """

    r: List[float]
    u: Dict[Tuple[int, int], List[float]]
    source: str = ""
    kind: str = field(default="pair_table", init=False)
    in_residual: bool = field(default=False, init=False)

    def __post_init__(self) -> None:
        self.r = [float(x) for x in self.r]
        self.u = {pair_key(*k): [float(x) for x in v] for k, v in self.u.items()}
        grid = np.asarray(self.r)
        if len(grid) > 100_000:
            raise ValueError(f"pair table: {len(grid)} grid points, more than the 100000 a table may have")
        if len(grid) < 4 or np.any(np.diff(grid) <= 0) or grid[0] < 0:
            raise ValueError(f"pair table needs at least 4 increasing, non-negative grid points, got {len(grid)}")
        for key, values in self.u.items():
            if len(values) != len(grid) or not np.all(np.isfinite(values)):
                raise ValueError(f"pair table for {key}: {len(values)} values for {len(grid)} grid points "
                                 "(all finite needed)")
        self._splines = {k: CubicSpline(grid, np.asarray(v)) for k, v in self.u.items()}

    @property
    def cutoff(self) -> float:
        return self.r[-1] if self.u else 0.0

    def pair_terms(self, zi, zj, d):
        energy, minus_du = np.zeros_like(d), np.zeros_like(d)
        lo, hi = self.r[0], self.r[-1]
        for (a, b), spline in self._splines.items():
            mask = ((zi == a) & (zj == b)) | ((zi == b) & (zj == a))
            x = d[mask]
            inside = x < hi
            e = np.where(inside, spline(np.clip(x, lo, hi)), 0.0)
            f = np.where(inside & (x > lo), -spline(np.clip(x, lo, hi), 1), 0.0)
            energy[mask], minus_du[mask] = e, f
        return energy, minus_du

    def to_dict(self) -> Dict[str, Any]:
        return {"kind": self.kind, "r": list(self.r), "source": self.source,
                "u": [[a, b, list(v)] for (a, b), v in sorted(self.u.items())]}

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> "PairTable":
        return cls([float(x) for x in d["r"]], {(int(a), int(b)): [float(x) for x in v] for a, b, v in d["u"]},
                   str(d.get("source", "")))

    def describe(self, names: Optional[Dict[int, str]] = None) -> str:
        ranges = ", ".join(f"{species_name(a, names)}-{species_name(b, names)} {min(v):+.4f}..{max(v):+.4f} eV"
                           for (a, b), v in sorted(self.u.items()))
        return (f"tabulated pair correction on {self.r[0]:.2f}-{self.r[-1]:.2f} A ({ranges}); "
                f"{self.source or 'source not stated'}; not in the training target")


def fit_repulsive_wall(
    frames: Iterable[Atoms], kT: float, strength_kT: float = 1.0, width: float = 0.1, cutoff: float = 6.0,
    exclude: Optional[Iterable[Tuple[int, int]]] = None,
) -> RepulsiveWall:
    """A wall per element pair starting at the pair's closest approach in ``frames`` (Angstrom).

    ``epsilon = strength_kT * kT`` (eV): the wall costs ``strength_kT`` kT at ``width`` below the
    closest approach and 16 times that at twice the width. Pairs never seen within ``cutoff`` get no
    wall. The wall is zero wherever the data have samples.

    ``exclude``: atom index pairs of a molecule that bonded priors hold (e.g.
    :func:`ase_denoise.training.suggest.pairs_held_by_priors`): they are left out of the closest approaches and
    get no wall, and a :class:`NonBondedWall` is returned (every frame must hold the same atoms).
    """
    frames = list(frames)
    excluded = sorted({(min(int(i), int(j)), max(int(i), int(j))) for i, j in (exclude or ())})
    n_atoms = len(frames[0]) if frames else 0
    if excluded and any(len(a) != n_atoms or not np.array_equal(a.numbers, frames[0].numbers) for a in frames):
        raise ValueError("a wall with excluded (bonded) pairs needs every frame to hold the same molecule "
                         "(same atoms in the same order)")
    keys = _pair_keys(excluded, n_atoms)
    closest: Dict[Tuple[int, int], float] = {}
    for atoms in frames:
        geometry = PairGeometry.of(atoms.positions, atoms.cell.array, atoms.pbc, cutoff)
        rec, snd, d = geometry.receiver, geometry.sender, geometry.d
        if excluded:
            free = ~_held_pairs(rec, snd, keys, n_atoms)
            rec, snd, d = rec[free], snd[free], d[free]
        zi, zj = atoms.numbers[rec], atoms.numbers[snd]
        for a, b in {pair_key(x, y) for x, y in zip(zi, zj)}:
            mask = ((zi == a) & (zj == b)) | ((zi == b) & (zj == a))
            closest[(a, b)] = min(closest.get((a, b), np.inf), float(d[mask].min()))
    if not closest:
        raise ValueError(f"no pair of atoms within {cutoff} A in the frames: nothing to fit a wall to")
    if excluded:
        return NonBondedWall(closest, epsilon=strength_kT * kT, width=width, exclude=excluded, n_atoms=n_atoms)
    return RepulsiveWall(closest, epsilon=strength_kT * kT, width=width)
