"""Force matching and the hybrid loss (TrainConfig.loss): targets, label checks, exact reductions,
and force recovery from labels on the Lennard-Jones liquid."""

import numpy as np
import pytest
import torch

from ase_denoise import DataError, TrainConfig
from ase_denoise.analysis import force_metrics
from ase_denoise.data import reference_forces, to_frame
from ase_denoise.training import prepare_data
from ase_denoise.inference import evaluate_forces
from ase_denoise.training.losses import force_target, loss_inputs
from ase_denoise.model import forces_from_output
from ase_denoise.data.reference import sample_harmonic_dimer
from ase_denoise.errors import TrainingError
from ase_denoise.training import Trainer

from _helpers import TINY


@pytest.fixture(scope="module")
def dimers48():
    return sample_harmonic_dimer(48, k=2.0, d0=1.5, temperature_K=300.0, seed=5)


def unlabelled(atoms):
    atoms = atoms.copy()  # copy() drops the calculator
    del atoms.arrays["ref_forces"]
    return atoms


def trainer(frames, out, **kw):
    config, physics, converted = prepare_data(frames, noise_std=0.1, **TINY)
    cfg = TrainConfig(**{**dict(n_duplicates=2, epochs=2, batch_size=8, seed=1, dtype="float64"), **kw})
    return Trainer(config, physics, converted, str(out), cfg)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_force_target_inverts_the_force_scale(dtype):
    forces = torch.randn(7, 3, dtype=dtype)
    eps = force_target(forces, noise_std=0.26, kT=0.02585)
    tol = 1e-6 if dtype == torch.float32 else 1e-14
    assert torch.allclose(forces_from_output(eps, 0.26, 0.02585), forces, rtol=tol, atol=tol)


def test_force_matching_needs_labels_on_every_frame(dimers48, tmp_path):
    frames = [unlabelled(a) for a in dimers48]
    with pytest.raises(DataError, match="force_matching.*48 frames"):
        trainer(frames, tmp_path / "fm", loss="force_matching")
    with pytest.raises(DataError, match="hybrid.*none has any"):
        trainer(frames, tmp_path / "hy", loss="hybrid")
    with pytest.raises(ValueError, match="loss"):
        TrainConfig(loss="contrastive")
    with pytest.raises(ValueError, match="force_weight"):
        TrainConfig(force_weight=float("nan"))


def test_force_matching_loss_is_the_scaled_force_error(dimers48, tmp_path):
    """The force term is mean |kT*eps/sigma - F|^2 / (kT/sigma)^2 over clean frames: the validation
    loss of a force-matching run is exactly that, computed from evaluate_forces on the validation frames."""
    tr = trainer(dimers48, tmp_path, loss="force_matching", valid_fraction=0.25)
    batch = next(tr.sampler.epoch(0))
    inputs = loss_inputs("force_matching", batch, tr.frames, tr.physics.kT)
    assert set(inputs.targets) == {"forces"}
    ids = list(dict.fromkeys(batch.frame_ids))  # each labelled frame of the batch once, clean
    assert inputs.frame_ids == ids and all(np.array_equal(p, tr.frames[i].positions) for p, i in zip(inputs.positions, ids))
    scale = tr.physics.kT / 0.1
    np.testing.assert_allclose(inputs.targets["forces"][1] * scale, np.concatenate([tr.frames[i].ref_forces for i in ids]),
                               rtol=1e-12)

    valid = [tr.frames[i] for i in tr.valid_ids]
    assert len(valid) == 12
    pred, ref = evaluate_forces(tr.eval_model(), valid)
    metrics = tr.validate()
    assert metrics["valid_loss"] == pytest.approx(np.mean((pred - ref) ** 2) / scale**2, rel=1e-10)
    assert metrics["force_rmse"] == pytest.approx(np.sqrt(np.mean((pred - ref) ** 2)), rel=1e-10)


def test_hybrid_with_zero_force_weight_trains_exactly_like_denoising(dimers48, tmp_path):
    """The force term's graphs ride along in the forward pass; with weight 0 they change nothing."""
    a = trainer(dimers48, tmp_path / "dn").fit().model
    b = trainer(dimers48, tmp_path / "hy", loss="hybrid", force_weight=0.0).fit().model
    for (name, pa), pb in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.allclose(pa, pb, rtol=0, atol=1e-12), name
    c = trainer(dimers48, tmp_path / "hy1", loss="hybrid", force_weight=1.0).fit().model
    assert any(not torch.allclose(pa, pc) for pa, pc in zip(a.state_dict().values(), c.state_dict().values()))


def test_hybrid_uses_only_frames_with_labels(dimers48, tmp_path):
    frames = [a if i % 2 else unlabelled(a) for i, a in enumerate(dimers48)]  # even frames lose their labels
    tr = trainer(frames, tmp_path, loss="hybrid", force_weight=0.5)
    batch = next(tr.sampler.epoch(0))
    inputs = loss_inputs("hybrid", batch, tr.frames, tr.physics.kT)
    labelled = [i for i in dict.fromkeys(batch.frame_ids) if i % 2]
    assert 0 < len(labelled) < len(batch.frame_ids)
    assert inputs.frame_ids == list(batch.frame_ids) + labelled  # noisy copies first, then labelled clean frames
    start, target = inputs.targets["denoising"]
    assert start == 0 and target.size == 3 * sum(len(p) for p in batch.positions)
    start, target = inputs.targets["forces"]
    assert start == sum(len(p) for p in batch.positions) and target.size == 3 * 2 * len(labelled)
    row = tr.fit().history[-1]
    assert row["valid_loss"] == pytest.approx(row["valid_denoising_loss"] + 0.5 * row["valid_forces_loss"])


def test_resume_refuses_another_loss(dimers48, tmp_path):
    trainer(dimers48, tmp_path, loss="force_matching").fit()
    with pytest.raises(TrainingError, match="loss"):
        trainer(dimers48, tmp_path, loss="denoising", epochs=3).fit(resume=True)


@pytest.mark.slow
def test_force_matching_recovers_lennard_jones_forces(tmp_path, lj_argon_small):
    """Exact LJ forces as labels: force matching with the denoiser's architecture reaches cosine > 0.98
    and relative RMSE < 0.2 on frames of an independent run in ~8 s (measured 0.996 / 0.092, slope
    0.997). EMA 0.9: with ~200 steps the default 0.99 average still remembers the initial weights."""
    frames, test = lj_argon_small[0][:30], lj_argon_small[1][:4]  # the first 30 frames of one run, 4 of another
    assert all(reference_forces(a) is not None for a in frames)
    config, physics, converted = prepare_data(frames, noise_std=0.05, r_max=5.0, num_channels=8, max_ell=2,
                                              correlation=2)
    cfg = TrainConfig(loss="force_matching", n_duplicates=1, epochs=16, batch_size=2, lr=5e-3, seed=0, ema_decay=0.9)
    result = Trainer(config, physics, converted, str(tmp_path / "run"), cfg).fit()
    pred, ref = evaluate_forces(result.model, [to_frame(a, config.atomic_numbers) for a in test])
    m = force_metrics(pred, ref)
    assert m["cosine"] > 0.98, m
    assert m["relative_rmse"] < 0.2, m
    assert 0.85 < m["slope"] < 1.1, m


def test_coarse_grained_beads_keep_their_names_through_training_saving_and_errors(tmp_path):
    """Bead types that are not elements: placeholder numbers from ase_denoise.data.bead_numbers,
    names in ModelConfig.bead_names, saved with the weights, shown in the table and in errors."""
    import numpy as np

    from ase_denoise import ModelConfig, load_model, save_model, train
    from ase_denoise.data import bead_atoms, bead_numbers
    from ase_denoise.inference import structure_frame

    types = ["CA", "CB", "CA", "CB", "N", "N"]
    numbers = bead_numbers(types)
    assert numbers == {"CA": 1, "CB": 2, "N": 3}
    masses = {"CA": 13.0, "CB": 15.0, "N": 15.0}
    rng = np.random.default_rng(0)
    base = np.array([[0, 0, 0], [1.5, 0, 0], [3.0, 0, 0], [4.5, 0, 0], [0, 1.5, 0], [1.5, 1.5, 0]], dtype=float)
    frames = [bead_atoms(types, base + rng.normal(0, 0.1, base.shape), masses, numbers) for _ in range(8)]
    for f in frames:
        f.info["temperature_K"] = 300.0
    assert np.allclose(frames[0].get_masses(), [13, 15, 13, 15, 15, 15])
    cfg = TrainConfig(epochs=1, batch_size=4, n_duplicates=1, valid_fraction=0.0)
    names = {z: t for t, z in numbers.items()}
    model = train(frames, str(tmp_path / "run"), noise_std=0.05, temperature_K=300.0, train_config=cfg,
                  bead_names=names, **TINY).model
    assert model.config.symbols == ["CA", "CB", "N"]
    path = tmp_path / "beads.safetensors"
    save_model(model, path)
    assert load_model(path).config.bead_names == names
    stranger = bead_atoms(["CA", "X"], base[:2], {"CA": 13.0, "X": 1.0}, {"CA": 1, "X": 7})
    with pytest.raises(DataError, match=r"bead number\(s\) \[7\] outside the model's bead table \['1 \(CA\)'"):
        structure_frame(stranger, model)
    with pytest.raises(DataError, match="no placeholder number or no mass"):
        bead_atoms(["CA", "Q"], base[:2], masses, numbers)
    with pytest.raises(ValueError, match="bead_names"):
        ModelConfig([1, 2], bead_names={5: "CA"})
    # logs and cards name the beads, not the elements their placeholder numbers happen to be (H, He, Li)
    from ase_denoise.priors import fit_repulsive_wall
    from ase_denoise.training import suggest_settings

    frames = [bead_atoms(types, base + rng.normal(0, 0.1, base.shape), masses, numbers) for _ in range(20)]
    wall = fit_repulsive_wall(frames, kT=0.025)
    assert "CA-CB" in wall.describe(names) and "H-He" in wall.describe() and "H-He" not in wall.describe(names)
    reasoning = "\n".join(suggest_settings(frames, names=names).reasoning)
    assert "CA-CB: first peak" in reasoning and "He" not in reasoning
