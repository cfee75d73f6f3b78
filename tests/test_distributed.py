"""Data-parallel training: 2 CPU processes (gloo, started by torchrun through the real CLI) give the
same weights as one process stepping on the union of the two ranks' batches."""

import dataclasses
import os
import subprocess
import sys

import ase.io
import pytest
import torch

from ase_denoise.config import TrainConfig
from ase_denoise.training import prepare_data
from ase_denoise.data.reference import sample_harmonic_dimer
from ase_denoise.training.sampler import DuplicationSampler, NoisyBatch
from ase_denoise.training import Trainer

from _helpers import TINY, TINY_CLI


@pytest.mark.slow
def test_two_process_training_equals_single_process_on_the_same_global_batch(tmp_path):
    frames = sample_harmonic_dimer(40, k=2.0, d0=1.5, temperature_K=300.0, seed=11)
    data = tmp_path / "dimers.extxyz"
    ase.io.write(data, frames, format="extxyz")
    cfg = TrainConfig(n_duplicates=2, epochs=2, batch_size=4, lr=5e-3, valid_fraction=0.1, seed=3, dtype="float64")

    env = dict(os.environ, OMP_NUM_THREADS="1")
    # --standalone: torchrun picks a free local port itself (no fixed port to collide with)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "ase_denoise.cli", "train", "--data", str(data), "--noise-std", "0.1", "--duplicates", "2",
           "--epochs", "2", "--batch-size", "4", "--lr", "5e-3", "--seed", "3", "--dtype", "float64",
           "--output", str(tmp_path / "ddp.safetensors"), "--run-dir", str(tmp_path / "ddp"), *TINY_CLI]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ddp_state = torch.load(tmp_path / "ddp" / "training_state.pt", weights_only=True)

    # single process: each step on the union of what rank 0 and rank 1 saw at that step. Its batch
    # size is the union's, so that it has the 2-process run's number of steps and hence its schedule.
    config, physics, converted = prepare_data(frames, noise_std=0.1, **TINY)
    single = Trainer(config, physics, converted, str(tmp_path / "single"),
                     dataclasses.replace(cfg, batch_size=2 * cfg.batch_size))
    ranks = [DuplicationSampler(converted, single.train_ids, 2, 0.1, 4, 3, rank=r, world_size=2) for r in range(2)]
    assert single.total_steps == cfg.epochs * len(ranks[0])
    for epoch in range(cfg.epochs):
        for b0, b1 in zip(ranks[0].epoch(epoch), ranks[1].epoch(epoch)):
            single.train_step(NoisyBatch.concat([b0, b1]))

    assert ddp_state["step"] == single.step == cfg.epochs * len(ranks[0])
    assert ddp_state["train_config"]["batch_size"] == cfg.batch_size  # per rank
    for name, value in single.model.state_dict().items():
        # float64; the gradient sums run in a different order (per-rank partial sums), and Adam's
        # normalisation amplifies those 1e-16 differences for tiny gradients: measured <= 1e-10
        torch.testing.assert_close(ddp_state["model"][name], value, rtol=1e-7, atol=1e-8, msg=name)
    # and the run is not trivially equal to its initialisation
    fresh = Trainer(config, physics, converted, str(tmp_path / "fresh"), cfg).model.state_dict()
    assert any(not torch.allclose(fresh[k], v) for k, v in single.model.state_dict().items())
    assert (tmp_path / "ddp.safetensors").exists()  # rank 0 wrote the model
