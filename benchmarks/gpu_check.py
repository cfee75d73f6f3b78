#!/usr/bin/env python
"""GPU check: correctness on CUDA against CPU, and speed against MACE's own calculator on the same GPU.

    python benchmarks/gpu_check.py            # needs a CUDA device; prints one line per figure
    GPU_CHECK_DEVICE=cpu GPU_CHECK_SIZES=64 python benchmarks/gpu_check.py   # smoke test of the script on CPU

1. The same float64 weights give the same forces on CUDA and CPU (max |diff| printed).
2. Training on CUDA follows CPU training: 10 float64 steps from one seed, max weight difference.
3. Inference: ``DenoiseCalculator`` (vector head, device=DEVICE) against ``MACECalculator`` (energy +
   autograd forces, device=DEVICE) on LJ-argon-like liquids of 512 / 4096 / 32768 atoms, float32,
   median of interleaved calls with CUDA synchronisation; ratio = ours / MACE.
4. A training step (forward + backward + AdamW) on 4 x 4096 atoms: ours against MACE's energy/force
   loss on the same batch.

Not part of the test suite (CI has no GPU); results are recorded in benchmarks/speed.md.
"""
from __future__ import annotations

import copy
import os
import sys

import numpy as np
import torch

if os.path.dirname(os.path.abspath(__file__)) not in sys.path:  # imported from elsewhere (run as a script: it is)
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402  (argon(), the models with speed.py's hyperparameters, MACE's batch, timing)

DEVICE = os.environ.get("GPU_CHECK_DEVICE", "cuda")  # "cpu" only to smoke-test this script
SIZES = [int(x) for x in os.environ.get("GPU_CHECK_SIZES", "512 4096 32768").split()]


def sync():
    if DEVICE == "cuda":
        torch.cuda.synchronize()


def median_time(fns, repeats=15, warmup=3):
    """Median seconds per call, interleaved in random order, synchronised with the device."""
    return common.interleaved(fns, repeats, warmup=warmup, sync=sync)


def main() -> int:
    import warnings

    from ase_denoise import DenoiseCalculator, TrainConfig
    from ase_denoise.data import to_frame
    from ase_denoise.training import prepare_data
    from ase_denoise.model import build_model
    from ase_denoise.data.neighbours import average_num_neighbors
    from ase_denoise.training import Trainer

    common.mace_api()  # mace imported without switching off torch.load's weights-only default
    warnings.simplefilter("ignore")
    if DEVICE == "cuda":
        assert torch.cuda.is_available(), "no CUDA device"
        print("device", torch.cuda.get_device_name(0), "torch", torch.__version__)
    atoms = common.argon(256)
    frames = [common.argon(256, seed=s) for s in range(8)]
    for a in frames:
        a.info["temperature_K"] = common.ARGON_TEMPERATURE_K

    # 1. forces, CUDA vs CPU, float64
    config, physics, conv = prepare_data(frames, noise_std=common.ARGON_NOISE_STD)
    model = build_model(config, physics, dtype=torch.float64, seed=0)
    f_cpu = DenoiseCalculator(copy.deepcopy(model), dtype=torch.float64).get_forces(atoms.copy())
    f_gpu = DenoiseCalculator(copy.deepcopy(model), device=DEVICE, dtype=torch.float64).get_forces(atoms.copy())
    print(f"forces_cuda_vs_cpu_float64_max_abs_diff={np.abs(f_cpu - f_gpu).max():.2e} (force scale {np.abs(f_cpu).max():.2e})")

    # 2. training on CUDA follows CPU (the Trainer seeds the weights from TrainConfig.seed)
    tc = TrainConfig(epochs=1, n_duplicates=2, batch_size=4, dtype="float64", seed=3, ema_decay=0.0)
    weights = {}
    for dev in ("cpu", DEVICE):
        tr = Trainer(config, physics, conv, f"/tmp/gpu_check_{dev}", tc, device=dev)
        for i, batch in enumerate(tr.sampler.epoch(0)):
            tr.train_step(batch)
            if i == 9:
                break
        weights[dev] = {k: v.detach().cpu() for k, v in tr.model.state_dict().items()}
    diff = max(float((weights["cpu"][k] - weights[DEVICE][k]).abs().max()) for k in weights["cpu"] if weights["cpu"][k].is_floating_point() and weights["cpu"][k].numel())
    print(f"training_10_steps_cuda_vs_cpu_float64_max_weight_diff={diff:.2e}")

    # 3. inference speed, float32: vector head vs MACE's calculator, speed.py's hyperparameters
    for n in SIZES:
        big = common.argon(n)
        avg = average_num_neighbors([to_frame(big, [18])], common.HYPERPARAMETERS["r_max"])
        models = common.benchmark_models(avg, torch.float32, heads=("vector",), seed=0)
        ours = DenoiseCalculator(models["vector"], device=DEVICE)
        theirs = common.mace_calculator(models["mace"], torch.float32, device=DEVICE)
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
    batch_frames = [common.argon(n, seed=s) for s in range(4)]
    for a in batch_frames:
        a.info["temperature_K"] = common.ARGON_TEMPERATURE_K
    config, physics, conv = prepare_data(batch_frames, noise_std=common.ARGON_NOISE_STD, num_channels=16, max_ell=2,
                                         correlation=2)
    tr = Trainer(config, physics, conv, "/tmp/gpu_check_train", TrainConfig(batch_size=4, n_duplicates=1, ema_decay=0.0),
                 device=DEVICE)
    batch = next(tr.sampler.epoch(0))
    mace_model = common.mace_energy_model(common.argon_config("edge", config.avg_num_neighbors), torch.float32,
                                          seed=0).to(DEVICE)
    opt = torch.optim.AdamW(mace_model.parameters(), lr=1e-3)
    mb = {k: v.to(DEVICE) if torch.is_tensor(v) else v
          for k, v in common.mace_batch(batch_frames, config.r_max, torch.float32).items()}

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
