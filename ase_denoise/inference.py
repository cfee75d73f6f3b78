"""One path from structures to network output and forces.

The calculator, validation during training, ``ase-denoise eval`` and the checks in
:mod:`ase_denoise.testing` all go through :func:`structure_frame` (check a structure once, move atoms
that drifted far out of a periodic cell back by lattice vectors) and :func:`predict` (batch, forward,
scale to forces, correct to sigma -> 0, add the priors), so there is one place where a structure
becomes forces.

Which forces (one trained level, or the sigma -> 0 extrapolation through a ladder's levels) is one
value, :class:`~ase_denoise.forces.ForcesChoice`, resolved to levels and weights in
:mod:`ase_denoise.forces`. All levels go through the network in one batched forward (the graph is
tiled L times), so a corrected call costs about L times the forward of one level.
"""

from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from ase import Atoms

from .data.frames import Frame, check_atoms, fold_far_atoms, refuse_overlaps, to_frame
from .data.graphs import collate
from .data.neighbours import SkinNeighbourList
from .errors import NonFiniteForcesError
from .forces import ForcesChoice, evaluation_levels
from .model import DenoiserMACE
from .priors import PairGeometry, replicas_total_energy_and_forces, total_energy_and_forces, union_geometry

OUTPUTS = ("forces", "eps_hat")


def tile_levels(data: Dict[str, torch.Tensor], levels: Sequence[float]) -> Dict[str, torch.Tensor]:
    """``data`` repeated once per noise level: graph ``g`` of copy ``l`` is graph ``l * n_graphs + g``
    and is evaluated at ``levels[l]``. Edges are copied, not rebuilt."""
    L = len(levels)
    n_nodes, n_graphs = data["positions"].shape[0], data["ptr"].shape[0] - 1
    copies = torch.arange(L, device=data["positions"].device)
    edge_index = (data["edge_index"].unsqueeze(0) + (copies * n_nodes).view(L, 1, 1)).permute(1, 0, 2)
    return {
        "positions": data["positions"].repeat(L, 1),
        "node_attrs": data["node_attrs"].repeat(L, 1),
        "edge_index": edge_index.reshape(2, -1),
        "shifts": data["shifts"].repeat(L, 1),
        "batch": (data["batch"].unsqueeze(0) + (copies * n_graphs).view(L, 1)).reshape(-1),
        "ptr": torch.cat([data["ptr"][:1]] + [data["ptr"][1:] + l * n_nodes for l in range(L)]),
        "noise_std": torch.tensor(
            [s for s in levels for _ in range(n_graphs)], dtype=data["positions"].dtype, device=data["positions"].device
        ),
    }


def structure_frame(atoms: Atoms, model: DenoiserMACE, what: str = "structure") -> Frame:
    """Check ``atoms`` against ``model`` and return it as a :class:`~ase_denoise.data.Frame`.

    Raises :class:`~ase_denoise.data.DataError` naming the problem (unknown element, non-finite
    positions, other periodicity, a cell smaller than the cutoff...). Atoms more than one cell length
    outside a periodic cell are accepted: MD never wraps positions, and the forces do not change when
    an atom moves by a lattice vector (edge vectors carry their image shifts). Those atoms are moved
    back by whole lattice vectors, which keeps float32 edge vectors precise; atoms within one cell
    length stay where they are, so a Verlet list is not rebuilt each time an atom crosses a face.
    """
    check_atoms(
        atoms, atomic_numbers=model.config.atomic_numbers, pbc=model.physics.pbc, r_max=model.config.r_max,
        what=what, far_atoms_ok=True, bead_names=model.config.bead_names,
    )
    frame = to_frame(atoms, model.config.atomic_numbers)
    fold_far_atoms(frame.positions, frame.cell, frame.pbc)
    return frame


def _batches(n: int, batch_size: int) -> List[slice]:
    return [slice(start, min(start + batch_size, n)) for start in range(0, n, batch_size)]


@torch.no_grad()
def _network_outputs(
    model: DenoiserMACE,
    frames: Sequence[Frame],
    output: str,
    levels: List[float],
    weights: np.ndarray,
    batch_size: int,
    neighbour_lists: Optional[Sequence[SkinNeighbourList]],
    device: torch.device,
) -> Tuple[Optional[np.ndarray], np.ndarray]:
    """The network's part: per-frame free energies [n_frames] (energy head and ``output="forces"``;
    else None) and per-atom ``output`` [n_atoms_total, 3], combined over ``levels`` with ``weights``."""
    n_elements, r_max = len(model.config.atomic_numbers), model.config.r_max
    conditioned = len(model.noise_levels) > 1
    with_energy = model.config.head == "energy" and output == "forces"
    dtype = next(model.parameters()).dtype
    model.eval()
    energies, results = [], []
    for part in _batches(len(frames), batch_size):
        chunk = list(frames[part])
        lists = None if neighbour_lists is None else list(neighbour_lists[part])
        data = collate(
            [f.positions for f in chunk], chunk, n_elements, r_max, dtype, device, neighbour_lists=lists,
            noise_std=[levels[0]] * len(chunk) if conditioned else None,
        )
        if output == "eps_hat":
            values = model(data)
        elif with_energy:  # every level in one forward, free energy and forces combined alike
            tiled = tile_levels(data, levels) if conditioned else data
            energy, forces = model.free_energy_and_forces(tiled)
            w = torch.as_tensor(weights, dtype=forces.dtype, device=forces.device)
            energies.append(torch.einsum("l,lg->g", w, energy.view(len(levels), -1)).to("cpu", torch.float64).numpy())
            values = torch.einsum("l,lnk->nk", w, forces.view(len(levels), -1, 3))
        elif len(levels) == 1:
            values = model.forces(data)
        else:  # every level in one forward, then the extrapolation to sigma -> 0
            n = data["positions"].shape[0]
            per_level = model.forces(tile_levels(data, levels)).view(len(levels), n, 3)
            w = torch.as_tensor(weights, dtype=per_level.dtype, device=per_level.device)
            values = torch.einsum("l,lnk->nk", w, per_level)
        results.append(values.to("cpu", torch.float64).numpy())
    out = np.concatenate(results) if results else np.zeros((0, 3))
    if not with_energy:
        return None, out
    return (np.concatenate(energies) if energies else np.zeros(0)), out


def _setup(model: DenoiserMACE, forces: Optional[ForcesChoice], device) -> Tuple[List[float], np.ndarray, torch.device]:
    levels, weights = evaluation_levels(model, forces)
    parameter = next(model.parameters())
    return levels, weights, (parameter.device if device is None else torch.device(device))


def as_frames(model: DenoiserMACE, frames: Sequence[Union[Frame, Atoms]]) -> List[Frame]:
    """``frames`` as :class:`~ase_denoise.data.Frame` objects: ``Atoms`` are checked against the model
    (:func:`structure_frame`), frames already converted pass as they are."""
    return [structure_frame(f, model, what=f"frame {i}") if isinstance(f, Atoms) else f for i, f in enumerate(frames)]


def predict(
    model: DenoiserMACE,
    frames: Sequence[Union[Frame, Atoms]],
    *,
    output: str = "forces",
    forces: Optional[ForcesChoice] = None,
    priors: bool = True,
    exclude_priors: Sequence[str] = (),
    batch_size: int = 8,
    neighbour_lists: Optional[Sequence[SkinNeighbourList]] = None,
    device: Optional[Union[str, torch.device]] = None,
) -> np.ndarray:
    """The model's output at the (clean) positions of ``frames``, float64 numpy [n_atoms_total, 3].

    ``output``: ``"forces"`` (eV/Angstrom) or ``"eps_hat"`` (the raw, unitless network output at one
    level). ``forces``: which forces (:class:`~ase_denoise.forces.ForcesChoice`: one trained level, or
    the sigma -> 0 extrapolation of a degree; default the model's stored default, else a ladder's
    extrapolation); ``eps_hat`` needs one level. Forces are ``kT * eps_hat / sigma`` (the energy head:
    ``-dA/dx``) plus the model's priors (``priors=False``: the network's part alone;
    ``exclude_priors``: kinds to leave out, e.g. ``("coulomb_dsf",)`` when an MD engine computes that
    term itself). ``neighbour_lists``: one :class:`SkinNeighbourList` per frame to reuse and update
    (the calculator's Verlet list); default: fresh lists. ``device``: default the model's.
    ``frames``: :class:`~ase_denoise.data.Frame` objects or ``Atoms`` (checked against the model).
    """
    if output not in OUTPUTS:
        raise ValueError(f"output={output!r}: choose one of {OUTPUTS}")
    frames = as_frames(model, frames)
    levels, weights, device = _setup(model, forces, device)
    if output == "eps_hat" and (len(levels) > 1 or levels[0] == 0.0):
        raise ValueError("eps_hat is the output at one noise level: pass forces=ForcesChoice(noise_std=...) with one "
                         f"of {model.noise_levels}")
    _, out = _network_outputs(model, frames, output, levels, weights, batch_size, neighbour_lists, device)
    if output == "forces" and priors and model.priors:
        out += prior_forces(model, frames, exclude=exclude_priors, neighbour_lists=neighbour_lists)
    require_finite(out, frames, output)
    return out


def require_finite(values: np.ndarray, frames: Sequence[Frame], what: str = "forces",
                   energies: Optional[np.ndarray] = None) -> None:
    """Raise instead of returning NaN or infinite ``values`` [n_atoms_total, 3] (or ``energies``
    [n_frames]): atoms that overlap are named (:class:`~ase_denoise.data.DataError`), anything else is a
    :class:`~ase_denoise.errors.NonFiniteForcesError` naming the frame and its first atoms. An optimizer,
    a dynamics or an engine never receives them."""
    bad_atoms = ~np.isfinite(values).all(axis=1)
    bad_frames = set() if energies is None else set(np.nonzero(~np.isfinite(energies))[0].tolist())
    if not bad_atoms.any() and not bad_frames:
        return
    starts = np.cumsum([0] + [len(f.positions) for f in frames])
    bad_frames |= {int(np.searchsorted(starts, i, side="right") - 1) for i in np.nonzero(bad_atoms)[0]}
    k = min(bad_frames)
    frame = frames[k]
    where = f"frame {k}" if len(frames) > 1 else "the structure"
    refuse_overlaps(frame.positions, frame.cell, frame.pbc, what=where)
    atoms = (np.nonzero(bad_atoms[starts[k] : starts[k + 1]])[0]).tolist()
    raise NonFiniteForcesError(f"the model returned non-finite (NaN or inf) {what} for {where}"
                               + (f", atoms {atoms[:10]}" if atoms else ", its free energy")
                               + "; no atoms overlap: the weights or the priors give them (is the structure far "
                               "outside what the model was trained on?)")


def predict_free_energy(
    model: DenoiserMACE,
    frames: Sequence[Frame],
    *,
    forces: Optional[ForcesChoice] = None,
    priors: bool = True,
    exclude_priors: Sequence[str] = (),
    batch_size: int = 8,
    neighbour_lists: Optional[Sequence[SkinNeighbourList]] = None,
    device: Optional[Union[str, torch.device]] = None,
) -> Tuple[np.ndarray, np.ndarray]:
    """Energy head: the free energy ``A`` of each frame [n_frames] (eV, up to a constant) and the
    forces ``-dA/dx`` [n_atoms_total, 3] (eV/A), float64, from one forward pass.

    Arguments as :func:`predict`; a multi-level model's ``A`` is extrapolated to sigma -> 0 with the
    same weights as its forces, so the forces stay the exact gradient of the returned energy. The
    priors' energies and forces are added (``priors``, ``exclude_priors``)."""
    if model.config.head != "energy":
        raise ValueError(
            f"a free energy needs a model with head='energy'; this model's head is {model.config.head!r} "
            "(it learns forces only)"
        )
    levels, weights, device = _setup(model, forces, device)
    energy, out = _network_outputs(model, frames, "forces", levels, weights, batch_size, neighbour_lists, device)
    assert energy is not None
    if priors and model.priors:
        for k, (e, fp, start) in enumerate(_prior_terms(model, frames, exclude_priors, neighbour_lists)):
            energy[k] += e
            out[start : start + len(fp)] += fp
    require_finite(out, frames, "forces", energies=energy)
    return energy, out


def _prior_terms(
    model: DenoiserMACE, frames: Sequence[Frame], exclude: Sequence[str],
    neighbour_lists: Optional[Sequence[SkinNeighbourList]], residual_only: bool = False,
):
    """Per frame: the chosen priors' energy (eV), forces [n, 3] (eV/A) and the frame's first row.
    With ``neighbour_lists`` (already updated for these positions), the priors' pairs come from them
    (or, for priors reaching further than the model, from a wider Verlet list kept with each one)
    instead of a neighbour search per frame and call."""
    chosen = [p for p in model.priors if p.kind not in exclude and (p.in_residual or not residual_only)]
    numbers = np.asarray(model.config.atomic_numbers)
    cutoff = max((p.cutoff for p in chosen), default=0.0)
    start = 0
    for k, f in enumerate(frames):
        geometry = None
        if chosen and cutoff > 0 and neighbour_lists is not None:
            own = neighbour_lists[k]
            pairs = own if cutoff <= own.cutoff else own.wider(cutoff)  # a Verlet list of its own, kept
            geometry = PairGeometry.from_edges(f.positions, *pairs.edges(f.positions, f.cell, f.pbc))
        e, fp = total_energy_and_forces(chosen, numbers[f.species], f.positions, f.cell, f.pbc, geometry=geometry)
        yield e, fp, start
        start += f.n_atoms


def _replicas_of_one_system(frames: Sequence[Frame]) -> bool:
    """Several frames of the same atoms in the same cell (batched replicas)."""
    first = frames[0]
    return len(frames) > 1 and all(
        f.n_atoms == first.n_atoms and f.pbc == first.pbc and np.array_equal(f.species, first.species)
        and np.array_equal(f.cell, first.cell) for f in frames[1:])


def _replica_prior_forces(
    model: DenoiserMACE, frames: Sequence[Frame], chosen: Sequence, neighbour_lists: Optional[Sequence[SkinNeighbourList]],
) -> np.ndarray:
    """The priors' forces on replicas of one system [n_atoms_total, 3], every prior called once for
    all of them (:func:`ase_denoise.priors.replicas_total_energy_and_forces`) instead of once per frame."""
    first = frames[0]
    numbers = np.asarray(model.config.atomic_numbers)[first.species]
    cutoff = max((p.cutoff for p in chosen), default=0.0)
    geometry = None
    if cutoff > 0:
        parts = []
        for k, f in enumerate(frames):
            if neighbour_lists is not None:
                own = neighbour_lists[k]
                pairs = own if cutoff <= own.cutoff else own.wider(cutoff)
                parts.append(PairGeometry.from_edges(f.positions, *pairs.edges(f.positions, f.cell, f.pbc)))
            else:
                parts.append(PairGeometry.of(f.positions, f.cell, f.pbc, cutoff))
        geometry = union_geometry(parts, first.n_atoms)
    positions = np.stack([f.positions for f in frames])
    _, forces = replicas_total_energy_and_forces(chosen, numbers, positions, first.cell, first.pbc, geometry)
    return forces.reshape(-1, 3)


def prior_forces(
    model: DenoiserMACE, frames: Sequence[Frame], *, residual_only: bool = False, exclude: Sequence[str] = (),
    neighbour_lists: Optional[Sequence[SkinNeighbourList]] = None,
) -> np.ndarray:
    """The model's priors' forces (eV/A) on ``frames`` [n_atoms_total, 3] (:mod:`ase_denoise.priors`).
    ``neighbour_lists``: the frames' Verlet lists, reused for the pairs when they reach far enough.
    Frames that are replicas of one system (same atoms, same cell) are done in one call per prior."""
    chosen = [p for p in model.priors if p.kind not in exclude and (p.in_residual or not residual_only)]
    if chosen and _replicas_of_one_system(frames):
        return _replica_prior_forces(model, frames, chosen, neighbour_lists)
    parts = [fp for _, fp, _ in _prior_terms(model, frames, exclude, neighbour_lists, residual_only)]
    return np.concatenate(parts) if parts else np.zeros((0, 3))


def evaluate_forces(
    model: DenoiserMACE,
    frames: Sequence[Union[Frame, Atoms]],
    batch_size: int = 8,
    device: Optional[Union[str, torch.device]] = None,
    forces: Optional[ForcesChoice] = None,
):
    """Predicted forces (eV/Angstrom) at the clean positions of ``frames`` (as :func:`predict`, the
    model's default ``forces`` unless given) and the frames' force labels, both float64
    [n_atoms_total, 3]. Every frame must carry labels (``Frame.ref_forces``; for ``Atoms``, the
    ``ref_forces`` array or a calculator's forces)."""
    frames = as_frames(model, frames)
    missing = [i for i, f in enumerate(frames) if f.ref_forces is None]
    if missing:
        raise ValueError(f"frames {missing[:10]} carry no force labels to compare with")
    pred = predict(model, frames, batch_size=batch_size, device=device, forces=forces)
    return pred, np.concatenate([f.ref_forces for f in frames]) if frames else np.zeros((0, 3))
