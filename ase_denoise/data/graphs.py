"""Frames to graphs: MACE's batch format (see :mod:`ase_denoise.model`), with the edges of
:mod:`ase_denoise.data.neighbours`."""

from __future__ import annotations

from typing import Dict, Optional, Sequence, Union

import numpy as np
import torch

from .frames import Frame
from .neighbours import SkinNeighbourList, neighbour_graph, reused_edges


def collate(
    positions: Sequence[np.ndarray],
    frames: Sequence[Frame],
    n_elements: int,
    cutoff: float,
    dtype: torch.dtype,
    device: Union[str, torch.device] = "cpu",
    neighbour_lists: Optional[Sequence[SkinNeighbourList]] = None,
    update_lists: bool = True,
    noise_std: Optional[Sequence[float]] = None,
) -> Dict[str, torch.Tensor]:
    """Batch graphs for the (possibly noisy) ``positions`` of ``frames`` (MACE's batch format).

    ``neighbour_lists``: one :class:`SkinNeighbourList` per item to reuse (its cutoff must be
    ``cutoff``; ``update_lists`` is passed on as ``update``); without them each graph gets a fresh list.
    ``noise_std``: the noise level (Angstrom) each graph is evaluated at, stored as
    ``data["noise_std"]`` [n_graphs]; a model with a single level needs none.
    """
    reused = None if neighbour_lists is None else reused_edges(
        neighbour_lists, positions, [f.cell for f in frames], [f.pbc for f in frames])
    if reused is not None:  # every list reused as it stands: the whole batch in a few array operations
        edge_index, shifts = reused
        sizes = [len(pos) for pos in positions]
        pos_list, attr_list = list(positions), [frame.species for frame in frames]
        edge_list, shift_list = [edge_index], [shifts]
        batch_list = [np.repeat(np.arange(len(sizes), dtype=np.int64), sizes)]
        ptr = [0, *np.cumsum(sizes).tolist()]
    else:
        pos_list, attr_list, edge_list, shift_list, batch_list = [], [], [], [], []
        ptr = [0]
        offset = 0
        for g, (pos, frame) in enumerate(zip(positions, frames)):
            if neighbour_lists is None:
                edge_index, unit_shifts = neighbour_graph(pos, frame.cell, frame.pbc, cutoff)
                shifts = unit_shifts @ frame.cell
            else:
                edge_index, shifts = neighbour_lists[g].edges(pos, frame.cell, frame.pbc, update=update_lists)
            pos_list.append(pos)
            attr_list.append(frame.species)
            edge_list.append(edge_index + offset)
            shift_list.append(shifts)
            batch_list.append(np.full(len(pos), g, dtype=np.int64))
            offset += len(pos)
            ptr.append(offset)
    # each graph about its centre, in float64, before any float32 cast: a structure far from the origin
    # keeps the precision of its edge vectors (nothing depends on the origin: edges are differences)
    pos_list = [np.asarray(pos, dtype=np.float64) - np.asarray(pos, dtype=np.float64).mean(axis=0) for pos in pos_list]
    species = torch.from_numpy(np.concatenate(attr_list))
    return {
        "positions": torch.as_tensor(np.concatenate(pos_list), dtype=dtype, device=device),
        "node_attrs": torch.nn.functional.one_hot(species, n_elements).to(dtype=dtype, device=device),
        "edge_index": torch.as_tensor(np.concatenate(edge_list, axis=1), dtype=torch.int64, device=device),
        "shifts": torch.as_tensor(np.concatenate(shift_list), dtype=dtype, device=device),
        "batch": torch.as_tensor(np.concatenate(batch_list), device=device),
        "ptr": torch.as_tensor(ptr, dtype=torch.int64, device=device),
        **({} if noise_std is None else {"noise_std": torch.as_tensor(list(noise_std), dtype=dtype, device=device)}),
    }
