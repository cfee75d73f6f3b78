"""The prior kinds by their JSON name: what a model file can hold (``PhysicsConfig.priors``)."""

from __future__ import annotations

from typing import Any, Dict

from .base import Prior
from .bonded import HarmonicAngles, HarmonicBonds
from .coulomb import DSFCoulomb, EwaldCoulomb
from .pair import NonBondedWall, PairTable, RepulsiveWall
from .torsions import DihedralCorrection, DihedralPairCorrection, Dihedrals


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
