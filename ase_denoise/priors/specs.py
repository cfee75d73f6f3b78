"""Priors by their short forms: what ``train(priors=...)`` and ``ase-denoise train --prior`` accept.

One parser for the library and the command line (:func:`parse_prior`) and one place that fits the
data-dependent forms to the frames (:func:`fit_priors`). A short form is either complete in itself
(Coulomb terms: charges and permittivity given) or asks for a prior fitted to the data:

``wall`` (``repulsive_wall``)
    a :class:`~ase_denoise.priors.RepulsiveWall` below each element pair's closest approach;
``bonded``
    harmonic bonds and angles of a molecule by Boltzmann inversion (every frame the same molecule);
``nonbonded-wall`` (``nonbonded_wall``)
    with ``bonded``: the wall on the pairs the bonded priors do not hold;
``dihedrals:4-6-8-14,6-8-14-16``
    torsion free energies on those atom quadruples (0-based), fitted to the data's dihedrals;
``coulomb:Li=1,Cl=-1,eps=78[,alpha=0.2][,cutoff=10]``
    DSF Coulomb with charges in e (:class:`~ase_denoise.priors.DSFCoulomb`);
``ewald:Li=1,Cl=-1,eps=94[,alpha=0.3][,cutoff=10][,accuracy=1e-6]``
    periodic Ewald Coulomb, as LAMMPS ``coul/long`` + ``pppm`` (:class:`~ase_denoise.priors.EwaldCoulomb`).

A :class:`~ase_denoise.priors.Prior` object is accepted as it is. A new kind of prior needs its class,
its line in :mod:`ase_denoise.priors.registry` and, for a short form, a branch here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Sequence, Set, Tuple, Union

from ase import Atoms
from ase.data import atomic_numbers

from .base import Prior
from .bonded import HarmonicAngles, HarmonicBonds, fit_bonded_priors, molecule_topology
from .coulomb import DSFCoulomb, EwaldCoulomb
from .pair import fit_repulsive_wall
from .torsions import fit_dihedral_priors

#: every short form, for messages and the command line's help
SHORT_FORMS = ("wall", "bonded", "nonbonded-wall", "dihedrals:i-j-k-l[,...]",
               "coulomb:Li=1,Cl=-1,eps=78[,alpha=0.2][,cutoff=10]",
               "ewald:Li=1,Cl=-1,eps=94[,alpha=0.3][,cutoff=10][,accuracy=1e-6]")
_ALIASES = {"wall": "wall", "repulsive_wall": "wall", "repulsive-wall": "wall", "bonded": "bonded",
            "nonbonded-wall": "nonbonded-wall", "nonbonded_wall": "nonbonded-wall"}


@dataclass(frozen=True)
class FittedPrior:
    """A prior to fit to the data: ``kind`` one of ``wall``, ``bonded``, ``nonbonded-wall``,
    ``dihedrals`` (with the atom quadruples ``dihedrals``). ``bonded`` fits the ``bonds`` and
    ``angles`` given (atom indices), or by default the topology that covalent radii give the first
    frame (:func:`~ase_denoise.priors.molecule_topology`)."""

    kind: str
    dihedrals: Tuple[Tuple[int, int, int, int], ...] = ()
    bonds: Tuple[Tuple[int, int], ...] = ()
    angles: Tuple[Tuple[int, int, int], ...] = ()

    def to_dict(self) -> Dict[str, Any]:
        return {"kind": self.kind, **({"dihedrals": [list(q) for q in self.dihedrals]} if self.dihedrals else {}),
                **({"bonds": [list(b) for b in self.bonds], "angles": [list(t) for t in self.angles]}
                   if self.bonds else {})}


PriorSpec = Union[str, Prior, FittedPrior]


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


def _coulomb(kind: str, spec: str, rest: str) -> Prior:
    values: Dict[str, str] = dict(item.split("=", 1) for item in rest.split(",") if "=" in item)
    names = ("eps", "alpha", "cutoff") + (("accuracy",) if kind == "ewald" else ())
    try:
        settings = {k: float(values.pop(k)) for k in names if k in values}
        charges = {atomic_numbers[k]: float(v) for k, v in values.items() if k in atomic_numbers}
    except ValueError:
        raise ValueError(f"prior {spec!r}: charges and settings must be numbers; use {', '.join(SHORT_FORMS)}") from None
    unknown = [k for k in values if k not in atomic_numbers]
    if unknown or "eps" not in settings:
        raise ValueError(f"prior {spec!r}: unknown element(s) {unknown} or missing eps=<relative permittivity>; "
                         f"use {', '.join(SHORT_FORMS)}")
    if kind == "ewald":
        return EwaldCoulomb(charges, settings["eps"], alpha=settings.get("alpha", 0.3),
                            r_cut=settings.get("cutoff", 10.0), accuracy=settings.get("accuracy", 1e-6))
    return DSFCoulomb(charges, settings["eps"], alpha=settings.get("alpha", 0.2), r_cut=settings.get("cutoff", 10.0))


def parse_prior(spec: PriorSpec) -> Union[Prior, FittedPrior]:
    """A short form (module docstring) as a :class:`Prior` (complete in itself) or a
    :class:`FittedPrior` (fitted to the data by :func:`fit_priors`); a ``Prior`` or ``FittedPrior`` is
    returned as it is. Anything else is refused, naming the forms, before any data are read."""
    if isinstance(spec, (Prior, FittedPrior)):
        return spec
    if not isinstance(spec, str):
        raise ValueError(f"prior {spec!r}: pass an ase_denoise.priors.Prior or a short form ({', '.join(SHORT_FORMS)})")
    if spec in _ALIASES:
        return FittedPrior(_ALIASES[spec])
    kind, _, rest = spec.partition(":")
    if kind == "dihedrals":
        return FittedPrior("dihedrals", tuple(parse_dihedrals(rest)))
    if kind in ("coulomb", "ewald") and rest:
        return _coulomb(kind, spec, rest)
    raise ValueError(f"unknown prior {spec!r}: use {', '.join(SHORT_FORMS)}, or pass an ase_denoise.priors.Prior")


def pairs_held_by_priors(priors: Sequence[Any], frames: Sequence[Atoms]) -> Set[Tuple[int, int]]:
    """Atom index pairs ``(i, j)``, ``i < j``, that bonded priors hold: each bond's atoms and each
    angle's two ends. ``priors``: :class:`Prior` objects or short forms; ``bonded`` stands for the
    topology :func:`~ase_denoise.priors.molecule_topology` finds in the first frame, as its fit
    does. Other priors hold no pair."""
    held: Set[Tuple[int, int]] = set()
    for prior in map(parse_prior, priors):
        if isinstance(prior, FittedPrior) and prior.kind == "bonded" and prior.bonds:
            bonds, angles = prior.bonds, prior.angles
        elif isinstance(prior, FittedPrior) and prior.kind == "bonded" and frames:
            bonds, angles = molecule_topology(frames[0])
        elif isinstance(prior, HarmonicBonds):
            bonds, angles = prior.bonds, []
        elif isinstance(prior, HarmonicAngles):
            bonds, angles = [], prior.angles
        else:
            continue
        held |= {(min(i, j), max(i, j)) for i, j in bonds}
        held |= {(min(i, k), max(i, k)) for i, _, k in angles}
    return held


def fit_priors(specs: Sequence[PriorSpec], frames: Sequence[Atoms], kT: float) -> List[Prior]:
    """Every prior of ``specs`` (short forms or :class:`Prior` objects), the data-dependent ones fitted
    to ``frames`` at ``kT`` (eV); ``bonded`` gives two priors (bonds, angles)."""
    parsed = [parse_prior(s) for s in specs]
    out: List[Prior] = []
    for prior in parsed:
        if isinstance(prior, Prior):
            out.append(prior)
        elif prior.kind == "wall":
            out.append(fit_repulsive_wall(frames, kT))
        elif prior.kind == "bonded":
            topology = dict(bonds=list(prior.bonds), angles=list(prior.angles)) if prior.bonds else {}
            out.extend(fit_bonded_priors(frames, kT, **topology))
        elif prior.kind == "nonbonded-wall":
            held = pairs_held_by_priors(parsed, frames)
            if not held:
                raise ValueError("priors: 'nonbonded-wall' is a wall on the pairs that bonded priors do not hold; "
                                 "give it with them (e.g. priors=['bonded', 'nonbonded-wall'])")
            out.append(fit_repulsive_wall(frames, kT, exclude=held))
        else:  # dihedrals
            out.append(fit_dihedral_priors(frames, kT, prior.dihedrals))
    return out
