"""Neighbour-list reuse (DESIGN.md section 4): a skin list built once per clean frame serves every
noisy copy, and the calculator's Verlet list serves MD, with outputs equal to fresh lists'."""

import numpy as np
import pytest
import torch
from ase.build import bulk
from ase.md.langevin import Langevin
from ase.units import fs

from ase_denoise import DenoiseCalculator, ModelConfig, build_model
from ase_denoise.data import SkinNeighbourList, collate, to_frame
from ase_denoise.sampler import DuplicationSampler


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    cfg = ModelConfig(atomic_numbers=[18], noise_std=0.1, temperature_K=94.4, r_max=4.5, num_channels=8,
                      pbc=(True, True, True), avg_num_neighbors=12.0)
    return build_model(cfg, torch.float64)


@pytest.fixture(scope="module")
def frames():
    out = []
    for i in range(3):
        a = bulk("Ar", "fcc", a=5.26, cubic=True).repeat((2, 2, 2))
        a.rattle(0.15, seed=i)
        out.append(to_frame(a, [18]))
    return out


def test_noisy_copies_reuse_one_list_and_match_fresh_lists(model, frames):
    lists = [SkinNeighbourList(4.5, skin=1.0) for _ in frames]
    for f, nl in zip(frames, lists):
        nl.edges(f.positions, f.cell, f.pbc)
    sampler = DuplicationSampler(frames, range(3), 8, 0.1, 4, seed=0)
    for batch in sampler.epoch(0):
        fr = [frames[i] for i in batch.frame_ids]
        reused = model(collate(batch.positions, fr, 1, 4.5, torch.float64,
                               neighbour_lists=[lists[i] for i in batch.frame_ids], update_lists=False))
        fresh = model(collate(batch.positions, fr, 1, 4.5, torch.float64))
        torch.testing.assert_close(reused, fresh, rtol=0, atol=1e-12)
        # wrapping x back into the cell changes nothing either
        wrapped = []
        for f, x in zip(fr, batch.positions):
            frac = np.linalg.solve(f.cell.T, x.T).T
            wrapped.append((frac - np.floor(frac)) @ f.cell)
        torch.testing.assert_close(model(collate(wrapped, fr, 1, 4.5, torch.float64)), fresh, rtol=0, atol=1e-12)
    assert [nl.n_builds for nl in lists] == [1, 1, 1]  # 24 noisy copies, one build per frame


def test_outlier_noise_gets_a_fresh_list_without_losing_the_clean_one(model, frames):
    f = frames[0]
    nl = SkinNeighbourList(4.5, skin=0.4)
    nl.edges(f.positions, f.cell, f.pbc)
    moved = f.positions.copy()
    moved[0] += [0.35, 0.0, 0.0]  # 2 * 0.35 > skin: this copy needs a fresh list
    a = model(collate([moved], [f], 1, 4.5, torch.float64, neighbour_lists=[nl], update_lists=False))
    b = model(collate([moved], [f], 1, 4.5, torch.float64))
    torch.testing.assert_close(a, b, rtol=0, atol=1e-12)
    assert nl.n_builds == 2 and not nl.needs_rebuild(f.positions, f.cell, f.pbc)


def test_md_verlet_list_gives_the_forces_of_fresh_lists(model):
    atoms = bulk("Ar", "fcc", a=5.26, cubic=True).repeat((2, 2, 2))
    atoms.rattle(0.1, seed=4)
    calc = DenoiseCalculator(model, skin=1.0)
    fresh = DenoiseCalculator(model, skin=0.0)
    atoms.calc = calc
    dyn = Langevin(atoms, 20 * fs, temperature_K=300, friction=0.02 / fs, rng=np.random.default_rng(1), fixcm=False)
    for _ in range(60):
        dyn.run(1)
        np.testing.assert_allclose(atoms.get_forces(), fresh.get_forces(atoms), rtol=0, atol=1e-12)
    assert 1 < calc.neighbours.n_builds < 30  # rebuilt when needed, not every step
    assert fresh.neighbours.n_builds == 60
