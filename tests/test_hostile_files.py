"""Hostile and interrupted files.

Item 2: a pickle whose unpickling would create a marker file is handed to every entry point that
loads a file -- the Python API, the calculator, the CLI, the model zoo (with a registry whose sha256
matches the pickle), training resume (``training_state.pt``, read with ``torch.load(weights_only=True)``)
and the MACE adapter without ``trust_pickle``. Each must refuse it; the marker must never appear.

Note: ``import mace`` sets ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1``; ase_denoise puts the host's value
back (``tests/test_security.py``), and the training-resume tests set the variable themselves to
prove that the library's explicit ``weights_only=True`` wins over it.

Item 3: writes are atomic (temporary file + ``os.replace``): an exception in the middle of writing
leaves a pre-existing good file byte-for-byte intact and no temporary file behind; an existing file
is never overwritten unless asked (``save_model``, training checkpoints, CLI ``train --output`` and
``md --output``, ``run_langevin(trajectory=...)``).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import ase.io
import ase.io.trajectory
import numpy as np
import pytest
import safetensors.torch
import torch
from ase.build import bulk

import ase_denoise
import ase_denoise.checkpoint
from ase_denoise import CheckpointError, DenoiseCalculator, save_model
from ase_denoise.integrations import mace as mace_adapter
from ase_denoise.training import prepare_data
from ase_denoise.errors import TrajectoryWriteError
from ase_denoise.md import run_langevin
from ase_denoise.errors import TrainingError
from ase_denoise.training import STATE_FILE, Trainer
from ase_denoise.zoo import ENV_MODELS_DIR, REGISTRY_FILE, REGISTRY_FORMAT, REGISTRY_VERSION, ZooError

from _helpers import TINY, TINY_CLI, WRITERS, leftovers, run_cli, write_evil

TORCH_LOAD_VARIABLE = "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"


@pytest.fixture
def marker(tmp_path):
    m = tmp_path / "PWNED"
    yield m
    assert not m.exists(), "a pickle payload was executed"


@pytest.fixture
def model(argon_model):
    return argon_model


def trainer(dimers, run, **kw) -> Trainer:
    config, physics, frames = prepare_data(dimers, noise_std=0.1, **TINY)
    cfg = ase_denoise.TrainConfig(**{**dict(n_duplicates=1, epochs=1, batch_size=16, seed=7, dtype="float64"), **kw})
    return Trainer(config, physics, frames, str(run), cfg)


def evil_zoo(root: Path, marker: Path, name: str = "evil-model", writer: str = "torch.save") -> Path:
    """A zoo directory whose registry points at a pickle with the *correct* size and sha256."""
    (root / name).mkdir(parents=True)
    weights = write_evil(root / name / f"{name}.safetensors", marker, writer)
    (root / name / "README.md").write_text("# looks legitimate\n")
    entry = {
        "name": name, "file": f"{name}/{name}.safetensors", "card": f"{name}/README.md",
        "sha256": hashlib.sha256(weights.read_bytes()).hexdigest(), "size_bytes": weights.stat().st_size,
        "summary": "a pickle in disguise",
    }
    (root / REGISTRY_FILE).write_text(json.dumps(
        {"format": REGISTRY_FORMAT, "format_version": REGISTRY_VERSION, "models": [entry]}
    ))
    return root


# --------------------------------------------------------------------------------------------------
# item 2: pickles are refused by every loading entry point
# --------------------------------------------------------------------------------------------------
API_LOADERS = {
    "load_model": lambda p: ase_denoise.load_model(p),
    "load_model_file": lambda p: ase_denoise.checkpoint.load_model_file(p),
    "DenoiseCalculator.from_file": lambda p: DenoiseCalculator.from_file(p),
    "DenoiseCalculator(path)": lambda p: DenoiseCalculator(p),
    "DenoiseCalculator(str)": lambda p: DenoiseCalculator(str(p)),
    "read_metadata": lambda p: ase_denoise.checkpoint.read_metadata(p),
}


@pytest.mark.parametrize("writer", WRITERS)
@pytest.mark.parametrize("loader", list(API_LOADERS))
def test_api_refuses_a_pickle(tmp_path, marker, loader, writer):
    evil = write_evil(tmp_path / "evil.safetensors", marker, writer)
    # protocol-2+ pickles and torch zips are named as pickles; a protocol-0 pickle (plain text) is
    # refused as "not a readable safetensors file" -- never unpickled either way
    with pytest.raises(CheckpointError, match="pickle|not a readable safetensors"):
        API_LOADERS[loader](evil)


@pytest.mark.parametrize("suffix", [".pt", ".pth", ".model", ".ckpt", ""])
def test_api_refuses_a_pickle_whatever_its_name(tmp_path, marker, suffix):
    evil = write_evil(tmp_path / f"evil{suffix}", marker)
    with pytest.raises(CheckpointError, match=r"is a pickle \(torch.save\) file.*refusing to load it"):
        ase_denoise.load_model(evil)


def test_cli_eval_refuses_a_pickle(tmp_path, marker, argon):
    evil = write_evil(tmp_path / "evil.safetensors", marker)
    argon.arrays["ref_forces"] = np.zeros((len(argon), 3))
    ase.io.write(tmp_path / "data.extxyz", argon, format="extxyz")
    code, _, err = run_cli(["eval", "--model", evil, "--data", tmp_path / "data.extxyz"])
    assert code == 2 and "is a pickle" in err, err


def test_cli_md_refuses_a_pickle(tmp_path, marker, argon):
    evil = write_evil(tmp_path / "evil.safetensors", marker)
    ase.io.write(tmp_path / "start.extxyz", argon, format="extxyz")
    code, _, err = run_cli([
        "md", "--model", evil, "--structure", tmp_path / "start.extxyz", "--temperature-K", 94.4, "--steps", 2,
        "--output", tmp_path / "md.traj",
    ])
    assert code == 2 and "is a pickle" in err, err
    assert not (tmp_path / "md.traj").exists()


@pytest.mark.parametrize("writer", ["torch.save", "pickle-p5"])
def test_zoo_refuses_a_pickle_with_a_matching_sha256(tmp_path, marker, writer, monkeypatch):
    from ase_denoise import zoo

    root = evil_zoo(tmp_path / "zoo", marker, writer=writer)
    assert zoo.verified_path("evil-model", root)  # the checksum really matches: only the format check stands
    pattern = r"is a pickle \(torch.save\) file"
    with pytest.raises(CheckpointError, match=pattern):
        ase_denoise.load_model("evil-model", models_dir=root)
    with pytest.raises(CheckpointError, match=pattern):
        zoo.load_zoo_model("evil-model", root)
    with pytest.raises(CheckpointError, match=pattern):
        DenoiseCalculator.from_zoo("evil-model", models_dir=root)
    results = zoo.verify_models(root, load=True)  # reports, never raises, never unpickles
    assert [(n, ok) for n, ok, _ in results] == [("evil-model", False)] and "pickle" in results[0][2]
    # the environment override, through the API and the CLI
    monkeypatch.setenv(ENV_MODELS_DIR, str(root))
    with pytest.raises(CheckpointError, match=pattern):
        ase_denoise.load_model("evil-model")
    with pytest.raises(CheckpointError, match=pattern):
        DenoiseCalculator("evil-model")
    code, out, _ = run_cli(["models", "verify"])
    assert code == 1 and "FAIL evil-model" in out and "pickle" in out
    code, _, err = run_cli(["models", "--models-dir", root, "verify"])
    assert code == 1
    argon = bulk("Ar", "fcc", a=5.26, cubic=True).repeat((2, 2, 2))
    ase.io.write(tmp_path / "start.extxyz", argon, format="extxyz")
    code, _, err = run_cli([
        "md", "--model", "evil-model", "--structure", tmp_path / "start.extxyz", "--temperature-K", 94.4,
        "--steps", 2, "--output", tmp_path / "md.traj",
    ])
    assert code == 2 and "is a pickle" in err, err


def test_zoo_registry_pointing_outside_the_zoo(tmp_path, marker):
    root = evil_zoo(tmp_path / "zoo", marker)
    outside = write_evil(tmp_path / "outside.pt", marker)
    registry = json.loads((root / REGISTRY_FILE).read_text())
    registry["models"][0]["file"] = str(outside)  # an absolute path
    (root / REGISTRY_FILE).write_text(json.dumps(registry))
    with pytest.raises(ZooError, match="outside the zoo directory"):
        ase_denoise.load_model("evil-model", models_dir=root)


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
@pytest.mark.parametrize("writer", ["torch.save", "pickle-p5"])
def test_training_resume_refuses_a_pickled_state(dimers, tmp_path, marker, writer, monkeypatch):
    """training_state.pt swapped for a payload: torch.load(weights_only=True) refuses it, even with
    TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1 (what ``import mace`` sets) in the environment."""
    monkeypatch.setenv(TORCH_LOAD_VARIABLE, "1")  # the hostile setting is in force
    trainer(dimers, tmp_path / "run").fit()
    write_evil(tmp_path / "run" / STATE_FILE, marker, writer)
    with pytest.raises(TrainingError, match="not a readable ase_denoise training state.*Weights only load failed"):
        trainer(dimers, tmp_path / "run", epochs=2).fit(resume=True)


def test_cli_train_resume_refuses_a_pickled_state(dimers, tmp_path, marker, monkeypatch):
    monkeypatch.setenv(TORCH_LOAD_VARIABLE, "1")
    ase.io.write(tmp_path / "d.extxyz", dimers, format="extxyz")
    argv = ["train", "--data", tmp_path / "d.extxyz", "--noise-std", 0.1, "--output", tmp_path / "m.safetensors",
            *TINY_CLI, "--batch-size", 16]
    code, _, err = run_cli([*argv, "--epochs", 1])
    assert code == 0, err
    write_evil(tmp_path / "m.safetensors.run" / STATE_FILE, marker)
    code, _, err = run_cli([*argv, "--epochs", 2, "--resume", "--overwrite"])
    assert code == 2 and "not a readable ase_denoise training state" in err, err


def test_mace_adapter_refuses_a_pickle_without_trust(tmp_path, marker):
    evil = write_evil(tmp_path / "evil.model", marker)
    with pytest.raises(mace_adapter.UntrustedPickleError, match="pass trust_pickle=True"):
        mace_adapter.load_mace_model(evil)
    with pytest.raises(mace_adapter.UntrustedPickleError, match="Nothing was loaded"):
        mace_adapter.denoiser_from_mace(evil, noise_std=0.05, temperature_K=94.4)
    assert issubclass(mace_adapter.UntrustedPickleError, CheckpointError)


# --------------------------------------------------------------------------------------------------
# item 3: atomic writes, no silent overwrite
# --------------------------------------------------------------------------------------------------
def half_then_fail(real_save_file):
    """A ``safetensors.torch.save_file`` that writes half a file and then dies (disk full, Ctrl-C...)."""

    def broken(tensors, filename, metadata=None):
        real_save_file(tensors, filename, metadata=metadata)
        data = Path(filename).read_bytes()
        Path(filename).write_bytes(data[: len(data) // 2])
        raise OSError(28, "No space left on device (simulated)")

    return broken


def test_interrupted_save_keeps_the_good_file(model, tmp_path, monkeypatch):
    path = tmp_path / "m.safetensors"
    save_model(model, path)
    good = path.read_bytes()
    monkeypatch.setattr(safetensors.torch, "save_file", half_then_fail(safetensors.torch.save_file))
    with pytest.raises(OSError, match="No space left"):
        save_model(model, path, overwrite=True)
    assert path.read_bytes() == good  # byte for byte
    assert leftovers(tmp_path, {"m.safetensors"}) == []  # no temp file left behind
    ase_denoise.load_model(path)  # still loads


def test_interrupted_first_save_leaves_nothing(model, tmp_path, monkeypatch):
    monkeypatch.setattr(safetensors.torch, "save_file", half_then_fail(safetensors.torch.save_file))
    with pytest.raises(OSError):
        save_model(model, tmp_path / "m.safetensors")
    assert list(tmp_path.iterdir()) == []  # no half-written model under the final name, no temp file


def test_interrupted_training_checkpoint_keeps_the_good_files(dimers, tmp_path, monkeypatch):
    """An epoch whose checkpoint writes fail leaves best/last/state of the previous epoch intact."""
    run = tmp_path / "run"
    trainer(dimers, run).fit()
    names = ("best.safetensors", "last.safetensors", STATE_FILE, "log.csv")
    before = {n: (run / n).read_bytes() for n in names}
    monkeypatch.setattr(safetensors.torch, "save_file", half_then_fail(safetensors.torch.save_file))
    real_torch_save = torch.save

    def torch_save_dies(obj, f, *a, **k):
        real_torch_save(obj, f, *a, **k)
        Path(f).write_bytes(Path(f).read_bytes()[:100])
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", torch_save_dies)
    with pytest.raises((OSError, KeyboardInterrupt)):
        trainer(dimers, run, epochs=2).fit(resume=True)
    assert {n: (run / n).read_bytes() for n in names} == before
    assert leftovers(run, set(names)) == []
    monkeypatch.undo()
    assert trainer(dimers, run, epochs=2).fit(resume=True).history[-1]["epoch"] == 1


def test_save_model_does_not_overwrite_unless_asked(model, tmp_path):
    path = tmp_path / "m.safetensors"
    path.write_bytes(b"precious")
    with pytest.raises(FileExistsError, match="refusing to overwrite"):
        save_model(model, path)
    assert path.read_bytes() == b"precious"
    save_model(model, path, overwrite=True)
    assert ase_denoise.load_model(path).config == model.config


def test_cli_train_does_not_overwrite_unless_asked(dimers, tmp_path):
    ase.io.write(tmp_path / "d.extxyz", dimers, format="extxyz")
    out = tmp_path / "m.safetensors"
    out.write_bytes(b"precious")
    code, _, err = run_cli(["train", "--data", tmp_path / "d.extxyz", "--noise-std", 0.1, "--output", out])
    assert code == 2 and "exists; pass --overwrite" in err
    assert out.read_bytes() == b"precious" and not (tmp_path / "m.safetensors.run").exists()


def test_cli_md_does_not_overwrite_unless_asked(argon_model_file, argon, tmp_path):
    ase.io.write(tmp_path / "start.extxyz", argon, format="extxyz")
    traj = tmp_path / "md.traj"
    traj.write_bytes(b"precious")
    argv = ["md", "--model", argon_model_file, "--structure", tmp_path / "start.extxyz",
            "--temperature-K", 94.4, "--steps", 2, "--interval", 1, "--output", traj]
    code, _, err = run_cli(argv)
    assert code == 2 and "exists; pass --overwrite" in err
    assert traj.read_bytes() == b"precious"
    code, _, err = run_cli([*argv, "--overwrite"])
    assert code == 0, err
    assert len(ase.io.read(traj, ":")) == 3


def test_run_langevin_does_not_overwrite_unless_asked(model, argon, tmp_path):
    argon.calc = DenoiseCalculator(model)
    traj = tmp_path / "md.traj"
    traj.write_bytes(b"precious")
    with pytest.raises(FileExistsError, match="refusing to overwrite"):
        run_langevin(argon, temperature_K=94.4, steps=2, trajectory=str(traj))
    assert traj.read_bytes() == b"precious"
    run_langevin(argon, temperature_K=94.4, steps=2, interval=1, trajectory=str(traj), overwrite=True)
    assert len(ase.io.read(traj, ":")) == 3
    assert leftovers(tmp_path, {"md.traj"}) == []


@pytest.mark.parametrize("name", ["md.traj", "md.extxyz"])
def test_run_langevin_trajectory_write_failure_keeps_the_old_file(model, argon, tmp_path, monkeypatch, name):
    """The trajectory is streamed frame by frame (ASE's TrajectoryWriter for .traj, ase.io.write
    into an open file otherwise); the disk fills up at the second frame: TrajectoryWriteError (an
    OSError), the old file byte for byte, no temporary file."""
    argon.calc = DenoiseCalculator(model)
    traj = tmp_path / name
    run_langevin(argon, temperature_K=94.4, steps=2, interval=1, trajectory=str(traj))
    good = traj.read_bytes()
    calls = []

    def failing(real):
        def write(*args, **kwargs):
            calls.append(1)
            if len(calls) == 2:
                raise OSError(28, "No space left on device (simulated)")
            return real(*args, **kwargs)

        return write

    if name.endswith(".traj"):
        writer = ase.io.trajectory.TrajectoryWriter
        monkeypatch.setattr(writer, "write", failing(writer.write))
    else:
        monkeypatch.setattr(ase.io, "write", failing(ase.io.write))
    with pytest.raises(TrajectoryWriteError, match="No space left") as info:
        run_langevin(argon, temperature_K=94.4, steps=4, interval=1, trajectory=str(traj), overwrite=True)
    assert isinstance(info.value, OSError) and info.value.errno == 28 and len(calls) == 2
    assert traj.read_bytes() == good
    assert leftovers(tmp_path, {name}) == []


def test_hard_kill_mid_epoch_resumes_to_identical_weights(dimers, tmp_path):
    """Item 4, the case tests/test_training.py does not cover: a process killed without warning
    (SIGKILL, power loss) saves nothing; resuming from the last epoch's checkpoint replays the rest
    with the same seeded noise and gives bit-identical weights to an uninterrupted run."""
    settings = dict(n_duplicates=2, epochs=3, batch_size=4)
    reference = trainer(dimers, tmp_path / "a", **settings).fit()

    killed = trainer(dimers, tmp_path / "b", **settings)
    original_step = killed.train_step
    kill_at = len(killed.sampler) + 2  # two steps into epoch 1

    def die(batch):
        if killed.step == kill_at:
            raise SystemExit("killed")  # not KeyboardInterrupt: nothing is saved on the way out
        return original_step(batch)

    killed.train_step = die
    with pytest.raises(SystemExit):
        killed.fit()
    resumed = trainer(dimers, tmp_path / "b", **settings)
    resumed.load_state()
    assert (resumed.epoch, resumed.batch) == (1, 0)  # back to the end of epoch 0, the last checkpoint
    result = trainer(dimers, tmp_path / "b", **settings).fit(resume=True)
    a, b = reference.model.state_dict(), result.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert leftovers(tmp_path / "b", {"best.safetensors", "last.safetensors", STATE_FILE, "log.csv"}) == []
