"""Coulomb priors, learned as a residual: damped shifted force (LAMMPS ``coul/dsf``) and the full
periodic Ewald sum (LAMMPS ``coul/long`` + ``kspace_style pppm``), so an MD engine can compute the
identical term itself (:mod:`ase_denoise.integrations`)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Dict, Optional, Tuple

import numpy as np
from scipy.special import erfc

from .base import MAX_KVECTORS, MAX_PRIOR_CUTOFF, PairGeometry, Prior, check_range, species_name, union_geometry


#: Coulomb's constant e^2 / (4 pi eps0) in eV * Angstrom
COULOMB_EV_A = 14.399645478425668


def first_nonzero_positive(n: np.ndarray) -> np.ndarray:
    """Rows of the integer vectors ``n`` [m, 3] whose first non-zero component is positive: one of each
    pair ``(n, -n)`` (reciprocal vectors, or a pair's periodic-image shifts)."""
    return (n[:, 0] > 0) | ((n[:, 0] == 0) & (n[:, 1] > 0)) | ((n[:, 0] == 0) & (n[:, 1] == 0) & (n[:, 2] > 0))


def _charges_of(charges: Dict[int, float], numbers: np.ndarray) -> np.ndarray:
    """Charge (e) of each atomic number in ``numbers`` (0 for elements without one)."""
    table = np.zeros(119)
    for z, q in charges.items():
        table[z] = q
    return table[np.asarray(numbers, dtype=np.int64)]


@dataclass
class DSFCoulomb(Prior):
    """Damped shifted force Coulomb, as LAMMPS ``pair_style coul/dsf alpha cutoff`` + ``dielectric``:

    ``U(r) = C q_i q_j / eps_r * [erfc(a r)/r - erfc(a rc)/rc + (erfc(a rc)/rc^2
    + 2a/sqrt(pi) exp(-a^2 rc^2)/rc) (r - rc)]`` for ``r < rc`` (energy and force go to zero at
    ``rc``), ``C = e^2/(4 pi eps0) = 14.3996 eV A``. ``charges``: {z: e}; ``alpha`` 1/A; ``cutoff`` A.
    LAMMPS' coul/dsf also adds a self-energy per atom (a constant for fixed charges), which changes
    no force.
    """

    charges: Dict[int, float]
    relative_permittivity: float
    alpha: float = 0.2
    r_cut: float = 10.0
    kind: str = field(default="coulomb_dsf", init=False)
    in_residual: bool = field(default=True, init=False)

    def __post_init__(self) -> None:
        self.charges = {int(z): float(q) for z, q in self.charges.items()}
        if not (self.relative_permittivity > 0 and self.alpha >= 0 and self.r_cut > 0):
            raise ValueError(f"DSF Coulomb needs relative_permittivity > 0, alpha >= 0, cutoff > 0, got {self}")
        _check_coulomb(self)

    @property
    def cutoff(self) -> float:
        return self.r_cut

    def pair_terms(self, zi, zj, d):
        qi, qj = _charges_of(self.charges, zi), _charges_of(self.charges, zj)
        a, rc = self.alpha, self.r_cut
        pref = COULOMB_EV_A * qi * qj / self.relative_permittivity
        erfc_rc = float(erfc(a * rc))
        shift_f = erfc_rc / rc**2 + 2.0 * a / math.sqrt(math.pi) * math.exp(-(a * rc) ** 2) / rc
        energy = pref * (erfc(a * d) / d - erfc_rc / rc + shift_f * (d - rc))
        # -dU/dr = pref * [erfc(a r)/r^2 + 2a/sqrt(pi) exp(-a^2 r^2)/r - shift_f]
        minus_du = pref * (erfc(a * d) / d**2 + 2.0 * a / math.sqrt(math.pi) * np.exp(-(a * d) ** 2) / d - shift_f)
        return energy, minus_du

    def to_dict(self) -> Dict[str, Any]:
        return {
            "kind": self.kind, "charges": [[z, q] for z, q in sorted(self.charges.items())],
            "relative_permittivity": self.relative_permittivity, "alpha": self.alpha, "cutoff": self.r_cut,
        }

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> "DSFCoulomb":
        return cls({int(z): float(q) for z, q in d["charges"]}, float(d["relative_permittivity"]),
                   float(d["alpha"]), float(d["cutoff"]))

    def describe(self, names: Optional[Dict[int, str]] = None) -> str:
        charges = ", ".join(f"{species_name(z, names)} {q:+g} e" for z, q in sorted(self.charges.items()))
        return (f"DSF Coulomb (LAMMPS coul/dsf {self.alpha:g} {self.r_cut:g} with dielectric "
                f"{self.relative_permittivity:g}): {charges}; the network learns the residual")


def _check_coulomb(prior) -> None:
    """The documented ranges of a Coulomb prior's parameters (the charges in e, 1/A, A)."""
    check_range(prior.kind, "relative_permittivity", prior.relative_permittivity, 1e-3, 1e4)
    check_range(prior.kind, "alpha", prior.alpha, 0.0, 2.0, " 1/Angstrom")
    check_range(prior.kind, "cutoff", prior.r_cut, 1e-3, MAX_PRIOR_CUTOFF, " Angstrom")
    for q in prior.charges.values():
        check_range(prior.kind, "charge", q, -10.0, 10.0, " e")


@dataclass
class EwaldCoulomb(Prior):
    """Periodic Coulomb energy of point charges in a dielectric, by Ewald summation (3D periodic cells):

    ``E = C/eps_r * [ sum_{i<j, images} q_i q_j erfc(a r)/r                      (r < cutoff)
                    + (2 pi/V) sum_{k != 0, |k| < k_cut} exp(-k^2/4a^2)/k^2 |S(k)|^2
                    - a/sqrt(pi) sum_i q_i^2 - pi Q^2 / (2 V a^2) ]``,

    ``S(k) = sum_j q_j exp(i k.r_j)``, ``Q`` the net charge (the last term, a neutralising
    background, is a constant at fixed volume and changes no force), ``C = 14.3996 eV A``.
    ``charges``: {z: e}; ``alpha``: the splitting parameter ``a`` (1/A, LAMMPS' ``g_ewald``);
    ``r_cut``: real-space cutoff (A); ``accuracy``: the reciprocal sum keeps ``|k| < 2 a
    sqrt(-ln accuracy)``, where the Gaussian factor has fallen to ``accuracy``. The real-space
    truncation error is of order ``erfc(a r_cut)`` (2e-5 for the defaults). This is the term LAMMPS
    computes with ``pair_style coul/long r_cut``, ``kspace_style ewald|pppm <accuracy>``,
    ``kspace_modify gewald a`` and ``dielectric eps_r`` (equal to the accuracy of either sum).
    """

    charges: Dict[int, float]
    relative_permittivity: float
    alpha: float = 0.3
    r_cut: float = 10.0
    accuracy: float = 1e-6
    kind: str = field(default="coulomb_ewald", init=False)
    in_residual: bool = field(default=True, init=False)
    _kcache: Optional[Tuple[Any, ...]] = field(default=None, init=False, repr=False, compare=False)
    _splits: Optional[Tuple[Any, ...]] = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.charges = {int(z): float(q) for z, q in self.charges.items()}
        if not (self.relative_permittivity > 0 and self.alpha > 0 and self.r_cut > 0 and 0 < self.accuracy < 1):
            raise ValueError(f"Ewald Coulomb needs relative_permittivity > 0, alpha > 0, cutoff > 0 and "
                             f"0 < accuracy < 1, got {self}")
        _check_coulomb(self)
        check_range(self.kind, "accuracy", self.accuracy, 1e-16, 0.1)

    @property
    def cutoff(self) -> float:
        return self.r_cut

    @property
    def k_cut(self) -> float:
        """Reciprocal-space cutoff (1/A)."""
        return 2.0 * self.alpha * math.sqrt(-math.log(self.accuracy))

    def pair_terms(self, zi, zj, d):
        """The real-space part: ``C q_i q_j / eps_r * erfc(a r)/r`` and its ``-dU/dr``."""
        a = self.alpha
        pref = COULOMB_EV_A * _charges_of(self.charges, zi) * _charges_of(self.charges, zj) / self.relative_permittivity
        energy = pref * erfc(a * d) / d
        minus_du = pref * (erfc(a * d) / d**2 + 2.0 * a / math.sqrt(math.pi) * np.exp(-(a * d) ** 2) / d)
        return energy, minus_du

    def _grid(self, cell: np.ndarray):
        """The largest integer coordinate per axis of the k-grid ``|k| < k_cut`` spans in ``cell``;
        a grid of more than :data:`MAX_KVECTORS` points is refused, naming the fix."""
        n_max = [int(math.ceil(self.k_cut * np.linalg.norm(a) / (2.0 * math.pi))) for a in np.asarray(cell)]
        if math.prod(2 * m + 1 for m in n_max) > MAX_KVECTORS:
            raise ValueError(f"{self.kind} prior: alpha {self.alpha:g} /A and accuracy {self.accuracy:g} need "
                             f"{math.prod(2 * m + 1 for m in n_max):.3g} reciprocal vectors in this cell (lengths "
                             f"{', '.join(f'{np.linalg.norm(a):.3g}' for a in cell)} A), more than {MAX_KVECTORS:g}; "
                             "a smaller alpha (with a longer real-space cutoff) sums the same energy")
        return n_max

    def split_for(self, cell: np.ndarray, n_atoms: int) -> "EwaldCoulomb":
        """The same sum, split between real and reciprocal space at the least cost for ``n_atoms``
        atoms in ``cell``: this prior, or a copy with ``alpha`` smaller by a factor f (0.4-1) and
        ``r_cut`` longer by 1/f (at most 30 A), so that ``alpha * r_cut``, which sets the real-space
        truncation error ``erfc(alpha r_cut)``, and ``accuracy``, which sets the reciprocal one, are
        unchanged: the energy and forces agree to those errors (3840 LiCl ions: 1.5e-6 eV/A), while
        the reciprocal sum, which grows as atoms x k-vectors (both proportional to the cell's size),
        shrinks as f^3. A copy is used only when it is estimated at least 30 % cheaper (one thread,
        numpy: 8e-9 s per atom and k-vector, 2.4e-6 s per pair with its search); a small cell such as
        the training data's keeps the prior's own split. Cached per cell."""
        cell = np.asarray(cell, dtype=np.float64)
        key = (cell.tobytes(), int(n_atoms))
        if self._splits is not None and self._splits[0] == key:
            return self._splits[1]
        self._grid(cell)  # the prior's own split is refused first if its grid is too large
        volume = abs(float(np.linalg.det(cell)))
        density = n_atoms / max(volume, 1e-300)

        def cost(alpha: float, r_cut: float) -> float:
            k_cut = 2.0 * alpha * math.sqrt(-math.log(self.accuracy))
            n_k = volume * (4.0 / 3.0) * math.pi * k_cut**3 / (2.0 * math.pi) ** 3 / 2.0
            pairs = n_atoms * density * (4.0 / 3.0) * math.pi * r_cut**3 / 2.0
            return 8e-9 * n_atoms * n_k + 2.4e-6 * pairs

        own = cost(self.alpha, self.r_cut)
        options = [(cost(self.alpha * f, self.r_cut / f), f) for f in (0.8, 0.65, 0.5, 0.4)
                   if self.r_cut / f <= MAX_PRIOR_CUTOFF]
        best_cost, best_f = min(options, default=(own, 1.0))
        chosen = self
        if best_cost < 0.7 * own:
            chosen = EwaldCoulomb(self.charges, self.relative_permittivity, self.alpha * best_f, self.r_cut / best_f,
                                  self.accuracy)
        self._splits = (key, chosen)
        return chosen

    def kvectors(self, cell: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        """Half of the reciprocal vectors with ``0 < |k| < k_cut``, one of each ``+-k``: their integer
        coordinates ``n`` [n_k, 3] (``k = n @ b``, ``b`` the reciprocal basis) and ``k`` [n_k, 3] (1/A)."""
        key = np.asarray(cell, dtype=np.float64).tobytes()
        if self._kcache is not None and self._kcache[0] == key:
            return self._kcache[1]
        recip = 2.0 * math.pi * np.linalg.inv(cell).T  # rows b_i, a_i . b_j = 2 pi delta_ij
        n_max = self._grid(cell)
        n = np.stack(np.meshgrid(*[np.arange(-m, m + 1) for m in n_max], indexing="ij"), axis=-1).reshape(-1, 3)
        n = n[first_nonzero_positive(n)]  # one of each pair (n, -n)
        k = n @ recip
        keep = (k**2).sum(axis=1) < self.k_cut**2
        self._kcache = (key, (n[keep], k[keep]))  # NVT: the same cell every call
        return self._kcache[1]

    def _kgrid(self, cell: np.ndarray):
        """The reciprocal sum's bookkeeping for ``cell``, cached with the k-vectors: Gaussian weights
        ``exp(-k^2/4a^2)/k^2`` [n_k], the largest integer coordinate per axis, the distinct
        (n_0, n_1) columns (offset to start at 0) and, per k, its column and its (offset) n_2."""
        n, k = self.kvectors(cell)
        if len(self._kcache) < 3:
            k2 = (k**2).sum(axis=1)
            n_max = np.abs(n).max(axis=0) if len(n) else np.zeros(3, dtype=np.int64)
            columns, column_of_k = np.unique(n[:, :2], axis=0, return_inverse=True)
            self._kcache = (*self._kcache, (np.exp(-k2 / (4.0 * self.alpha**2)) / k2, n_max,
                                            columns + n_max[:2], column_of_k.reshape(-1), n[:, 2] + n_max[2]))
        return (n, k, *self._kcache[2])

    def reciprocal(self, q: np.ndarray, positions: np.ndarray, cell: np.ndarray, copies_per_chunk: int = 2) -> Tuple[float, np.ndarray]:
        """Reciprocal-space energy (eV) and forces (eV/A), before the 1/eps_r and C factors.
        ``positions`` [n, 3], or [R, n, 3] for R copies of one system in ``cell`` (each its own sum:
        batched replicas); the energy is summed over the copies, the forces have the positions' shape.

        ``exp(i k.r) = prod_d exp(i n_d theta_d)`` with ``theta_d = b_d . r``: ``2 n_max + 1`` phases
        per atom and axis, no sine or cosine per atom and k. The k-vectors are grouped by their
        (n_0, n_1) column, so ``S(k)`` for a whole column is one matrix product with the n_2 phases,
        and the forces ``F_i = (8 pi/V) q_i Im[exp(i k.r_i) sum_{half k} w k conj(S)]`` are the same
        product backwards; about 1.5x faster than a product of three gathered phase rows per k."""
        cell = np.asarray(cell, dtype=np.float64)
        volume = abs(float(np.linalg.det(cell)))
        n, k, weight, n_max, columns, column_of_k, n2_of_k = self._kgrid(cell)
        recip = 2.0 * math.pi * np.linalg.inv(cell).T  # rows b_i
        x = positions[None] if positions.ndim == 2 else positions  # [R, n_atoms, 3]
        energy, forces = 0.0, np.zeros_like(x)
        for start in range(0, len(x), copies_per_chunk):  # two copies at a time: the arrays stay in cache
            theta = x[start : start + copies_per_chunk] @ recip.T  # [r, n_atoms, 3]
            phases = [np.exp(1j * np.arange(-n_max[d], n_max[d] + 1)[None, :, None] * theta[:, None, :, d])
                      for d in range(3)]  # [r, 2 n_max + 1, n_atoms]
            p01 = phases[0][:, columns[:, 0]] * phases[1][:, columns[:, 1]]  # [r, columns, n_atoms]
            grid = np.matmul(p01 * q, np.swapaxes(phases[2], 1, 2))  # S on (column, n_2)  [r, columns, 2 n_max + 1]
            structure = grid[:, column_of_k, n2_of_k]  # S(k)  [r, n_k]
            energy += 4.0 * math.pi / volume * float((weight * np.abs(structure) ** 2).sum())  # both +-k
            back = np.zeros((len(theta), 3, len(columns), 2 * n_max[2] + 1), dtype=complex)
            back[:, :, column_of_k, n2_of_k] = (weight * np.conj(structure))[:, None, :] * k.T[None]
            summed = np.matmul(back, phases[2][:, None])  # [r, 3, columns, n_atoms]
            forces[start : start + copies_per_chunk] = np.einsum("rcn,rdcn->rnd", p01, summed).imag
        forces *= 8.0 * math.pi / volume * q[None, :, None]
        return energy, (forces[0] if positions.ndim == 2 else forces)

    def energy_and_forces(self, numbers, positions, cell, pbc, geometry=None):
        energy, forces = self.replicas_energy_and_forces(numbers, np.asarray(positions, dtype=np.float64)[None], cell,
                                                         pbc, geometry)
        return energy, forces[0]

    def replicas_energy_and_forces(self, numbers, positions, cell, pbc, geometry=None):
        # the real-space sum is a pair term on the copies' union; the reciprocal sum, one per copy,
        # vectorised over the copies
        if not all(bool(p) for p in pbc):
            raise ValueError("Ewald Coulomb needs a cell periodic in all three directions; use the DSF Coulomb "
                             "prior (kind 'coulomb_dsf') for other boundaries")
        positions = np.asarray(positions, dtype=np.float64)
        cell = np.asarray(cell, dtype=np.float64)
        copies, n_atoms = positions.shape[:2]
        split = self.split_for(cell, n_atoms)
        if split is not self:  # a large cell: the same sum split more cheaply, with its own pairs at its cutoff
            return split.replicas_energy_and_forces(numbers, positions, cell, pbc)
        if geometry is None:
            geometry = union_geometry([PairGeometry.of(x, cell, pbc, self.cutoff) for x in positions], n_atoms)
        e_real, f_real = Prior.energy_and_forces(self, np.tile(numbers, copies), positions.reshape(-1, 3), cell, pbc,
                                                 geometry)
        q = _charges_of(self.charges, numbers)
        e_rec, f_rec = self.reciprocal(q, positions, cell)
        scale = COULOMB_EV_A / self.relative_permittivity
        volume = abs(float(np.linalg.det(cell)))
        e_const = -scale * (self.alpha / math.sqrt(math.pi) * float((q**2).sum())
                            + math.pi * float(q.sum()) ** 2 / (2.0 * volume * self.alpha**2))
        return e_real + scale * e_rec + copies * e_const, f_real.reshape(positions.shape) + scale * f_rec

    def to_dict(self) -> Dict[str, Any]:
        return {
            "kind": self.kind, "charges": [[z, q] for z, q in sorted(self.charges.items())],
            "relative_permittivity": self.relative_permittivity, "alpha": self.alpha, "cutoff": self.r_cut,
            "accuracy": self.accuracy,
        }

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> "EwaldCoulomb":
        return cls({int(z): float(q) for z, q in d["charges"]}, float(d["relative_permittivity"]),
                   float(d["alpha"]), float(d["cutoff"]), float(d["accuracy"]))

    def describe(self, names: Optional[Dict[int, str]] = None) -> str:
        charges = ", ".join(f"{species_name(z, names)} {q:+g} e" for z, q in sorted(self.charges.items()))
        return (f"Ewald Coulomb (LAMMPS coul/long {self.r_cut:g} + kspace_style pppm {self.accuracy:g} with "
                f"kspace_modify gewald {self.alpha:g} and dielectric {self.relative_permittivity:g}): "
                f"{charges}; the network learns the residual")
