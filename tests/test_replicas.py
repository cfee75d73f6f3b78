"""Batched Langevin replicas (ase_denoise.md.replicas): the same trajectories as separate ASE runs, the
right temperature, one batched forward per step."""

from __future__ import annotations

import numpy as np
import pytest
from ase import units
from ase.build import bulk
from ase.md.langevin import Langevin
from ase.md.velocitydistribution import thermalize_momenta

from ase_denoise import DenoiseCalculator
from ase_denoise.md import ReplicaLangevin


def test_each_replica_follows_its_own_ase_langevin_run(argon_model, argon):
    """Replica i with seed s_i equals ASE's Langevin (fixcm=False) with rng default_rng(s_i): the same
    scheme, coefficients and random draws, forces from one batched forward instead of N calls."""
    starts = []
    for k in range(3):
        atoms = argon.copy()
        atoms.rattle(0.05, seed=10 + k)
        atoms.set_masses([50.0] * len(atoms))  # not argon's: the replicas keep the structures' own masses
        starts.append(atoms)
    seeds = [7, 8, 9]
    batch = ReplicaLangevin(argon_model, starts, temperature_K=94.4, timestep_fs=5.0, friction_per_fs=0.02, seeds=seeds)
    batch.run(30, interval=10)
    for atoms, seed, i in zip(starts, seeds, range(3)):
        atoms = atoms.copy()
        atoms.calc = DenoiseCalculator(argon_model)
        rng = np.random.default_rng(seed)
        thermalize_momenta(atoms, temperature_K=94.4, rng=rng)
        Langevin(atoms, 5.0 * units.fs, temperature_K=94.4, friction=0.02 / units.fs, fixcm=False, rng=rng).run(30)
        np.testing.assert_allclose(batch.positions[i], atoms.positions, rtol=0, atol=1e-9)
        np.testing.assert_allclose(batch.atoms(i).get_momenta(), atoms.get_momenta(), rtol=0, atol=1e-9)
        assert batch.atoms(i).get_temperature() == pytest.approx(atoms.get_temperature(), rel=1e-9)


def test_replicas_hold_the_thermostat_temperature(zoo_argon):
    """8 replicas of the 32-atom argon crystal at the zoo model's density, 300 steps of 10 fs: the mean
    kinetic temperature over replicas and the last 200 steps is within 6 K of 94.4 K (one sample's
    spread is about 94.4 * sqrt(2 / 96) = 14 K; 8 replicas x 20 samples, correlated in time)."""
    lattice = bulk("Ar", "fcc", a=5.78, cubic=True).repeat(2)
    starts = []
    for k in range(8):
        atoms = lattice.copy()
        atoms.rattle(0.05, seed=k)
        starts.append(atoms)
    batch = ReplicaLangevin(zoo_argon, starts, temperature_K=94.4, timestep_fs=10.0, friction_per_fs=0.01)
    result = batch.run(300, interval=10)
    assert result["stopped"] is None and result["temperatures_K"].shape == (31, 8)
    assert abs(result["temperatures_K"][11:].mean() - 94.4) < 6.0


def test_replicas_refuse_different_systems(argon_model, argon):
    other = argon.copy()
    del other[0]
    with pytest.raises(ValueError, match="same atoms"):
        ReplicaLangevin(argon_model, [argon, other], temperature_K=94.4)
    with pytest.raises(ValueError, match="seeds"):
        ReplicaLangevin(argon_model, [argon, argon.copy()], temperature_K=94.4, seeds=[1])


@pytest.mark.slow
def test_gpu_benchmark_script_runs_on_the_cpu(tmp_path):
    """``benchmarks/gpu_replicas.py`` (run on lent GPUs only) in its CPU smoke mode: every engine it
    times gives a positive rate and the table names them (guards the script against API drift)."""
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parent.parent / "benchmarks" / "gpu_replicas.py"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run([sys.executable, str(script), "--device", "cpu", "--quick", "--out", str(tmp_path)],
                   check=True, env=env, capture_output=True, timeout=600)
    report = json.loads((tmp_path / "replicas_gpu.json").read_text())
    rows = report["results"]
    assert [r["atoms"] for r in rows] == [48, 108, 108]
    for r in rows:
        assert r["ase_device"] > 0 and r["ase_cpu"] > 0
        assert all(v > 0 for v in r["batched"].values()) and all(v > 0 for v in r["torchsim"].values())
    for check in report["agreement"].values():  # the same float64 model on "both" devices: identical
        assert check["replica_positions_max_diff_A"] < 1e-12 and check["torchsim_forces_max_diff_eV_A"] < 1e-12
    table = (tmp_path / "replicas_gpu.md").read_text()
    assert "ase_denoise.md.replicas.ReplicaLangevin" in table and "torch-sim nvt_langevin" in table
