"""Committees: DenoiseCalculator over several models returns the members' mean forces and their own
forces (``forces_comm``), with the priors of identical members added once."""

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.md.langevin import Langevin
from ase.units import fs

from ase_denoise import DenoiseCalculator, save_model
from ase_denoise.config import ModelConfig, PhysicsConfig
from ase_denoise.model import build_model
from ase_denoise.priors import DSFCoulomb, RepulsiveWall
from ase_denoise.forces import ForcesChoice

from _helpers import ARGON_TINY, make_model


@pytest.fixture(scope="module")
def members():
    """Three argon models that differ only in their initial weights (the seeds of one recipe)."""
    return [make_model([18], noise_std=0.05, temperature_K=94.4, pbc=True, seed=seed, **ARGON_TINY) for seed in range(3)]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_committee_forces_are_the_mean_of_its_members(members, argon, dtype):
    tol = dict(rtol=0, atol=1e-12) if dtype == torch.float64 else dict(rtol=0, atol=1e-5)
    singles = np.stack([DenoiseCalculator(m, dtype=dtype).get_forces(argon) for m in members])
    assert not np.allclose(singles[0], singles[1], atol=1e-3 * np.abs(singles).max())  # the members differ
    argon.calc = DenoiseCalculator(members, dtype=dtype)
    np.testing.assert_allclose(argon.get_forces(), singles.mean(axis=0), **tol)
    comm = argon.calc.get_property("forces_comm", argon)
    assert comm.shape == (3, len(argon), 3)
    np.testing.assert_allclose(comm, singles, **tol)
    assert all(next(m.parameters()).dtype == torch.float64 for m in members)  # the caller's models are untouched
    # a committee of one is the model itself; files and models can be mixed
    one = DenoiseCalculator([members[0]], dtype=dtype)
    np.testing.assert_allclose(one.get_forces(argon), singles[0], rtol=0, atol=0)
    assert "forces_comm" not in one.implemented_properties


def test_a_committee_runs_ase_dynamics_from_files(members, argon, tmp_path):
    paths = []
    for k, m in enumerate(members):
        paths.append(tmp_path / f"member{k}.safetensors")
        save_model(m, paths[-1])
    argon.calc = DenoiseCalculator(paths)
    start = argon.get_positions().copy()
    Langevin(argon, 2 * fs, temperature_K=94.4, friction=0.01 / fs, fixcm=False, rng=np.random.default_rng(0)).run(5)
    assert np.isfinite(argon.get_positions()).all() and not np.allclose(argon.get_positions(), start)
    assert argon.calc.get_property("forces_comm", argon).shape == (3, len(argon), 3)


def _salt_model(seed, wall_epsilon=0.03):
    physics = PhysicsConfig(
        300.0, 0.05, (True, True, True),
        priors=[RepulsiveWall({(3, 17): 2.0, (3, 3): 2.5, (17, 17): 3.0}, epsilon=wall_epsilon).to_dict(),
                DSFCoulomb({3: 1.0, 17: -1.0}, 78.0, r_cut=4.0).to_dict()],
    )
    return build_model(ModelConfig([3, 17], r_max=4.0, num_channels=4, avg_num_neighbors=8.0), physics,
                       torch.float64, seed=seed)


@pytest.mark.parametrize("same_priors", [True, False])
def test_committee_with_priors_is_the_mean_of_the_members_full_forces(same_priors):
    rng = np.random.default_rng(0)
    atoms = Atoms("Li4Cl4", positions=rng.uniform(0, 8.0, (8, 3)), cell=[8.0] * 3, pbc=True)
    atoms.positions[4] = atoms.positions[0] + [1.8, 0, 0]  # inside the Li-Cl wall: the prior is large
    models = [_salt_model(0), _salt_model(1, wall_epsilon=0.03 if same_priors else 0.05)]
    singles = np.stack([DenoiseCalculator(m).get_forces(atoms) for m in models])
    calc = DenoiseCalculator(models)
    assert calc._shared_priors is same_priors
    np.testing.assert_allclose(calc.get_forces(atoms), singles.mean(axis=0), rtol=0, atol=1e-11)
    np.testing.assert_allclose(calc.get_property("forces_comm", atoms), singles, rtol=0, atol=1e-11)
    # leaving a prior out leaves it out of every member
    without = np.stack([DenoiseCalculator(m, exclude_priors=["coulomb_dsf"]).get_forces(atoms) for m in models])
    np.testing.assert_allclose(DenoiseCalculator(models, exclude_priors=["coulomb_dsf"]).get_forces(atoms),
                               without.mean(axis=0), rtol=0, atol=1e-11)


def test_energy_head_committee_averages_the_free_energy(argon):
    models = [make_model([18], noise_std=0.05, temperature_K=94.4, pbc=True, seed=s, **dict(ARGON_TINY, head="energy", energy_mlp=8))
              for s in (0, 1)]
    singles = [DenoiseCalculator(m) for m in models]
    energies = np.array([c.get_potential_energy(argon) for c in singles])
    assert abs(energies[0] - energies[1]) > 1e-8
    calc = DenoiseCalculator(models)
    assert calc.get_potential_energy(argon) == pytest.approx(energies.mean(), abs=1e-12)
    assert calc.get_property("energy_var", argon) == pytest.approx(energies.var(), abs=1e-12)
    np.testing.assert_allclose(calc.get_property("energy_comm", argon), energies, rtol=0, atol=1e-12)
    np.testing.assert_allclose(calc.get_forces(argon), np.mean([c.get_forces(argon) for c in singles], axis=0),
                               rtol=0, atol=1e-12)


def test_committee_refuses_members_of_different_kinds(members):
    warm = make_model([18], noise_std=0.05, temperature_K=300.0, pbc=True, seed=0, **ARGON_TINY)
    with pytest.raises(ValueError, match="temperature_K"):
        DenoiseCalculator([members[0], warm])
    other_elements = make_model([10, 18], noise_std=0.05, temperature_K=94.4, pbc=True, seed=0, **ARGON_TINY)
    with pytest.raises(ValueError, match="atomic_numbers"):
        DenoiseCalculator([members[0], other_elements])
    wider = make_model([18], noise_std=0.05, temperature_K=94.4, pbc=True, seed=0, **dict(ARGON_TINY, r_max=4.0))
    with pytest.raises(ValueError, match="r_max"):
        DenoiseCalculator([members[0], wider])
    with pytest.raises(ValueError, match="at least one"):
        DenoiseCalculator([])
    with pytest.raises(ValueError, match="not a trained level"):
        DenoiseCalculator(members, forces=ForcesChoice(noise_std=0.1))
