"""The forces-only ASE calculator (docs/design.md, "Calculator contract")."""

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import bulk
from ase.calculators.calculator import Calculator, PropertyNotImplementedError
from ase.md.langevin import Langevin
from ase.units import fs, kB

from ase_denoise import DataError, DenoiseCalculator
from ase_denoise.model import build_model
from ase_denoise.inference import predict, structure_frame
from ase_denoise.testing import model_output


def test_forces_shape_dtype_and_units(argon_model, argon):
    argon.calc = DenoiseCalculator(argon_model)
    forces = argon.get_forces()
    assert forces.shape == (len(argon), 3) and forces.dtype == np.float64
    # units: eV/A = kB[eV/K] * T[K] * eps_hat / sigma[A]
    expected = kB * 94.4 * model_output(argon_model, argon) / 0.05
    np.testing.assert_allclose(forces, expected, rtol=1e-12, atol=0)
    assert np.abs(forces).max() > 0
    assert argon.calc.noise_levels == (0.05,) and argon.calc.temperature_K == 94.4


def test_calculator_and_predict_are_one_path(argon_model, argon):
    """The calculator, predict() and batching give the same forces (one structure -> forces path)."""
    frame = structure_frame(argon, argon_model)
    single = predict(argon_model, [frame])
    moved = argon.copy()
    moved.positions[0] += 0.1
    both = predict(argon_model, [frame, structure_frame(moved, argon_model)], batch_size=2)
    np.testing.assert_allclose(both[: len(argon)], single, rtol=0, atol=1e-13)
    assert not np.allclose(both[len(argon):], single)
    np.testing.assert_allclose(DenoiseCalculator(argon_model).get_forces(argon), single, rtol=0, atol=1e-13)
    eps = predict(argon_model, [frame], output="eps_hat")
    np.testing.assert_allclose(single, argon_model.kT * eps / 0.05, rtol=1e-12, atol=0)
    with pytest.raises(ValueError, match="output"):
        predict(argon_model, [frame], output="energy")


def test_float32_calculator_agrees_with_float64(argon_model, argon):
    f64 = DenoiseCalculator(argon_model).get_forces(argon)
    copy = build_model(argon_model.config, argon_model.physics, torch.float64)
    copy.load_state_dict(argon_model.state_dict())
    f32 = DenoiseCalculator(copy, dtype=torch.float32)  # converts the copy, not the shared model
    assert next(f32.model.parameters()).dtype == torch.float32
    assert f32.get_forces(argon).dtype == np.float64
    np.testing.assert_allclose(f32.get_forces(argon), f64, atol=1e-4 * np.abs(f64).max())


def test_energy_and_stress_raise_with_a_reason(argon_model, argon):
    argon.calc = DenoiseCalculator(argon_model)
    for getter in (argon.get_potential_energy, argon.get_stress, argon.get_total_energy):
        with pytest.raises(PropertyNotImplementedError, match="forces"):
            getter()


def test_does_not_touch_ase_class_attributes(argon_model):
    before = list(Calculator.implemented_properties)
    calc = DenoiseCalculator(argon_model)
    calc.implemented_properties.append("energy")  # instance copy, not the class list
    assert DenoiseCalculator.implemented_properties == ["forces"]
    assert Calculator.implemented_properties == before


def test_check_structure_names_the_problem_without_computing(argon_model, argon):
    calc = DenoiseCalculator(argon_model)
    calc.check_structure(argon)  # fine
    argon.numbers[3] = 54  # Xe
    with pytest.raises(DataError, match=r"\['Xe'\].*\['Ar'\]"):
        calc.check_structure(argon)
    assert calc.results == {}


def test_periodicity_and_small_cells_are_refused(argon_model):
    calc = DenoiseCalculator(argon_model)
    dimer = Atoms("Ar2", positions=[[0, 0, 0], [3.8, 0, 0]])
    with pytest.raises(DataError, match="periodicity"):
        calc.get_forces(dimer)
    tiny = bulk("Ar", "fcc", a=5.26, cubic=True)  # 5.26 A box, cutoff 4.5: ok
    calc.get_forces(tiny)
    tiny.set_cell(tiny.cell * 0.8, scale_atoms=True)  # 4.2 A < r_max
    with pytest.raises(DataError, match="too small"):
        calc.get_forces(tiny)


def test_langevin_100_steps_stay_finite(argon_model, argon):
    argon.calc = DenoiseCalculator(argon_model)
    dyn = Langevin(argon, 5 * fs, temperature_K=94.4, friction=0.01 / fs, rng=np.random.default_rng(0), fixcm=False)
    dyn.run(100)
    assert np.all(np.isfinite(argon.positions)) and np.all(np.isfinite(argon.get_forces()))


def test_results_are_recomputed_when_positions_change(argon_model, argon):
    argon.calc = DenoiseCalculator(argon_model)
    f1 = argon.get_forces().copy()
    argon.positions[0] += 0.2
    assert not np.allclose(argon.get_forces(), f1)


def test_model_file_and_zoo_name_are_accepted(argon_model, argon_model_file, argon, zoo_argon, monkeypatch):
    monkeypatch.delenv("ASE_DENOISE_MODELS_DIR", raising=False)  # the shipped zoo
    np.testing.assert_array_equal(
        DenoiseCalculator(str(argon_model_file)).get_forces(argon), DenoiseCalculator(argon_model).get_forces(argon)
    )
    box = bulk("Ar", "fcc", a=5.78, cubic=True).repeat(2)  # the zoo model's cutoff is 5 A
    calc = DenoiseCalculator("lj-argon-94K")
    assert calc.noise_levels == zoo_argon.noise_levels == (0.025, 0.04, 0.06) and calc.temperature_K == 94.4
    np.testing.assert_array_equal(calc.get_forces(box), DenoiseCalculator(zoo_argon).get_forces(box))


def test_structure_frame_moves_only_far_atoms_back_by_lattice_vectors(argon_model, argon):
    """MD never wraps positions: atoms more than one cell length outside the periodic cell are moved
    back by whole lattice vectors (keeps float32 edge vectors precise), atoms just outside stay put
    (so a Verlet list is not rebuilt whenever an atom crosses a face); the forces are unchanged."""
    cell = argon.cell.array
    moved = argon.copy()
    moved.positions[2] += 5 * cell[0] - 3 * cell[2]  # far out
    moved.positions[9] += cell[1]  # just outside (less than one cell length)
    frame = structure_frame(moved, argon_model)
    scaled = np.linalg.solve(cell.T, frame.positions[2])
    assert np.all((0 <= scaled) & (scaled < 1))  # back inside the cell...
    shift = np.linalg.solve(cell.T, frame.positions[2] - moved.positions[2])
    np.testing.assert_allclose(shift, np.round(shift), rtol=0, atol=1e-12)  # ...by whole lattice vectors
    np.testing.assert_array_equal(frame.positions[9], moved.positions[9])
    np.testing.assert_array_equal(np.delete(frame.positions, 2, axis=0), np.delete(moved.positions, 2, axis=0))
    assert np.array_equal(moved.positions[2], argon.positions[2] + 5 * cell[0] - 3 * cell[2])  # input untouched
    np.testing.assert_allclose(predict(argon_model, [frame]), predict(argon_model, [structure_frame(argon, argon_model)]),
                               rtol=0, atol=1e-10)


def test_keywords_are_checked_and_dtype_takes_names(argon_model, argon, tmp_path):
    """Unknown keywords are refused (ASE's Calculator would keep them as unused parameters); the
    dtype is a torch dtype, its name, or MACE's ``default_dtype`` spelling; the old per-value keywords
    say the new way; a model converted to another dtype stays untouched and no TorchScript warning
    is emitted on the way."""
    import warnings

    for bad in (dict(bogus=1), dict(model_paths="x"), dict(default_dtype="float64", dtype="float32")):
        with pytest.raises(TypeError):
            DenoiseCalculator(argon_model, **bad)
    with pytest.raises(TypeError, match=r"forces=ForcesChoice\(noise_std=0.05\)"):
        DenoiseCalculator(argon_model, noise_std=0.05)
    with pytest.raises(ValueError, match="dtype='float16'"):
        DenoiseCalculator(argon_model, dtype="float16")
    reference = DenoiseCalculator(argon_model).get_forces(argon)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a deep copy of the model would recompile e3nn's kernels, warning
        for kw in (dict(dtype="float32"), dict(default_dtype="float32"), dict(dtype=torch.float32)):
            calc = DenoiseCalculator(argon_model, **kw)
            assert next(calc.model.parameters()).dtype == torch.float32
            np.testing.assert_allclose(calc.get_forces(argon), reference, atol=1e-4 * np.abs(reference).max())
    assert next(argon_model.parameters()).dtype == torch.float64  # the caller's model is not converted
    assert DenoiseCalculator(argon_model, directory=str(tmp_path), label="x").directory == str(tmp_path)


def test_repr_and_todict_say_what_runs_and_go_into_trajectories(argon_model, argon, tmp_path):
    from ase.io import Trajectory
    from ase.io.ulm import open as ulm_open

    calc = DenoiseCalculator(argon_model)
    settings = calc.todict()
    assert settings["temperature_K"] == 94.4 and settings["noise_std"] == [0.05] and settings["elements"] == ["Ar"]
    assert settings["forces"] == {"noise_std": None, "extrapolation_order": None} and settings["model"] is None
    assert "94.4 K" in repr(calc) and "vector head" in repr(calc) and "the model's default" in repr(calc)
    assert "'lj-argon-94K'" in repr(DenoiseCalculator("lj-argon-94K"))
    argon.calc = calc
    forces = argon.get_forces()
    with Trajectory(tmp_path / "t.traj", "w") as traj:
        traj.write(argon)
    with ulm_open(tmp_path / "t.traj") as reader:  # what ASE stored about the calculator
        stored = reader[0].calculator
        assert stored.name == "DenoiseCalculator" and stored.parameters["temperature_K"] == 94.4
        np.testing.assert_allclose(stored.forces, forces)
