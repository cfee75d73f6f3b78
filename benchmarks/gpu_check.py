#!/usr/bin/env python
"""GPU check: correctness on CUDA against CPU, and speed against MACE's own calculator on the same GPU.

    python benchmarks/gpu_check.py            # needs a CUDA device; prints one line per figure

1. The same float64 weights give the same forces on CUDA and CPU (max |diff| printed).
2. Training on CUDA follows CPU training: 10 float64 steps from one seed, max weight difference.
3. Inference: ``DenoiseCalculator`` (vector head, device=DEVICE) against ``MACECalculator`` (energy +
   autograd forces, device=DEVICE) on LJ-argon-like liquids of 512 / 4096 / 32768 atoms, float32,
   median of interleaved calls with CUDA synchronisation; ratio = ours / MACE.
4. A training step (forward + backward + AdamW) on 4 x 4096 atoms: ours against MACE's energy/force
   loss on the same batch.

Not part of the test suite (CI has no GPU); results are recorded in benchmarks/README.md.
"""
from __future__ import annotations

import copy
import os
import statistics
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import speed  # noqa: E402  (argon(), build_mace(), model_config(), mace_batch())

from ase_denoise import DenoiseCalculator, TrainConfig  # noqa: E402
from ase_denoise.data import average_num_neighbors, to_frame  # noqa: E402
from ase_denoise.model import build_model  # noqa: E402
from ase_denoise.training import Trainer, prepare_data  # noqa: E402


class Args:  # the default hyperparameters of speed.py
    channels, max_ell, max_L, correlation, num_interactions, r_max = 16, 2, 1, 2, 2, 5.0


DEVICE = os.environ.get("GPU_CHECK_DEVICE", "cuda")  # "cpu" only to smoke-test this script
SIZES = [int(x) for x in os.environ.get("GPU_CHECK_SIZES", "512 4096 32768").split()]


def sync():
    if DEVICE == "cuda":
        torch.cuda.synchronize()


def median_time(fns, repeats=15, warmup=3):
    times = {k: [] for k in fns}
    for i in range(warmup + repeats):
        for k in np.random.default_rng(i).permutation(list(fns)):
            sync()
            t = time.perf_counter()
            fns[k]()
            sync()
            if i >= warmup:
                times[k].append(time.perf_counter() - t)
    return {k: statistics.median(v) for k, v in times.items()}


def main() -> int:
    if DEVICE == "cuda":
        assert torch.cuda.is_available(), "no CUDA device"
        print("device", torch.cuda.get_device_name(0), "torch", torch.__version__)
    atoms = speed.argon(256)
    frames = [speed.argon(256, seed=s) for s in range(8)]
    for a in frames:
        a.info["temperature_K"] = 94.4

    # 1. forces, CUDA vs CPU, float64
    cfg, conv = prepare_data(frames, noise_std=0.05)
    torch.manual_seed(0)
    model = build_model(cfg, dtype=torch.float64)
    f_cpu = DenoiseCalculator(copy.deepcopy(model), dtype=torch.float64).get_forces(atoms.copy())
    f_gpu = DenoiseCalculator(copy.deepcopy(model), device=DEVICE, dtype=torch.float64).get_forces(atoms.copy())
    print(f"forces_cuda_vs_cpu_float64_max_abs_diff={np.abs(f_cpu - f_gpu).max():.2e} (force scale {np.abs(f_cpu).max():.2e})")

    # 2. training on CUDA follows CPU
    tc = TrainConfig(epochs=1, n_duplicates=2, batch_size=4, dtype="float64", seed=3, ema_decay=0.0)
    weights = {}
    for dev in ("cpu", DEVICE):
        tr = Trainer(cfg, conv, f"/tmp/gpu_check_{dev}", tc, device=dev)
        for i, batch in enumerate(tr.sampler.epoch(0)):
            tr.train_step(batch)
            if i == 9:
                break
        weights[dev] = {k: v.detach().cpu() for k, v in tr.model.state_dict().items()}
    diff = max(float((weights["cpu"][k] - weights[DEVICE][k]).abs().max()) for k in weights["cpu"] if weights["cpu"][k].is_floating_point() and weights["cpu"][k].numel())
    print(f"training_10_steps_cuda_vs_cpu_float64_max_weight_diff={diff:.2e}")

    # 3. inference speed, float32
    from mace.calculators import MACECalculator

    for n in SIZES:
        big = speed.argon(n)
        avg = average_num_neighbors([to_frame(big, [18])], 5.0)
        torch.manual_seed(0)
        ours = DenoiseCalculator(build_model(speed.model_config(Args, avg, "vector"), dtype=torch.float32), device=DEVICE)
        mace_model = speed.build_mace(speed.model_config(Args, avg, "edge"), torch.float32)
        theirs = MACECalculator(models=mace_model, device=DEVICE, default_dtype="float32")
        a1, a2 = big.copy(), big.copy()
        a1.calc, a2.calc = ours, theirs
        rng = np.random.default_rng(0)

        def call(a):
            def f():
                a.positions += rng.normal(0, 1e-3, a.positions.shape)
                a.get_forces()
            return f

        t = median_time({"ours": call(a1), "mace": call(a2)}, repeats=11 if n < 30000 else 5)
        print(f"inference n={n}: ours {t['ours'] * 1e3:.1f} ms, mace {t['mace'] * 1e3:.1f} ms, ratio={t['ours'] / t['mace']:.3f}")

    # 4. training step, float32, 4 x 4096 atoms
    n = SIZES[1] if len(SIZES) > 1 else SIZES[0]
    batch_frames = [speed.argon(n, seed=s) for s in range(4)]
    for a in batch_frames:
        a.info["temperature_K"] = 94.4
    cfg, conv = prepare_data(batch_frames, noise_std=0.05, num_channels=16, max_ell=2, correlation=2)
    tr = Trainer(cfg, conv, "/tmp/gpu_check_train", TrainConfig(batch_size=4, n_duplicates=1, ema_decay=0.0), device=DEVICE)
    batch = next(tr.sampler.epoch(0))
    mace_model = speed.build_mace(speed.model_config(Args, cfg.avg_num_neighbors, "edge"), torch.float32).to(DEVICE)
    opt = torch.optim.AdamW(mace_model.parameters(), lr=1e-3)
    from mace.tools import AtomicNumberTable

    mb = {k: v.to(DEVICE) if torch.is_tensor(v) else v
          for k, v in speed.mace_batch(batch_frames, 5.0, AtomicNumberTable([18]), torch.float32).items()}

    def mace_step():
        out = mace_model(dict(mb), training=True, compute_force=True)
        loss = (out["energy"] ** 2).mean() + (out["forces"] ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()

    t = median_time({"ours": lambda: tr.train_step(batch), "mace": mace_step}, repeats=11)
    print(f"training step 4x{n}: ours {t['ours'] * 1e3:.1f} ms, mace {t['mace'] * 1e3:.1f} ms, ratio={t['ours'] / t['mace']:.3f}")
    if DEVICE == "cuda":
        print(f"peak_gpu_memory_GB={torch.cuda.max_memory_allocated() / 1e9:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
