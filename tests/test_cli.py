"""End-to-end tests of the console entry point ``ase-denoise`` (``ase_denoise.cli.main``).

``main(argv)`` runs in-process with real files: harmonic dimer frames (docs/design.md) written
to extxyz, tiny MACE settings, a few epochs. One test runs the installed console script through a
subprocess to prove it exists. Every error path checks the exit code (2) and that the message on
stderr names the problem.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import List

import ase.io
import numpy as np
import pytest
import torch

from ase_denoise import DenoiseCalculator, load_model
from ase_denoise.cli import build_parser, main
from ase_denoise.config import ModelConfig, PhysicsConfig, TrainConfig, cli_fields, options_from_args
from ase_denoise.data.reference import sample_harmonic_dimer

from _helpers import TINY_CLI, run_cli

TEMPERATURE_K = 300.0
NOISE_STD = 0.1
N_FRAMES = 48
TINY = [*TINY_CLI, "--batch-size", "32"]


def train_argv(data, output, *extra, epochs: int = 1) -> List[str]:
    return ["train", "--data", data, "--noise-std", NOISE_STD, "--output", output, "--epochs", epochs, *TINY, *extra]


def read_log(run_dir) -> List[dict]:
    with open(Path(run_dir) / "log.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def first_json(text: str) -> dict:
    """The JSON object at the start of ``text`` (the CLI prints more lines after it)."""
    obj, _ = json.JSONDecoder().raw_decode(text.lstrip())
    return obj


# --------------------------------------------------------------------------------------------------
# shared data and one trained model
# --------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """extxyz files: dimer frames with reference forces, the same without, a single start structure."""
    d = tmp_path_factory.mktemp("cli_data")
    frames = sample_harmonic_dimer(N_FRAMES, temperature_K=TEMPERATURE_K, seed=0)
    ase.io.write(d / "dimer.extxyz", frames, format="extxyz")
    bare = [a.copy() for a in frames]
    for a in bare:
        del a.arrays["ref_forces"]
    ase.io.write(d / "noref.extxyz", bare, format="extxyz")
    start = sample_harmonic_dimer(1, temperature_K=TEMPERATURE_K, seed=7)[0]
    assert not start.pbc.any()
    ase.io.write(d / "start.extxyz", start, format="extxyz")
    (d / "unknown.zzz").write_text("this is not a structure file\n")
    return {
        "dir": d,
        "frames": d / "dimer.extxyz",
        "noref": d / "noref.extxyz",
        "start": d / "start.extxyz",
        "unknown": d / "unknown.zzz",
    }


@pytest.fixture(scope="module")
def trained(data, tmp_path_factory):
    """One ``train`` run (1 epoch); later tests only read its files."""
    d = tmp_path_factory.mktemp("cli_trained")
    model = d / "dimer.safetensors"
    code, out, err = run_cli(train_argv(data["frames"], model))
    assert code == 0, err
    return {"model": model, "run_dir": Path(str(model) + ".run"), "stdout": out}


# --------------------------------------------------------------------------------------------------
# console script
# --------------------------------------------------------------------------------------------------
def test_console_script_help():
    script = shutil.which("ase-denoise", path=os.path.dirname(sys.executable))
    assert script is not None, "the ase-denoise console script is not installed next to the interpreter"
    proc = subprocess.run(
        [script, "--help"], capture_output=True, text=True, timeout=120,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert proc.returncode == 0, proc.stderr
    for command in ("train", "md", "eval", "demo"):
        assert command in proc.stdout


def test_no_command_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exc:
        main([])
    assert exc.value.code == 2
    assert "usage" in capsys.readouterr().err


# --------------------------------------------------------------------------------------------------
# train options come from the configuration dataclasses
# --------------------------------------------------------------------------------------------------
def test_train_help_lists_every_dataclass_option_with_its_default(capsys):
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args(["train", "--help"])
    assert exc.value.code == 0
    text = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    fields = [f for cls in (TrainConfig, ModelConfig, PhysicsConfig) for f in cli_fields(cls)]
    assert len(fields) > 25
    for f in fields:
        assert f.metadata["cli"] in text, f.name
    for name in ("epochs", "batch_size", "lr"):  # defaults shown as the dataclass has them
        assert f"(default: {getattr(TrainConfig(), name)})" in text, name
    assert f"(default: {ModelConfig.r_max})" in text


def test_train_without_options_uses_the_dataclass_defaults():
    args = build_parser().parse_args(["train", "--data", "x", "--noise-std", "0.1", "--output", "y"])
    assert TrainConfig(**options_from_args(args, TrainConfig)) == TrainConfig()
    assert options_from_args(args, ModelConfig) == {}
    assert args.temperature_K is None  # not given: the frames' temperature applies
    assert (TrainConfig().epochs, TrainConfig().batch_size, TrainConfig().batch_atoms) == (50, None, 512)
    # batches by atoms: four 108-atom frames, 256 copies of a dimer, an even number for antithetic pairs
    assert [TrainConfig().frames_per_batch(n) for n in (108, 2, 48, 600)] == [4, 256, 10, 1]
    assert TrainConfig(antithetic_noise=True).frames_per_batch(48) == 10
    assert TrainConfig(antithetic_noise=True).frames_per_batch(100) == 4 and TrainConfig(batch_size=3).frames_per_batch(2) == 3
    assert TrainConfig(antithetic_noise=True).frames_per_batch(600) == 2

    args = build_parser().parse_args([
        "train", "--data", "x", "--noise-std", "0.1", "--output", "y", "--epochs", "7", "--loss", "hybrid",
        "--max-minutes", "1.5", "--radial-mlp", "8", "8", "--head", "edge", "--temperature-K", "250",
    ])
    assert TrainConfig(**options_from_args(args, TrainConfig)) == dataclasses.replace(
        TrainConfig(), epochs=7, loss="hybrid", max_minutes=1.5
    )
    assert options_from_args(args, ModelConfig) == {"radial_mlp": [8, 8], "head": "edge"}
    assert args.temperature_K == 250.0 and args.default_extrapolation_order is None and args.default_noise_std is None
    args = build_parser().parse_args(["train", "--data", "x", "--noise-std", "0.01", "0.02", "--output", "y",
                                      "--default-extrapolation-order", "1", "--default-noise-std", "0.01"])
    assert (args.default_extrapolation_order, args.default_noise_std) == (1, 0.01)
    with pytest.raises(SystemExit):  # choices come from the dataclass too
        build_parser().parse_args(["train", "--data", "x", "--noise-std", "0.1", "--output", "y", "--loss", "l1"])
    for flag, value in (("--antithetic-noise", True), ("--no-antithetic-noise", False)):  # a boolean switch
        args = build_parser().parse_args(["train", "--data", "x", "--noise-std", "0.1", "--output", "y", flag])
        assert options_from_args(args, TrainConfig) == {"antithetic_noise": value}


# --------------------------------------------------------------------------------------------------
# train
# --------------------------------------------------------------------------------------------------
def test_train_writes_model_and_run_dir(trained):
    model_path, run_dir = trained["model"], trained["run_dir"]
    assert str(model_path) in trained["stdout"]  # the printed output names the model file
    with open(model_path, "rb") as fh:
        header_len = int.from_bytes(fh.read(8), "little")
        assert fh.read(1) == b"{" and 0 < header_len < os.path.getsize(model_path)  # safetensors header
    model = load_model(model_path)
    cfg = model.config
    assert model.temperature_K == pytest.approx(TEMPERATURE_K)  # taken from the frames' info
    assert model.noise_levels == pytest.approx((NOISE_STD,))
    assert cfg.atomic_numbers == [1]
    assert model.physics.pbc == (False, False, False)
    assert (cfg.num_channels, cfg.max_ell, cfg.max_L, cfg.correlation, cfg.num_interactions, cfg.r_max) == (
        4, 1, 0, 1, 1, 3.0,
    )
    assert (cfg.head, cfg.radial_mlp, cfg.edge_mlp) == ("edge", [8], [8])
    assert model.metadata["training"]["train_config"]["batch_size"] == 32
    assert model.metadata["training"]["n_frames"] == N_FRAMES
    assert model.metadata["training"]["epochs_completed"] == 1
    for name in ("log.csv", "best.safetensors", "last.safetensors", "training_state.pt"):
        assert (run_dir / name).is_file(), name
    rows = read_log(run_dir)
    assert len(rows) == 1 and rows[0]["epoch"] == "0"
    assert math.isfinite(float(rows[0]["train_loss"])) and math.isfinite(float(rows[0]["valid_loss"]))
    # the printed figures of the kept (last) epoch are the logged ones, to 5 significant digits (the lr is ~1e-5 here)
    printed = first_json(trained["stdout"].split("last epoch:", 1)[1])
    for key in ("lr", "train_loss", "valid_loss", "force_rmse", "force_cosine"):
        assert printed[key] == pytest.approx(float(rows[0][key]), rel=1e-4), key
    # the written model holds the weights training keeps for a denoising loss: the last epoch's
    last = load_model(run_dir / "last.safetensors")
    for key, value in last.state_dict().items():
        torch.testing.assert_close(model.state_dict()[key], value, rtol=0, atol=0)


def test_train_without_noise_std_reads_the_ladder_off_the_data(data, tmp_path):
    out = tmp_path / "auto.safetensors"
    argv = train_argv(data["frames"], out)
    i = argv.index("--noise-std")
    del argv[i:i + 2]
    code, _, err = run_cli(argv)
    assert code == 0, err
    model = load_model(str(out))
    # the suggested ladder: three levels below the dimer's bond width, not the test's fixed 0.1 A
    assert len(model.noise_levels) == 3 and max(model.noise_levels) < NOISE_STD, model.noise_levels


def test_train_temperature_contradicting_frames_fails(data, tmp_path):
    output = tmp_path / "m.safetensors"
    code, out, err = run_cli(train_argv(data["frames"], output, "--temperature-K", "250"))
    assert code == 2
    assert "250" in err and "300" in err and "temperature" in err
    assert not output.exists()


def test_train_refuses_existing_output_unless_overwrite(data, tmp_path):
    output = tmp_path / "m.safetensors"
    precious = b"an earlier model, not to be touched\n"
    output.write_bytes(precious)
    code, out, err = run_cli(train_argv(data["frames"], output))
    assert code == 2
    assert str(output) in err and "--overwrite" in err
    assert output.read_bytes() == precious
    assert not Path(str(output) + ".run").exists()  # refused before any training

    code, out, err = run_cli(train_argv(data["frames"], output, "--overwrite"))
    assert code == 0, err
    assert load_model(output).noise_levels == pytest.approx((NOISE_STD,))


def test_train_creates_missing_output_directory(data, tmp_path):
    # with an explicit --run-dir elsewhere, a missing output directory must not fail after training
    output = tmp_path / "models" / "m.safetensors"
    code, out, err = run_cli(train_argv(data["frames"], output, "--run-dir", tmp_path / "runs" / "a"))
    assert code == 0, err
    assert load_model(output).temperature_K == pytest.approx(TEMPERATURE_K)


def test_train_resume_continues_the_run(data, tmp_path):
    output = tmp_path / "m.safetensors"
    run_dir = Path(str(output) + ".run")
    code, _, err = run_cli(train_argv(data["frames"], output))
    assert code == 0, err
    first = read_log(run_dir)
    assert len(first) == 1

    # a second plain run on the same run dir is refused (even with --overwrite): resume it instead
    before = output.read_bytes()
    code, _, err = run_cli(train_argv(data["frames"], output, "--overwrite"))
    assert code == 2 and "already holds a training run" in err
    assert output.read_bytes() == before

    # resuming with other model options is refused with a clean message, the run is left alone
    code, _, err = run_cli(train_argv(data["frames"], output, "--resume", "--overwrite", "--channels", "8"))
    assert code == 2
    assert "different model/data configuration" in err and "Traceback" not in err
    assert read_log(run_dir) == first

    code, out, err = run_cli(train_argv(data["frames"], output, "--resume", "--overwrite", epochs=2))
    assert code == 0, err
    rows = read_log(run_dir)
    assert [r["epoch"] for r in rows] == ["0", "1"]
    assert rows[0] == first[0]  # the first epoch is kept as it was, not retrained
    assert int(rows[1]["step"]) == 2 * int(rows[0]["step"])  # the step counter continues
    state = torch.load(run_dir / "training_state.pt", map_location="cpu", weights_only=True)
    assert state["epoch"] == 2 and state["step"] == int(rows[1]["step"])
    assert len(state["history"]) == 2
    meta = load_model(output).metadata
    assert meta["training"]["epochs_completed"] == 2
    assert str(output) in out

    # resuming a finished run trains nothing more and still writes the model; --resume finishes the output
    # it was started for, so the existing file needs no --overwrite
    code, _, err = run_cli(train_argv(data["frames"], output, "--resume", epochs=2))
    assert code == 0, err
    assert len(read_log(run_dir)) == 2
    assert "\r" not in err  # not a terminal: log lines, no bar redrawn with carriage returns


def test_train_resume_with_another_split_is_refused(data, tmp_path):
    output = tmp_path / "m.safetensors"
    assert run_cli(train_argv(data["frames"], output))[0] == 0
    code, _, err = run_cli(train_argv(data["frames"], output, "--resume", "--overwrite", "--seed", "5", epochs=2))
    assert code == 2 and "seed" in err


def test_train_resume_without_state_fails(data, tmp_path):
    output = tmp_path / "m.safetensors"
    code, _, err = run_cli(train_argv(data["frames"], output, "--resume"))
    assert code == 2
    assert "cannot resume" in err and "training_state.pt" in err
    assert not output.exists()


# --------------------------------------------------------------------------------------------------
# eval
# --------------------------------------------------------------------------------------------------
def test_eval_prints_force_metrics_and_parity_plot(trained, data, tmp_path):
    parity = tmp_path / "parity.png"
    code, out, err = run_cli(["eval", "--model", trained["model"], "--data", data["frames"], "--parity", parity])
    assert code == 0, err
    metrics = first_json(out)
    for key in ("rmse_eV/A", "relative_rmse", "cosine"):  # units on the dimensional figures
        assert math.isfinite(metrics[key]), key
    assert -1.0 <= metrics["cosine"] <= 1.0
    assert parity.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert str(parity) in out

    # the printed numbers are the model's: recompute them through the ASE calculator
    calc = DenoiseCalculator.from_file(trained["model"])
    pred, ref = [], []
    for atoms in ase.io.read(data["frames"], index=":"):
        ref.append(atoms.arrays["ref_forces"].copy())
        atoms.calc = calc
        pred.append(atoms.get_forces())
    pred, ref = np.concatenate(pred), np.concatenate(ref)
    rmse = float(np.sqrt(np.mean((pred - ref) ** 2)))
    assert metrics["rmse_eV/A"] == pytest.approx(rmse, rel=1e-3)
    assert metrics["relative_rmse"] == pytest.approx(rmse / float(np.sqrt(np.mean(ref**2))), rel=1e-3)


def test_eval_without_reference_forces_fails(trained, data):
    code, out, err = run_cli(["eval", "--model", trained["model"], "--data", data["noref"]])
    assert code == 2
    assert "reference forces" in err and f"{N_FRAMES} of {N_FRAMES}" in err
    assert out == ""


def test_eval_foreign_element_fails(trained, tmp_path):
    he = sample_harmonic_dimer(3, symbol="He", seed=1)
    path = tmp_path / "he.extxyz"
    ase.io.write(path, he, format="extxyz")
    code, _, err = run_cli(["eval", "--model", trained["model"], "--data", path])
    assert code == 2
    assert "He" in err and "element" in err


# --------------------------------------------------------------------------------------------------
# md
# --------------------------------------------------------------------------------------------------
def test_md_with_a_committee_of_models(trained, data, tmp_path):
    """``md --model A B``: the MD runs on the members' mean forces (a committee)."""
    from ase_denoise import save_model
    from ase_denoise.model import build_model

    first = load_model(trained["model"])
    other = build_model(first.config, first.physics, next(first.parameters()).dtype, seed=1)
    save_model(other, tmp_path / "other.safetensors")
    traj = tmp_path / "committee.traj"
    code, out, err = run_cli([
        "md", "--model", trained["model"], tmp_path / "other.safetensors", "--structure", data["start"],
        "--temperature-K", TEMPERATURE_K, "--steps", "10", "--interval", "5", "--timestep-fs", "1.0", "--output", traj,
    ])
    assert code == 0, err
    frames = ase.io.read(traj, index=":")
    start = frames[0]
    singles = [DenoiseCalculator(m).get_forces(start) for m in (first, other)]
    assert not np.allclose(singles[0], singles[1])
    np.testing.assert_allclose(start.get_forces(), 0.5 * (singles[0] + singles[1]), rtol=1e-6, atol=1e-6)


def test_md_writes_trajectory_and_refuses_overwrite(trained, data, tmp_path):
    traj = tmp_path / "md.traj"
    argv = [
        "md", "--model", trained["model"], "--structure", data["start"], "--temperature-K", TEMPERATURE_K,
        "--steps", "20", "--interval", "5", "--timestep-fs", "1.0", "--output", traj,
    ]
    code, out, err = run_cli(argv)
    assert code == 0, err
    stats = first_json(out)
    assert stats["steps"] == 20 and stats["stopped"] is None and math.isfinite(stats["min_distance_A"])
    assert "max_force_eV/A" in stats and "mean_temperature_K" in stats
    assert str(traj) in out
    frames = ase.io.read(traj, index=":")
    assert len(frames) == 20 // 5 + 1  # step 0 and every 5th step
    start = ase.io.read(data["start"])
    for atoms in frames:
        assert len(atoms) == 2 and list(atoms.symbols) == ["H", "H"]
        assert np.all(np.isfinite(atoms.positions))
        assert not atoms.pbc.any()
        assert np.all(np.isfinite(atoms.get_forces()))
    np.testing.assert_allclose(frames[0].positions, start.positions)
    assert not np.allclose(frames[-1].positions, start.positions)  # it moved

    before = traj.read_bytes()
    code, out, err = run_cli(argv)
    assert code == 2
    assert str(traj) in err and "--overwrite" in err
    assert traj.read_bytes() == before

    code, out, err = run_cli([*argv, "--overwrite", "--seed", "1"])
    assert code == 0, err
    assert len(ase.io.read(traj, index=":")) == 5


def test_md_runs_at_the_models_temperature_unless_told(trained, data, tmp_path):
    """Without --temperature-K the MD runs at the model's training temperature; another temperature is
    refused (the forces are that ensemble's) unless --allow-other-temperature; the overlap guard is on."""
    traj = tmp_path / "md.traj"
    base = ["md", "--model", trained["model"], "--structure", data["start"], "--steps", "5", "--interval", "5",
            "--timestep-fs", "1.0", "--output", traj]
    code, out, err = run_cli([*base, "--temperature-K", str(2 * TEMPERATURE_K)])
    assert code == 2 and "trained at 300 K" in err and "--allow-other-temperature" in err and not traj.exists()
    code, out, err = run_cli(base)
    assert code == 0, err
    code, out, err = run_cli([*base, "--temperature-K", str(2 * TEMPERATURE_K), "--allow-other-temperature",
                              "--overwrite"])
    assert code == 0, err
    # two atoms made to overlap: the run ends at once, saying why
    start = ase.io.read(data["start"])
    start.positions[1] = start.positions[0] + [0.2, 0.0, 0.0]
    ase.io.write(tmp_path / "overlap.extxyz", start)
    code, out, err = run_cli(["md", "--model", trained["model"], "--structure", tmp_path / "overlap.extxyz",
                              "--steps", "20", "--output", tmp_path / "o.traj"])
    assert code == 0 and first_json(out)["stopped"].startswith("atoms 0.200 A apart at step 0"), out


@pytest.mark.parametrize("kind", ["missing", "unknown"])
def test_md_bad_structure_file(trained, data, tmp_path, kind):
    structure = tmp_path / "nothere.xyz" if kind == "missing" else data["unknown"]
    traj = tmp_path / "md.traj"
    code, _, err = run_cli([
        "md", "--model", trained["model"], "--structure", structure, "--temperature-K", "300",
        "--steps", "5", "--output", traj,
    ])
    assert code == 2
    assert str(structure) in err and "Traceback" not in err
    assert not traj.exists()


# --------------------------------------------------------------------------------------------------
# demo
# --------------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_demo_quick_end_to_end(tmp_path):
    out_dir = tmp_path / "demo"
    t0 = time.perf_counter()
    code, out, err = run_cli(["demo", "--quick", "--output", out_dir])
    wall = time.perf_counter() - t0
    assert code == 0, err
    print(f"demo --quick wall time: {wall:.1f} s")
    for name in ("force_parity.png", "rdf.png"):
        assert (out_dir / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
    summary = json.loads((out_dir / "summary.json").read_text())
    assert "=== ase_denoise demo" in out
    for key in summary:
        assert key in out, key  # every figure is printed
    for key in ("held-out force cosine", "held-out relative RMSE", "MD steps/s"):
        assert math.isfinite(float(summary[key])), key
    model = load_model(summary["model"])
    assert Path(summary["model"]).parent == out_dir
    assert model.temperature_K == pytest.approx(94.4)
    assert model.config.atomic_numbers == [18] and all(model.physics.pbc)
    md = ase.io.read(out_dir / "md.traj", index=":")
    assert len(md) == 100 // 10 + 1
    assert all(len(a) == 108 and np.all(np.isfinite(a.positions)) for a in md)

    # running it again in the same directory reuses the cached data and the finished run
    code, out, err = run_cli(["demo", "--quick", "--output", out_dir])
    assert code == 0, err
    assert json.loads((out_dir / "summary.json").read_text())["training frames"] == summary["training frames"]


# --------------------------------------------------------------------------------------------------
# bad input through the CLI
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "case, expected",
    [
        ("missing_data", ["does not exist", "nothere.extxyz"]),
        ("unknown_format", ["could not read", "unknown.zzz"]),
        ("zero_noise", ["noise_std", "> 0"]),
        ("negative_noise", ["noise_std", "> 0"]),
        ("zero_duplicates", ["n_duplicates", "at least one"]),
        ("order_without_a_ladder", ["default_extrapolation_order=1", "1 noise level"]),
        ("untrained_default_level", ["default_noise_std=0.2", "not a trained level"]),
    ],
)
def test_train_bad_input(data, tmp_path, capsys, case, expected):
    output = tmp_path / "m.safetensors"
    source = {"missing_data": tmp_path / "nothere.extxyz", "unknown_format": data["unknown"]}.get(case, data["frames"])
    argv = [str(a) for a in train_argv(source, output)]
    if case == "zero_noise":
        argv[argv.index("--noise-std") + 1] = "0"
    elif case == "negative_noise":
        argv[argv.index("--noise-std") + 1] = "-0.1"
    elif case == "zero_duplicates":
        argv += ["--duplicates", "0"]
    elif case == "order_without_a_ladder":  # reaches the model's PhysicsConfig, which refuses it
        argv += ["--default-extrapolation-order", "1"]
    elif case == "untrained_default_level":
        argv += ["--default-noise-std", "0.2"]
    code = main(argv)
    captured = capsys.readouterr()
    assert code == 2
    assert captured.err.startswith("error: ")
    for phrase in expected:
        assert phrase in captured.err, (phrase, captured.err)
    assert not output.exists()
    assert not Path(str(output) + ".run").exists()


def test_eval_missing_model_file(data, tmp_path, capsys):
    missing = tmp_path / "nope.safetensors"
    assert main(["eval", "--model", str(missing), "--data", str(data["frames"])]) == 2
    err = capsys.readouterr().err
    assert str(missing) in err and "does not exist" in err


def test_prior_specs_give_the_priors_they_name():
    """One parser for ``--prior`` and ``train(priors=...)`` (ase_denoise.priors.specs): the forms fitted
    to the data, the complete Coulomb terms, and a clear refusal of anything else."""
    from ase_denoise.priors import DSFCoulomb, EwaldCoulomb
    from ase_denoise.priors.specs import FittedPrior, parse_prior

    assert parse_prior("wall") == parse_prior("repulsive_wall") == FittedPrior("wall")
    assert (parse_prior("bonded"), parse_prior("nonbonded-wall")) == (FittedPrior("bonded"), FittedPrior("nonbonded-wall"))
    assert parse_prior("nonbonded_wall") == FittedPrior("nonbonded-wall")
    assert parse_prior("dihedrals:4-6-8-14,6-8-14-16") == FittedPrior("dihedrals", ((4, 6, 8, 14), (6, 8, 14, 16)))
    dsf = parse_prior("coulomb:Li=1,Cl=-1,eps=78,cutoff=9")
    assert dsf == DSFCoulomb({3: 1.0, 17: -1.0}, 78.0, alpha=0.2, r_cut=9.0)
    ewald = parse_prior("ewald:Li=1,Cl=-1,eps=94,alpha=0.35,accuracy=1e-7")
    assert ewald == EwaldCoulomb({3: 1.0, 17: -1.0}, 94.0, alpha=0.35, r_cut=10.0, accuracy=1e-7)
    assert parse_prior(ewald) is ewald
    for bad, message in (("ewald:Li=1,Cl=-1", "missing eps"), ("ewald:Xx=1,eps=2", r"unknown element\(s\) \['Xx'\]"),
                         ("ewald:Li=one,eps=2", "must be numbers"), ("zbl", "unknown prior 'zbl': use wall"),
                         ("dihedrals:4-6-8", "quadruples"), (3.0, "pass an ase_denoise.priors.Prior")):
        with pytest.raises(ValueError, match=message):
            parse_prior(bad)


def test_the_training_bar_follows_the_budget_capped_total(capsys):
    """The CLI's bar (on a terminal) takes its total from the trainer's reports: when a time budget
    leaves room for fewer steps than the epochs ask, the bar's total, and the time it shows left, shrink."""
    from ase_denoise.cli.common import TrainingBar
    from ase_denoise.training.trainer import Progress

    bar = TrainingBar()
    bar(Progress(step=1, total=5000, epoch=0, epochs=50, loss=1.2, eta_s=900.0))
    assert bar.bar.total == 5000 and bar.bar.n == 1
    bar(Progress(step=40, total=300, epoch=0, epochs=50, loss=1.1, eta_s=200.0))
    assert bar.bar.total == 300 and bar.bar.n == 40
    bar.close()
    assert "40/300" in capsys.readouterr().err
