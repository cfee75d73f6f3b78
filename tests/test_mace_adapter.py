"""MACE adapter: a denoiser built from a MACE model trained here with mace's own API.

The MACE models are tiny (8 channels, L=1, 2 layers), built in-process in float64 and trained for a
few steps with mace's data pipeline (``config_from_atoms`` -> ``AtomicData`` -> mace's DataLoader)
and mace's ``WeightedEnergyForcesLoss`` on LJ argon frames (energies and forces of the true LJ
potential, presented to mace through its key specification). Element table: H and Ar, so that the
element-indexed tensors have more than one row. One test also runs mace's CLI (``mace_run_train``)
for one epoch and adapts the ``.model`` file it writes. The denoisers are periodic (``pbc``), as the
LJ argon frames they are checked on.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import warnings

import numpy as np
import pytest
import torch

from ase_denoise import train
from ase_denoise.checkpoint import CheckpointError, load_model_file, save_model
from ase_denoise.config import TrainConfig
from ase_denoise.data import DataError, to_frame
from ase_denoise.data.graphs import collate
from ase_denoise.errors import MaceAdapterError, UntrustedPickleError
from ase_denoise.integrations.mace import denoiser_from_mace, load_mace_model, mace_model_config
from ase_denoise.data.reference import lj_argon_frames
from ase_denoise.testing import default_dtype, equivariance_errors, net_force
from ase_denoise.training import Trainer

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from e3nn import o3
    from mace import data as mace_data
    from mace import modules as mace_modules
    from mace import tools as mace_tools
    from mace.data.utils import KeySpecification
    from mace.tools import torch_geometric

ELEMENTS = [1, 18]
R_MAX = 5.0
KEYS = KeySpecification(info_keys={"energy": "ref_energy"}, arrays_keys={"forces": "ref_forces"})
PERIODIC = (True, True, True)


@pytest.fixture(scope="module")
def frames():
    return lj_argon_frames(4, 94.4, stride=20, melt_steps=100, equilibration_steps=100, seed=3)


def mace_batches(frames, batch_size=2):
    table = mace_tools.AtomicNumberTable(ELEMENTS)
    dataset = [
        mace_data.AtomicData.from_config(mace_data.config_from_atoms(a, key_specification=KEYS), z_table=table, cutoff=R_MAX)
        for a in frames
    ]
    return torch_geometric.dataloader.DataLoader(dataset=dataset, batch_size=batch_size, shuffle=False)


def train_tiny_mace(frames, first="RealAgnosticInteractionBlock", steps=3, hidden="8x0e+8x1o", num_interactions=2):
    """A tiny ScaleShiftMACE, float64, trained ``steps`` steps with mace's energy+forces loss."""
    with default_dtype(torch.float64):
        loader = mace_batches(frames)
        torch.manual_seed(0)
        model = mace_modules.ScaleShiftMACE(
            r_max=R_MAX, num_bessel=8, num_polynomial_cutoff=5, max_ell=2,
            interaction_cls=mace_modules.interaction_classes["RealAgnosticResidualInteractionBlock"],
            interaction_cls_first=mace_modules.interaction_classes[first],
            num_interactions=num_interactions, num_elements=len(ELEMENTS), hidden_irreps=o3.Irreps(hidden),
            MLP_irreps=o3.Irreps("8x0e"), atomic_energies=np.zeros(len(ELEMENTS)),
            avg_num_neighbors=mace_modules.compute_avg_num_neighbors(loader), atomic_numbers=ELEMENTS,
            correlation=2, gate=torch.nn.functional.silu, radial_MLP=[16, 16],
            atomic_inter_scale=0.05, atomic_inter_shift=-0.05,
        )
        loss_fn = mace_modules.WeightedEnergyForcesLoss(energy_weight=1.0, forces_weight=100.0)
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
        losses = []
        for _, batch in zip(range(steps), loader):
            loss = loss_fn(pred=model(batch.to_dict(), training=True), ref=batch)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
    assert all(np.isfinite(losses))
    return model.eval()


@pytest.fixture(scope="module")
def mace_model(frames):
    return train_tiny_mace(frames)


@pytest.fixture(scope="module")
def adapted(mace_model):
    return denoiser_from_mace(mace_model, noise_std=0.05, temperature_K=94.4, pbc=PERIODIC)


def test_config_read_off_the_mace_module(mace_model, adapted):
    model, report = adapted
    c = model.config
    assert c.atomic_numbers == ELEMENTS and model.atomic_numbers.tolist() == ELEMENTS
    assert (c.r_max, c.num_bessel, c.num_polynomial_cutoff, c.max_ell) == (R_MAX, 8, 5, 2)
    assert (c.num_channels, c.max_L, c.num_interactions, c.correlation) == (8, 1, 2, 2)
    assert c.radial_mlp == [16, 16]
    assert c.avg_num_neighbors == mace_model.interactions[0].avg_num_neighbors
    assert c.head == "edge"
    assert (model.noise_levels, model.temperature_K, model.physics.pbc) == ((0.05,), 94.4, PERIODIC)
    assert report.config is c and report.notes == []
    # the architecture alone, read off the module (noise and temperature are not MACE's to say)
    config, notes = mace_model_config(mace_model, head="edge")
    assert config == c and notes == []
    assert mace_model_config(mace_model, head="vector", edge_mlp=[4])[0].edge_mlp == [4]
    with pytest.raises(TypeError, match="read from the MACE model"):
        mace_model_config(mace_model, r_max=4.0)
    assert model.provenance["initialised_from"] == "mace" and model.provenance["n_params"] == report.n_params


def test_transferred_tensors_are_bitwise_equal(mace_model, adapted):
    model, report = adapted
    src, ours = mace_model.state_dict(), model.state_dict()
    assert len(report.transferred) > 40
    for name in report.transferred:
        assert ours[name].dtype == src[name].dtype, name
        assert torch.equal(ours[name], src[name]), name
    assert all(model.state_dict()[k].dtype == torch.float64 for k in report.transferred if k.endswith(".weight"))
    # the whole backbone came over: only the head is fresh
    assert {n.name for n in report.skipped} == {k for k in ours if k.startswith("edge_head.")}
    assert all(n.reason.startswith("noise head") for n in report.skipped)
    assert all(k in report.transferred for k in ours if k.startswith(("node_embedding.", "interactions.", "products.")))
    # element-indexed weights (2 elements) carried over in order
    assert model.node_embedding.linear.weight.numel() == len(ELEMENTS) * 8
    unused = {n.name: n.reason for n in report.unused}
    assert set(unused) == {k for k in src if k.startswith(("readouts.", "atomic_energies_fn.", "scale_shift.", "r_max", "num_interactions"))}
    assert "energy readout" in unused["readouts.1.linear_2.weight"]
    assert 0 < report.n_params_transferred < report.n_params
    assert "edge_head.mlp.0.weight" in report.summary()


def test_transfer_report_is_json_ready(adapted):
    """TransferReport.to_dict() is what model cards and checkpoint metadata record."""
    _, report = adapted
    as_dict = json.loads(json.dumps(report.to_dict()))
    assert as_dict["transferred"] == report.transferred and as_dict["n_params"] == report.n_params
    assert {n["name"] for n in as_dict["skipped"]} == {n.name for n in report.skipped}
    assert as_dict["config"] == report.config.to_dict()


def test_dtype_conversion_after_exact_copy(mace_model, adapted):
    model32, report = denoiser_from_mace(mace_model, noise_std=0.05, temperature_K=94.4, dtype=torch.float32,
                                         pbc=PERIODIC)
    assert report.transferred == adapted[1].transferred
    assert any("float64 to torch.float32" in n for n in report.notes)
    src = mace_model.state_dict()
    w = model32.state_dict()["interactions.1.linear.weight"]
    assert w.dtype == torch.float32 and torch.equal(w, src["interactions.1.linear.weight"].float())


def test_backbone_features_equal_mace(frames, mace_model, adapted):
    """With a matching first layer, the copied backbone computes exactly MACE's node features."""
    model, _ = adapted
    feats = []
    hooks = [p.register_forward_hook(lambda mod, inp, out: feats.append(out)) for p in model.products]
    try:
        with default_dtype(torch.float64):
            batch = next(iter(mace_batches(frames[:1], batch_size=1)))
        reference = mace_model(batch.to_dict(), training=False)["node_feats"]
        frame = to_frame(frames[0], ELEMENTS)
        with torch.no_grad():
            model(collate([frame.positions], [frame], len(ELEMENTS), R_MAX, torch.float64))
    finally:
        for h in hooks:
            h.remove()
    ours = torch.cat(feats, dim=-1)
    assert ours.shape == reference.shape == (108, 8 * 4 + 8)
    assert float((ours - reference.detach()).abs().max()) < 1e-12


def test_adapted_model_is_equivariant(frames, adapted):
    model, _ = adapted
    errors = equivariance_errors(model, frames[0], seed=1)
    assert max(errors.values()) < 1e-10, errors
    assert net_force(model, frames[0]) < 1e-10


def test_residual_first_layer_and_vector_head(frames):
    """A residual first layer (``mace_run_train --model ScaleShiftMACE`` default): only that layer's
    skip_tp stays fresh. The vector head keeps 1o features in the last layer, so the tensors of that
    layer whose shapes differ stay fresh too."""
    source = train_tiny_mace(frames, first="RealAgnosticResidualInteractionBlock", steps=1)
    model, report = denoiser_from_mace(source, noise_std=0.05, temperature_K=94.4, pbc=PERIODIC)
    skipped = {n.name: n.reason for n in report.skipped}
    assert set(skipped) - {k for k in skipped if k.startswith("edge_head.")} == {
        "interactions.0.skip_tp.weight", "interactions.0.skip_tp.output_mask"
    }
    assert "shape" in skipped["interactions.0.skip_tp.weight"]
    assert any("RealAgnosticResidualInteractionBlock" in n for n in report.notes)
    assert "interactions.0.linear_up.weight" in report.transferred
    assert max(equivariance_errors(model, frames[0]).values()) < 1e-10

    vector, vreport = denoiser_from_mace(source, noise_std=0.05, temperature_K=94.4, head="vector",
                                         dtype=torch.float64, pbc=PERIODIC)
    vskipped = {n.name: n.reason for n in vreport.skipped}
    assert {k for k in vskipped if k.startswith("vector_readouts.")} == {
        k for k in vector.state_dict() if k.startswith("vector_readouts.")
    }
    assert "products.1.linear.weight" in vskipped and "shape" in vskipped["products.1.linear.weight"]
    assert "interactions.1.linear.weight" in vreport.transferred  # same irreps in both models
    src = source.state_dict()
    assert all(torch.equal(vector.state_dict()[k], src[k]) for k in vreport.transferred)
    assert max(equivariance_errors(vector, frames[0]).values()) < 1e-10


def test_energy_head_takes_the_whole_backbone(frames, mace_model, adapted):
    """``head="energy"`` keeps MACE's scalar last layer, so the same backbone tensors transfer as for
    the edge head; the free-energy readouts start fresh, and A is invariant."""
    from ase_denoise.testing import free_energy_invariance_errors

    model, report = denoiser_from_mace(mace_model, noise_std=0.05, temperature_K=94.4, head="energy",
                                       dtype=torch.float64, pbc=PERIODIC)
    _, edge_report = adapted
    assert set(report.transferred) == set(edge_report.transferred)
    fresh = {n.name for n in report.skipped if n.reason.startswith("noise head")}
    assert fresh == {k for k in model.state_dict() if k.startswith("energy_readouts.")} and fresh
    assert max(free_energy_invariance_errors(model, frames[0], seed=2).values()) < 1e-10


def test_pickle_refused_before_unpickling(tmp_path):
    marker = tmp_path / "payload-ran"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    path = tmp_path / "evil.model"
    torch.save(Payload(), path)
    assert not marker.exists()
    for call in (
        lambda: denoiser_from_mace(path, noise_std=0.05, temperature_K=94.4),
        lambda: load_mace_model(path),
    ):
        with pytest.raises(UntrustedPickleError, match=r"executes code.*trust_pickle=True") as info:
            call()
        assert isinstance(info.value, CheckpointError)
        assert not marker.exists(), "the file was unpickled before the refusal"
    # the payload is live: with the opt-in it runs (and is then rejected as not a MACE module)
    with pytest.raises(MaceAdapterError, match="not a MACE"):
        denoiser_from_mace(path, noise_std=0.05, temperature_K=94.4, trust_pickle=True)
    assert marker.exists()
    with pytest.raises(FileNotFoundError):
        load_mace_model(tmp_path / "missing.model", trust_pickle=True)


def test_model_file_loaded_with_trust_pickle(tmp_path, mace_model, adapted):
    path = tmp_path / "tiny.model"
    torch.save(mace_model, path)  # what mace's run_train writes
    with pytest.raises(UntrustedPickleError):
        denoiser_from_mace(path, noise_std=0.05, temperature_K=94.4)
    model, report = denoiser_from_mace(path, noise_std=0.05, temperature_K=94.4, trust_pickle=True, pbc=PERIODIC)
    assert report.source == str(path) and report.transferred == adapted[1].transferred
    assert model.provenance["source"] == str(path)
    reference = adapted[0].state_dict()
    assert all(torch.equal(v, reference[k]) for k, v in model.state_dict().items())  # same seed: same head too
    # an adapted model saves and loads as an ordinary ase_denoise model file (no pickle)
    saved = save_model(model, tmp_path / "adapted.safetensors")
    loaded = load_model_file(saved)
    assert loaded.config == model.config and loaded.physics == model.physics
    assert all(torch.equal(v, loaded.state_dict()[k]) for k, v in model.state_dict().items())


def test_not_a_mace_model_and_unsorted_elements(mace_model):
    with pytest.raises(MaceAdapterError, match="not a MACE model"):
        denoiser_from_mace(torch.nn.Linear(2, 2), noise_std=0.05, temperature_K=94.4)
    source = copy.deepcopy(mace_model)
    source.atomic_numbers = torch.tensor([18, 1])
    with pytest.raises(MaceAdapterError, match="not sorted"):
        denoiser_from_mace(source, noise_std=0.05, temperature_K=94.4)


def test_fine_tuning_with_train_starts_from_the_adapted_weights(tmp_path, frames, adapted):
    """Fine-tuning is ordinary training started from the model: train(..., initial_model=model)."""
    model, _ = adapted
    cfg = TrainConfig(epochs=1, n_duplicates=1, batch_size=2, valid_fraction=0.25, valid_duplicates=1, warmup_steps=1, lr=1e-3)
    result = train(frames, str(tmp_path / "run"), initial_model=model, train_config=cfg)
    assert result.model.config == model.config and result.model.config.atomic_numbers == ELEMENTS
    assert result.model.physics.pbc == PERIODIC and result.model.noise_levels == (0.05,)  # the model's sigma
    assert result.model.temperature_K == 94.4  # the frames' temperature
    assert result.model.metadata["training"]["initial_weights"]["initialised_from"] == "mace"
    assert result.history and np.isfinite(result.history[0]["force_rmse"])
    before, after = model.state_dict(), result.model.state_dict()
    assert not torch.equal(before["interactions.1.linear.weight"].float(), after["interactions.1.linear.weight"])

    # the Trainer hook copies the weights (cast to the training dtype) and checks the architecture
    frame_list = [to_frame(a, ELEMENTS) for a in frames]
    trainer = Trainer(result.model.config, result.model.physics, frame_list, str(tmp_path / "t"), cfg,
                      initial_model=model)
    assert all(torch.equal(v, before[k].to(v.dtype)) for k, v in trainer.model.state_dict().items())
    other = dataclasses.replace(result.model.config, num_channels=4)
    with pytest.raises(ValueError, match="num_channels"):
        Trainer(other, result.model.physics, frame_list, str(tmp_path / "u"), cfg, initial_model=model)
    bad = frames[0].copy()
    bad.numbers[0] = 8
    with pytest.raises(DataError, match=r"\['O'\] outside the model's element table \['H', 'Ar'\]"):
        train([bad], str(tmp_path / "bad"), initial_model=model, train_config=cfg)


@pytest.mark.slow
def test_model_written_by_mace_run_train(tmp_path, frames):
    """The real thing: a ``.model`` file written by mace's own CLI (``mace_run_train``, defaults;
    one epoch on 3 frames, about 7 s)."""
    import subprocess
    import sys

    import ase.io

    labelled = []
    for atoms in frames:
        a = atoms.copy()
        a.info["REF_energy"] = atoms.info["ref_energy"]
        a.arrays["REF_forces"] = atoms.arrays["ref_forces"]
        labelled.append(a)
    ase.io.write(tmp_path / "train.xyz", labelled, format="extxyz")
    cmd = [
        sys.executable, "-m", "mace.cli.run_train", "--name", "tiny", "--train_file", "train.xyz",
        "--valid_fraction", "0.25", "--energy_key", "REF_energy", "--forces_key", "REF_forces",
        "--num_channels", "8", "--max_L", "1", "--max_ell", "2", "--correlation", "2", "--r_max", str(R_MAX),
        "--max_num_epochs", "1", "--batch_size", "2", "--E0s", "average", "--device", "cpu", "--seed", "1",
    ]
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=900,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    path = tmp_path / "tiny.model"
    with pytest.raises(UntrustedPickleError):
        denoiser_from_mace(path, noise_std=0.03, temperature_K=94.4)
    model, report = denoiser_from_mace(path, noise_std=0.03, temperature_K=94.4, trust_pickle=True, pbc=PERIODIC)
    assert {n.name for n in report.skipped} == {k for k in model.state_dict() if k.startswith("edge_head.")}
    source = load_mace_model(path, trust_pickle=True)
    src = source.state_dict()
    assert all(torch.equal(model.state_dict()[k], src[k]) for k in report.transferred)
    assert model.config.atomic_numbers == [18] and model.config.num_channels == 8
    assert max(equivariance_errors(model, frames[0]).values()) < 1e-10
    with pytest.raises(MaceAdapterError, match="TorchScript"):
        denoiser_from_mace(tmp_path / "tiny_compiled.model", noise_std=0.03, temperature_K=94.4, trust_pickle=True)
