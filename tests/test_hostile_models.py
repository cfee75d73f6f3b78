"""Hostile model files and careless input, round two: what a file's numbers may ask for.

A model file's header is read before anything is built from it: every config and prior field must lie
in its documented range (docs/checkpoint.md, "Limits") and have its declared type, the header's tensor
shapes must match what the config's size fields imply, the weights must be finite and stored in the
dtype the model keeps them in. A zoo name always means the zoo model, loaded from the very bytes whose
sha256 was checked. The calculator never hands NaN forces on; overlapping atoms are named. Positions
far from the origin keep their precision. A training step and its counters are saved whole.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import bulk
from ase.optimize import FIRE

import ase_denoise
from ase_denoise import CheckpointError, DataError, DenoiseCalculator, NonFiniteForcesError, ZooError, load_model, save_model
from ase_denoise.checkpoint import load_model_file
from ase_denoise.training import STATE_FILE, Trainer, prepare_data
from ase_denoise.zoo import REGISTRY_FILE, load_zoo_model, verified_bytes

from _helpers import TINY, leftovers, make_model, rewrite_metadata, run_cli
REPO = Path(__file__).resolve().parents[1]
ZOO = REPO / "models"
ZOO_ARGON = "lj-argon-94K"


def _meta(path) -> dict:
    from safetensors import safe_open

    with safe_open(str(path), "pt") as fh:
        return dict(fh.metadata())


def with_config(src, dst, section: str, **changes) -> Path:
    """A copy of model file ``src`` whose JSON ``section`` (model_config or physics) has ``changes``."""
    data = json.loads(_meta(src)[section])
    data.update(changes)
    rewrite_metadata(src, dst, **{section: json.dumps(data)})
    return dst


def with_header(src, dst, edit) -> Path:
    """A copy of ``src`` whose safetensors header (the JSON before the tensors) is ``edit(header)``."""
    data = Path(src).read_bytes()
    n = int.from_bytes(data[:8], "little")
    header = edit(json.loads(data[8 : 8 + n]))
    text = json.dumps(header, separators=(",", ":")).encode()  # tensor offsets count from the body's start
    Path(dst).write_bytes(len(text).to_bytes(8, "little") + text + data[8 + n :])
    return Path(dst)


def with_tensor(src, dst, name: str, change) -> Path:
    """A copy of ``src`` with the tensor ``name`` replaced by ``change(tensor)`` (the metadata kept)."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(src), "pt") as fh:
        tensors = {k: fh.get_tensor(k) for k in fh.keys()}
    tensors[name] = change(tensors[name].clone())
    save_file(tensors, str(dst), metadata=_meta(src))
    return Path(dst)


# ---------------------------------------------------------------- item 1: sizes a header may ask for
HUGE_HEADERS = [
    ("num_channels", 10**6), ("num_interactions", 10**6), ("radial_mlp", [10**9]), ("correlation", 12),
    ("noise_embedding", 10**7), ("max_L", 40), ("r_max", 1e4), ("radial_mlp", [64] * 50), ("noise_expansion", 10**7),
]


@pytest.mark.parametrize("field, value", HUGE_HEADERS)
def test_a_header_asking_for_a_huge_network_is_refused_before_anything_is_built(argon_model_file, tmp_path, field,
                                                                                 value):
    path = with_config(argon_model_file, tmp_path / "huge.safetensors", "model_config", **{field: value})
    started = time.perf_counter()
    with pytest.raises(CheckpointError, match=rf"invalid configuration: invalid {field}=.*(must be between|at most)"):
        load_model(path)
    assert time.perf_counter() - started < 30  # refused from the header: no network was built (a build hangs)


CLAIMED_SIZES = [
    ("num_channels", 256, "node_embedding.linear.output_mask"),
    ("num_interactions", 4, "the interaction blocks"),
    ("radial_mlp", [512, 512, 512, 512], "radial MLP"),
    ("correlation", 3, "symmetric contraction"),
    ("noise_embedding", 4, "node_embedding.linear.weight"),
]


@pytest.mark.parametrize("field, value, tensor", CLAIMED_SIZES)
def test_a_header_whose_tensors_do_not_hold_its_config_is_refused_from_the_shapes(argon_model_file, tmp_path, field,
                                                                                  value, tensor):
    """In range, but the tensors are those of a 4-channel model: the shapes say so before a build."""
    path = with_config(argon_model_file, tmp_path / "claims.safetensors", "model_config", **{field: value})
    with pytest.raises(CheckpointError, match=rf"weights do not match the architecture in its own config: .*{tensor}.*{field}="):
        load_model(path)


def test_an_expansion_its_levels_cannot_carry_is_refused_at_load(argon_model_file, tmp_path):
    """A one-level file whose header claims an expansion in sigma^2: named, not a traceback from the build."""
    path = with_config(argon_model_file, tmp_path / "expansion.safetensors", "model_config", noise_expansion=2)
    with pytest.raises(CheckpointError, match=r"invalid configuration: an expansion of degree 2 .* needs more than 2 "
                                              r"noise levels, got \[0.05\]"):
        load_model(path)


HANGING_PRIORS = [
    ({"kind": "coulomb_dsf", "charges": [[18, 1.0]], "relative_permittivity": 1.0, "alpha": 0.2, "cutoff": 1e4},
     "coulomb_dsf prior: cutoff=10000.0 must be between"),
    ({"kind": "repulsive_wall", "epsilon": 0.01, "width": 0.1, "r_on": [[18, 18, 1e3]]},
     "repulsive_wall prior: r_on=1000.0 must be between"),
    ({"kind": "coulomb_ewald", "charges": [[18, 1.0]], "relative_permittivity": 1.0, "alpha": 1e3, "cutoff": 10.0,
      "accuracy": 1e-6}, "coulomb_ewald prior: alpha=1000.0 must be between"),
    ({"kind": "coulomb_ewald", "charges": [[18, 1.0]], "relative_permittivity": 1.0, "alpha": 0.3, "cutoff": 10.0,
      "accuracy": float("nan")}, "accuracy"),
]


@pytest.mark.parametrize("prior, match", HANGING_PRIORS)
def test_prior_parameters_that_would_hang_the_first_force_call_are_refused_at_load(argon_model_file, tmp_path, prior,
                                                                                   match):
    path = with_config(argon_model_file, tmp_path / "prior.safetensors", "physics", priors=[prior])
    with pytest.raises(CheckpointError, match=match):
        load_model(path)


def test_an_ewald_sum_too_large_for_its_cell_is_refused_not_run():
    """In range (alpha 2 /A) but for a 60 A box: millions of reciprocal vectors; refused with the fix."""
    from ase_denoise.priors.coulomb import EwaldCoulomb

    prior = EwaldCoulomb({3: 1.0, 17: -1.0}, relative_permittivity=1.0, alpha=2.0, r_cut=3.0, accuracy=1e-12)
    salt = bulk("LiCl", "rocksalt", a=5.14, cubic=True).repeat(12)
    with pytest.raises(ValueError, match=r"coulomb_ewald prior: alpha 2 /A .* reciprocal vectors .* a smaller alpha"):
        prior.energy_and_forces(salt.numbers, salt.positions, salt.cell.array, salt.pbc)


# ---------------------------------------------------------------- item 2: no silent NaN
@pytest.mark.parametrize("bad", [float("nan"), float("inf")], ids=["nan", "inf"])
def test_a_non_finite_weight_is_refused_at_load(argon_model_file, tmp_path, bad):
    def poison(t):
        t.view(-1)[0] = bad
        return t

    path = with_tensor(argon_model_file, tmp_path / "poisoned.safetensors", "vector_readouts.0.linear.weight", poison)
    with pytest.raises(CheckpointError, match=r"tensor 'vector_readouts.0.linear.weight' holds 1 non-finite value"):
        load_model(path)


ABSURD_PHYSICS = [("temperature_K", 1e300), ("temperature_K", 1e-300), ("noise_std", [1e-300])]


@pytest.mark.parametrize("field, value", ABSURD_PHYSICS)
def test_physics_outside_its_range_is_refused_at_load(argon_model_file, tmp_path, field, value):
    path = with_config(argon_model_file, tmp_path / "physics.safetensors", "physics", **{field: value})
    with pytest.raises(CheckpointError, match=rf"invalid {field}=.* must be between"):
        load_model(path)


def test_float_bytes_labelled_as_integers_are_refused(argon_model_file, tmp_path):
    """An F32 tensor relabelled I32 (the same byte size) would load as enormous numbers."""
    def relabel(header):
        name = next(k for k, v in header.items() if k != "__metadata__" and v["dtype"] in ("F32", "F64")
                    and k.endswith("linear.weight"))
        header[name]["dtype"] = {"F32": "I32", "F64": "I64"}[header[name]["dtype"]]
        return header

    path = with_header(argon_model_file, tmp_path / "relabelled.safetensors", relabel)
    with pytest.raises(CheckpointError, match=r"tensor '.*linear.weight' is stored as torch.int(32|64), the model keeps "
                                              r"it as torch.float"):
        load_model(path)


def test_a_header_whose_byte_ranges_lie_is_refused(argon_model_file, tmp_path):
    def stretch(header):
        name = next(k for k in header if k != "__metadata__")
        header[name]["shape"] = [10**9]
        return header

    path = with_header(argon_model_file, tmp_path / "liar.safetensors", stretch)
    with pytest.raises(CheckpointError, match=r"does not match its .* bytes"):
        load_model(path)


LOAD_UNDER_LIMITS = r"""
import json, resource, sys, time
from ase_denoise import load_model
from ase_denoise.errors import AseDenoiseError

load_model(sys.argv[1])  # the first load imports mace and e3nn: outside the account


def mapped_bytes():
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) * 1024 for line in fh if line.startswith("VmSize:"))


limit = mapped_bytes() + 2**30  # one GiB beyond what the warmed-up process maps
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
out = []
for path in sys.argv[1:]:
    started = time.perf_counter()
    try:
        load_model(path)
        outcome = "loaded"
    except AseDenoiseError as exc:
        outcome = type(exc).__name__
    except MemoryError:
        outcome = "MemoryError"
    except Exception as exc:
        outcome = f"unexpected {type(exc).__name__}: {exc}"
    out.append([path, outcome, time.perf_counter() - started])
print(json.dumps(out))
"""


def test_no_file_in_this_suite_takes_over_5_s_or_1_gib_to_load_or_refuse(argon_model_file, tmp_path):
    """Every hostile variant above, and the file they come from, loaded in one process whose address space
    may grow by 1 GiB at most (RLIMIT_AS) after a first load: each is loaded or refused with a
    CheckpointError within 5 s; none runs out of memory."""
    import subprocess
    import sys

    files = {}
    for i, (field, value) in enumerate(HUGE_HEADERS):
        files[f"huge {field}={str(value)[:20]}"] = with_config(argon_model_file, tmp_path / f"huge{i}.safetensors",
                                                             "model_config", **{field: value})
    for i, (field, value, _) in enumerate(CLAIMED_SIZES):
        files[f"claims {field}={value}"] = with_config(argon_model_file, tmp_path / f"claims{i}.safetensors",
                                                       "model_config", **{field: value})
    for i, (prior, _) in enumerate(HANGING_PRIORS):
        files[f"prior {prior['kind']} #{i}"] = with_config(argon_model_file, tmp_path / f"prior{i}.safetensors",
                                                           "physics", priors=[prior])
    for i, (field, value) in enumerate(ABSURD_PHYSICS):
        files[f"physics {field}={value}"] = with_config(argon_model_file, tmp_path / f"physics{i}.safetensors",
                                                        "physics", **{field: value})

    def nan(t):
        t.view(-1)[0] = float("nan")
        return t

    files["a NaN weight"] = with_tensor(argon_model_file, tmp_path / "nan.safetensors", "vector_readouts.0.linear.weight", nan)
    def stretch(header):
        name = next(k for k in header if k != "__metadata__")
        header[name]["shape"] = [10**9]
        return header

    files["a tensor claiming 10**9 values"] = with_header(argon_model_file, tmp_path / "liar.safetensors", stretch)
    files["a drifted element table"] = with_tensor(argon_model_file, tmp_path / "drifted.safetensors", "atomic_numbers",
                                                   lambda t: t - 1)
    paths = [str(argon_model_file)] + [str(p) for p in files.values()]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-c", LOAD_UNDER_LIMITS, *paths], capture_output=True, text=True,
                          timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    results = json.loads(proc.stdout.strip().splitlines()[-1])
    names = ["the model as saved"] + list(files)
    outcomes = {name: (outcome, seconds) for name, (_, outcome, seconds) in zip(names, results)}
    assert outcomes.pop("the model as saved")[0] == "loaded"
    assert len(outcomes) == len(files) >= 20
    assert outcomes.pop("a drifted element table")[0] == "loaded"  # the config's table is used (test below)
    wrong = {name: o for name, o in outcomes.items() if o[0] != "CheckpointError" or o[1] > 5.0}
    assert not wrong, wrong


def test_a_file_over_the_size_cap_is_refused_unread(tmp_path):
    """A sparse 1 GiB + 1 kB file: refused from its size, before a byte is read."""
    from ase_denoise.checkpoint import MAX_MODEL_BYTES

    path = tmp_path / "vast.safetensors"
    with open(path, "wb") as fh:
        fh.truncate(MAX_MODEL_BYTES + 1024)
    with pytest.raises(CheckpointError, match=r"vast.safetensors' is 1024 MiB, larger than any model this library writes"):
        load_model(path)


def test_an_element_table_tensor_that_differs_from_the_config_gives_way_to_it(argon_model_file, argon, tmp_path, caplog):
    """Earlier releases' weight averaging could turn the saved table [18] into [17] (training/ema.py): the
    config's table sets the model's inputs, so the file loads with it, the same forces, and a warning."""
    path = with_tensor(argon_model_file, tmp_path / "drifted.safetensors", "atomic_numbers", lambda t: t - 1)
    with caplog.at_level(logging.WARNING, logger="ase_denoise.checkpoint"):
        model = load_model(path)
    assert model.atomic_numbers.tolist() == model.config.atomic_numbers == [18]
    assert "atomic_numbers [17] differs from its config's element table [18]" in caplog.text
    expected = DenoiseCalculator(load_model(argon_model_file)).get_forces(argon.copy())
    got = DenoiseCalculator(model).get_forces(argon.copy())
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)


def test_the_weight_average_keeps_integer_buffers_and_averages_floats(dimers):
    """torch's EMA helper averages integer buffers in integer arithmetic (18 * 0.9 + 18 * 0.1 -> 17)."""
    from ase_denoise.model import build_model
    from ase_denoise.training.ema import averaged_model

    config, physics, _ = prepare_data(dimers, noise_std=0.1, **TINY)
    config = dataclasses.replace(config, atomic_numbers=[1, 18, 29])  # 18 and 29 truncate with decay 0.9
    live = build_model(config, physics, seed=0)
    ema = averaged_model(live, decay=0.9)
    weight = next(p for p in live.parameters() if p.dim() > 1)
    start = weight.detach().clone()
    for _ in range(5):
        with torch.no_grad():
            weight.add_(1.0)
        ema.update_parameters(live)
    assert ema.module.atomic_numbers.tolist() == live.atomic_numbers.tolist() == config.atomic_numbers
    averaged = next(p for p in ema.module.parameters() if p.dim() > 1)
    # the first update copies (start + 1); four more with decay 0.9 move it 1 - 0.9**k of each later step
    expected = start + 5.0 - sum(0.9 ** k for k in range(1, 5))
    torch.testing.assert_close(averaged, expected)


def test_overlapping_atoms_are_named_instead_of_nan_forces(argon_model, argon):
    argon.positions[7] = argon.positions[3]
    argon.calc = DenoiseCalculator(argon_model)
    with pytest.raises(DataError, match=r"atoms 3 and 7 \(0 A\) overlap"):
        argon.get_forces()


def test_non_finite_forces_never_reach_an_optimizer(argon_model, argon):
    """Weights so large that the forces overflow: the calculator raises, FIRE never takes the step."""
    from ase_denoise.model import copy_model

    model = copy_model(argon_model, dtype=torch.float32)
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(1e15)
    argon.calc = DenoiseCalculator(model)
    before = argon.positions.copy()
    with pytest.raises(NonFiniteForcesError, match="non-finite .*forces for the structure, atoms .*no atoms overlap"):
        FIRE(argon, logfile=None).run(fmax=0.01, steps=3)
    assert np.array_equal(argon.positions, before)


# ---------------------------------------------------------------- item 3: a zoo name is the zoo model
def test_a_file_named_like_a_zoo_model_does_not_replace_it(argon_model_file, tmp_path, monkeypatch, caplog):
    monkeypatch.chdir(tmp_path)
    Path(ZOO_ARGON).write_bytes(Path(argon_model_file).read_bytes())  # a stand-in, not the zoo's file
    zoo_model = load_zoo_model(ZOO_ARGON, ZOO)
    with caplog.at_level(logging.WARNING, logger="ase_denoise.zoo"):
        named = load_model(ZOO_ARGON, models_dir=ZOO)
    assert named.config == zoo_model.config and "not the file" in caplog.text and "./" + ZOO_ARGON in caplog.text
    assert all(torch.equal(a, b) for a, b in zip(named.state_dict().values(), zoo_model.state_dict().values()))
    local = load_model("./" + ZOO_ARGON, models_dir=ZOO)  # a path: the file
    assert local.config.num_channels != zoo_model.config.num_channels
    monkeypatch.setenv("ASE_DENOISE_MODELS_DIR", str(ZOO))
    assert DenoiseCalculator(ZOO_ARGON).model.config == zoo_model.config  # the calculator: the same rule


def test_the_zoo_loads_the_bytes_it_hashed(tmp_path):
    """The bytes are read once, checked, and parsed from memory: the file changing afterwards (here:
    overwritten with garbage) cannot put other weights behind a good checksum."""
    path, data = verified_bytes(ZOO_ARGON, ZOO)
    copy = tmp_path / "copy.safetensors"
    copy.write_bytes(b"\x80" + b"not the model" * 10)  # what the path holds by the time it is parsed
    model = load_model_file(copy, data=data)
    assert model.config == load_zoo_model(ZOO_ARGON, ZOO).config


def test_a_changed_zoo_file_is_refused(tmp_path):
    import shutil

    root = tmp_path / "zoo"
    shutil.copytree(ZOO, root)
    entry = json.loads((root / REGISTRY_FILE).read_text())["models"]
    weights = root / next(e["file"] for e in entry if e["name"] == ZOO_ARGON)
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1
    weights.write_bytes(bytes(data))
    with pytest.raises(ase_denoise.ChecksumError, match="sha256 mismatch"):
        load_model(ZOO_ARGON, models_dir=root)


# ---------------------------------------------------------------- item 5: precision far from the origin
@pytest.mark.parametrize("shift", [1e5, 1e8])
def test_a_molecule_far_from_the_origin_gets_the_same_forces(shift):
    model = make_model([1, 8], noise_std=0.05, temperature_K=300.0, dtype=torch.float32, **{**TINY, "r_max": 4.0})
    atoms = Atoms("OH2", positions=[[0, 0, 0], [0.96, 0, 0], [-0.24, 0.93, 0]])
    calc = DenoiseCalculator(model)
    near = calc.get_forces(atoms.copy())
    far = atoms.copy()
    far.positions += shift
    assert np.all(np.isfinite(calc.get_forces(far)))
    np.testing.assert_allclose(calc.get_forces(far), near, rtol=1e-4, atol=1e-5 * np.abs(near).max())


def test_training_on_frames_far_from_the_origin_gives_the_same_losses(dimers, tmp_path):
    """Non-periodic frames 1e8 A from the origin train as they do at the origin (each graph is centred in
    float64 before the float32 cast), instead of stopping with a non-finite loss."""
    far = [a.copy() for a in dimers]
    for a in far:
        a.positions += 1e8
    losses = []
    for name, frames in (("near", dimers), ("far", far)):
        config, physics, converted = prepare_data(frames, noise_std=0.1, **TINY)
        cfg = ase_denoise.TrainConfig(n_duplicates=2, epochs=2, batch_size=4, seed=7)
        losses.append([row["train_loss"] for row in Trainer(config, physics, converted, str(tmp_path / name), cfg).fit().history])
    assert np.all(np.isfinite(losses))
    np.testing.assert_allclose(losses[1], losses[0], rtol=1e-4)


def test_coordinates_spread_over_millions_of_angstrom_are_refused(dimers):
    dimers[3].positions[1] += 1e7
    with pytest.raises(DataError, match=r"frame 3: its atoms are spread over .* Angstrom .* in Angstrom\?"):
        prepare_data(dimers, noise_std=0.1, **TINY)


# ---------------------------------------------------------------- item 7: clear errors, not tracebacks
@pytest.mark.parametrize("field, value, match", [
    ("num_channels", "16", "num_channels must be an integer, not '16'"),
    ("num_channels", 16.5, "num_channels must be an integer, not 16.5"),
    ("num_channels", True, "num_channels must be an integer, not True"),
    ("atomic_numbers", [18.7], r"atomic_numbers\[0\] must be an integer, not 18.7"),
    ("radial_mlp", "64", "radial_mlp must be a list"),
])
def test_malformed_config_values_name_the_field(argon_model_file, tmp_path, field, value, match):
    path = with_config(argon_model_file, tmp_path / "typed.safetensors", "model_config", **{field: value})
    with pytest.raises(CheckpointError, match=match):
        load_model(path)


@pytest.mark.parametrize("field, value, match", [
    ("pbc", "yes", "pbc must be a list, not 'yes'"),
    ("pbc", ["yes", 1, 0], r"pbc\[0\] must be true or false"),
    ("priors", "x", "priors must be a list, not 'x'"),
    ("priors", ["x"], r"priors\[0\] must be a mapping"),
])
def test_malformed_physics_values_name_the_field(argon_model_file, tmp_path, field, value, match):
    path = with_config(argon_model_file, tmp_path / "typed.safetensors", "physics", **{field: value})
    with pytest.raises(CheckpointError, match=match):
        load_model(path)


def test_a_malformed_registry_is_one_line_from_the_cli(tmp_path):
    import shutil

    root = tmp_path / "zoo"
    shutil.copytree(ZOO, root)
    registry = json.loads((root / REGISTRY_FILE).read_text())
    registry["models"][0]["size_bytes"] = "big"
    (root / REGISTRY_FILE).write_text(json.dumps(registry))
    with pytest.raises(ZooError, match=r"malformed fields: size_bytes='big'"):
        ase_denoise.list_models(root)
    code, out, err = run_cli(["models", "--models-dir", root, "verify"])
    assert code == 2 and "malformed fields: size_bytes='big'" in err and "Traceback" not in err + out
    assert len(err.strip().splitlines()) == 1


def test_train_resume_on_a_malformed_state_is_one_line(dimers, tmp_path):
    data = tmp_path / "dimers.extxyz"
    import ase.io

    ase.io.write(data, dimers)
    out = tmp_path / "run"
    out.mkdir()
    torch.save([1, 2, 3], out / STATE_FILE)  # a list of numbers: loads with weights_only, is no state
    code, stdout, err = run_cli(["train", "--data", data, "--output", tmp_path / "m.safetensors", "--run-dir", out,
                                 "--noise-std", "0.1", "--resume", "--epochs", "1"])
    assert code == 2 and "not a readable ase_denoise training state" in err and "Traceback" not in err


@pytest.mark.parametrize("value", [float("nan"), "warm", True])
def test_training_frames_with_a_bad_temperature_are_refused(dimers, value):
    dimers[5].info["temperature_K"] = value
    with pytest.raises(DataError, match=r"frame 5 states info\['temperature_K'\]=.* a temperature is a positive"):
        prepare_data(dimers, noise_std=0.1, temperature_K=300.0, **TINY)


def test_training_frames_with_overlapping_atoms_are_refused(dimers):
    dimers[2].positions[1] = dimers[2].positions[0]
    with pytest.raises(DataError, match=r"frame 2: atoms 0 and 1 \(0 A\) overlap"):
        prepare_data(dimers, noise_std=0.1, **TINY)


# ---------------------------------------------------------------- item 6: consistent checkpoints
def _trainer(dimers, run, **kw) -> Trainer:
    config, physics, frames = prepare_data(dimers, noise_std=0.1, **TINY)
    cfg = ase_denoise.TrainConfig(**{**dict(n_duplicates=2, epochs=3, batch_size=4, seed=7, dtype="float64"), **kw})
    return Trainer(config, physics, frames, str(run), cfg)


INTERRUPTED_RUN = r"""
import os, signal, sys, warnings
import torch
import ase_denoise
from ase_denoise.data.reference import sample_harmonic_dimer
from ase_denoise.training import Trainer, prepare_data

run, out = sys.argv[1:3]
tiny = dict(head="edge", r_max=3.0, num_channels=4, max_L=0, max_ell=1, num_interactions=1, correlation=1,
            radial_mlp=[8], edge_mlp=[8])

def trainer():
    dimers = sample_harmonic_dimer(16, k=2.0, d0=1.5, temperature_K=300.0, seed=3)
    config, physics, frames = prepare_data(dimers, noise_std=0.1, **tiny)
    cfg = ase_denoise.TrainConfig(n_duplicates=2, epochs=3, batch_size=4, seed=7, dtype="float64")
    return Trainer(config, physics, frames, run, cfg)

first = trainer()
real_step = first.optimizer.step
def step_then_signal(*args, **kwargs):  # the real step, then Ctrl-C, before the counters move
    result = real_step(*args, **kwargs)
    if first.step == len(first.sampler) + 1:
        os.kill(os.getpid(), signal.SIGINT)
    return result
first.optimizer.step = step_then_signal
warnings.simplefilter("ignore")  # torch notices the patched step
try:
    first.fit()
    print("NOT INTERRUPTED")
except KeyboardInterrupt:
    saved = torch.load(os.path.join(run, "training_state.pt"), weights_only=True)
    print("INTERRUPTED", saved["step"], saved["batch"], len(first.sampler))
torch.save(trainer().fit(resume=True).model.state_dict(), out)
"""


def test_ctrl_c_right_after_an_optimizer_step_saves_a_consistent_state(tmp_path):
    """SIGINT delivered just after ``optimizer.step()`` (the real step, then the signal) in a process of its
    own, as a user's Ctrl-C arrives: the step and its counters are saved together, and the resumed run ends
    bit-identical to an uninterrupted one."""
    import subprocess
    import sys

    from ase_denoise.data.reference import sample_harmonic_dimer

    script = tmp_path / "interrupted.py"
    script.write_text(INTERRUPTED_RUN)
    out = tmp_path / "resumed.pt"
    proc = subprocess.run([sys.executable, str(script), str(tmp_path / "b"), str(out)], capture_output=True, text=True,
                          timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    (line,) = [x for x in proc.stdout.splitlines() if "INTERRUPTED" in x]
    _, step, batch, per_epoch = line.split()
    assert int(step) == int(per_epoch) + 2 and int(batch) == 2  # the step was counted with its weights
    reference = _trainer(sample_harmonic_dimer(16, k=2.0, d0=1.5, temperature_K=300.0, seed=3), tmp_path / "a").fit()
    a, b = reference.model.state_dict(), torch.load(out, weights_only=True)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_resume_removes_what_a_killed_save_left(dimers, tmp_path):
    run = tmp_path / "run"
    _trainer(dimers, run, epochs=1).fit()
    orphan = run / (".tmp-abc123" + STATE_FILE)  # a SIGKILL during torch.save leaves this
    orphan.write_bytes(b"half a state")
    unrelated = run / "notes.txt"
    unrelated.write_text("mine")
    _trainer(dimers, run, epochs=2).fit(resume=True)
    assert not orphan.exists() and unrelated.read_text() == "mine"
    assert leftovers(run, {"best.safetensors", "last.safetensors", STATE_FILE, "log.csv", "notes.txt"}) == []


# ---------------------------------------------------------------- item 8: leave the host alone
def test_loading_a_model_does_not_draw_from_the_hosts_rng(argon_model_file):
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    load_model(argon_model_file)
    assert torch.equal(torch.rand(3), expected)


def test_overwriting_a_model_keeps_its_mode(argon_model, tmp_path):
    path = tmp_path / "private.safetensors"
    save_model(argon_model, path)
    os.chmod(path, 0o600)
    save_model(argon_model, path, overwrite=True)
    assert (os.stat(path).st_mode & 0o777) == 0o600
    fresh = tmp_path / "fresh.safetensors"
    save_model(argon_model, fresh)
    umask = os.umask(0)
    os.umask(umask)
    assert (os.stat(fresh).st_mode & 0o777) == 0o666 & ~umask


def test_the_parity_plot_neither_overwrites_nor_writes_through_a_symlink(argon_model_file, argon, tmp_path):
    import ase.io
    from ase.calculators.lj import LennardJones

    frames = []
    for seed in range(2):
        atoms = argon.copy()
        atoms.rattle(0.05, seed=seed)
        atoms.calc = LennardJones(sigma=3.4, epsilon=0.0104, rc=4.5)
        atoms.get_forces()
        frames.append(atoms)
    data = tmp_path / "ar.extxyz"
    ase.io.write(data, frames)
    mine = tmp_path / "mine.txt"
    mine.write_text("mine")
    existing = tmp_path / "existing.png"
    existing.write_bytes(b"old plot")
    link = tmp_path / "link.png"
    link.symlink_to(mine)
    for target in (existing, link):
        code, out, err = run_cli(["eval", "--model", argon_model_file, "--data", data, "--parity", target])
        assert code == 2 and "--overwrite" in err and "Traceback" not in err
    assert existing.read_bytes() == b"old plot" and mine.read_text() == "mine"
    code, out, err = run_cli(["eval", "--model", argon_model_file, "--data", data, "--parity", link, "--overwrite"])
    assert code == 0 and mine.read_text() == "mine"  # the link was replaced by the plot, its target untouched
    assert not link.is_symlink() and link.read_bytes()[:4] == b"\x89PNG"
