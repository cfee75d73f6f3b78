"""Model files: safetensors + JSON, never unpickled (docs/checkpoint.md), and their format versions.

Format 1 kept the physics (temperature, noise level, periodicity) inside ``model_config``; format 2
stores it separately as ``physics``. Frozen format-1 files in ``tests/fixtures/format_v1/``, with the
forces the format-1 code computed (``expected_forces.npz``), must load through the upgrade and give
bit-identical forces. Errors of broken files are tested in ``test_bad_input.py``, pickles and
interrupted writes in ``test_hostile_files.py``.
"""

import json
from pathlib import Path

import ase.io
import numpy as np
import pytest
import torch
from safetensors import safe_open

from ase_denoise import (
    CheckpointError,
    DenoiseCalculator,
    ModelConfig,
    PhysicsConfig,
    TrainConfig,
    save_model,
)
from ase_denoise.checkpoint import FORMAT_VERSION, load_model_file, read_metadata
from ase_denoise.model import build_model

from _helpers import rewrite_metadata

V1 = Path(__file__).parent / "fixtures" / "format_v1"
# fixture name in expected_forces.npz: (model file, structure file, what the format-1 file said)
V1_CASES = {
    "vector_periodic": ("vector_periodic_v1.safetensors", "argon.extxyz",
                        dict(head="vector", temperature_K=94.4, noise_std=0.05, pbc=[True] * 3, dtype=torch.float64)),
    "edge_molecule": ("edge_molecule_v1.safetensors", "molecule.extxyz",
                      dict(head="edge", temperature_K=300.0, noise_std=0.02, pbc=[False] * 3, dtype=torch.float32)),
}


def raw_metadata(path) -> dict:
    with safe_open(str(path), "pt") as fh:
        return dict(fh.metadata())


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_save_then_load_gives_identical_forces(argon_model, argon, tmp_path, dtype):
    m = build_model(argon_model.config, argon_model.physics, dtype)
    m.load_state_dict(argon_model.state_dict())
    path = tmp_path / "m.safetensors"
    save_model(m, path, training={"n_frames": 7}, metrics={"force_cosine": 0.9})
    loaded = load_model_file(path)
    assert next(loaded.parameters()).dtype == dtype
    assert loaded.config == m.config and loaded.physics == m.physics
    assert loaded.metadata["training"]["n_frames"] == 7 and loaded.metadata["format_version"] == FORMAT_VERSION == 2
    np.testing.assert_array_equal(DenoiseCalculator(m).get_forces(argon), DenoiseCalculator(loaded).get_forces(argon))


def test_every_way_of_loading_a_file_gives_the_same_model(argon_model, argon_model_file, argon):
    forces = DenoiseCalculator(argon_model).get_forces(argon)
    np.testing.assert_array_equal(DenoiseCalculator.from_file(argon_model_file).get_forces(argon), forces)
    np.testing.assert_array_equal(DenoiseCalculator(str(argon_model_file)).get_forces(argon), forces)
    as32 = load_model_file(argon_model_file, dtype=torch.float32)  # converted on loading
    assert next(as32.parameters()).dtype == torch.float32
    np.testing.assert_allclose(DenoiseCalculator(as32).get_forces(argon), forces, rtol=0, atol=1e-4 * np.abs(forces).max())


def test_header_length_starting_with_the_pickle_byte_loads(argon_model, tmp_path):
    """Regression: a safetensors header of length 0x..80 starts the file with b'\\x80', a pickle's
    first byte. Found when a hybrid-loss run's metadata happened to have that length; such a file is
    a valid model and must load, while real pickles (test_hostile_files.py) stay refused."""
    for pad in range(0, 512):
        path = tmp_path / f"pad{pad}.safetensors"
        save_model(argon_model, path, metrics={"pad": "x" * pad})
        if open(path, "rb").read(1) == b"\x80":
            break
        path.unlink()
    else:
        pytest.fail("no padding gave a header length with low byte 0x80")
    loaded = load_model_file(path)
    for key, value in argon_model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value.to(loaded.state_dict()[key].dtype)), key
    # the same file cut short is reported as truncated, not as a pickle (found when a new config
    # field moved the default test model's header length to 0x..80)
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(path.read_bytes()[:200])
    with pytest.raises(CheckpointError, match="not a readable safetensors model file \\(truncated"):
        load_model_file(cut)


# --------------------------------------------------------------------------------------------------
# format versions
# --------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def expected_forces():
    with np.load(V1 / "expected_forces.npz") as data:
        return {k: data[k] for k in data.files}


def test_the_fixtures_are_frozen_format_1_files(expected_forces):
    assert set(expected_forces) == set(V1_CASES)
    for model_file, _, said in V1_CASES.values():
        raw = raw_metadata(V1 / model_file)
        assert raw["format_version"] == "1" and "physics" not in raw
        config = json.loads(raw["model_config"])
        assert config["noise_std"] == said["noise_std"] and config["temperature_K"] == said["temperature_K"]


@pytest.mark.parametrize("name", sorted(V1_CASES))
def test_format_1_files_load_through_the_upgrade_with_identical_forces(name, expected_forces, tmp_path):
    model_file, structure, said = V1_CASES[name]
    model = load_model_file(V1 / model_file)
    atoms = ase.io.read(V1 / structure)
    forces = DenoiseCalculator(model).get_forces(atoms)
    assert forces.shape == expected_forces[name].shape and np.abs(forces).max() > 0
    # the same weights and the same computation, in float32: equal to rounding. Exact equality held on
    # the machine that froze the files and not on every CPU (3e-8 eV/A on the molecule on a 2-core EPYC
    # VM, 2026-12-01: the float32 sums vectorised differently); a wrong upgrade (units, sigma, kT) is off
    # by far more
    np.testing.assert_allclose(forces, expected_forces[name], rtol=0, atol=1e-6)

    meta = model.metadata
    assert meta["format_version"] == 2 == FORMAT_VERSION
    physics = {k: meta["physics"][k] for k in ("temperature_K", "noise_std", "pbc")}
    assert physics == {"temperature_K": said["temperature_K"], "noise_std": [said["noise_std"]], "pbc": said["pbc"]}
    assert not {"temperature_K", "noise_std", "pbc"} & set(meta["model_config"])
    assert meta["training"] == read_metadata(V1 / model_file)["training"] and meta["training"]["n_frames"] > 0
    assert model.config.head == said["head"] and next(model.parameters()).dtype == said["dtype"]
    assert model.noise_levels == (said["noise_std"],) and model.temperature_K == said["temperature_K"]
    assert model.physics.pbc == tuple(said["pbc"])

    # saving an upgraded model writes the current format; it loads with the same forces
    path = save_model(model, tmp_path / "resaved.safetensors", training=meta["training"])
    raw = raw_metadata(path)
    assert raw["format_version"] == "2"
    assert PhysicsConfig.from_dict(json.loads(raw["physics"])) == model.physics
    assert ModelConfig.from_dict(json.loads(raw["model_config"])) == model.config
    assert "noise_std" not in json.loads(raw["model_config"])
    again = load_model_file(path)
    assert again.metadata["format_version"] == 2
    assert np.array_equal(DenoiseCalculator(again).get_forces(atoms), forces)  # same machine: bit for bit


def test_a_format_1_file_without_its_temperature_is_refused(tmp_path):
    config = json.loads(raw_metadata(V1 / "edge_molecule_v1.safetensors")["model_config"])
    del config["temperature_K"]
    rewrite_metadata(V1 / "edge_molecule_v1.safetensors", tmp_path / "m.safetensors", model_config=json.dumps(config))
    with pytest.raises(CheckpointError, match="missing or malformed JSON metadata.*temperature_K"):
        load_model_file(tmp_path / "m.safetensors")


@pytest.mark.parametrize("section", ["model_config", "physics"])
def test_unknown_metadata_keys_are_refused_by_name(argon_model_file, tmp_path, section):
    """A key this version does not know (a newer file, or a typo) is an error, not silently dropped."""
    values = json.loads(raw_metadata(argon_model_file)[section])
    values["from_the_future"] = 1
    path = tmp_path / "m.safetensors"
    rewrite_metadata(argon_model_file, path, **{section: json.dumps(values)})
    with pytest.raises(CheckpointError, match=r"invalid configuration.*unknown .* keys \['from_the_future'\]"):
        load_model_file(path)


@pytest.mark.parametrize("cls", [ModelConfig, PhysicsConfig, TrainConfig])
def test_config_dicts_round_trip_and_refuse_unknown_keys(argon_model, cls):
    instance = {ModelConfig: argon_model.config, PhysicsConfig: argon_model.physics, TrainConfig: TrainConfig()}[cls]
    d = instance.to_dict()
    assert json.loads(json.dumps(d)) == d  # plain JSON: lists, not tuples
    assert cls.from_dict(d) == instance
    with pytest.raises(ValueError, match=rf"unknown {cls.__name__} keys \['epoch'\]"):
        cls.from_dict({**d, "epoch": 3})


def test_physics_noise_levels_are_a_sorted_tuple():
    assert PhysicsConfig(temperature_K=300.0, noise_std=0.05).noise_std == (0.05,)
    assert PhysicsConfig(temperature_K=300.0, noise_std=[0.1, 0.02]).noise_std == (0.02, 0.1)
    assert PhysicsConfig(temperature_K=300.0, noise_std=0.05).to_dict()["noise_std"] == [0.05]
    with pytest.raises(ValueError, match="must differ"):
        PhysicsConfig(temperature_K=300.0, noise_std=[0.1, 0.1])


def test_a_card_travels_in_the_file_and_models_show_prints_any_file(argon_model, tmp_path):
    """``save_model(card=...)`` keeps a Markdown card in the file (older readers ignore the entry);
    it survives loading and saving again, and ``ase-denoise models show FILE`` prints it with what
    the metadata says, for a file without a card too."""
    from _helpers import run_cli

    path = save_model(argon_model, tmp_path / "with_card.safetensors", card="Fitted by hand.\n\nRDF error 0.02.")
    loaded = load_model_file(path)
    assert loaded.metadata["card"].startswith("Fitted by hand.")
    again = save_model(loaded, tmp_path / "again.safetensors")
    assert read_metadata(again)["card"] == loaded.metadata["card"]
    code, out, err = run_cli(["models", "show", again])
    assert code == 0, err
    assert "Fitted by hand." in out and "RDF error 0.02." in out
    assert "trained at 94.4 K on noise level(s) 0.05 A" in out and "species: Ar" in out
    bare = save_model(argon_model, tmp_path / "bare.safetensors")
    code, out, err = run_cli(["models", "show", bare])
    assert code == 0 and "# bare.safetensors" in out and "vector head" in out and "default forces: its one level" in out
    code, out, err = run_cli(["models", "show", tmp_path / "missing.safetensors"])
    assert code == 2 and "does not exist" in err
