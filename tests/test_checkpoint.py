"""Model files: safetensors + JSON, never unpickled (DESIGN.md section 7)."""

import json
import os
import pickle

import numpy as np
import pytest
import torch
from ase.build import bulk

from ase_denoise import CheckpointError, DenoiseCalculator, ModelConfig, build_model, load_model, save_model
from ase_denoise.checkpoint import FORMAT_VERSION

from _helpers import rewrite_metadata


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(1)
    cfg = ModelConfig(atomic_numbers=[18], noise_std=0.05, temperature_K=94.4, r_max=4.5, num_channels=8,
                      max_ell=2, correlation=2, pbc=(True, True, True), avg_num_neighbors=12.3)
    return build_model(cfg, torch.float64)


@pytest.fixture
def argon():
    a = bulk("Ar", "fcc", a=5.26, cubic=True).repeat((2, 2, 2))
    a.rattle(0.1, seed=2)
    return a


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_save_then_load_gives_identical_forces(model, argon, tmp_path, dtype):
    m = build_model(model.config, dtype)
    m.load_state_dict(model.state_dict())
    path = tmp_path / "m.safetensors"
    save_model(m, path, training={"n_frames": 7}, metrics={"force_cosine": 0.9})
    loaded = load_model(path)
    assert next(loaded.parameters()).dtype == dtype
    assert loaded.config == m.config
    assert loaded.metadata["training"]["n_frames"] == 7 and loaded.metadata["format_version"] == FORMAT_VERSION
    np.testing.assert_array_equal(DenoiseCalculator(m).get_forces(argon), DenoiseCalculator(loaded).get_forces(argon))
    assert np.array_equal(
        DenoiseCalculator.from_file(path).get_forces(argon), DenoiseCalculator(str(path)).get_forces(argon)
    )


def test_existing_file_is_not_overwritten(model, tmp_path):
    path = tmp_path / "m.safetensors"
    path.write_bytes(b"precious")
    with pytest.raises(FileExistsError):
        save_model(model, path)
    assert path.read_bytes() == b"precious"
    save_model(model, path, overwrite=True)
    assert load_model(path).config == model.config


class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))  # would create the marker file if unpickled


@pytest.mark.parametrize("writer", ["pickle", "torch.save"])
def test_pickle_is_refused_without_being_executed(tmp_path, writer):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.safetensors"
    if writer == "pickle":
        path.write_bytes(pickle.dumps(_Payload(str(marker))))
    else:
        torch.save({"x": _Payload(str(marker))}, path)
    assert not marker.exists()
    with pytest.raises(CheckpointError, match="pickle"):
        load_model(path)
    with pytest.raises(CheckpointError, match="pickle"):
        DenoiseCalculator.from_file(path)
    assert not marker.exists()


def test_truncated_file(model, tmp_path):
    path = tmp_path / "m.safetensors"
    save_model(model, path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated, corrupt or foreign"):
        load_model(path)


def test_foreign_safetensors_file(tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "foreign.safetensors"
    save_file({"w": torch.zeros(3)}, str(path), metadata={"format": "pt"})
    with pytest.raises(CheckpointError, match="not an ase_denoise model"):
        load_model(path)


def test_newer_format_version_is_refused(model, tmp_path):
    save_model(model, tmp_path / "m.safetensors")
    rewrite_metadata(tmp_path / "m.safetensors", tmp_path / "new.safetensors", format_version=str(FORMAT_VERSION + 1))
    with pytest.raises(CheckpointError, match="newer"):
        load_model(tmp_path / "new.safetensors")


def test_weights_that_do_not_match_the_config_are_refused(model, tmp_path):
    save_model(model, tmp_path / "m.safetensors")
    cfg = model.config.to_dict()
    cfg["atomic_numbers"] = [18, 36]  # element table of a different model
    rewrite_metadata(tmp_path / "m.safetensors", tmp_path / "bad.safetensors", model_config=json.dumps(cfg))
    with pytest.raises(CheckpointError, match="do not match"):
        load_model(tmp_path / "bad.safetensors")


def test_missing_file_and_directory(model, tmp_path):
    with pytest.raises(FileNotFoundError):
        load_model(tmp_path / "nope.safetensors")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        save_model(model, tmp_path / "no_dir" / "m.safetensors")
    assert not os.path.exists(tmp_path / "no_dir")


def test_header_length_starting_with_the_pickle_byte_loads(model, tmp_path):
    """Regression: a safetensors header of length 0x..80 starts the file with b'\\x80', a pickle's
    first byte. Found when a hybrid-loss run's metadata happened to have that length; such a file is
    a valid model and must load, while real pickles (above) stay refused."""
    for pad in range(0, 512):
        path = tmp_path / f"pad{pad}.safetensors"
        save_model(model, path, metrics={"pad": "x" * pad})
        if open(path, "rb").read(1) == b"\x80":
            break
        path.unlink()
    else:
        pytest.fail("no padding gave a header length with low byte 0x80")
    loaded = load_model(path)
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value.to(loaded.state_dict()[key].dtype)), key
