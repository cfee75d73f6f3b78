"""Bonded priors of a molecule, learned as a residual: harmonic bonds and angles on atom indices, fitted
by Boltzmann inversion of the data's distributions (as CGnet does)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
from ase import Atoms
from ase.neighborlist import natural_cutoffs, neighbor_list

from .base import IndexedTerm, Prior, bond_vectors, check_indices, scatter_atoms


def _angle_geometry(positions: np.ndarray, cell: np.ndarray, pbc: Sequence[bool], index: np.ndarray):
    """For triples ``index`` [n, 3] (vertex in the middle): the angles (radians), their cosines, the
    unit vectors vertex -> first and vertex -> last atom and those two lengths (A); positions
    [..., n_atoms, 3] give results [..., n] and [..., n, 3]."""
    a = bond_vectors(positions, cell, pbc, index[:, 1], index[:, 0])  # vertex -> i
    b = bond_vectors(positions, cell, pbc, index[:, 1], index[:, 2])  # vertex -> k
    la, lb = np.linalg.norm(a, axis=-1), np.linalg.norm(b, axis=-1)
    ua, ub = a / la[..., None], b / lb[..., None]
    cos = np.clip((ua * ub).sum(axis=-1), -1.0, 1.0)
    return np.arccos(cos), cos, ua, ub, la, lb


@dataclass
class HarmonicBonds(IndexedTerm):
    """``U = sum_b k_b / 2 (r_b - r0_b)^2`` over atom pairs ``bonds`` [(i, j)] (indices into the
    structure), ``r0`` (A) and ``k`` (eV/A^2) per bond. Learned as a residual."""

    bonds: List[Tuple[int, int]]
    r0: List[float]
    k: List[float]
    kind: str = field(default="harmonic_bonds", init=False)
    in_residual: bool = field(default=True, init=False)

    def __post_init__(self) -> None:
        self.bonds = [(int(i), int(j)) for i, j in self.bonds]
        self.r0, self.k = [float(x) for x in self.r0], [float(x) for x in self.k]
        if not (len(self.bonds) == len(self.r0) == len(self.k)) or any(k <= 0 for k in self.k):
            raise ValueError("harmonic bonds need one r0 and one k > 0 per bond")


    def energy_and_forces(self, numbers, positions, cell, pbc, geometry=None):
        return self._energy_and_forces(positions, cell, pbc, np.asarray(self.k))

    def smoothed_forces(self, numbers, positions, cell, pbc, noise_std, kT):
        # the bond length of two atoms each displaced by N(0, sigma^2) per component varies by 2 sigma^2
        # along the bond: a harmonic mode of variance kT/k convolved with it has k / (1 + 2 k sigma^2 / kT)
        k = np.asarray(self.k)
        return self._energy_and_forces(positions, cell, pbc, k / (1.0 + 2.0 * k * noise_std**2 / kT))[1]

    def _energy_and_forces(self, positions, cell, pbc, k):
        # positions [n_atoms, 3], or [R, n_atoms, 3] for copies (replicas_energy_and_forces)
        positions = np.asarray(positions, dtype=np.float64)
        index = np.asarray(self.bonds, dtype=np.int64).reshape(-1, 2)
        check_indices(self.kind, index, positions.shape[-2])
        vectors = bond_vectors(positions, cell, pbc, index[:, 0], index[:, 1])  # i -> j  [..., n_bonds, 3]
        r = np.linalg.norm(vectors, axis=-1)
        stretch = r - np.asarray(self.r0)
        pull = (k * stretch / r)[..., None] * vectors  # force on i: +k (r - r0) u_ij; on j the opposite
        forces = scatter_atoms(positions.shape, index[:, 0], pull) - scatter_atoms(positions.shape, index[:, 1], pull)
        return 0.5 * float((k * stretch**2).sum()), forces


    def to_dict(self) -> Dict[str, Any]:
        return {"kind": self.kind, "bonds": [list(b) for b in self.bonds], "r0": self.r0, "k": self.k}

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> "HarmonicBonds":
        return cls([tuple(b) for b in d["bonds"]], d["r0"], d["k"])

    def describe(self, names: Optional[Dict[int, str]] = None) -> str:
        return (f"harmonic bonds on {len(self.bonds)} atom pairs (r0 {min(self.r0):.3f}-{max(self.r0):.3f} A, "
                f"k {min(self.k):.3g}-{max(self.k):.3g} eV/A^2, fitted to the data); the network learns the residual")


@dataclass
class HarmonicAngles(IndexedTerm):
    """``U = sum_a k_a / 2 (theta_a - theta0_a)^2`` over atom triples ``angles`` [(i, j, k)] with the
    vertex ``j``; ``theta0`` (radians) and ``k`` (eV/rad^2) per angle. Learned as a residual."""

    angles: List[Tuple[int, int, int]]
    theta0: List[float]
    k: List[float]
    kind: str = field(default="harmonic_angles", init=False)
    in_residual: bool = field(default=True, init=False)

    def __post_init__(self) -> None:
        self.angles = [(int(i), int(j), int(k)) for i, j, k in self.angles]
        self.theta0, self.k = [float(x) for x in self.theta0], [float(x) for x in self.k]
        if not (len(self.angles) == len(self.theta0) == len(self.k)) or any(k <= 0 for k in self.k):
            raise ValueError("harmonic angles need one theta0 and one k > 0 per angle")


    def energy_and_forces(self, numbers, positions, cell, pbc, geometry=None):
        return self._energy_and_forces(positions, cell, pbc)

    def smoothed_forces(self, numbers, positions, cell, pbc, noise_std, kT):
        # to first order in the noise, theta varies by sigma^2 |grad theta|^2 summed over its three
        # atoms = 2 sigma^2 (1/a^2 + 1/b^2 - cos(theta)/(a b)) for arms a, b (here at the input's geometry);
        # a harmonic mode of variance kT/k convolved with it has k / (1 + k var / kT)
        return self._energy_and_forces(positions, cell, pbc, noise_std=noise_std, kT=kT)[1]

    def _energy_and_forces(self, positions, cell, pbc, noise_std=0.0, kT=1.0):
        # positions [n_atoms, 3], or [R, n_atoms, 3] for copies (replicas_energy_and_forces)
        positions = np.asarray(positions, dtype=np.float64)
        index = np.asarray(self.angles, dtype=np.int64).reshape(-1, 3)
        check_indices(self.kind, index, positions.shape[-2])
        theta, cos, ua, ub, la, lb = _angle_geometry(positions, cell, pbc, index)
        sin = np.maximum(np.sqrt(1.0 - cos**2), 1e-12)
        kk = np.asarray(self.k)
        if noise_std > 0:
            variance = 2.0 * noise_std**2 * (1.0 / la**2 + 1.0 / lb**2 - cos / (la * lb))
            kk = kk / (1.0 + kk * variance / kT)
        dtheta = theta - np.asarray(self.theta0)
        # d theta / d r_i = -(u_b - cos u_a) / (|a| sin), d theta / d r_k = -(u_a - cos u_b) / (|b| sin)
        grad_i = -(ub - cos[..., None] * ua) / (la * sin)[..., None]
        grad_k = -(ua - cos[..., None] * ub) / (lb * sin)[..., None]
        fi, fk = -(kk * dtheta)[..., None] * grad_i, -(kk * dtheta)[..., None] * grad_k
        forces = (scatter_atoms(positions.shape, index[:, 0], fi) + scatter_atoms(positions.shape, index[:, 2], fk)
                  - scatter_atoms(positions.shape, index[:, 1], fi + fk))
        return 0.5 * float((kk * dtheta**2).sum()), forces


    def to_dict(self) -> Dict[str, Any]:
        return {"kind": self.kind, "angles": [list(t) for t in self.angles], "theta0": self.theta0, "k": self.k}

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> "HarmonicAngles":
        return cls([tuple(t) for t in d["angles"]], d["theta0"], d["k"])

    def describe(self, names: Optional[Dict[int, str]] = None) -> str:
        deg = np.degrees(self.theta0)
        return (f"harmonic angles on {len(self.angles)} atom triples (theta0 {deg.min():.1f}-{deg.max():.1f} deg, "
                f"k {min(self.k):.3g}-{max(self.k):.3g} eV/rad^2, fitted to the data); the network learns the residual")


def molecule_topology(atoms: Atoms, scale: float = 1.15) -> Tuple[List[Tuple[int, int]], List[Tuple[int, int, int]]]:
    """Bonds (pairs closer than ``scale`` times the sum of ASE's natural covalent radii) and the
    angles they make (triples ``i-j-k`` with ``j`` bonded to both), from one structure."""
    i, j = neighbor_list("ij", atoms, natural_cutoffs(atoms, mult=scale))
    bonds = sorted({(int(a), int(b)) for a, b in zip(i, j) if a < b})
    neighbours: Dict[int, List[int]] = {}
    for a, b in bonds:
        neighbours.setdefault(a, []).append(b)
        neighbours.setdefault(b, []).append(a)
    angles = sorted({(min(x, y), j, max(x, y)) for j, nb in neighbours.items() for x in nb for y in nb if x != y})
    return bonds, angles


def _inverted(x: np.ndarray, kT: float, weight: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Per column of ``x`` [frames, terms]: minimum and stiffness of the harmonic ``U`` with
    ``P(x) ~ J(x) exp(-U/kT)``, from the mean and variance of ``x`` weighted by ``1/J`` (``weight``)."""
    weight = weight / weight.sum(axis=0)
    mean = (weight * x).sum(axis=0)
    var = (weight * (x - mean) ** 2).sum(axis=0)
    return mean, kT / var


def fit_bonded_priors(
    frames: Sequence[Atoms], kT: float, bonds: Optional[Sequence[Tuple[int, int]]] = None,
    angles: Optional[Sequence[Tuple[int, int, int]]] = None,
) -> List[Prior]:
    """Harmonic bonds and angles by Boltzmann inversion: per term, the mean of its distribution in
    ``frames`` and ``k = kT / variance`` (eV/A^2, eV/rad^2), after dividing out the Jacobian of the
    coordinate (``r^2`` for a length, ``sin theta`` for an angle), so a harmonic term is recovered
    exactly (without it a bond's minimum shifts by ``2 kT / (k r0)``). ``bonds``/``angles``: atom indices
    (default: :func:`molecule_topology` of the first frame). Every frame must have the same atoms."""
    frames = list(frames)
    if not frames:
        raise ValueError("no frames to fit bonded priors to")
    n = len(frames[0])
    if any(len(a) != n or not np.array_equal(a.numbers, frames[0].numbers) for a in frames):
        raise ValueError("bonded priors need every frame to hold the same molecule (same atoms in the same order)")
    if bonds is None or angles is None:
        found_bonds, found_angles = molecule_topology(frames[0])
        bonds = found_bonds if bonds is None else bonds
        angles = found_angles if angles is None else angles
    priors: List[Prior] = []
    if len(bonds):
        index = np.asarray(bonds, dtype=np.int64)
        r = np.array([np.linalg.norm(bond_vectors(a.positions, a.cell.array, a.pbc, index[:, 0], index[:, 1]), axis=1)
                      for a in frames])  # [frames, bonds]
        priors.append(HarmonicBonds([tuple(b) for b in index], *_inverted(r, kT, 1.0 / r**2)))
    if len(angles):
        index = np.asarray(angles, dtype=np.int64).reshape(-1, 3)
        theta = np.array([_angle_geometry(a.positions, a.cell.array, a.pbc, index)[0] for a in frames])
        priors.append(HarmonicAngles([tuple(t) for t in index], *_inverted(theta, kT, 1.0 / np.maximum(np.sin(theta), 1e-6))))
    return priors
