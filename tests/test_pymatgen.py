"""pymatgen interoperability: round trips, the calculator on converted
structures, and training runs from a list of ``Structure``s and from a ``Trajectory``."""

from __future__ import annotations

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk, molecule
from pymatgen.core import Molecule, Structure
from pymatgen.core.trajectory import Trajectory
from pymatgen.io.ase import AseAtomsAdaptor

from ase_denoise import (
    DataError,
    DenoiseCalculator,
    TrainConfig,
    frames_to_structures,
    structures_to_frames,
    train,
    trajectory_to_frames,
)
from ase_denoise.data.interop import atoms_to_structure, frames_to_trajectory

from _helpers import TINY as _TINY
from _helpers import make_model

T = 300.0
TINY = {**_TINY, "r_max": 3.5}


def nacl_frames(n: int, seed: int = 0, forces: bool = True):
    """Rattled rocksalt NaCl (8 atoms, cubic 5.64 A cell), wrapped into the cell."""
    rng = np.random.default_rng(seed)
    base = bulk("NaCl", "rocksalt", a=5.64, cubic=True)
    frames = []
    for _ in range(n):
        a = base.copy()
        a.positions += rng.normal(0.0, 0.1, a.positions.shape)
        a.wrap()
        if forces:
            a.arrays["ref_forces"] = rng.normal(0.0, 0.1, a.positions.shape)
        frames.append(a)
    return frames


def assert_same_frames(a: Atoms, b: Atoms, atol: float = 1e-10):
    assert a.get_chemical_symbols() == b.get_chemical_symbols()
    np.testing.assert_allclose(b.cell.array, a.cell.array, atol=atol)
    np.testing.assert_array_equal(b.pbc, a.pbc)
    if a.pbc.all():  # pymatgen may map a site to another image: compare modulo the lattice
        d = b.get_scaled_positions(wrap=False) - a.get_scaled_positions(wrap=False)
        d -= np.round(d)
        np.testing.assert_allclose(d @ a.cell.array, 0.0, atol=atol)
    else:
        np.testing.assert_allclose(b.positions, a.positions, atol=atol)


def test_structure_round_trip_keeps_positions_cell_species_temperature_and_forces():
    frames = nacl_frames(3)
    for f in frames:
        f.info["temperature_K"] = T
    structures = frames_to_structures(frames)
    assert all(isinstance(s, Structure) for s in structures)
    assert [str(sp) for sp in structures[0].species] == frames[0].get_chemical_symbols()
    back = structures_to_frames(structures)
    for a, b in zip(frames, back):
        assert_same_frames(a, b)
        assert b.info["temperature_K"] == T
        np.testing.assert_allclose(b.arrays["ref_forces"], a.arrays["ref_forces"])


def test_molecule_round_trip_is_not_periodic():
    water = molecule("H2O")
    mol = atoms_to_structure(water)
    assert isinstance(mol, Molecule)
    (back,) = structures_to_frames(mol, temperature_K=T)  # a single structure is one frame
    assert_same_frames(water, back)
    assert not back.pbc.any() and back.info["temperature_K"] == T


def test_trajectory_round_trip_and_temperature():
    frames = nacl_frames(4)
    traj = frames_to_trajectory(frames)
    assert isinstance(traj, Trajectory) and len(traj) == 4
    back = trajectory_to_frames(traj, temperature_K=T)
    for a, b in zip(frames, back):
        assert_same_frames(a, b)
        assert b.info["temperature_K"] == T
        np.testing.assert_allclose(b.arrays["ref_forces"], a.arrays["ref_forces"])  # evaluation only
    # a temperature stated in the frames is read, and a contradicting one is refused, not overwritten
    for f in frames:
        f.info["temperature_K"] = T
    stated = trajectory_to_frames(frames_to_trajectory(frames))
    assert {f.info["temperature_K"] for f in stated} == {T}
    with pytest.raises(DataError, match="disagrees"):
        trajectory_to_frames(frames_to_trajectory(frames), temperature_K=2 * T)
    # structures_to_frames accepts a Trajectory too
    assert len(structures_to_frames(traj)) == 4


def test_conversion_errors_are_clear():
    with pytest.raises(DataError, match="no structures"):
        structures_to_frames([])
    with pytest.raises(DataError, match="expected a pymatgen Structure"):
        structures_to_frames([np.zeros(3)])
    with pytest.raises(DataError, match="Trajectory"):
        trajectory_to_frames([1, 2])
    with pytest.raises(DataError, match="positive"):
        structures_to_frames(frames_to_structures(nacl_frames(1)), temperature_K=-1.0)


def test_calculator_runs_on_adaptor_converted_structures():
    calc = DenoiseCalculator(make_model([11, 17], noise_std=0.1, temperature_K=T, pbc=True, **TINY))
    atoms = nacl_frames(1, forces=False)[0]
    structure = AseAtomsAdaptor.get_structure(atoms)
    converted = AseAtomsAdaptor.get_atoms(structure)  # the one-line conversion users write
    atoms.calc = calc
    f_atoms = atoms.get_forces()
    converted.calc = calc
    f_converted = converted.get_forces()
    assert f_converted.shape == (8, 3) and f_converted.dtype == np.float64
    np.testing.assert_allclose(f_converted, f_atoms, atol=1e-10)
    assert np.abs(f_atoms).max() > 0


@pytest.mark.parametrize("kind", ["structures", "trajectory"])
def test_training_run_from_pymatgen_input(kind, tmp_path):
    frames = nacl_frames(12, seed=1)
    if kind == "structures":
        data = frames_to_structures(frames)  # temperature passed as an argument
        temperature = T
    else:
        for f in frames:
            f.info["temperature_K"] = T  # temperature carried by the trajectory's frame_properties
        data = frames_to_trajectory(frames)
        temperature = None
    # a list of Structures goes to train() as it is; a Trajectory through trajectory_to_frames
    inputs = data if kind == "structures" else trajectory_to_frames(data)
    result = train(
        inputs, str(tmp_path / "run"), noise_std=0.1, temperature_K=temperature,
        train_config=TrainConfig(n_duplicates=2, epochs=1, batch_size=8, valid_fraction=0.25, seed=0),
        **TINY,
    )
    model = result.model
    assert model.config.atomic_numbers == [11, 17]
    assert model.temperature_K == T and model.physics.pbc == (True, True, True) and model.noise_levels == (0.1,)
    assert len(result.history) == 1 and np.isfinite(result.history[0]["train_loss"])
    assert "force_rmse" in result.history[0]  # reference forces came through as evaluation data
    # the trained model runs on a converted structure
    atoms = AseAtomsAdaptor.get_atoms(data[0])
    atoms.calc = DenoiseCalculator(model)
    assert np.all(np.isfinite(atoms.get_forces()))
