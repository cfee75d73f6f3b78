"""Priors: pair terms the network does not have to learn (docs/beyond-one-sigma.md, "Priors").

A coarse-grained model knows nothing below the closest approach in its data: MD that gets there
(more likely the larger sigma is) falls into a hole no sample ever reached. And a long-ranged term
such as screened Coulomb is better given than learned. The kinds of prior below, each a potential
evaluated in float64 numpy, stored with the model (``PhysicsConfig.priors``, JSON) and shown in its
card:

:class:`RepulsiveWall`
    per element pair, zero at and beyond ``r_on`` (the pair's closest approach in the training data,
    :func:`fit_repulsive_wall`) and ``U = epsilon * ((r_on - r) / width)^4`` below it: smooth (energy,
    force and its derivative vanish at ``r_on``) and steep (16 epsilon at ``2 width`` inside).
    It acts only where the data have no samples, so it is *not* part of the training target (at noisy
    inputs its labels would blow up); :func:`ase_denoise.inference.predict` adds it to the forces.
:class:`NonBondedWall`
    the same wall on a molecule's non-bonded pairs only: the pairs its bonded priors hold (each
    bond's atoms, each angle's ends) are excluded, as a molecular force field excludes them, and
    each element pair's ``r_on`` is the closest approach of its non-bonded instances (all-atom
    alanine dipeptide: two hydrogens four bonds apart, 1.95 A apart at their closest in the data,
    were not stopped by anything at 0.8 A; benchmarks/ala2/README.md). ``priors=["bonded",
    "nonbonded_wall"]`` fits it.
:class:`DSFCoulomb`
    damped shifted force Coulomb (Fennell and Gezelter, J. Chem. Phys. 124, 234104 (2006)) with
    per-element charges (e), a relative permittivity, the damping ``alpha`` (1/Angstrom) and a cutoff
    (Angstrom): the same functional form as LAMMPS' ``pair_style coul/dsf alpha cutoff`` with
    ``dielectric eps_r`` (and an OpenMM ``CustomNonbondedForce`` of the same expression), so an MD
    engine can compute the identical term itself and the model's copy be switched off there. It acts
    where data are, so the network learns the residual (delta learning): training subtracts
    ``sigma * F_prior(y) / kT`` from the target at the noisy input ``y`` (:mod:`ase_denoise.losses`).
:class:`EwaldCoulomb`
    the full periodic Coulomb sum of the charges in a dielectric (Ewald: real-space ``erfc`` pairs
    within a cutoff plus the reciprocal-space sum), the term LAMMPS computes with ``pair_style
    coul/long`` + ``kspace_style pppm`` (or ``ewald``) + ``kspace_modify gewald alpha`` +
    ``dielectric eps_r``: the design paper's set-up for ionic CG systems, where LAMMPS brings the
    electrostatics. Also learned as a residual. :func:`ase_denoise.integrations.lammps.coulomb_commands`
    writes the LAMMPS commands of the identical term.
:class:`HarmonicBonds`, :class:`HarmonicAngles`
    bonded terms of a molecule, on atom *indices* (the molecule's topology), fitted by Boltzmann
    inversion of each bond's length and each angle's distribution in the data (mean and ``kT /
    variance``, as CGnet does: Wang et al., ACS Cent. Sci. 5, 755 (2019)): :func:`fit_bonded_priors`.
    They act where data are, so they are learned as a residual; stiff modes are then given rather
    than learned, the network learns what the harmonic picture leaves out.
:class:`PairTable`
    a tabulated pair correction per element pair, made after training by structure refinement
    (:func:`ase_denoise.md_validation.refine_structure`: iterative Boltzmann inversion of the model's
    MD RDFs against the data's). Added at inference only, like the wall.

Forces are in eV/Angstrom, energies in eV, lengths in Angstrom.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np
from ase import Atoms
from ase.data import chemical_symbols
from scipy.special import erfc

from .neighbours import neighbour_graph

#: Coulomb's constant e^2 / (4 pi eps0) in eV * Angstrom
COULOMB_EV_A = 14.399645478425668


def _pair_key(z1: int, z2: int) -> Tuple[int, int]:
    return (min(int(z1), int(z2)), max(int(z1), int(z2)))


def species_name(z: int, names: Optional[Dict[int, str]] = None) -> str:
    """A species' name in messages: its bead name where ``names`` ({number: name}, a coarse-grained
    model's ``ModelConfig.bead_names``) has one, else its chemical symbol."""
    named = {int(k): str(v) for k, v in (names or {}).items()}
    return named.get(int(z), chemical_symbols[int(z)] if 0 <= int(z) < len(chemical_symbols) else str(z))


def _charges_of(charges: Dict[int, float], numbers: np.ndarray) -> np.ndarray:
    """Charge (e) of each atomic number in ``numbers`` (0 for elements without one)."""
    table = np.zeros(119)
    for z, q in charges.items():
        table[z] = q
    return table[np.asarray(numbers, dtype=np.int64)]


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
        per-copy Python loop (batched replicas: :class:`ase_denoise.replicas.ReplicaLangevin`).
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
        self.r_on = {_pair_key(*k): float(v) for k, v in self.r_on.items()}
        if not (self.epsilon > 0 and self.width > 0) or any(v <= 0 for v in self.r_on.values()):
            raise ValueError(f"repulsive wall needs epsilon > 0, width > 0 and r_on > 0, got {self}")

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

    def __post_init__(self) -> None:
        self.charges = {int(z): float(q) for z, q in self.charges.items()}
        if not (self.relative_permittivity > 0 and self.alpha > 0 and self.r_cut > 0 and 0 < self.accuracy < 1):
            raise ValueError(f"Ewald Coulomb needs relative_permittivity > 0, alpha > 0, cutoff > 0 and "
                             f"0 < accuracy < 1, got {self}")

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

    def kvectors(self, cell: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        """Half of the reciprocal vectors with ``0 < |k| < k_cut``, one of each ``+-k``: their integer
        coordinates ``n`` [n_k, 3] (``k = n @ b``, ``b`` the reciprocal basis) and ``k`` [n_k, 3] (1/A)."""
        key = np.asarray(cell, dtype=np.float64).tobytes()
        if self._kcache is not None and self._kcache[0] == key:
            return self._kcache[1]
        recip = 2.0 * math.pi * np.linalg.inv(cell).T  # rows b_i, a_i . b_j = 2 pi delta_ij
        n_max = [int(math.ceil(self.k_cut * np.linalg.norm(a) / (2.0 * math.pi))) for a in cell]
        n = np.stack(np.meshgrid(*[np.arange(-m, m + 1) for m in n_max], indexing="ij"), axis=-1).reshape(-1, 3)
        # one of each pair (n, -n): the first non-zero component positive
        half = (n[:, 0] > 0) | ((n[:, 0] == 0) & (n[:, 1] > 0)) | ((n[:, 0] == 0) & (n[:, 1] == 0) & (n[:, 2] > 0))
        n = n[half]
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


@dataclass
class PairTable(Prior):
    """A tabulated pair potential per element pair: ``U(r)`` on a uniform grid ``r`` (Angstrom, eV),
    interpolated by a cubic spline, ``-dU/dr`` its derivative. Below the grid's first point ``U`` is
    held at its first value (no force: the repulsive wall acts there), beyond the last it is zero (the
    table must end at zero; both makers below taper it so).

    Made by structure refinement (iterative Boltzmann inversion against the data's pair structure,
    :func:`ase_denoise.md_validation.refine_structure`) or by the mean-force correction (Kirkwood's
    relation on the data frames, :func:`ase_denoise.mean_force.correct_mean_forces`): a correction the
    network does not have, added at inference only, so it is *not* part of the training target.
    ``source`` says how it was made.
    """

    r: List[float]
    u: Dict[Tuple[int, int], List[float]]
    source: str = ""
    kind: str = field(default="pair_table", init=False)
    in_residual: bool = field(default=False, init=False)

    def __post_init__(self) -> None:
        from scipy.interpolate import CubicSpline

        self.r = [float(x) for x in self.r]
        self.u = {_pair_key(*k): [float(x) for x in v] for k, v in self.u.items()}
        grid = np.asarray(self.r)
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


def _check_indices(kind: str, index: np.ndarray, n_atoms: int) -> None:
    if len(index) and index.max() >= n_atoms:
        raise ValueError(f"{kind} prior refers to atom {int(index.max())} but the structure has {n_atoms} atoms: "
                         "bonded priors belong to one molecule's atom order")


def _bond_vectors(positions: np.ndarray, cell: np.ndarray, pbc: Sequence[bool], i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """``r_j - r_i`` [..., n, 3] (A) for positions [..., n_atoms, 3], minimum image in periodic directions."""
    vectors = positions[..., j, :] - positions[..., i, :]
    if any(bool(p) for p in pbc):
        from ase.geometry import find_mic

        vectors = find_mic(vectors.reshape(-1, 3), cell, pbc)[0].reshape(vectors.shape)
    return vectors


def _scatter(shape: Tuple[int, ...], index: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Zeros of ``shape`` [..., n_atoms, 3] with ``values`` [..., m, 3] added at atoms ``index`` [m]."""
    out = np.zeros(shape)
    moved = np.moveaxis(out, -2, 0)  # a view [n_atoms, ..., 3]
    np.add.at(moved, index, np.moveaxis(values, -2, 0))
    return out


def _angle_geometry(positions: np.ndarray, cell: np.ndarray, pbc: Sequence[bool], index: np.ndarray):
    """For triples ``index`` [n, 3] (vertex in the middle): the angles (radians), their cosines, the
    unit vectors vertex -> first and vertex -> last atom and those two lengths (A); positions
    [..., n_atoms, 3] give results [..., n] and [..., n, 3]."""
    a = _bond_vectors(positions, cell, pbc, index[:, 1], index[:, 0])  # vertex -> i
    b = _bond_vectors(positions, cell, pbc, index[:, 1], index[:, 2])  # vertex -> k
    la, lb = np.linalg.norm(a, axis=-1), np.linalg.norm(b, axis=-1)
    ua, ub = a / la[..., None], b / lb[..., None]
    cos = np.clip((ua * ub).sum(axis=-1), -1.0, 1.0)
    return np.arccos(cos), cos, ua, ub, la, lb


class _IndexedTerm(Prior):
    """A term on atom *indices* of one molecule (bonds, angles, dihedrals): no neighbour search, and
    positions [R, n_atoms, 3] of ``R`` copies broadcast through its own ``energy_and_forces``."""

    @property
    def cutoff(self) -> float:
        return 0.0  # not a pair term on a neighbour list

    def replicas_energy_and_forces(self, numbers, positions, cell, pbc, geometry=None):
        return self.energy_and_forces(numbers, positions, cell, pbc)


@dataclass
class HarmonicBonds(_IndexedTerm):
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
        _check_indices(self.kind, index, positions.shape[-2])
        vectors = _bond_vectors(positions, cell, pbc, index[:, 0], index[:, 1])  # i -> j  [..., n_bonds, 3]
        r = np.linalg.norm(vectors, axis=-1)
        stretch = r - np.asarray(self.r0)
        pull = (k * stretch / r)[..., None] * vectors  # force on i: +k (r - r0) u_ij; on j the opposite
        forces = _scatter(positions.shape, index[:, 0], pull) - _scatter(positions.shape, index[:, 1], pull)
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
class HarmonicAngles(_IndexedTerm):
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
        _check_indices(self.kind, index, positions.shape[-2])
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
        forces = (_scatter(positions.shape, index[:, 0], fi) + _scatter(positions.shape, index[:, 2], fk)
                  - _scatter(positions.shape, index[:, 1], fi + fk))
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


def _dihedral_geometry(positions: np.ndarray, cell: np.ndarray, pbc: Sequence[bool], index: np.ndarray):
    """For quadruples ``index`` [n, 4]: the dihedral angles (radians, in (-pi, pi], IUPAC: 180 degrees
    trans, the sign of ASE's ``get_dihedrals``) and their gradients with respect to the four atoms
    [..., n, 4, 3] (1/A), for positions [..., n_atoms, 3] (Blondel and Karplus, J. Comput. Chem. 17,
    1132 (1996))."""
    b1 = _bond_vectors(positions, cell, pbc, index[:, 0], index[:, 1])  # i -> j  [..., n, 3]
    b2 = _bond_vectors(positions, cell, pbc, index[:, 1], index[:, 2])  # j -> k
    b3 = _bond_vectors(positions, cell, pbc, index[:, 2], index[:, 3])  # k -> l
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
class Dihedrals(_IndexedTerm):
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
        _check_indices(self.kind, index, positions.shape[-2])
        phi, grad = _dihedral_geometry(positions, cell, pbc, index)  # [..., n], [..., n, 4, 3]
        energy, slope = self._terms(phi)
        forces = np.zeros_like(positions)
        for a in range(4):
            forces += _scatter(positions.shape, index[:, a], -slope[..., None] * grad[..., a, :])
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


def parse_dihedrals(spec: str) -> List[Tuple[int, int, int, int]]:
    """``"4-6-8-14,6-8-14-16"`` (the string after ``dihedrals:`` in ``priors`` and ``--prior``) ->
    atom index quadruples; anything else is refused with the expected form."""
    try:
        quads = [tuple(int(x) for x in part.split("-")) for part in spec.split(",") if part.strip()]
    except ValueError:
        quads = []
    if not quads or any(len(q) != 4 or min(q) < 0 for q in quads):
        raise ValueError(f"dihedrals {spec!r}: expected atom index quadruples such as '4-6-8-14,6-8-14-16' "
                         "(0-based indices i-j-k-l, comma-separated)")
    return quads


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
    _check_indices("dihedrals", index, n)
    return np.array([_dihedral_geometry(a.positions, a.cell.array, a.pbc, index)[0] for a in frames]).reshape(-1, len(index))


def _exponential_family_fit(basis_grid: np.ndarray, moments: np.ndarray) -> np.ndarray:
    """The ``theta`` [F] of the density ``exp(basis . theta) / Z`` on a uniform grid (``basis_grid``
    [grid, F]: the basis functions at the grid points) whose expected basis equals ``moments`` [F]:
    the maximum-likelihood fit of an exponential family, a convex problem (BFGS on ``log Z - moments .
    theta``, ``Z`` the grid mean)."""
    from scipy.optimize import minimize

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


def molecule_topology(atoms: Atoms, scale: float = 1.15) -> Tuple[List[Tuple[int, int]], List[Tuple[int, int, int]]]:
    """Bonds (pairs closer than ``scale`` times the sum of ASE's natural covalent radii) and the
    angles they make (triples ``i-j-k`` with ``j`` bonded to both), from one structure."""
    from ase.neighborlist import natural_cutoffs, neighbor_list

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
        r = np.array([np.linalg.norm(_bond_vectors(a.positions, a.cell.array, a.pbc, index[:, 0], index[:, 1]), axis=1)
                      for a in frames])  # [frames, bonds]
        priors.append(HarmonicBonds([tuple(b) for b in index], *_inverted(r, kT, 1.0 / r**2)))
    if len(angles):
        index = np.asarray(angles, dtype=np.int64).reshape(-1, 3)
        theta = np.array([_angle_geometry(a.positions, a.cell.array, a.pbc, index)[0] for a in frames])
        priors.append(HarmonicAngles([tuple(t) for t in index], *_inverted(theta, kT, 1.0 / np.maximum(np.sin(theta), 1e-6))))
    return priors


def _pair_frequencies(orders: int) -> np.ndarray:
    """The frequencies ``(m, n)`` [K, 2] of a real two-dimensional Fourier series up to ``orders`` in
    each angle, one of each ``+-(m, n)`` pair: ``(0, 1..M)`` then ``(1..M, -M..M)``; K = 2 M (M + 1)."""
    return np.array([(0, n) for n in range(1, orders + 1)]
                    + [(m, n) for m in range(1, orders + 1) for n in range(-orders, orders + 1)], dtype=np.float64)


def _orders_of(n_frequencies: int) -> float:
    """``M`` for ``K = 2 M (M + 1)`` frequencies (:func:`_pair_frequencies`); not whole for other ``K``."""
    return (np.sqrt(1.0 + 2.0 * n_frequencies) - 1.0) / 2.0


@dataclass
class DihedralPairCorrection(_IndexedTerm):
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
        _check_indices(self.kind, index, positions.shape[-2])
        angle, grad = _dihedral_geometry(positions, cell, pbc, index)  # [..., 2 P], [..., 2 P, 4, 3]
        energy, slope = self._terms(angle.reshape(*angle.shape[:-1], -1, 2))
        slope = slope.reshape(angle.shape)
        forces = np.zeros_like(positions)
        for a in range(4):
            forces += _scatter(positions.shape, index[:, a], -slope[..., None] * grad[..., a, :])
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


_KINDS = {"repulsive_wall": RepulsiveWall, "nonbonded_wall": NonBondedWall, "coulomb_dsf": DSFCoulomb,
          "coulomb_ewald": EwaldCoulomb, "harmonic_bonds": HarmonicBonds, "harmonic_angles": HarmonicAngles,
          "dihedrals": Dihedrals, "dihedral_correction": DihedralCorrection,
          "dihedral_pair_correction": DihedralPairCorrection,
          "pair_table": PairTable}


def prior_from_dict(d: Dict[str, Any]) -> Prior:
    """A prior from its JSON form; unknown kinds and missing entries are refused (ValueError naming them)."""
    kind = d.get("kind")
    if kind not in _KINDS:
        raise ValueError(f"unknown prior kind {kind!r}; known: {sorted(_KINDS)}")
    try:
        return _KINDS[kind].from_dict(d)
    except KeyError as exc:
        raise ValueError(f"prior of kind {kind!r} without its {exc.args[0]!r} entry") from None


def fit_repulsive_wall(
    frames: Iterable[Atoms], kT: float, strength_kT: float = 1.0, width: float = 0.1, cutoff: float = 6.0,
    exclude: Optional[Iterable[Tuple[int, int]]] = None,
) -> RepulsiveWall:
    """A wall per element pair starting at the pair's closest approach in ``frames`` (Angstrom).

    ``epsilon = strength_kT * kT`` (eV): the wall costs ``strength_kT`` kT at ``width`` below the
    closest approach and 16 times that at twice the width. Pairs never seen within ``cutoff`` get no
    wall. The wall is zero wherever the data have samples.

    ``exclude``: atom index pairs of a molecule that bonded priors hold (e.g.
    :func:`ase_denoise.suggest.pairs_held_by_priors`): they are left out of the closest approaches and
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
        for a, b in {_pair_key(x, y) for x, y in zip(zi, zj)}:
            mask = ((zi == a) & (zj == b)) | ((zi == b) & (zj == a))
            closest[(a, b)] = min(closest.get((a, b), np.inf), float(d[mask].min()))
    if not closest:
        raise ValueError(f"no pair of atoms within {cutoff} A in the frames: nothing to fit a wall to")
    if excluded:
        return NonBondedWall(closest, epsilon=strength_kT * kT, width=width, exclude=excluded, n_atoms=n_atoms)
    return RepulsiveWall(closest, epsilon=strength_kT * kT, width=width)


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
