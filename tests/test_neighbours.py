"""Neighbour-list reuse (docs/design.md, "Neighbour lists"): a skin list built once per clean frame
serves every noisy copy, and the calculator's Verlet list serves MD, with outputs equal to fresh lists'."""

import numpy as np
import pytest
import torch
from ase.build import bulk
from ase.md.langevin import Langevin
from ase.units import fs

from ase_denoise import DenoiseCalculator
from ase_denoise.data import to_frame
from ase_denoise.data.graphs import collate
from ase_denoise.data.neighbours import (
    SkinNeighbourList,
    average_num_neighbors,
    neighbour_graph,
    reused_edges,
    training_skin,
)
from ase_denoise.training.sampler import DuplicationSampler

R_MAX = 4.5  # the cutoff of the shared argon_model


@pytest.fixture(scope="module")
def frames():
    out = []
    for i in range(3):
        a = bulk("Ar", "fcc", a=5.26, cubic=True).repeat((2, 2, 2))
        a.rattle(0.15, seed=i)
        out.append(to_frame(a, [18]))
    return out


def test_neighbour_graph_follows_the_edge_convention(frames):
    """vector = r[receiver] - r[sender] + shift @ cell; every pair within the cutoff, no self edge."""
    f = frames[0]
    edge_index, shifts = neighbour_graph(f.positions, f.cell, f.pbc, R_MAX)
    sender, receiver = edge_index
    d = np.linalg.norm(f.positions[receiver] - f.positions[sender] + shifts @ f.cell, axis=1)
    assert d.max() < R_MAX and d.min() > 2.0
    assert not np.any((sender == receiver) & np.all(shifts == 0, axis=1))
    # fcc at a = 5.26 A: 12 neighbours at 3.72 A within 4.5 A, so about 12 on average after rattling
    assert 10 < edge_index.shape[1] / f.n_atoms < 14
    assert average_num_neighbors(frames, R_MAX) == pytest.approx(
        np.mean([neighbour_graph(g.positions, g.cell, g.pbc, R_MAX)[0].shape[1] for g in frames]) / 32
    )
    assert training_skin(0.01) == 0.5 and training_skin(0.1) == pytest.approx(1.0)


def test_noisy_copies_reuse_one_list_and_match_fresh_lists(argon_model, frames):
    model = argon_model
    lists = [SkinNeighbourList(R_MAX, skin=1.0) for _ in frames]
    for f, nl in zip(frames, lists):
        nl.edges(f.positions, f.cell, f.pbc)
    sampler = DuplicationSampler(frames, range(3), 8, 0.1, 4, seed=0)
    for batch in sampler.epoch(0):
        fr = [frames[i] for i in batch.frame_ids]
        reused = model(collate(batch.positions, fr, 1, R_MAX, torch.float64,
                               neighbour_lists=[lists[i] for i in batch.frame_ids], update_lists=False))
        fresh = model(collate(batch.positions, fr, 1, R_MAX, torch.float64))
        torch.testing.assert_close(reused, fresh, rtol=0, atol=1e-12)
        # wrapping x back into the cell changes nothing either
        wrapped = []
        for f, x in zip(fr, batch.positions):
            frac = np.linalg.solve(f.cell.T, x.T).T
            wrapped.append((frac - np.floor(frac)) @ f.cell)
        torch.testing.assert_close(model(collate(wrapped, fr, 1, R_MAX, torch.float64)), fresh, rtol=0, atol=1e-12)
    assert [nl.n_builds for nl in lists] == [1, 1, 1]  # 24 noisy copies, one build per frame


def test_outlier_noise_gets_a_fresh_list_without_losing_the_clean_one(argon_model, frames):
    f = frames[0]
    nl = SkinNeighbourList(R_MAX, skin=0.4)
    nl.edges(f.positions, f.cell, f.pbc)
    moved = f.positions.copy()
    moved[0] += [0.35, 0.0, 0.0]  # 2 * 0.35 > skin: this copy needs a fresh list
    a = argon_model(collate([moved], [f], 1, R_MAX, torch.float64, neighbour_lists=[nl], update_lists=False))
    b = argon_model(collate([moved], [f], 1, R_MAX, torch.float64))
    torch.testing.assert_close(a, b, rtol=0, atol=1e-12)
    assert nl.n_builds == 2 and not nl.needs_rebuild(f.positions, f.cell, f.pbc)


def test_a_batch_reuses_its_lists_at_once_with_the_edges_of_one_graph_at_a_time(frames):
    """``reused_edges`` (collate's batch path) gives the concatenated per-graph edges, edge for edge
    and in order, for graphs of different sizes and periodicities; one copy that moved past its
    skin makes it decline (None), and then the per-graph path rebuilds that copy alone."""
    rng = np.random.default_rng(0)
    molecules = [to_frame(bulk("Ar", "fcc", a=5.26, cubic=True).repeat((1, 1, 2)), [18]) for _ in range(2)]
    for m in molecules:
        m.pbc = (False, False, False)
    graphs = [frames[0], molecules[0], frames[1], molecules[1], frames[2]]
    lists = [SkinNeighbourList(R_MAX, skin=0.5) for _ in graphs]
    for f, nl in zip(graphs, lists):
        nl.edges(f.positions, f.cell, f.pbc)
    noisy = [f.positions + rng.normal(0.0, 0.05, f.positions.shape) for f in graphs]
    edge_index, shifts = reused_edges(lists, noisy, [f.cell for f in graphs], [f.pbc for f in graphs])
    offsets = np.cumsum([0] + [f.n_atoms for f in graphs])[:-1]
    one_by_one = [nl.edges(x, f.cell, f.pbc, update=False) for nl, x, f in zip(lists, noisy, graphs)]
    np.testing.assert_array_equal(edge_index, np.concatenate([e + o for (e, _), o in zip(one_by_one, offsets)], axis=1))
    np.testing.assert_array_equal(shifts, np.concatenate([s for _, s in one_by_one]))
    assert {e.shape[1] for e, _ in one_by_one[1::2]} != {0} and [nl.n_builds for nl in lists] == [1] * 5

    noisy[3][0] += [0.3, 0.0, 0.0]  # 2 * 0.3 > skin: this copy needs a fresh list
    assert reused_edges(lists, noisy, [f.cell for f in graphs], [f.pbc for f in graphs]) is None
    data = collate(noisy, graphs, 1, R_MAX, torch.float64, neighbour_lists=lists, update_lists=False)
    fresh = collate(noisy, graphs, 1, R_MAX, torch.float64)
    assert data["edge_index"].shape == fresh["edge_index"].shape
    assert [nl.n_builds for nl in lists] == [1, 1, 1, 2, 1]
    assert reused_edges(lists[:1], noisy[:1], [frames[0].cell], [(False, False, False)]) is None  # other periodicity
    assert reused_edges(lists[:1], noisy[:1], [frames[0].cell * 1.01], [frames[0].pbc]) is None  # other cell
    assert reused_edges(lists[:1], noisy[:1], [frames[0].cell], [frames[0].pbc]) is not None
    assert reused_edges([], [], [], []) is None  # no graphs: nothing to reuse


def test_md_verlet_list_gives_the_forces_of_fresh_lists(argon_model):
    atoms = bulk("Ar", "fcc", a=5.26, cubic=True).repeat((2, 2, 2))
    atoms.rattle(0.1, seed=4)
    calc = DenoiseCalculator(argon_model, skin=1.0)
    fresh = DenoiseCalculator(argon_model, skin=0.0)
    atoms.calc = calc
    dyn = Langevin(atoms, 20 * fs, temperature_K=300, friction=0.02 / fs, rng=np.random.default_rng(1), fixcm=False)
    for _ in range(60):
        dyn.run(1)
        np.testing.assert_allclose(atoms.get_forces(), fresh.get_forces(atoms), rtol=0, atol=1e-12)
    assert 1 < calc.neighbours.n_builds < 30  # rebuilt when needed, not every step
    assert fresh.neighbours.n_builds == 60
