"""The configurational temperature (``ase_denoise.refine.force_scale``): Stein's identity measures the
size of a model's forces against the data's without labels.

The model here is a real denoiser whose network is silenced (all weights zero) carrying a harmonic
bond prior: its forces are then known exactly, so the measured scale can be checked against the
true one on exact Boltzmann samples of the dimer.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
import torch
from ase import Atoms

from _helpers import TINY, make_model
from ase_denoise.data.reference import harmonic_dimer_forces, sample_harmonic_dimer
from ase_denoise.model import copy_model
from ase_denoise.priors import HarmonicBonds
from ase_denoise.refine import configurational_temperature

K, D0, T = 5.0, 1.5, 300.0  # eV/A^2, A, K
PER_FRAME = 64  # independent dimers per frame, 8 A apart (beyond the tiny model's 3 A cutoff)


@pytest.fixture(scope="module")
def dimers():
    """150 frames of 64 exact Boltzmann dimers each (9600 bonds)."""
    single = sample_harmonic_dimer(150 * PER_FRAME, k=K, d0=D0, temperature_K=T, seed=11)
    grid = 8.0 * np.array([(i, j, k) for i in range(4) for j in range(4) for k in range(4)], dtype=float)
    frames = []
    for start in range(0, len(single), PER_FRAME):
        positions = np.concatenate([a.positions + g for a, g in zip(single[start:start + PER_FRAME], grid)])
        frames.append(Atoms("H" * len(positions), positions=positions, info={"temperature_K": T}))
    return frames


def bond_model(k: float, d0: float = D0):
    """A denoiser whose forces are exactly the harmonic bonds ``k``, ``d0`` of the dimers: the
    network's weights are zero, so only the prior acts."""
    model = make_model([1], temperature_K=T, noise_std=0.05, **TINY)
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
    n = PER_FRAME
    bonds = HarmonicBonds([(2 * i, 2 * i + 1) for i in range(n)], [d0] * n, [k] * n)
    return copy_model(model, physics=replace(model.physics, priors=[bonds.to_dict()]))


def true_forces(atoms: Atoms) -> np.ndarray:
    return np.concatenate([harmonic_dimer_forces(atoms.positions[i:i + 2], K, D0)
                           for i in range(0, len(atoms), 2)])


def test_the_true_forces_have_scale_one_and_a_scaled_field_its_factor(dimers):
    exact = configurational_temperature(bond_model(K), dimers, max_frames=len(dimers))
    assert exact.error < 0.025
    assert abs(exact.ratio - 1.0) < 3 * exact.error, exact.line()
    assert math.isclose(exact.configurational_temperature_K, exact.ratio * T)
    stronger = configurational_temperature(bond_model(1.2 * K), dimers, max_frames=len(dimers))
    assert abs(stronger.ratio - 1.2) < 3 * stronger.error, stronger.line()
    # the label-free estimate of F_true . F matches the labels frame by frame on average
    true_dot = np.mean([(true_forces(a) ** 2).sum() for a in dimers])
    assert abs(exact.force_dot.mean() - true_dot) < 4 * exact.force_dot.std() / math.sqrt(len(dimers))


def test_forces_that_do_not_follow_the_data_have_no_scale(dimers):
    # a silenced network alone has no forces at all: no scale, said so, not a division by zero
    silent = make_model([1], temperature_K=T, noise_std=0.05, **TINY)
    with torch.no_grad():
        for p in silent.parameters():
            p.zero_()
    none = configurational_temperature(silent, dimers[:10])
    assert math.isnan(none.ratio) and "no force scale" in none.line()


def test_frames_at_another_temperature_are_refused(dimers):
    hot = [a.copy() for a in dimers[:10]]
    for a in hot:
        a.info["temperature_K"] = 600.0
    with pytest.raises(ValueError, match="temperature"):
        configurational_temperature(bond_model(K), hot)
