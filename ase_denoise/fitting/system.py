"""What kind of system a data set holds, read off the frames, and the recipe that kind was validated with.

* **periodic** (a liquid, a solid, a melt): a repulsive wall below the data's closest approaches
  (``wall``); with ``charges``, ions: the full Ewald Coulomb sum in the given dielectric as well, and
  the smallest trained level returned (the ladder's extrapolation amplifies the levels' errors on the
  thinly sampled barrier between contact and separated ion pairs: docs/results/licl.md);
* **molecule** (every frame the same atoms, not periodic, bonded into one connected graph): bonds and
  angles read off the data (:func:`data_topology`), bonded priors subtracted as the noise smooths them,
  a wall on the non-bonded pairs, and torsion priors on the backbone's rotating dihedrals
  (:func:`backbone_dihedrals`) or on those given;
* **cluster** (not periodic, not one molecule): the wall.

Every kind trains on the ladder and the cutoff read off the data (``"auto"``) with antithetic noise
pairs. Each choice carries its reason, printed by ``ase-denoise fit`` and written into the report.

Units: Angstrom, K, e (charges).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
from ase import Atoms
from ase.data import atomic_masses, atomic_numbers, chemical_symbols

from ..config import FitConfig
from ..priors import DSFCoulomb, EwaldCoulomb, molecule_topology, parse_dihedrals
from ..priors.specs import FittedPrior, PriorSpec

#: a bond is at most this factor longer than the nearer of its atoms' nearest neighbours
BOND_FACTOR = 1.25
#: and its length varies by at most this fraction (it stays a bond in every frame)
BOND_SPREAD = 0.1
#: a backbone dihedral is given a torsion prior when its angle spreads over more than this (degrees)
ROTATING_DEG = 25.0
#: frames read to find the topology
TOPOLOGY_FRAMES = 200


@dataclass
class SystemPlan:
    """The kind of system and the recipe for it: priors (short forms or priors), training settings
    the recipe sets, the forces the model returns by default, the label-free corrections to try, and
    the reason for each choice."""

    kind: str  # "periodic", "molecule" or "cluster"
    priors: List[PriorSpec] = field(default_factory=list)
    smoothed_priors: bool = False
    smallest_level: bool = False  # return the smallest trained level, not the extrapolation to sigma -> 0
    corrections: List[str] = field(default_factory=list)  # "mean-force", "torsions"
    dihedrals: List[Tuple[int, int, int, int]] = field(default_factory=list)
    reasons: List[str] = field(default_factory=list)

    def to_dict(self) -> Dict:
        return {"kind": self.kind, "priors": [p if isinstance(p, str) else p.to_dict() for p in self.priors],
                "smoothed_priors": self.smoothed_priors, "smallest_level": self.smallest_level,
                "corrections": list(self.corrections), "dihedrals": [list(q) for q in self.dihedrals],
                "reasons": list(self.reasons)}


def _same_molecule(frames: Sequence[Atoms]) -> bool:
    first = frames[0]
    return all(len(a) == len(first) and np.array_equal(a.numbers, first.numbers) for a in frames)


def is_coarse_grained(atoms: Atoms) -> bool:
    """Beads, not atoms: the masses are not those of the atomic numbers (beads travel as placeholder
    numbers with their own masses, :func:`ase_denoise.data.bead_atoms`)."""
    return not np.allclose(atoms.get_masses(), atomic_masses[atoms.numbers], rtol=1e-3)


def data_topology(frames: Sequence[Atoms]) -> Optional[Tuple[List[Tuple[int, int]], List[Tuple[int, int, int]]]]:
    """Bonds and angles of a molecule, or ``None`` if the frames are not one connected molecule
    (different atoms across frames, periodic, a bond that does not stay one).

    Atoms: the bonds covalent radii give the first frame (:func:`~ase_denoise.priors.molecule_topology`).
    Coarse-grained beads, which have no radii: a pair is bonded when its mean distance is at most
    :data:`BOND_FACTOR` times the farther of the two beads' nearest-neighbour mean distances. Either way
    every bond must vary by at most :data:`BOND_SPREAD` of its length over the frames, and the bonds must
    connect every atom. Angles: every ``i-j-k`` with ``j`` bonded to both."""
    frames = list(frames)
    if not frames or any(a.pbc.any() for a in frames) or not _same_molecule(frames) or len(frames[0]) < 3:
        return None
    sample = frames[:: max(1, len(frames) // TOPOLOGY_FRAMES)]
    x = np.stack([a.positions for a in sample])  # [frames, n, 3]
    d = np.linalg.norm(x[:, :, None, :] - x[:, None, :, :], axis=-1)  # [frames, n, n]
    mean, spread = d.mean(axis=0), d.std(axis=0)
    n = mean.shape[0]
    if is_coarse_grained(frames[0]):
        nearest = np.where(np.eye(n, dtype=bool), np.inf, mean).min(axis=1)
        bonded = (mean <= BOND_FACTOR * np.maximum(nearest[:, None], nearest[None, :])) & ~np.eye(n, dtype=bool)
    else:
        bonded = np.zeros((n, n), dtype=bool)
        for i, j in molecule_topology(frames[0])[0]:
            bonded[i, j] = bonded[j, i] = True
    if np.any(bonded & (spread > BOND_SPREAD * mean)):
        return None  # a "bond" that breaks: not one molecule
    bonds = sorted((int(i), int(j)) for i, j in zip(*np.nonzero(np.triu(bonded))))
    # one connected graph, or it is not one molecule
    seen, todo = {0}, [0]
    while todo:
        i = todo.pop()
        for j in np.nonzero(bonded[i])[0]:
            if int(j) not in seen:
                seen.add(int(j))
                todo.append(int(j))
    if len(seen) != n:
        return None
    angles = sorted({(min(a, c), j, max(a, c)) for j in range(n) for a in np.nonzero(bonded[j])[0]
                     for c in np.nonzero(bonded[j])[0] if a != c})
    return bonds, [tuple(int(v) for v in t) for t in angles]


def _longest_path(nodes: Sequence[int], bonds: Sequence[Tuple[int, int]]) -> List[int]:
    """The longest simple path of the bond graph restricted to ``nodes`` (a molecule's backbone),
    by two breadth-first searches (exact on a tree; the longest shortest path on rings)."""
    keep = set(nodes)
    neighbours: Dict[int, List[int]] = {i: [] for i in keep}
    for i, j in bonds:
        if i in keep and j in keep:
            neighbours[i].append(j)
            neighbours[j].append(i)

    def farthest(start: int) -> List[int]:
        parent, order = {start: None}, [start]
        for i in order:
            for j in sorted(neighbours[i]):
                if j not in parent:
                    parent[j] = i
                    order.append(j)
        path, node = [], order[-1]
        while node is not None:
            path.append(node)
            node = parent[node]
        return path

    if not keep:
        return []
    return farthest(farthest(min(keep))[0])


def dihedral_spread_deg(frames: Sequence[Atoms], quadruple: Tuple[int, int, int, int]) -> float:
    """The circular standard deviation (degrees) of a dihedral over the frames."""
    phi = np.radians([a.get_dihedral(*quadruple) for a in frames[:: max(1, len(frames) // TOPOLOGY_FRAMES)]])
    r = abs(np.mean(np.exp(1j * phi)))
    return float(np.degrees(np.sqrt(-2.0 * np.log(max(r, 1e-12)))))


def backbone_dihedrals(frames: Sequence[Atoms], bonds: Sequence[Tuple[int, int]],
                       all_heavy: bool = False) -> List[Tuple[int, int, int, int]]:
    """The dihedrals along a molecule's backbone (the longest chain of heavy atoms: heavier than 1.5 amu,
    or every atom with ``all_heavy``) whose angle spreads over more than :data:`ROTATING_DEG` degrees in
    the data: the torsions that rotate (a peptide's phi and psi, not its planar omega)."""
    heavy = [i for i, m in enumerate(frames[0].get_masses()) if all_heavy or m > 1.5]
    path = _longest_path(heavy, bonds)
    quads = [tuple(path[k:k + 4]) for k in range(len(path) - 3)]
    return [q for q in quads if dihedral_spread_deg(frames, q) > ROTATING_DEG]


def _charges(spec: Dict[str, float]) -> Dict[int, float]:
    unknown = [k for k in spec if k not in atomic_numbers]
    if unknown:
        raise ValueError(f"charges: unknown element(s) {unknown}; give charges as Li=1,Cl=-1 (e)")
    return {atomic_numbers[k]: float(q) for k, q in spec.items()}


def plan_system(frames: Sequence[Atoms], settings: FitConfig, bead_names: Optional[Dict[int, str]] = None) -> SystemPlan:
    """The kind of system in ``frames`` and its recipe (module docstring), with the reasons."""
    frames = list(frames)
    periodic = bool(frames[0].pbc.any())
    species = sorted({int(z) for a in frames for z in a.numbers})
    names = ", ".join((bead_names or {}).get(z, chemical_symbols[z]) for z in species)
    topology = None if periodic else data_topology(frames)
    plan = SystemPlan(kind="periodic" if periodic else "molecule" if topology else "cluster")
    wall = "wall"
    if plan.kind == "periodic":
        plan.reasons.append(f"periodic frames of {names}: a liquid or solid, trained on its pair structure")
    elif plan.kind == "molecule":
        bonds, angles = topology
        how = (f"beads within {BOND_FACTOR:g}x their nearest neighbours' distance" if is_coarse_grained(frames[0])
               else "covalent radii")
        plan.reasons.append(f"every frame is the same molecule ({len(frames[0])} {'beads' if is_coarse_grained(frames[0]) else 'atoms'} "
                            f"of {names}): {len(bonds)} bonds ({how}, each within {BOND_SPREAD:.0%} of its length in "
                            f"every frame) and {len(angles)} angles")
        plan.priors.append(FittedPrior("bonded", bonds=tuple(bonds), angles=tuple(angles)))
        plan.smoothed_priors = True
        plan.reasons.append("bonded priors (harmonic bonds and angles, Boltzmann inversion) subtracted as the noise "
                            "smooths them: the stiff modes are given, the network learns what they leave out")
        wall = "nonbonded-wall"
        if settings.dihedrals:
            plan.dihedrals = parse_dihedrals(settings.dihedrals)
            plan.reasons.append(f"torsion priors on the dihedrals given: {settings.dihedrals}")
        else:
            plan.dihedrals = backbone_dihedrals(frames, bonds)
            plan.reasons.append("torsion priors on the backbone's rotating dihedrals: "
                                + (", ".join("-".join(map(str, q)) for q in plan.dihedrals) or "none rotate")
                                + f" (spread over more than {ROTATING_DEG:g} degrees in the data)")
        if plan.dihedrals:
            plan.priors.append("dihedrals:" + ",".join("-".join(map(str, q)) for q in plan.dihedrals))
            plan.corrections.append("torsions")
    else:
        plan.reasons.append(f"non-periodic frames of {names} that are not one bonded molecule: a cluster")
    if settings.wall:
        plan.priors.append(wall)
        plan.reasons.append("a repulsive wall below each pair's closest approach in the data"
                            + (" (on the pairs no bonded prior holds)" if wall == "nonbonded-wall" else "")
                            + ": MD cannot fall into cores no sample reached (--no-wall to leave it out)")
    if settings.charges:
        if settings.dielectric is None:
            raise ValueError("charges need the dielectric they are screened by: give --dielectric (the relative "
                             "permittivity of the solvent integrated out, e.g. 94 for TIP3P water)")
        charges = _charges(settings.charges)
        if periodic:
            plan.priors.append(EwaldCoulomb(charges, settings.dielectric))
            plan.reasons.append(f"ions with charges {settings.charges} in a dielectric of {settings.dielectric:g}: the "
                                "full Ewald Coulomb sum as a prior, the network learns the residual")
        else:
            plan.priors.append(DSFCoulomb(charges, settings.dielectric))
            plan.reasons.append(f"charges {settings.charges} in a dielectric of {settings.dielectric:g}: damped shifted "
                                "force Coulomb as a prior (not periodic: no Ewald sum)")
        plan.smallest_level = True
        plan.reasons.append("ions: the model returns its smallest trained level, not the extrapolation to sigma -> 0, "
                            "which amplifies the levels' errors where pairs are rare (the contact barrier)")
    if plan.kind == "periodic":
        plan.corrections.append("mean-force")
    plan.priors.extend(settings.priors)
    return plan
