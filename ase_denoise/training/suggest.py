"""Noise levels and cutoff from the data, so that users need not guess (``--noise-std auto``).

The rule (docs/noise-ladder.md, "Choosing the ladder and the cutoff"):

* For every element pair, the first peak of the pair-distance distribution (divided by ``r^2``, i.e.
  ``g(r)`` up to a constant, or ``exp(-PMF/kT)``) and its *inner* width ``w``, read off the steep
  inner flank: the distance between the points where ``g`` has risen to ``exp(-2)`` and to
  ``exp(-1/2)`` of the peak height (``w`` for a Gaussian peak ``exp(-(r - r0)^2 / 2 w^2)``; the
  flat top, where the peak position is poorly defined, does not enter). A Gaussian peak of width
  ``w`` is a potential of mean force of stiffness ``k = kT / w^2`` (eV/A^2), so noise of std sigma on both atoms shrinks its force by
  ``1 / (1 + 2 k sigma^2 / kT) = 1 / (1 + 2 sigma^2 / w^2)`` (docs/design.md, "Exact check").
* The largest level keeps that shrink moderate for the narrowest (stiffest) pair:
  ``2 sigma_max^2 / w_min^2 = max_shrink`` (0.3), where the expansion in ``sigma^2`` behind the
  extrapolation is accurate; the ladder is ``sigma_max * (0.45, 0.7, 1.0)``.
* ``r_max``: every pair's first coordination shell inside the cutoff: the largest over the pairs of
  the shell's end (the first minimum after the first peak; where none shows, the peak plus three inner
  widths), capped at the smallest periodic cell height.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Set, Tuple

import numpy as np
from ase import Atoms

from ..data.neighbours import cell_heights
from ..priors import PairGeometry, species_name

#: relative positions of the ladder's levels below the largest
LADDER = (0.45, 0.7, 1.0)
#: the largest level's force shrink 2 k sigma^2 / kT for the stiffest pair
MAX_SHRINK = 0.3


@dataclass
class PairShell:
    """First-shell figures of one element pair (Angstrom)."""

    pair: Tuple[int, int]
    peak: float
    inner_width: float
    first_minimum: Optional[float]
    n_distances: int

    @property
    def name(self) -> str:
        return self.label()

    def label(self, names: Optional[Dict[int, str]] = None) -> str:
        """``A-B``, with bead names from ``names`` ({number: name}) where given."""
        return f"{species_name(self.pair[0], names)}-{species_name(self.pair[1], names)}"


@dataclass
class Suggestion:
    """Suggested ``noise_std`` ladder and ``r_max`` (Angstrom) with the reasoning, one line each."""

    noise_std: Tuple[float, ...]
    r_max: float
    shells: List[PairShell] = field(default_factory=list)
    reasoning: List[str] = field(default_factory=list)


def _smooth(y: np.ndarray, width_bins: float) -> np.ndarray:
    half = int(3 * width_bins) + 1
    kernel = np.exp(-0.5 * (np.arange(-half, half + 1) / width_bins) ** 2)
    return np.convolve(y, kernel / kernel.sum(), mode="same")


def _inner_crossing(r: np.ndarray, g: np.ndarray, k: int, fraction: float) -> float:
    """Where ``g`` last rises through ``fraction * g[k]`` before the peak at ``k`` (linear interpolation)."""
    level = fraction * g[k]
    below = np.flatnonzero(g[:k] < level)
    if below.size == 0:
        return float(r[0])
    i = int(below[-1])
    return float(r[i] + (level - g[i]) / (g[i + 1] - g[i]) * (r[i + 1] - r[i]))


def pair_shells(
    frames: Sequence[Atoms], search: float = 8.0, bin_width: float = 0.01,
    exclude_pairs: Optional[Set[Tuple[int, int]]] = None,
) -> List[PairShell]:
    """First-shell peak, inner width and first minimum of every element pair in ``frames``.

    ``search`` (Angstrom): largest distance considered (capped at half the smallest periodic height).
    ``exclude_pairs``: atom index pairs ``(i, j)``, ``i < j``, left out (e.g. those bonded priors hold:
    :func:`pairs_held_by_priors`), so a pair type's first peak is that of its other instances.
    """
    excluded = None
    if exclude_pairs:
        n = max(len(a) for a in frames)
        excluded = np.array(sorted(i * n + j for i, j in exclude_pairs), dtype=np.int64)
    periodic_heights = [cell_heights(a.cell)[a.pbc].min() for a in frames if a.pbc.any()]
    if periodic_heights:
        search = min(search, 0.5 * min(periodic_heights))
    distances: Dict[Tuple[int, int], List[np.ndarray]] = {}
    for atoms in frames:
        g = PairGeometry.of(atoms.positions, atoms.cell.array, atoms.pbc, search)
        half = g.receiver < g.sender  # each unordered pair once
        if excluded is not None:
            half &= ~np.isin(g.receiver * n + g.sender, excluded)
        zi, zj, d = atoms.numbers[g.receiver[half]], atoms.numbers[g.sender[half]], g.d[half]
        lo, hi = np.minimum(zi, zj), np.maximum(zi, zj)
        for a, b in set(zip(lo.tolist(), hi.tolist())):
            distances.setdefault((a, b), []).append(d[(lo == a) & (hi == b)])
    shells = []
    edges = np.arange(0.0, search + bin_width, bin_width)
    centres = 0.5 * (edges[1:] + edges[:-1])
    for pair, chunks in sorted(distances.items()):
        d = np.concatenate(chunks)
        if len(d) < 10:
            continue
        counts, _ = np.histogram(d, bins=edges)
        g = _smooth(counts / centres**2, width_bins=3.0)
        start = int(np.searchsorted(centres, d.min()))
        # the first peak: the first local maximum above half the curve's largest value
        threshold = 0.5 * g[start:].max()
        k = start
        while k + 1 < len(g) and (g[k + 1] >= g[k] or g[k] < threshold):
            k += 1
        peak = float(centres[k])
        width = _inner_crossing(centres, g, k, np.exp(-0.5)) - _inner_crossing(centres, g, k, np.exp(-2.0))
        # the first minimum: the lowest point of a smoother curve between the peak and twice its distance
        coarse = _smooth(counts / centres**2, width_bins=max(3.0, 0.1 / bin_width))
        stop = min(len(g), int(np.searchsorted(centres, 2.0 * peak)))
        m = k + int(np.argmin(coarse[k:stop])) if stop > k + 1 else k
        first_minimum = float(centres[m]) if (m < stop - 1 and coarse[m] < 0.9 * coarse[k]) else None
        shells.append(PairShell(pair, peak, max(width, bin_width), first_minimum, int(len(d))))
    return shells


def suggest_settings(
    frames: Sequence[Atoms], max_shrink: float = MAX_SHRINK, ladder: Sequence[float] = LADDER,
    names: Optional[Dict[int, str]] = None, exclude_pairs: Optional[Set[Tuple[int, int]]] = None,
) -> Suggestion:
    """A noise ladder (Angstrom, ascending) and a cutoff ``r_max`` (Angstrom) for ``frames``.
    ``names``: bead names of a coarse-grained model's placeholder numbers, for the reasoning.
    ``exclude_pairs``: atom index pairs the rule ignores: those bonded priors hold, when training
    takes their smoothing out of the target (``TrainConfig.smoothed_priors``), so the ladder follows
    the narrowest peak the network itself has to resolve."""
    shells = pair_shells(frames, exclude_pairs=exclude_pairs)
    if not shells:
        raise ValueError("no element pair has 10 or more distances within the search range: cannot suggest sigma")
    stiffest = min(shells, key=lambda s: s.inner_width)
    sigma_max = stiffest.inner_width * math.sqrt(max_shrink / 2.0)
    levels = tuple(float(f"{sigma_max * f:.3g}") for f in sorted(ladder))
    lines = [f"left out: {len(exclude_pairs)} atom pairs that bonded priors hold (their smoothing is taken "
             "out of the training target)"] if exclude_pairs else []
    lines += [
        f"{s.label(names)}: first peak {s.peak:.3f} A, inner width {s.inner_width:.3f} A"
        + (f", first minimum {s.first_minimum:.2f} A" if s.first_minimum else ", no first minimum")
        + f" ({s.n_distances} distances)"
        for s in shells
    ]
    lines.append(
        f"narrowest peak {stiffest.label(names)} (w = {stiffest.inner_width:.3f} A, PMF stiffness ~ kT/w^2): "
        f"sigma_max = w * sqrt({max_shrink:g}/2) = {sigma_max:.4f} A keeps its force shrink "
        f"2 sigma^2/w^2 at {max_shrink:g}; ladder {', '.join(f'{f:g}' for f in sorted(ladder))} x sigma_max "
        f"= {', '.join(f'{s:g}' for s in levels)} A"
    )
    periodic_heights = [cell_heights(a.cell)[a.pbc].min() for a in frames if a.pbc.any()]
    cap = min(periodic_heights) if periodic_heights else math.inf

    def shell_end(s: PairShell) -> float:
        return s.first_minimum if s.first_minimum else s.peak + 3.0 * s.inner_width

    furthest = max(shells, key=shell_end)
    r_max = min(float(f"{shell_end(furthest):.3g}"), cap)
    how = "its first minimum" if furthest.first_minimum else "its peak + 3 inner widths (no clear minimum)"
    lines.append(
        f"r_max = {r_max:g} A: the end of the first shell of {furthest.label(names)}, {how}, the furthest of the pairs"
        + (f"; capped by the cell height {cap:.2f} A" if r_max == cap else "")
    )
    return Suggestion(levels, r_max, shells, lines)
