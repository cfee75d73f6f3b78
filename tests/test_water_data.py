"""One-bead water data (benchmarks/water/make_data.py): beads at the molecules' centres of
mass with the total force on each molecule; the box holds the requested molecules. OpenMM is an
optional extra (skips without it, fails under CI=true)."""

from __future__ import annotations

import importlib.util
import json
import os

import numpy as np
import pytest

if importlib.util.find_spec("openmm") is None:  # pragma: no cover
    if os.environ.get("CI") == "true":
        raise ImportError("openmm is not installed but CI=true: the water data tests must run in CI")
    pytest.skip("openmm is not installed (pip install 'ase_denoise[openmm]')", allow_module_level=True)

from _helpers import benchmark_module  # noqa: E402


@pytest.fixture(scope="module")
def water():
    return benchmark_module("water/make_data.py")


def test_beads_are_centres_of_mass_with_the_total_molecular_force(water):
    groups = np.array([[0, 1, 2], [3, 4, 5]])
    masses = np.array([16.0, 1.0, 1.0] * 2)
    positions = np.arange(18, dtype=float).reshape(6, 3)
    forces = np.random.default_rng(0).normal(size=(6, 3))
    com, total = water.map_to_beads(positions, forces, masses, groups)
    np.testing.assert_allclose(com[0], (16 * positions[0] + positions[1] + positions[2]) / 18)
    np.testing.assert_allclose(total[1], forces[3:].sum(axis=0))


def test_a_short_run_writes_the_mapped_frames(water, tmp_path):
    out = tmp_path / "w.npz"
    assert water.main(["--output", str(out), "--n-waters", "64", "--cutoff-nm", "0.6", "--npt-ps", "1",
                       "--nvt-equil-ps", "0.2", "--n-frames", "4", "--frame-interval-ps", "0.05"]) == 0
    d = np.load(out)
    assert d["positions"].shape == d["forces"].shape == (4, 64, 3)
    edge = d["cell"][0, 0]
    assert np.all((d["positions"] >= 0) & (d["positions"] < edge))
    # Newton's third law over the whole box (PME leaves a small net force)
    assert np.abs(d["forces"].sum(axis=1)).max() < 1e-2 * np.abs(d["forces"]).max()
    assert json.loads(str(d["metadata"]))["n_waters"] == 64
