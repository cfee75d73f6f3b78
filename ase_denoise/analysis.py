"""Force metrics, radial distribution functions and plots.

Units: forces in eV/Angstrom, distances in Angstrom; ``g(r)`` is dimensionless.
Plots use matplotlib's Agg canvas locally (no global backend change) and are saved as PNG.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Dict, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
from ase import Atoms
from ase.data import atomic_numbers
from matscipy.neighbours import neighbour_list

from .data.neighbours import cell_heights
from .files import PathLike, atomic_write

logger = logging.getLogger(__name__)

ArrayOrList = Union[np.ndarray, Sequence[np.ndarray]]


# --------------------------------------------------------------------------------------------------
# Force metrics
# --------------------------------------------------------------------------------------------------
def _as_force_array(forces: ArrayOrList, name: str) -> np.ndarray:
    if isinstance(forces, np.ndarray):
        arr = np.asarray(forces, dtype=np.float64)
    else:
        parts = [np.asarray(f, dtype=np.float64) for f in forces]
        if not parts:
            raise ValueError(f"{name} is empty")
        if any(p.ndim != 2 or p.shape[1] != 3 for p in parts):
            raise ValueError(f"{name}: every array must have shape (n, 3), got {[p.shape for p in parts][:5]}")
        arr = np.concatenate(parts, axis=0)
    if arr.ndim != 2 or arr.shape[1] != 3:
        raise ValueError(f"{name} must have shape (n, 3), got {arr.shape}")
    if arr.shape[0] == 0:
        raise ValueError(f"{name} is empty")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or inf")
    return arr


def _safe_cosine(dot: np.ndarray, norm_a: np.ndarray, norm_b: np.ndarray) -> np.ndarray:
    denom = norm_a * norm_b
    return np.divide(dot, denom, out=np.zeros_like(dot, dtype=np.float64), where=denom > 0)


def force_metrics(pred: ArrayOrList, ref: ArrayOrList) -> Dict[str, float]:
    """Compare predicted with reference forces (eV/Angstrom).

    ``pred`` and ``ref``: arrays ``(n, 3)`` or lists of them (one per frame), concatenated.

    Returns a dict:
        ``rmse``, ``mae``: over all Cartesian components, eV/Angstrom;
        ``relative_rmse``: ``rmse / rms(ref)`` (1 for a zero prediction);
        ``cosine``: cosine similarity of the two flattened vectors;
        ``mean_cosine_per_atom``: mean over atoms of the cosine between ``pred_i`` and ``ref_i``;
        ``slope``: least-squares slope of pred against ref through the origin, ``<p.r>/<r.r>``;
        ``n``: number of atoms.
    A cosine whose vectors include a zero vector counts as 0.

    Raises:
        ValueError: shapes differ, inputs are empty, or contain NaN/inf.
    """
    p = _as_force_array(pred, "pred")
    r = _as_force_array(ref, "ref")
    if p.shape != r.shape:
        raise ValueError(f"pred and ref shapes differ: {p.shape} vs {r.shape}")
    diff = p - r
    rms_ref = float(np.sqrt(np.mean(r**2)))
    rmse = float(np.sqrt(np.mean(diff**2)))
    ref_sq = float(np.sum(r**2))
    per_atom = _safe_cosine(np.sum(p * r, axis=1), np.linalg.norm(p, axis=1), np.linalg.norm(r, axis=1))
    return {
        "rmse": rmse,
        "mae": float(np.mean(np.abs(diff))),
        "relative_rmse": rmse / rms_ref if rms_ref > 0 else float("inf"),
        "cosine": float(_safe_cosine(np.array(np.sum(p * r)), np.array(np.linalg.norm(p)), np.array(np.linalg.norm(r)))),
        "mean_cosine_per_atom": float(np.mean(per_atom)),
        "slope": float(np.sum(p * r) / ref_sq) if ref_sq > 0 else float("nan"),
        "n": int(p.shape[0]),
    }


# --------------------------------------------------------------------------------------------------
# Radial distribution function
# --------------------------------------------------------------------------------------------------
def _species_mask(atoms: Atoms, symbol: str) -> np.ndarray:
    if symbol not in atomic_numbers:
        raise ValueError(f"unknown element {symbol!r}")
    return atoms.numbers == atomic_numbers[symbol]


def rdf(
    frames: Union[Atoms, Sequence[Atoms]],
    r_max: float,
    n_bins: int = 100,
    elements: Optional[Tuple[str, str]] = None,
) -> Tuple[np.ndarray, np.ndarray]:
    """Radial distribution function of periodic frames, averaged over frames.

    ``g(r) = <n_AB(r)> / (N_A * (N_B - delta_AB) / V * 4 pi r^2 dr)``, where ``n_AB(r)`` counts
    ordered pairs (i of element A, j of element B, j != i, all periodic images) at distance r.
    With the ``N_B - delta_AB`` normalisation, uniformly random points give ``g = 1`` exactly in
    expectation. ``elements=("Li", "Cl")`` restricts to that pair; ``None`` uses all atoms.

    Args:
        frames: one frame or a list, fully periodic with a cell.
        r_max: largest distance, Angstrom; at most half the shortest box height.
        n_bins: number of bins on ``[0, r_max]``.
        elements: optional pair of chemical symbols.

    Returns:
        ``(r_centers, g)``: bin centres (Angstrom) and ``g`` (dimensionless), each ``(n_bins,)``.
    """
    if isinstance(frames, Atoms):
        frames = [frames]
    if len(frames) == 0:
        raise ValueError("rdf needs at least one frame")
    if r_max <= 0 or n_bins < 1:
        raise ValueError(f"need r_max > 0 (Angstrom) and n_bins >= 1, got {r_max}, {n_bins}")
    edges = np.linspace(0.0, r_max, n_bins + 1)
    shell = 4.0 / 3.0 * np.pi * (edges[1:] ** 3 - edges[:-1] ** 3)
    g_sum = np.zeros(n_bins)
    used = 0
    for index, atoms in enumerate(frames):
        if not np.all(atoms.pbc) or atoms.cell.rank < 3:
            raise ValueError(
                f"rdf needs fully periodic frames with a 3D cell; frame {index} has pbc={atoms.pbc.tolist()} "
                f"and a cell of rank {atoms.cell.rank}"
            )
        half = 0.5 * float(np.min(cell_heights(atoms.cell)))
        if r_max > half + 1e-12:
            raise ValueError(
                f"r_max={r_max} A exceeds half the shortest box height ({half:.4f} A) of frame {index}: "
                "beyond it the spherical shells are not fully sampled by one box"
            )
        if elements is None:
            mask_a = mask_b = np.ones(len(atoms), dtype=bool)
            same = True
        else:
            mask_a, mask_b = _species_mask(atoms, elements[0]), _species_mask(atoms, elements[1])
            same = elements[0] == elements[1]
        n_a, n_b = int(mask_a.sum()), int(mask_b.sum())
        n_partners = n_b - (1 if same else 0)
        if n_a == 0 or n_partners <= 0:
            logger.warning("rdf: frame %d has no %s pairs; skipped", index, elements)
            continue
        i, j, d = neighbour_list("ijd", atoms, r_max)
        keep = mask_a[i] & mask_b[j]
        counts, _ = np.histogram(d[keep], bins=edges)
        density_b = n_partners / atoms.get_volume()
        g_sum += counts / (n_a * density_b * shell)
        used += 1
    if used == 0:
        raise ValueError(f"rdf: no frame contains the element pair {elements}")
    return 0.5 * (edges[1:] + edges[:-1]), g_sum / used


def rdf_difference(g1: np.ndarray, g2: np.ndarray, r: Optional[np.ndarray] = None) -> Dict[str, float]:
    """Distance between two RDFs on the same bins.

    Returns ``rms`` (root mean square of ``g1 - g2`` over bins) and ``max_abs``; with the bin
    centres ``r`` (Angstrom) also ``r_at_max_abs`` (Angstrom).
    """
    a, b = np.asarray(g1, dtype=np.float64), np.asarray(g2, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1 or a.size == 0:
        raise ValueError(f"g1 and g2 must be 1D arrays of the same non-zero length, got {a.shape} and {b.shape}")
    diff = a - b
    out = {"rms": float(np.sqrt(np.mean(diff**2))), "max_abs": float(np.max(np.abs(diff)))}
    if r is not None:
        r = np.asarray(r, dtype=np.float64)
        if r.shape != a.shape:
            raise ValueError(f"r has shape {r.shape}, g has {a.shape}")
        out["r_at_max_abs"] = float(r[int(np.argmax(np.abs(diff)))])
    return out


def first_peak(r: np.ndarray, g: np.ndarray) -> Tuple[float, float]:
    """Position (Angstrom) and height of the first peak of ``g(r)``.

    The first peak is the maximum of the first stretch where ``g > 1`` (the first coordination
    shell); if ``g`` never exceeds 1, the global maximum. The position is refined by a parabola
    through the maximal bin and its two neighbours (sub-bin accuracy); the height is the
    maximal bin's value.
    """
    r, g = np.asarray(r, dtype=np.float64), np.asarray(g, dtype=np.float64)
    if r.shape != g.shape or r.ndim != 1 or r.size == 0:
        raise ValueError(f"r and g must be 1D arrays of the same non-zero length, got {r.shape} and {g.shape}")
    above = np.flatnonzero(g > 1.0)
    if above.size == 0:
        k = int(np.argmax(g))
    else:
        start = int(above[0])
        below_after = np.flatnonzero(g[start:] <= 1.0)
        stop = start + int(below_after[0]) if below_after.size else g.size
        k = start + int(np.argmax(g[start:stop]))
    position = float(r[k])
    if 0 < k < g.size - 1:
        y0, y1, y2 = g[k - 1], g[k], g[k + 1]
        curvature = y0 - 2.0 * y1 + y2
        if curvature < 0:
            shift = 0.5 * (y0 - y2) / curvature  # in bins, within [-0.5, 0.5]
            position = float(r[k] + shift * (r[k + 1] - r[k - 1]) / 2.0)
    return position, float(g[k])


# --------------------------------------------------------------------------------------------------
# Plots
# --------------------------------------------------------------------------------------------------
def new_figure(size: Tuple[float, float]):
    """A matplotlib figure of ``size`` inches on its own Agg canvas (no global backend change)."""
    # imported here, not at the top: matplotlib takes a noticeable part of a second (start-up cost)
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=size)
    FigureCanvasAgg(fig)
    return fig


def save_figure(fig, path: PathLike, overwrite: bool = True) -> Path:
    """Save ``fig`` as a PNG at ``path`` (directories made) and return the path. Written to a temporary
    file and renamed: a symlink at ``path`` is replaced, never written through; ``overwrite=False``
    refuses an existing file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=120), overwrite)
    logger.info("wrote plot %s", path)
    return path


def plot_force_parity(pred: ArrayOrList, ref: ArrayOrList, path: PathLike, title: str = "Force parity",
                      overwrite: bool = True) -> Path:
    """Scatter predicted against reference force components (eV/Angstrom) with the y = x line.

    The legend carries RMSE, relative RMSE, cosine and slope from :func:`force_metrics`.
    Saves a PNG at ``path`` (``overwrite=False``: refuse an existing file) and returns it.
    """
    m = force_metrics(pred, ref)
    p, r = _as_force_array(pred, "pred"), _as_force_array(ref, "ref")
    fig = new_figure((5.0, 5.0))
    ax = fig.add_subplot(1, 1, 1)
    for axis, label in enumerate("xyz"):
        ax.scatter(r[:, axis], p[:, axis], s=4, alpha=0.5, label=f"F_{label}", rasterized=True)
    lim = float(max(np.max(np.abs(p)), np.max(np.abs(r)))) * 1.05 or 1.0
    ax.plot([-lim, lim], [-lim, lim], "k--", lw=1,
            label=f"y = x\nRMSE {m['rmse']:.3g} eV/A (rel {m['relative_rmse']:.3f})\n"
                  f"cosine {m['cosine']:.3f}, slope {m['slope']:.3f}, {m['n']} atoms")
    ax.set_xlim(-lim, lim)
    ax.set_ylim(-lim, lim)
    ax.set_aspect("equal")
    ax.set_xlabel("reference force (eV/Å)")
    ax.set_ylabel("predicted force (eV/Å)")
    ax.set_title(title)
    ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    return save_figure(fig, path, overwrite)


def plot_rdf(
    curves: Mapping[str, Tuple[np.ndarray, np.ndarray]], path: PathLike, title: str = "Radial distribution function"
) -> Path:
    """Plot ``g(r)`` curves, ``{label: (r in Angstrom, g)}``, on one axis; saves a PNG and returns its path."""
    if not curves:
        raise ValueError("plot_rdf needs at least one curve")
    fig = new_figure((6.0, 4.0))
    ax = fig.add_subplot(1, 1, 1)
    for label, (r, g) in curves.items():
        ax.plot(np.asarray(r), np.asarray(g), label=label, lw=1.5)
    ax.axhline(1.0, color="grey", lw=0.8, ls=":")
    ax.set_xlabel("r (Å)")
    ax.set_ylabel("g(r)")
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return save_figure(fig, path)


def plot_rdfs_against_reference(
    frames: Sequence[Atoms], reference: Mapping[str, np.ndarray], pairs: Sequence[Tuple[str, str]], path: PathLike,
    label: str = "model", r_min: float = 1.5,
) -> Dict[str, Dict[str, float]]:
    """One panel per element pair: the RDF of ``frames`` over a reference band.

    ``reference``: ``r`` (bin centres, Angstrom), ``"A-B"`` (g) and ``"A-B_err"`` (its standard error)
    per pair, e.g. a study's ``reference_rdf.npz``; the grey band is +-2 standard errors. Saves a PNG at
    ``path`` and returns, per pair, the RMS difference and both first peaks (``rms``, ``peak_r``,
    ``peak_g``, ``ref_peak_r``, ``ref_peak_g``)."""
    r = np.asarray(reference["r"])
    r_max = float(r[-1] + (r[1] - r[0]) / 2)
    fig = new_figure((4.3 * len(pairs), 3.6))
    summary: Dict[str, Dict[str, float]] = {}
    for k, pair in enumerate(pairs):
        ax = fig.add_subplot(1, len(pairs), k + 1)
        key = "-".join(pair)
        _, g = rdf(list(frames), r_max, n_bins=len(r), elements=tuple(pair))
        ref, err = np.asarray(reference[key]), np.asarray(reference[f"{key}_err"])
        ax.fill_between(r, ref - 2 * err, ref + 2 * err, color="0.8", lw=0)
        ax.plot(r, ref, "k-", label="reference")
        ax.plot(r, g, "C1-", label=label)
        (pr, ph), (qr, qh) = first_peak(r, g), first_peak(r, ref)
        summary[key] = dict(rms=float(np.sqrt(np.mean((g - ref) ** 2))), peak_r=pr, peak_g=ph, ref_peak_r=qr, ref_peak_g=qh)
        ax.set_title(f"{key}: RMS diff {summary[key]['rms']:.2f}; peak {pr:.2f} A vs {qr:.2f} A", fontsize=9)
        ax.set_xlabel("r (Å)")
        ax.set_xlim(r_min, r[-1])
        if k == 0:
            ax.set_ylabel("g(r)")
            ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, path)
    return summary


# --------------------------------------------------------------------------------------------------
# Many-body structure: triplet angles within a shell, tetrahedral order
# --------------------------------------------------------------------------------------------------
def _padded_neighbours(atoms: Atoms, cutoff: float) -> Tuple[np.ndarray, np.ndarray]:
    """Vectors from every atom to its neighbours within ``cutoff`` (Angstrom; all periodic images,
    so the minimum image and beyond) sorted by distance, padded: ``(vectors [n, m, 3], counts [n])``,
    ``m`` the largest count; padding rows are zero."""
    n = len(atoms)
    if atoms.cell.rank < 3:  # matscipy needs a cell: a box around a non-periodic structure
        atoms = atoms.copy()
        span = np.ptp(atoms.positions, axis=0) if n else np.zeros(3)
        atoms.set_cell(np.diag(span + 2.0 * cutoff + 1.0))
        atoms.pbc = False
    i, vec, d = neighbour_list("iDd", atoms, cutoff)
    order = np.lexsort((d, i))  # by atom, then by distance
    i, vec = i[order], vec[order]
    counts = np.bincount(i, minlength=n)
    m = int(counts.max()) if n else 0
    slot = np.arange(len(i)) - np.repeat(np.cumsum(counts) - counts, counts)
    out = np.zeros((n, m, 3))
    out[i, slot] = vec
    return out, counts


def _as_frame_list(frames: Union[Atoms, Sequence[Atoms]]) -> Sequence[Atoms]:
    if isinstance(frames, Atoms):
        frames = [frames]
    if len(frames) == 0:
        raise ValueError("need at least one frame")
    return frames


def triplet_angles(frames: Union[Atoms, Sequence[Atoms]], cutoff: float) -> np.ndarray:
    """Every angle j-i-k (degrees, 0-180) at an atom i between two of its neighbours j < k closer
    than ``cutoff`` (Angstrom; periodic images included, minimum image for a box of more than twice
    the cutoff), over all atoms and frames, concatenated. A neighbour shell with ``c`` atoms gives
    ``c (c - 1) / 2`` angles."""
    if not cutoff > 0:
        raise ValueError(f"cutoff must be > 0 Angstrom, got {cutoff}")
    angles = []
    for atoms in _as_frame_list(frames):
        vec, counts = _padded_neighbours(atoms, cutoff)
        if vec.shape[1] < 2:
            continue
        unit = vec / np.maximum(np.linalg.norm(vec, axis=-1, keepdims=True), 1e-300)
        cos = np.einsum("nad,nbd->nab", unit, unit)  # [n, m, m]
        a, b = np.triu_indices(vec.shape[1], k=1)
        valid = (b[None, :] < counts[:, None])  # both partners real (a < b)
        angles.append(np.degrees(np.arccos(np.clip(cos[:, a, b][valid], -1.0, 1.0))))
    return np.concatenate(angles) if angles else np.zeros(0)


def density_histogram(
    values: np.ndarray, n_bins: int, value_range: Tuple[float, float],
) -> Tuple[np.ndarray, np.ndarray]:
    """``(bin centres, density)`` of ``values`` on ``value_range`` split into ``n_bins`` bins:
    counts / (number of *all* values x bin width), so values outside the range lower the curve
    instead of being renormalised away (the integral over the range is the fraction inside it)."""
    values = np.asarray(values, dtype=np.float64).ravel()
    values = values[np.isfinite(values)]
    if values.size == 0:
        raise ValueError("no finite values to histogram")
    counts, edges = np.histogram(values, bins=n_bins, range=value_range)
    width = (value_range[1] - value_range[0]) / n_bins
    return 0.5 * (edges[1:] + edges[:-1]), counts / (values.size * width)


def angular_distribution(
    frames: Union[Atoms, Sequence[Atoms]], cutoff: float, n_bins: int = 90,
) -> Tuple[np.ndarray, np.ndarray]:
    """Distribution of the triplet angles j-i-k within a neighbour shell (:func:`triplet_angles`;
    for water's oxygens or one-bead water, the O-O-O angular distribution of the first shell with
    ``cutoff`` at the first minimum of g_OO, about 3.3 A).

    Returns ``(theta, p)``: bin centres in degrees on [0, 180] and the probability density per
    degree (``sum(p) * 180 / n_bins = 1``). Uniformly random points give ``p = sin(theta) * pi / 360``;
    neighbours at the vertices of a regular tetrahedron all sit at 109.47 degrees."""
    angles = triplet_angles(frames, cutoff)
    if angles.size == 0:
        raise ValueError(f"no atom has two neighbours within {cutoff} A: no angles")
    return density_histogram(angles, n_bins, (0.0, 180.0))


def tetrahedral_order(
    frames: Union[Atoms, Sequence[Atoms]], n_neighbours: int = 4, cutoff: Optional[float] = None,
) -> np.ndarray:
    """Errington-Debenedetti tetrahedral order of every atom of every frame, ``[n_frames, n_atoms]``.

    ``q_i = 1 - 3/8 sum_{j<k} (cos psi_jik + 1/3)^2`` over the pairs of the ``n_neighbours`` (4)
    nearest neighbours of i (periodic images included: the minimum image in a box larger than twice
    their distance), ``psi`` the angle at i (Errington and Debenedetti, Nature 409, 318 (2001)).
    ``q = 1`` for a regular tetrahedron; for an ideal gas (independent random directions)
    ``<q> = 0``; its range is [-3, 1]. Other ``n_neighbours`` scale the sum by ``6 / (pairs)`` so an
    ideal gas still gives 0 (1 is then no longer the regular tetrahedron's value). ``cutoff``
    (Angstrom): the search radius; default: large enough that every atom of a periodic frame has
    ``n_neighbours`` (grown as needed), every atom of a non-periodic one. Atoms with fewer neighbours
    within it get NaN. Dimensionless. Every frame must hold the same number of atoms."""
    if n_neighbours < 2:
        raise ValueError(f"need n_neighbours >= 2, got {n_neighbours}")
    frames = _as_frame_list(frames)
    if len({len(a) for a in frames}) > 1:
        raise ValueError("tetrahedral_order needs frames with the same number of atoms (one array row per frame)")
    k = int(n_neighbours)
    norm = 3.0 / 8.0 * 6.0 / (k * (k - 1) / 2)  # 3/8 for four neighbours (six pairs)
    out = []
    for atoms in _as_frame_list(frames):
        n = len(atoms)
        if cutoff is not None:
            radius = float(cutoff)
        elif np.all(atoms.pbc) and atoms.cell.rank == 3:
            radius = (3.0 * (k + 2) / (4.0 * np.pi * n / atoms.get_volume())) ** (1.0 / 3.0)
        else:
            radius = float(np.ptp(atoms.positions, axis=0).max() * np.sqrt(3.0) + 1.0)
        for _ in range(20):
            vec, counts = _padded_neighbours(atoms, radius)
            if cutoff is not None or counts.min(initial=k) >= k or not np.all(atoms.pbc):
                break
            radius *= 1.3
        q = np.full(n, np.nan)
        ok = counts >= k
        if np.any(ok):
            v = vec[ok, :k]
            unit = v / np.linalg.norm(v, axis=-1, keepdims=True)
            cos = np.einsum("nad,nbd->nab", unit, unit)
            a, b = np.triu_indices(k, k=1)
            q[ok] = 1.0 - norm * np.sum((cos[:, a, b] + 1.0 / 3.0) ** 2, axis=1)
        out.append(q)
    return np.array(out)
