"""Bad input gets a clear error.

One test per case. Each asserts the error *type* and that the *message* names the problem (the
offending value, element, file or setting). Tiny models only: the whole file runs in seconds.
"""

from __future__ import annotations

import json
import os
import re

import ase.io
import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import bulk

from ase_denoise import (
    CheckpointError,
    DataError,
    DenoiseCalculator,
    ModelConfig,
    PhysicsConfig,
    TrainConfig,
    ZooError,
    load_model,
    read_frames,
    save_model,
)
from ase_denoise.checkpoint import FORMAT_VERSION
from ase_denoise.data import data_pbc, data_temperature
from ase_denoise.training import prepare_data
from ase_denoise.md import run_langevin
from ase_denoise.errors import TrainingError
from ase_denoise.training import Trainer

from _helpers import TINY, TINY_CLI, rewrite_metadata, run_cli

# The shared fixtures (conftest.py): ``argon_model`` (periodic, element table ['Ar'], r_max 4.5 A),
# ``argon_model_file``, ``argon`` (32 Ar atoms in a periodic 10.52 A box) and ``dimers`` (16 H2
# frames at 300 K with force labels).


@pytest.fixture
def model(argon_model):
    return argon_model


@pytest.fixture
def model_file(argon_model_file):
    return argon_model_file


@pytest.fixture
def calc(argon_model):
    return DenoiseCalculator(argon_model)


@pytest.fixture(scope="module")
def finished_run(shared_dimers, tmp_path_factory):
    """A finished one-epoch training run (its directory holds training_state.pt)."""
    out = tmp_path_factory.mktemp("bad_run")
    trainer(shared_dimers, out).fit()
    return out


def _train_config(**kw) -> TrainConfig:
    return TrainConfig(**{**dict(n_duplicates=1, epochs=1, batch_size=16, seed=7, dtype="float64"), **kw})


def trainer(frames, out, model_options=TINY, **kw) -> Trainer:
    config, physics, converted = prepare_data(frames, noise_std=0.1, **model_options)
    return Trainer(config, physics, converted, str(out), _train_config(**kw))


# --------------------------------------------------------------------------------------------------
# structures given to the calculator
# --------------------------------------------------------------------------------------------------
def test_element_outside_the_model_table(calc, argon):
    argon.numbers[3] = 54  # Xe
    with pytest.raises(DataError, match=r"element\(s\) \['Xe'\] outside the model's element table \['Ar'\]"):
        calc.get_forces(argon)


def test_nan_position(calc, argon):
    argon.positions[5, 1] = np.nan
    with pytest.raises(DataError, match=r"non-finite \(NaN or inf\) positions for atoms \[5\]"):
        calc.get_forces(argon)


def test_inf_position(calc, argon):
    argon.positions[7, 2] = -np.inf
    with pytest.raises(DataError, match=r"non-finite \(NaN or inf\) positions for atoms \[7\]"):
        calc.get_forces(argon)


def test_empty_atoms(calc):
    with pytest.raises(DataError, match=r"empty \(0 atoms\)"):
        calc.get_forces(Atoms(cell=[10, 10, 10], pbc=True))


def test_single_atom(calc):
    with pytest.raises(DataError, match="single atom"):
        calc.get_forces(Atoms("Ar", cell=[10, 10, 10], pbc=True))


def test_atoms_far_outside_the_periodic_cell_in_training_data(argon):
    frames = [argon.copy() for _ in range(3)]
    for a in frames:
        a.info["temperature_K"] = 94.4
    frames[1].positions[2] += 5 * argon.cell[0]  # five box lengths out
    with pytest.raises(DataError, match=r"frame 1: atoms \[2\] lie more than one cell length outside the periodic cell"):
        prepare_data(frames, noise_std=0.05, **TINY)


def test_atoms_far_outside_the_periodic_cell_are_fine_in_md(calc, argon):
    """Not an error for the calculator: in MD a liquid's atoms diffuse out of the cell (ASE never
    wraps), and a lattice translation of an atom changes no force. benchmarks/long_md.py found the
    calculator refusing them after ~600 ps of liquid argon."""
    reference = calc.get_forces(argon).copy()
    argon.positions[2] += 5 * argon.cell[0] - 3 * argon.cell[2]
    argon.positions[9] -= 40 * argon.cell[1]
    np.testing.assert_allclose(calc.get_forces(argon), reference, rtol=0, atol=1e-10 * np.abs(reference).max())


def test_periodic_cell_smaller_than_the_cutoff(calc):
    tiny = bulk("Ar", "fcc", a=4.2, cubic=True)  # 4.2 A box < r_max 4.5 A
    with pytest.raises(DataError, match=r"periodic cell too small.*below the model cutoff r_max=4.5"):
        calc.get_forces(tiny)


def test_periodicity_differs_from_the_training_data(calc):
    cluster = Atoms("Ar2", positions=[[0, 0, 0], [3.8, 0, 0]])  # pbc False; the model was trained periodic
    with pytest.raises(DataError, match=r"periodicity pbc=\(False, False, False\).*trained with pbc=\(True, True, True\)"):
        calc.get_forces(cluster)


def test_partial_periodicity_differs_from_the_training_data(calc, argon):
    argon.pbc = (True, True, False)  # a slab given to a bulk model
    with pytest.raises(DataError, match=r"periodicity pbc=\(True, True, False\)"):
        calc.get_forces(argon)


def test_zero_volume_periodic_cell(calc):
    flat = Atoms("Ar2", positions=[[0, 0, 0], [3.8, 0, 0]], cell=[[10, 0, 0], [0, 10, 0], [0, 0, 0]], pbc=True)
    with pytest.raises(DataError, match="cell has zero volume"):
        calc.get_forces(flat)


def test_non_finite_periodic_cell(calc, argon):
    argon.cell[2, 2] = np.nan
    with pytest.raises(DataError, match=r"cell has non-finite \(NaN or inf\) entries"):
        calc.get_forces(argon)


def test_negative_verlet_skin(model):
    with pytest.raises(ValueError, match=r"skin=-0.5 Angstrom must be >= 0"):
        DenoiseCalculator(model, skin=-0.5)


# --------------------------------------------------------------------------------------------------
# data sets
# --------------------------------------------------------------------------------------------------
def test_frames_with_different_temperatures(dimers):
    mixed = [a.copy() for a in dimers[:4]]
    mixed[2].info["temperature_K"] = 310.0
    with pytest.raises(DataError, match=r"frames have different temperatures \[300.0, 310.0\] K"):
        prepare_data(mixed, noise_std=0.1, **TINY)


def test_temperature_argument_disagrees_with_the_frames(dimers):
    with pytest.raises(DataError, match=r"temperature_K=200.0 K disagrees with the frames' info\['temperature_K'\]=300.0"):
        prepare_data(dimers[:4], noise_std=0.1, temperature_K=200.0, **TINY)


def test_training_temperature_unknown(dimers):
    bare = [a.copy() for a in dimers[:4]]
    for a in bare:
        del a.info["temperature_K"]
    with pytest.raises(DataError, match="the training temperature is unknown: pass temperature_K"):
        prepare_data(bare, noise_std=0.1, **TINY)


def test_empty_extxyz_file(tmp_path):
    path = tmp_path / "frames.extxyz"
    path.write_bytes(b"")
    with pytest.raises(DataError, match=r"frames.extxyz' is empty \(0 bytes\): no frames"):
        prepare_data(str(path), noise_std=0.1, temperature_K=300.0, **TINY)


def test_empty_frame_list():
    with pytest.raises(DataError, match=r"no frames in \[\]"):
        prepare_data([], noise_std=0.1, temperature_K=300.0, **TINY)


def test_missing_data_file(tmp_path):
    with pytest.raises(DataError, match=r"data file .*nowhere.extxyz' does not exist"):
        read_frames(tmp_path / "nowhere.extxyz")


def test_data_file_in_an_unknown_format(tmp_path):
    path = tmp_path / "frames.zzz"
    path.write_text("this is not a structure file\n")
    with pytest.raises(DataError, match=r"could not read frames from .*frames.zzz': ASE does not know its format"):
        read_frames(path)


def test_data_file_that_ase_misreads_names_the_guessed_format(tmp_path):
    """A junk file whose content ASE takes for some format crashes that reader (AttributeError here):
    the DataError names the guessed format and says how to give frames."""
    path = tmp_path / "junk.dat"
    path.write_text("hello world\n1 2 3\nfoo\n")
    with pytest.raises(DataError, match=r"junk.dat' as '[\w-]+', the format ASE guessed .*write the frames as extxyz"):
        read_frames(path)


def test_training_temperature_contradicted_by_the_momenta(dimers, caplog):
    """Frames with momenta say their temperature: 300 K data trained as 600 K are refused, naming both;
    momenta at the stated temperature pass."""
    from ase.md.velocitydistribution import thermalize_momenta

    rng = np.random.default_rng(0)
    hot = [a.copy() for a in dimers for _ in range(8)]  # 128 frames of 2 atoms: the mean kinetic T is resolved
    for a in hot:
        del a.info["temperature_K"]  # the momenta are the only word on the temperature
        thermalize_momenta(a, temperature_K=300.0, rng=rng)
    with pytest.raises(DataError, match=r"temperature_K=600 K, but the momenta of 128 frames say \d+ K"):
        prepare_data(hot, noise_std=0.1, temperature_K=600.0, **TINY)
    with caplog.at_level("INFO", logger="ase_denoise"):
        prepare_data([a.copy() for a in hot], noise_std=0.1, temperature_K=300.0, **TINY)
    assert "not periodic: a molecule or cluster in vacuum" in caplog.text


def test_a_periodic_box_read_without_its_cell_is_said(tmp_path, caplog):
    """A plain .xyz file of a liquid box holds no cell: the frames train as a cluster, and the log says
    so with the way to give the cell."""
    from ase.build import bulk
    from ase.io import write

    box = bulk("Ar", "fcc", a=5.26, cubic=True).repeat((3, 3, 3))
    box.rattle(0.05, seed=1)
    write(tmp_path / "box.xyz", [box, box], format="xyz")  # plain xyz: no Lattice
    with caplog.at_level("INFO", logger="ase_denoise"):
        prepare_data(str(tmp_path / "box.xyz"), noise_std=0.1, temperature_K=94.4, **TINY)
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any("look like a periodic box read without its cell" in w for w in warnings), caplog.text


def test_data_item_that_is_not_a_structure():
    with pytest.raises(DataError, match="cannot convert str to ase.Atoms"):
        read_frames(["not a structure"])


def test_mixed_periodicity_in_a_data_set(dimers):
    mixed = [a.copy() for a in dimers[:3]]
    mixed[1].cell = [20, 20, 20]
    mixed[1].pbc = True
    with pytest.raises(DataError, match=r"frames mix periodicities .*use one periodicity per data set"):
        data_pbc(mixed)
    with pytest.raises(DataError, match="mix periodicities"):
        prepare_data(mixed, noise_std=0.1, **TINY)


def test_a_bad_frame_in_a_data_set_is_named(dimers):
    frames = [a.copy() for a in dimers[:4]]
    frames[2] = frames[2][:1]  # one atom left
    with pytest.raises(DataError, match="frame 2 has a single atom"):
        prepare_data(frames, noise_std=0.1, **TINY)


# --------------------------------------------------------------------------------------------------
# settings
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("sigma", [0.0, -0.1, float("nan"), float("inf")], ids=["zero", "negative", "nan", "inf"])
def test_noise_std_not_positive(dimers, sigma):
    with pytest.raises(ValueError, match=rf"invalid noise_std={re.escape(repr(sigma))}: a noise standard deviation \(Angstrom\) must be finite and > 0"):
        prepare_data(dimers[:4], noise_std=sigma, **TINY)


@pytest.mark.parametrize("n", [0, -2], ids=["zero", "negative"])
def test_n_duplicates_below_one(n):
    with pytest.raises(ValueError, match=rf"invalid n_duplicates={n}: each frame needs at least one noise draw"):
        TrainConfig(n_duplicates=n)


@pytest.mark.parametrize("T", [0.0, -94.4], ids=["zero", "negative"])
def test_temperature_not_positive_for_training(dimers, T):
    bare = [a.copy() for a in dimers[:4]]
    for a in bare:
        del a.info["temperature_K"]
    with pytest.raises(DataError, match=rf"temperature_K={T} K must be a positive number"):
        data_temperature(bare, T)


def test_temperature_not_positive_in_a_physics_config():
    with pytest.raises(ValueError, match=r"invalid temperature_K=-1.0: the temperature \(K\) must be finite and > 0"):
        PhysicsConfig(noise_std=0.05, temperature_K=-1.0)


def test_model_config_refuses_an_empty_element_table_and_a_bad_cutoff():
    with pytest.raises(ValueError, match="element table is empty"):
        ModelConfig(atomic_numbers=[])
    with pytest.raises(ValueError, match=r"invalid r_max=0.0: the cutoff"):
        ModelConfig(atomic_numbers=[18], r_max=0.0)
    with pytest.raises(ValueError, match=r"'vector' head needs max_L >= 1"):
        ModelConfig(atomic_numbers=[18], head="vector", max_L=0)


def test_temperature_not_positive_for_md(calc, argon):
    argon.calc = calc
    with pytest.raises(ValueError, match=r"temperature_K > 0.*got 10, 10, 5.0, 0.0"):
        run_langevin(argon, temperature_K=0.0, steps=10)


# --------------------------------------------------------------------------------------------------
# model files
# --------------------------------------------------------------------------------------------------
def test_truncated_checkpoint(model_file, tmp_path):
    data = model_file.read_bytes()
    path = tmp_path / "truncated.safetensors"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"truncated.safetensors' is not a readable safetensors model file \(truncated, corrupt or foreign\)"):
        load_model(path)


def test_empty_checkpoint_file(tmp_path):
    path = tmp_path / "empty.safetensors"
    path.write_bytes(b"")
    with pytest.raises(CheckpointError, match=r"empty.safetensors' is not a readable safetensors model file"):
        load_model(path)


def test_newer_format_checkpoint(model_file, tmp_path):
    path = tmp_path / "future.safetensors"
    rewrite_metadata(model_file, path, format_version=str(FORMAT_VERSION + 1))
    with pytest.raises(CheckpointError, match=rf"model format version {FORMAT_VERSION + 1}, newer than .*upgrade ase_denoise"):
        load_model(path)


def test_foreign_safetensors_file(tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "foreign.safetensors"
    save_file({"weight": torch.zeros(3)}, str(path), metadata={"format": "pt"})
    with pytest.raises(CheckpointError, match=r"safetensors file but not an ase_denoise model \(metadata format='pt'"):
        load_model(path)


def test_model_element_table_mismatch_on_load(model_file, tmp_path):
    cfg = load_model(model_file).config.to_dict()
    cfg["atomic_numbers"] = [18, 36]  # the config claims Ar and Kr; the weights were made for Ar alone
    path = tmp_path / "mismatch.safetensors"
    rewrite_metadata(model_file, path, model_config=json.dumps(cfg))
    with pytest.raises(CheckpointError, match="weights do not match the architecture in its own config"):
        load_model(path)


def test_checkpoint_with_malformed_config(model_file, tmp_path):
    path = tmp_path / "bad_config.safetensors"
    rewrite_metadata(model_file, path, model_config="{not json")
    with pytest.raises(CheckpointError, match="missing or malformed JSON metadata"):
        load_model(path)


def test_checkpoint_with_an_invalid_setting(model_file, tmp_path):
    physics = load_model(model_file).physics.to_dict()
    physics["noise_std"] = [-0.05]
    path = tmp_path / "negative_sigma.safetensors"
    rewrite_metadata(model_file, path, physics=json.dumps(physics))
    with pytest.raises(CheckpointError, match=r"invalid configuration: invalid noise_std=-0.05"):
        load_model(path)


def test_checkpoint_without_physics(model_file, tmp_path):
    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(model_file), "pt") as fh:
        meta = {k: v for k, v in fh.metadata().items() if k != "physics"}
        tensors = {k: fh.get_tensor(k) for k in fh.keys()}
    save_file(tensors, str(tmp_path / "m.safetensors"), metadata=meta)
    with pytest.raises(CheckpointError, match="missing or malformed JSON metadata.*physics"):
        load_model(tmp_path / "m.safetensors")


def test_missing_model_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"model file .*absent.safetensors' does not exist"):
        load_model(tmp_path / "absent.safetensors")


def test_unknown_zoo_name(monkeypatch):
    monkeypatch.delenv("ASE_DENOISE_MODELS_DIR", raising=False)  # the shipped zoo
    with pytest.raises(ZooError, match=r"unknown model name 'no-such-model'.*available models: "):
        load_model("no-such-model")


def test_model_used_on_structures_of_another_element(model_file, tmp_path):
    """A model loaded from a file refuses elements it was not trained on (through the CLI too)."""
    water = Atoms("OH2", positions=[[0, 0, 0], [0.96, 0, 0], [-0.24, 0.93, 0]], cell=[12, 12, 12], pbc=True)
    with pytest.raises(DataError, match=r"\['H', 'O'\] outside the model's element table \['Ar'\]"):
        DenoiseCalculator.from_file(model_file).get_forces(water)
    water.arrays["ref_forces"] = np.zeros((3, 3))
    ase.io.write(tmp_path / "water.extxyz", water, format="extxyz")
    code, _, err = run_cli(["eval", "--model", model_file, "--data", tmp_path / "water.extxyz"])
    assert code == 2 and "outside the model's element table ['Ar']" in err


# --------------------------------------------------------------------------------------------------
# output paths
# --------------------------------------------------------------------------------------------------
def test_output_in_a_missing_directory(model, tmp_path):
    with pytest.raises(FileNotFoundError, match=r"cannot write .*directory .*no_such_dir' does not exist"):
        save_model(model, tmp_path / "no_such_dir" / "m.safetensors")
    assert not (tmp_path / "no_such_dir").exists()


def test_output_under_a_regular_file(model, tmp_path):
    """A "directory" that is a file: unwritable for every user, root included."""
    (tmp_path / "afile").write_text("I am a file")
    with pytest.raises(FileNotFoundError, match=r"directory .*afile' is a file, not a directory"):
        save_model(model, tmp_path / "afile" / "model.safetensors")
    assert (tmp_path / "afile").read_text() == "I am a file"


def test_output_in_an_unwritable_directory(model, tmp_path):
    if os.geteuid() == 0:
        pytest.skip("running as root: chmod cannot make a directory unwritable for root "
                    "(test_output_under_a_regular_file covers an unwritable path)")
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        with pytest.raises(PermissionError, match=r"directory .*locked' is not writable"):
            save_model(model, locked / "m.safetensors")
    finally:
        locked.chmod(0o700)


def test_output_file_exists(model, tmp_path):
    path = tmp_path / "m.safetensors"
    path.write_bytes(b"precious")
    with pytest.raises(FileExistsError, match=r"m.safetensors' already exists; refusing to overwrite it"):
        save_model(model, path)
    assert path.read_bytes() == b"precious"


def test_md_trajectory_in_a_missing_directory_fails_before_the_run(calc, argon, tmp_path):
    argon.calc = calc
    start = argon.positions.copy()
    with pytest.raises(FileNotFoundError, match=r"cannot write .*md.traj': directory .*gone' does not exist"):
        run_langevin(argon, temperature_K=94.4, steps=5, trajectory=str(tmp_path / "gone" / "md.traj"))
    np.testing.assert_array_equal(argon.positions, start)  # refused before a single step


def test_md_trajectory_in_an_unknown_format(calc, argon, tmp_path):
    argon.calc = calc
    with pytest.raises(ValueError, match=r"cannot write trajectory .*md.zzz': unknown or unsuitable file format"):
        run_langevin(argon, temperature_K=94.4, steps=5, trajectory=str(tmp_path / "md.zzz"))


def test_cli_md_output_in_a_missing_directory(model_file, argon, tmp_path):
    ase.io.write(tmp_path / "start.extxyz", argon, format="extxyz")
    code, _, err = run_cli([
        "md", "--model", model_file, "--structure", tmp_path / "start.extxyz", "--temperature-K", 94.4,
        "--steps", 5, "--output", tmp_path / "gone" / "md.traj",
    ])
    assert code == 2 and "gone' does not exist" in err, err


def test_cli_train_output_under_a_regular_file(dimers, tmp_path):
    ase.io.write(tmp_path / "d.extxyz", dimers, format="extxyz")
    (tmp_path / "afile").write_text("I am a file")
    code, _, err = run_cli([
        "train", "--data", tmp_path / "d.extxyz", "--noise-std", 0.1, "--output", tmp_path / "afile" / "m.safetensors",
    ])
    assert code == 2 and "afile" in err, err
    assert (tmp_path / "afile").read_text() == "I am a file"


# --------------------------------------------------------------------------------------------------
# resuming training
# --------------------------------------------------------------------------------------------------
def test_resume_with_a_different_training_config(dimers, finished_run):
    with pytest.raises(TrainingError, match=r"cannot resume .*training_state.pt with different seed \(was \[7\], now \[8\]\)"):
        trainer(dimers, finished_run, seed=8, epochs=2).fit(resume=True)


def test_resume_with_a_different_model_config(dimers, finished_run):
    with pytest.raises(TrainingError, match="was written for a different model/data configuration"):
        trainer(dimers, finished_run, model_options={**TINY, "r_max": 3.5}, epochs=2).fit(resume=True)


def test_resume_with_a_different_noise_level(dimers, finished_run):
    config, physics, frames = prepare_data(dimers, noise_std=0.2, **TINY)
    other = Trainer(config, physics, frames, str(finished_run), _train_config(epochs=2))
    with pytest.raises(TrainingError, match="was written for a different model/data configuration"):
        other.fit(resume=True)


def test_resume_without_saved_state(dimers, tmp_path):
    with pytest.raises(FileNotFoundError, match=r"cannot resume: .*training_state.pt does not exist"):
        trainer(dimers, tmp_path / "fresh").fit(resume=True)


def test_new_run_into_a_directory_holding_a_run(dimers, finished_run):
    with pytest.raises(FileExistsError, match=r"already holds a training run \(training_state.pt\); resume it"):
        trainer(dimers, finished_run).fit()


def test_cli_resume_with_a_different_config(dimers, tmp_path):
    ase.io.write(tmp_path / "d.extxyz", dimers, format="extxyz")
    tiny = [*TINY_CLI, "--batch-size", 16, "--epochs", 1]
    base = ["train", "--data", tmp_path / "d.extxyz", "--noise-std", 0.1, "--output", tmp_path / "m.safetensors", *tiny]
    code, _, err = run_cli(base)
    assert code == 0, err
    code, _, err = run_cli([*base, "--overwrite", "--resume", "--seed", 5])
    assert code == 2 and "with different seed" in err, err
    code, _, err = run_cli([*base[:-2], "--epochs", 2, "--overwrite", "--resume", "--noise-std", 0.2])
    assert code == 2 and "different model/data configuration" in err, err


def test_diverging_learning_rate_stops_with_a_clear_message(dimers, tmp_path):
    """A learning rate that blows the weights up: training stops at the first non-finite loss, names
    it, and writes no model with non-finite weights (tests/test_training.py checks that an earlier
    good checkpoint survives such a stop)."""
    diverging = trainer(dimers, tmp_path / "run", lr=1e30, epochs=3, batch_size=4)
    with pytest.raises(TrainingError, match=r"non-finite training loss \((nan|inf)\) at epoch 0 .*try a lower learning rate"):
        diverging.fit()
    for name in ("best.safetensors", "last.safetensors"):
        path = tmp_path / "run" / name
        if path.exists():
            assert all(torch.isfinite(t).all() for t in load_model(path).state_dict().values() if t.is_floating_point())
