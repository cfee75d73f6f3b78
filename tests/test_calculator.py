"""The forces-only ASE calculator (DESIGN.md section 6)."""

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import bulk
from ase.calculators.calculator import Calculator, PropertyNotImplementedError
from ase.md.langevin import Langevin
from ase.units import fs, kB

from ase_denoise import DataError, DenoiseCalculator, ModelConfig, build_model
from ase_denoise.testing import model_output


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    cfg = ModelConfig(
        atomic_numbers=[18], noise_std=0.05, temperature_K=94.4, r_max=4.5, num_channels=8, max_ell=2,
        correlation=2, pbc=(True, True, True), avg_num_neighbors=12.0,
    )
    return build_model(cfg, torch.float64)


@pytest.fixture
def argon():
    atoms = bulk("Ar", "fcc", a=5.26, cubic=True).repeat((2, 2, 2))
    atoms.rattle(0.1, seed=0)
    return atoms


def test_forces_shape_dtype_and_units(model, argon):
    argon.calc = DenoiseCalculator(model)
    forces = argon.get_forces()
    assert forces.shape == (len(argon), 3) and forces.dtype == np.float64
    # units: eV/A = kB[eV/K] * T[K] * eps_hat / sigma[A]
    expected = kB * 94.4 * model_output(model, argon) / 0.05
    np.testing.assert_allclose(forces, expected, rtol=1e-12, atol=0)
    assert np.abs(forces).max() > 0


def test_float32_calculator_agrees_with_float64(model, argon):
    f64 = DenoiseCalculator(model).get_forces(argon)
    f32 = DenoiseCalculator(build_model(model.config, torch.float64), dtype=torch.float32)
    f32.model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in model.state_dict().items()})
    assert f32.get_forces(argon).dtype == np.float64
    np.testing.assert_allclose(f32.get_forces(argon), f64, atol=1e-4 * np.abs(f64).max())


def test_energy_and_stress_raise_with_a_reason(model, argon):
    argon.calc = DenoiseCalculator(model)
    for getter in (argon.get_potential_energy, argon.get_stress, argon.get_total_energy):
        with pytest.raises(PropertyNotImplementedError, match="forces"):
            getter()


def test_does_not_touch_ase_class_attributes(model):
    before = list(Calculator.implemented_properties)
    calc = DenoiseCalculator(model)
    calc.implemented_properties.append("energy")  # instance copy, not the class list
    assert DenoiseCalculator.implemented_properties == ["forces"]
    assert Calculator.implemented_properties == before


def test_unknown_element_is_named(model, argon):
    argon.numbers[3] = 54  # Xe
    argon.calc = DenoiseCalculator(model)
    with pytest.raises(DataError, match=r"\['Xe'\].*\['Ar'\]"):
        argon.get_forces()


def test_nan_positions_are_refused(model, argon):
    argon.positions[5, 1] = np.nan
    argon.calc = DenoiseCalculator(model)
    with pytest.raises(DataError, match="non-finite"):
        argon.get_forces()


def test_periodicity_and_small_cells_are_refused(model, argon):
    calc = DenoiseCalculator(model)
    dimer = Atoms("Ar2", positions=[[0, 0, 0], [3.8, 0, 0]])
    with pytest.raises(DataError, match="periodicity"):
        calc.get_forces(dimer)
    tiny = bulk("Ar", "fcc", a=5.26, cubic=True)  # 5.26 A box, cutoff 4.5: ok
    calc.get_forces(tiny)
    tiny.set_cell(tiny.cell * 0.8, scale_atoms=True)  # 4.2 A < r_max
    with pytest.raises(DataError, match="too small"):
        calc.get_forces(tiny)


def test_langevin_100_steps_stay_finite(model, argon):
    argon.calc = DenoiseCalculator(model)
    dyn = Langevin(argon, 5 * fs, temperature_K=94.4, friction=0.01 / fs, rng=np.random.default_rng(0), fixcm=False)
    dyn.run(100)
    assert np.all(np.isfinite(argon.positions)) and np.all(np.isfinite(argon.get_forces()))


def test_results_are_recomputed_when_positions_change(model, argon):
    argon.calc = DenoiseCalculator(model)
    f1 = argon.get_forces().copy()
    argon.positions[0] += 0.2
    assert not np.allclose(argon.get_forces(), f1)
