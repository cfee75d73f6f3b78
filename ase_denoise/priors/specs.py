"""Priors by their short forms: what ``train(priors=...)`` and ``--prior`` accept, fitted to the data."""

from __future__ import annotations

from typing import Any, List, Sequence, Set, Tuple

from ase import Atoms

from .bonded import HarmonicAngles, HarmonicBonds, molecule_topology


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


def pairs_held_by_priors(priors: Sequence[Any], frames: Sequence[Atoms]) -> Set[Tuple[int, int]]:
    """Atom index pairs ``(i, j)``, ``i < j``, that bonded priors hold: each bond's atoms and each
    angle's two ends. ``priors``: :class:`ase_denoise.priors.Prior` objects or the string
    ``"bonded"`` (the topology :func:`ase_denoise.priors.molecule_topology` finds in the first
    frame, as the fit does); other priors hold no pair."""
    held: Set[Tuple[int, int]] = set()
    for prior in priors:
        if isinstance(prior, str) and prior == "bonded" and frames:
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
