"""Torsion terms of a molecule: dihedral free energies fitted to the data (learned as a residual), and
the label-free iterative Boltzmann corrections of one dihedral or of a pair of them (added at
inference only; :func:`ase_denoise.refine.refine_torsions` runs the MD they are fitted to)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
from ase import Atoms
from scipy.optimize import minimize

from .base import IndexedTerm, bond_vectors, check_indices, scatter_atoms


def _dihedral_geometry(positions: np.ndarray, cell: np.ndarray, pbc: Sequence[bool], index: np.ndarray):
    """For quadruples ``index`` [n, 4]: the dihedral angles (radians, in (-pi, pi], IUPAC: 180 degrees
    trans, the sign of ASE's ``get_dihedrals``) and their gradients with respect to the four atoms
    [..., n, 4, 3] (1/A), for positions [..., n_atoms, 3] (Blondel and Karplus, J. Comput. Chem. 17,
    1132 (1996))."""
    b1 = bond_vectors(positions, cell, pbc, index[:, 0], index[:, 1])  # i -> j  [..., n, 3]
    b2 = bond_vectors(positions, cell, pbc, index[:, 1], index[:, 2])  # j -> k
    b3 = bond_vectors(positions, cell, pbc, index[:, 2], index[:, 3])  # k -> l
    m, n = np.cross(b1, b2), np.cross(b2, b3)  # normals of the planes ijk and jkl
    lb2 = np.linalg.norm(b2, axis=-1)
    phi = np.arctan2(lb2 * (b1 * n).sum(axis=-1), (m * n).sum(axis=-1))
    mm = np.maximum((m * m).sum(axis=-1), 1e-24)[..., None]
    nn = np.maximum((n * n).sum(axis=-1), 1e-24)[..., None]
    grad_i = -lb2[..., None] * m / mm
    grad_l = lb2[..., None] * n / nn
    p = ((b1 * b2).sum(axis=-1) / lb2**2)[..., None]  # projections of the outer bonds on the axis
    q = ((b3 * b2).sum(axis=-1) / lb2**2)[..., None]
    grad_j = q * grad_l - (1.0 + p) * grad_i
    grad_k = p * grad_i - (1.0 + q) * grad_l
    return phi, np.stack([grad_i, grad_j, grad_k, grad_l], axis=-2)


@dataclass
class Dihedrals(IndexedTerm):
    """Torsion terms ``U_d(phi) = sum_m (a_dm cos(m phi) + b_dm sin(m phi))``, ``m = 1..M``, over atom
    quadruples ``dihedrals`` [(i, j, k, l)] (phi: the IUPAC dihedral of i-j-k-l), coefficients ``cos``
    and ``sin`` (eV) [n_dihedrals][M]: a smooth periodic free energy per torsion, fitted to the data's
    distribution of each dihedral by :func:`fit_dihedral_priors` (the torsion priors of CG protein
    models: Charron et al., arXiv:2310.18278 (2023)). Learned as a residual: where data are, the
    network learns what the one-dimensional picture leaves out; where they thin out (a barrier the data
    crossed a few times, a basin they never reached) the fitted torsion free energy is what is left."""

    dihedrals: List[Tuple[int, int, int, int]]
    cos: List[List[float]]
    sin: List[List[float]]
    kind: str = field(default="dihedrals", init=False)
    in_residual: bool = field(default=True, init=False)

    def __post_init__(self) -> None:
        self.dihedrals = [tuple(int(x) for x in q) for q in self.dihedrals]
        self.cos = [[float(x) for x in row] for row in self.cos]
        self.sin = [[float(x) for x in row] for row in self.sin]
        orders = {len(row) for row in self.cos + self.sin}
        if (any(len(q) != 4 or len(set(q)) != 4 for q in self.dihedrals) or len(self.cos) != len(self.dihedrals)
                or len(self.sin) != len(self.dihedrals) or len(orders) > 1):
            raise ValueError("dihedral priors need four distinct atoms per dihedral and one row of cos and of sin "
                             "coefficients (all of the same length) per dihedral")


    def angles(self, positions: np.ndarray, cell: np.ndarray, pbc: Sequence[bool]) -> np.ndarray:
        """The dihedrals (radians, in (-pi, pi]) [..., n_dihedrals] of positions [..., n_atoms, 3]."""
        index = np.asarray(self.dihedrals, dtype=np.int64).reshape(-1, 4)
        return _dihedral_geometry(np.asarray(positions, dtype=np.float64), cell, pbc, index)[0]

    def profile(self, phi: np.ndarray) -> np.ndarray:
        """``U_d(phi)`` (eV) [..., n_dihedrals] at angles ``phi`` (radians) [..., n_dihedrals]."""
        return self._terms(np.asarray(phi, dtype=np.float64))[0]

    def _terms(self, phi: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        a, b = np.asarray(self.cos), np.asarray(self.sin)  # [n, M]
        orders = np.arange(1, a.shape[-1] + 1)
        mphi = phi[..., None] * orders  # [..., n, M]
        energy = (a * np.cos(mphi) + b * np.sin(mphi)).sum(axis=-1)
        slope = (orders * (b * np.cos(mphi) - a * np.sin(mphi))).sum(axis=-1)  # dU/dphi
        return energy, slope

    def energy_and_forces(self, numbers, positions, cell, pbc, geometry=None):
        # positions [n_atoms, 3], or [R, n_atoms, 3] for copies (replicas_energy_and_forces)
        positions = np.asarray(positions, dtype=np.float64)
        index = np.asarray(self.dihedrals, dtype=np.int64).reshape(-1, 4)
        check_indices(self.kind, index, positions.shape[-2])
        phi, grad = _dihedral_geometry(positions, cell, pbc, index)  # [..., n], [..., n, 4, 3]
        energy, slope = self._terms(phi)
        forces = np.zeros_like(positions)
        for a in range(4):
            forces += scatter_atoms(positions.shape, index[:, a], -slope[..., None] * grad[..., a, :])
        return float(energy.sum()), forces


    def to_dict(self) -> Dict[str, Any]:
        return {"kind": self.kind, "dihedrals": [list(q) for q in self.dihedrals], "cos": self.cos, "sin": self.sin}

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> "Dihedrals":
        return cls([tuple(q) for q in d["dihedrals"]], d["cos"], d["sin"])

    def _summary(self) -> str:
        """``"<n> torsion(s) (<quadruples>; <M> Fourier orders, spans <min>-<max> eV"`` for the cards."""
        grid = np.linspace(-np.pi, np.pi, 361)
        u = self.profile(np.repeat(grid[:, None], len(self.dihedrals), axis=1))  # [grid, n]
        spans = u.max(axis=0) - u.min(axis=0)
        quads = ", ".join("-".join(str(x) for x in q) for q in self.dihedrals)
        return (f"{len(self.dihedrals)} torsion(s) ({quads}; {len(self.cos[0])} Fourier orders, spans "
                f"{spans.min():.3g}-{spans.max():.3g} eV")

    def describe(self, names: Optional[Dict[int, str]] = None) -> str:
        return f"dihedral free energies on {self._summary()}, fitted to the data); the network learns the residual"


def fit_dihedral_priors(
    frames: Sequence[Atoms], kT: float, dihedrals: Sequence[Tuple[int, int, int, int]], orders: int = 6,
    floor: float = 0.01,
) -> Dihedrals:
    """Torsion free energies by maximum likelihood: per dihedral, the Fourier series ``U(phi)`` of
    ``orders`` orders whose density ``exp(-U/kT)`` best explains the data's angles (a convex fit; the
    Jacobian of a dihedral is flat, so nothing is divided out). ``floor``: the weight of a uniform
    density mixed into the data's, which bounds ``U`` where the data have no samples at about
    ``kT ln(p_max / p_floor)`` (a few kT: ``floor=0.01`` puts alanine dipeptide's never-visited
    ``phi > 0`` 6-7 kT up) instead of letting the coefficients grow without bound. Mixing in a
    uniform density shrinks the data's Fourier moments by ``1 - floor``; that is all it changes.
    Every frame must hold the same molecule."""
    frames = list(frames)
    if not frames:
        raise ValueError("no frames to fit dihedral priors to")
    _check_fourier_fit(orders, floor)
    index = np.asarray(dihedrals, dtype=np.int64).reshape(-1, 4)
    phi = dihedral_angles(frames, index)  # [frames, n]
    cos_rows, sin_rows = _fit_fourier(phi, kT, orders, floor)
    return Dihedrals([tuple(q) for q in index], cos_rows.tolist(), sin_rows.tolist())


def _check_fourier_fit(orders: int, floor: float) -> None:
    if not 0.0 < floor < 1.0 or orders < 1:
        raise ValueError(f"dihedral priors need 0 < floor < 1 and orders >= 1 (got floor={floor}, orders={orders})")


def dihedral_angles(frames: Sequence[Atoms], dihedrals: Sequence[Tuple[int, int, int, int]]) -> np.ndarray:
    """The dihedrals ``i-j-k-l`` (radians, in (-pi, pi], IUPAC sign as ASE's ``get_dihedrals``) of
    every frame [frames, n_dihedrals]; every frame must hold the same molecule."""
    frames = list(frames)
    n = len(frames[0]) if frames else 0
    if any(len(a) != n or not np.array_equal(a.numbers, frames[0].numbers) for a in frames):
        raise ValueError("dihedral priors need every frame to hold the same molecule (same atoms in the same order)")
    index = np.asarray(dihedrals, dtype=np.int64).reshape(-1, 4)
    check_indices("dihedrals", index, n)
    return np.array([_dihedral_geometry(a.positions, a.cell.array, a.pbc, index)[0] for a in frames]).reshape(-1, len(index))


def _exponential_family_fit(basis_grid: np.ndarray, moments: np.ndarray) -> np.ndarray:
    """The ``theta`` [F] of the density ``exp(basis . theta) / Z`` on a uniform grid (``basis_grid``
    [grid, F]: the basis functions at the grid points) whose expected basis equals ``moments`` [F]:
    the maximum-likelihood fit of an exponential family, a convex problem (BFGS on ``log Z - moments .
    theta``, ``Z`` the grid mean)."""
    def objective(theta):
        log_w = basis_grid @ theta
        top = log_w.max()
        w = np.exp(log_w - top)
        expected = (w @ basis_grid) / w.sum()
        return top + np.log(w.mean()) - moments @ theta, expected - moments

    return minimize(objective, np.zeros(len(moments)), jac=True, method="BFGS", options=dict(gtol=1e-10)).x


def _fit_fourier(phi: np.ndarray, kT: float, orders: int, floor: float) -> Tuple[np.ndarray, np.ndarray]:
    """Per column of ``phi`` [samples, n] (radians): the cos and sin coefficients [n, orders] (eV) of
    the ``U`` whose ``exp(-U/kT)`` is the maximum-likelihood density of ``(1 - floor) * data + floor *
    uniform`` (the exponential family's moment matching, solved by BFGS on a 720-point grid)."""
    m = np.arange(1, orders + 1)
    grid = np.linspace(-np.pi, np.pi, 720, endpoint=False)
    basis_grid = np.concatenate([np.cos(grid[:, None] * m), np.sin(grid[:, None] * m)], axis=1)  # [grid, 2M]
    cos_rows, sin_rows = [], []
    for column in np.asarray(phi, dtype=np.float64).T:
        # target moments of (1 - floor) * data + floor * uniform; theta: the coefficients of -U/kT
        basis = np.concatenate([np.cos(column[:, None] * m), np.sin(column[:, None] * m)], axis=1)  # [frames, 2M]
        theta = _exponential_family_fit(basis_grid, (1.0 - floor) * basis.mean(axis=0))
        cos_rows.append(-kT * theta[:orders])
        sin_rows.append(-kT * theta[orders:])
    return np.array(cos_rows).reshape(-1, orders), np.array(sin_rows).reshape(-1, orders)


@dataclass
class DihedralCorrection(Dihedrals):
    """A torsion term added to a trained model at inference only (``in_residual`` False: the network's
    weights are unchanged), of the same form as :class:`Dihedrals`: the iterative Boltzmann correction
    of :func:`fit_dihedral_correction`, which moves the model's own sampled torsion distributions onto
    the data's."""

    kind: str = field(default="dihedral_correction", init=False)
    in_residual: bool = field(default=False, init=False)

    def describe(self, names: Optional[Dict[int, str]] = None) -> str:
        return (f"iterative Boltzmann correction on {self._summary()}): moves the model's sampled torsion "
                "distributions onto the data's, added at inference only")


def fit_dihedral_correction(
    sampled: np.ndarray, target: np.ndarray, kT: float, dihedrals: Sequence[Tuple[int, int, int, int]],
    previous: Optional[Dihedrals] = None, damping: float = 1.0, orders: int = 6, floor: float = 0.01,
) -> DihedralCorrection:
    """One step of iterative Boltzmann inversion (Reith, Puetz and Mueller-Plathe, J. Comput. Chem. 24,
    1624 (2003)) on torsions: ``dU(phi) = damping * kT ln(p_sampled(phi) / p_target(phi))`` per
    dihedral, added to ``previous`` (the correction the sampling ran with, if any).

    ``sampled``: the dihedrals [samples, n_dihedrals] (radians, as :func:`dihedral_angles`) of a
    model's MD (with ``previous`` in place); ``target``: the same dihedrals of the data it was trained
    on. Both densities are the maximum-likelihood Fourier fits of :func:`fit_dihedral_priors` (same
    ``orders`` and ``floor``), so the step is the difference of two fitted free energies: where the
    model went and the data did not, the term rises by up to the floor's few kT; where neither went, it
    stays put. Coordinates only: no force labels enter. Add the result with
    :func:`ase_denoise.model.with_prior` (it replaces an earlier correction), rerun the MD, repeat."""
    _check_fourier_fit(orders, floor)
    index = np.asarray(dihedrals, dtype=np.int64).reshape(-1, 4)
    sampled = np.asarray(sampled, dtype=np.float64).reshape(-1, len(index))
    target = np.asarray(target, dtype=np.float64).reshape(-1, len(index))
    if len(sampled) < 2 or len(target) < 2 or not (np.isfinite(sampled).all() and np.isfinite(target).all()):
        raise ValueError("a dihedral correction needs at least two finite sampled and two finite target angles "
                         f"per dihedral (got {len(sampled)} and {len(target)})")
    if not 0.0 < damping <= 1.0:
        raise ValueError(f"a dihedral correction's damping must be in (0, 1] (got {damping})")
    a_sampled, b_sampled = _fit_fourier(sampled, kT, orders, floor)
    a_target, b_target = _fit_fourier(target, kT, orders, floor)
    # U = -kT ln p: kT ln(p_sampled / p_target) = U_target - U_sampled
    cos, sin = damping * (a_target - a_sampled), damping * (b_target - b_sampled)
    if previous is not None:
        if [tuple(q) for q in previous.dihedrals] != [tuple(int(x) for x in q) for q in index] or len(previous.cos[0]) != orders:
            raise ValueError("the previous correction must be on the same dihedrals with the same number of Fourier "
                             f"orders (it has {previous.dihedrals} with {len(previous.cos[0])} orders)")
        cos, sin = cos + np.asarray(previous.cos), sin + np.asarray(previous.sin)
    return DihedralCorrection([tuple(q) for q in index], cos.tolist(), sin.tolist())


def _pair_frequencies(orders: int) -> np.ndarray:
    """The frequencies ``(m, n)`` [K, 2] of a real two-dimensional Fourier series up to ``orders`` in
    each angle, one of each ``+-(m, n)`` pair: ``(0, 1..M)`` then ``(1..M, -M..M)``; K = 2 M (M + 1)."""
    return np.array([(0, n) for n in range(1, orders + 1)]
                    + [(m, n) for m in range(1, orders + 1) for n in range(-orders, orders + 1)], dtype=np.float64)


def _orders_of(n_frequencies: int) -> float:
    """``M`` for ``K = 2 M (M + 1)`` frequencies (:func:`_pair_frequencies`); not whole for other ``K``."""
    return (np.sqrt(1.0 + 2.0 * n_frequencies) - 1.0) / 2.0


@dataclass
class DihedralPairCorrection(IndexedTerm):
    """A joint correction on pairs of dihedrals, added at inference only (``in_residual`` False):
    ``U_p(phi, psi) = sum_(m, n) (a_pmn cos(m phi + n psi) + b_pmn sin(m phi + n psi))`` over the
    frequencies of :func:`_pair_frequencies` (``M`` orders in each angle), for dihedral pairs ``pairs``
    [((i, j, k, l), (i', j', k', l'))] (phi: the first, psi: the second), coefficients ``cos`` and
    ``sin`` (eV) [n_pairs][K]. What one-dimensional terms cannot hold: the coupling of the two angles
    (e.g. a peptide's phi/psi map, as CHARMM's CMAP corrects it). Fitted by
    :func:`fit_dihedral_pair_correction`, an iterative Boltzmann step on the joint distribution."""

    pairs: List[Tuple[Tuple[int, int, int, int], Tuple[int, int, int, int]]]
    cos: List[List[float]]
    sin: List[List[float]]
    kind: str = field(default="dihedral_pair_correction", init=False)
    in_residual: bool = field(default=False, init=False)

    def __post_init__(self) -> None:
        self.pairs = [tuple(tuple(int(x) for x in q) for q in pair) for pair in self.pairs]
        self.cos = [[float(x) for x in row] for row in self.cos]
        self.sin = [[float(x) for x in row] for row in self.sin]
        sizes = {len(row) for row in self.cos + self.sin}
        orders = _orders_of(sizes.pop()) if len(sizes) == 1 else 0.0
        if (any(len(pair) != 2 or any(len(q) != 4 or len(set(q)) != 4 for q in pair) for pair in self.pairs)
                or len(self.cos) != len(self.pairs) or len(self.sin) != len(self.pairs) or not self.pairs
                or orders < 1 or orders != int(orders)):
            raise ValueError("a dihedral pair correction needs pairs of two dihedrals of four distinct atoms each and "
                             "one row of cos and of sin coefficients per pair, all of length 2 M (M + 1) for M >= 1 "
                             "orders")

    @property
    def orders(self) -> int:
        """``M``: the highest order in each angle."""
        return int(round(_orders_of(len(self.cos[0]))))

    def profile(self, angles: np.ndarray) -> np.ndarray:
        """``U_p`` (eV) [..., n_pairs] at ``angles`` (radians) [..., n_pairs, 2] (phi, psi per pair)."""
        return self._terms(np.asarray(angles, dtype=np.float64))[0]

    def _terms(self, angles: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        a, b = np.asarray(self.cos), np.asarray(self.sin)  # [P, K]
        freq = _pair_frequencies(self.orders)  # [K, 2]
        arg = angles @ freq.T  # [..., P, K]
        energy = (a * np.cos(arg) + b * np.sin(arg)).sum(axis=-1)
        d_arg = b * np.cos(arg) - a * np.sin(arg)  # dU / d(m phi + n psi)
        return energy, d_arg @ freq  # [..., P], [..., P, 2]: dU/dphi, dU/dpsi

    def energy_and_forces(self, numbers, positions, cell, pbc, geometry=None):
        # positions [n_atoms, 3], or [R, n_atoms, 3] for copies (replicas_energy_and_forces)
        positions = np.asarray(positions, dtype=np.float64)
        index = np.asarray(self.pairs, dtype=np.int64).reshape(-1, 4)  # [2 P, 4]: phi_1, psi_1, phi_2, ...
        check_indices(self.kind, index, positions.shape[-2])
        angle, grad = _dihedral_geometry(positions, cell, pbc, index)  # [..., 2 P], [..., 2 P, 4, 3]
        energy, slope = self._terms(angle.reshape(*angle.shape[:-1], -1, 2))
        slope = slope.reshape(angle.shape)
        forces = np.zeros_like(positions)
        for a in range(4):
            forces += scatter_atoms(positions.shape, index[:, a], -slope[..., None] * grad[..., a, :])
        return float(energy.sum()), forces

    def to_dict(self) -> Dict[str, Any]:
        return {"kind": self.kind, "pairs": [[list(q) for q in pair] for pair in self.pairs], "cos": self.cos,
                "sin": self.sin}

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> "DihedralPairCorrection":
        return cls([tuple(tuple(q) for q in pair) for pair in d["pairs"]], d["cos"], d["sin"])

    def describe(self, names: Optional[Dict[int, str]] = None) -> str:
        grid = np.linspace(-np.pi, np.pi, 73)
        phi, psi = np.meshgrid(grid, grid, indexing="ij")
        angles = np.repeat(np.stack([phi, psi], axis=-1)[..., None, :], len(self.pairs), axis=-2)
        u = self.profile(angles).reshape(-1, len(self.pairs))
        spans = u.max(axis=0) - u.min(axis=0)
        quads = "; ".join(" x ".join("-".join(str(x) for x in q) for q in pair) for pair in self.pairs)
        return (f"joint iterative Boltzmann correction on {len(self.pairs)} dihedral pair(s) ({quads}; {self.orders} "
                f"Fourier orders per angle, spans {spans.min():.3g}-{spans.max():.3g} eV): moves the model's sampled "
                "joint torsion distribution onto the data's, added at inference only")


def _fit_fourier_2d(angles: np.ndarray, kT: float, orders: int, floor: float, points: int = 90) -> Tuple[np.ndarray, np.ndarray]:
    """The cos and sin coefficients [K] (eV) of the two-dimensional ``U(phi, psi)`` (frequencies of
    :func:`_pair_frequencies`) whose ``exp(-U/kT)`` is the maximum-likelihood density of ``(1 - floor)
    * data + floor * uniform`` for ``angles`` [samples, 2] (radians): :func:`_fit_fourier` on the torus
    (moment matching, BFGS on a ``points`` x ``points`` grid)."""
    freq = _pair_frequencies(orders)
    k = len(freq)
    axis = np.linspace(-np.pi, np.pi, points, endpoint=False)
    grid = np.stack(np.meshgrid(axis, axis, indexing="ij"), axis=-1).reshape(-1, 2)
    arg_grid = grid @ freq.T
    basis_grid = np.concatenate([np.cos(arg_grid), np.sin(arg_grid)], axis=1)  # [grid, 2K]
    arg = np.asarray(angles, dtype=np.float64) @ freq.T
    theta = _exponential_family_fit(basis_grid, (1.0 - floor) * np.concatenate([np.cos(arg), np.sin(arg)], axis=1).mean(axis=0))
    return -kT * theta[:k], -kT * theta[k:]


def fit_dihedral_pair_correction(
    sampled: np.ndarray, target: np.ndarray, kT: float,
    pairs: Sequence[Tuple[Tuple[int, int, int, int], Tuple[int, int, int, int]]],
    previous: Optional[DihedralPairCorrection] = None, damping: float = 1.0, orders: int = 3, floor: float = 0.01,
) -> DihedralPairCorrection:
    """One iterative Boltzmann step on the *joint* distribution of each dihedral pair:
    ``dU(phi, psi) = damping * kT ln(p_sampled(phi, psi) / p_target(phi, psi))``, added to ``previous``.
    :func:`fit_dihedral_correction` in two dimensions, for what it cannot reach: the coupling of the
    two angles.

    ``sampled`` and ``target``: the angles [samples, 2 n_pairs] (radians; phi and psi of pair 1, then of
    pair 2, ...; :func:`dihedral_angles` on the pairs' dihedrals in that order) of the model's MD (with
    ``previous``, and whatever other correction it carries, in place) and of its training data. Both
    densities are maximum-likelihood fits of ``exp(-U/kT)`` with ``orders`` orders per angle and a
    ``floor`` of uniform density (:func:`fit_dihedral_priors`), so the step is the difference of two
    smooth, bounded joint free energies. Low orders (3: 24 frequencies) keep the fit well posed for a
    few thousand frames; the step reaches the marginals' coarse shape and the coupling, finer
    one-dimensional detail is the job of a one-dimensional correction beside it. Coordinates only."""
    _check_fourier_fit(orders, floor)
    pairs = [tuple(tuple(int(x) for x in q) for q in pair) for pair in pairs]
    width = 2 * len(pairs)
    sampled = np.asarray(sampled, dtype=np.float64).reshape(-1, width)
    target = np.asarray(target, dtype=np.float64).reshape(-1, width)
    if len(sampled) < 2 or len(target) < 2 or not (np.isfinite(sampled).all() and np.isfinite(target).all()):
        raise ValueError("a dihedral pair correction needs at least two finite sampled and two finite target angle "
                         f"pairs (got {len(sampled)} and {len(target)})")
    if not 0.0 < damping <= 1.0:
        raise ValueError(f"a dihedral pair correction's damping must be in (0, 1] (got {damping})")
    cos, sin = [], []
    for p in range(len(pairs)):
        a_sampled, b_sampled = _fit_fourier_2d(sampled[:, 2 * p: 2 * p + 2], kT, orders, floor)
        a_target, b_target = _fit_fourier_2d(target[:, 2 * p: 2 * p + 2], kT, orders, floor)
        cos.append(damping * (a_target - a_sampled))
        sin.append(damping * (b_target - b_sampled))
    cos, sin = np.array(cos), np.array(sin)
    if previous is not None:
        if previous.pairs != pairs or previous.orders != orders:
            raise ValueError("the previous pair correction must be on the same dihedral pairs with the same number of "
                             f"Fourier orders (it has {previous.pairs} with {previous.orders} orders)")
        cos, sin = cos + np.asarray(previous.cos), sin + np.asarray(previous.sin)
    return DihedralPairCorrection(pairs, cos.tolist(), sin.tolist())
