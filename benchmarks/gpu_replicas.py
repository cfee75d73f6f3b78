#!/usr/bin/env python
"""Throughput on a GPU: one box per engine call against batched replicas, aggregate steps/s.

    python benchmarks/gpu_replicas.py --out DIR             # on a lent GPU (writes DIR/replicas_gpu.{md,json})
    python benchmarks/gpu_replicas.py --device cpu --quick  # smoke test of this script on a CPU

The GPU counterpart of ``replicas.py`` (the throughput table of docs/results/engines.md). For each zoo model it times

* ASE's ``Langevin`` with ``DenoiseCalculator(model, device=DEVICE)``, one box (N separate runs
  sharing one GPU from one process get this in aggregate at best), and the same on one CPU thread of
  the same machine (the baseline of ``replicas.py``);
* :class:`ase_denoise.md.replicas.ReplicaLangevin` with the model on DEVICE, N boxes in one batched
  forward per step (its Verlet lists, priors and integrator stay in numpy on the CPU);
* torch-sim's ``nvt_langevin`` through :class:`~ase_denoise.integrations.torchsim.DenoiserTorchSimModel`,
  N boxes in one state on DEVICE (integrator on the GPU; the wrapper's neighbour lists on the CPU);

for ``licl-cg-300K`` (48 ions), ``lj-argon-94K`` on its 108-atom box and on an fcc box of 4000 atoms
at the liquid's density. Every timing ends with a device synchronisation. The CPU thread count is 1
(``OMP_NUM_THREADS=1``): one CPU thread drives the GPU, as one thread drives the CPU runs.

Not part of the test suite (CI has no GPU); results are recorded in ``benchmarks/speed.md`` and
the README's throughput section.
"""

from __future__ import annotations

import os

if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import common  # noqa: E402
import replicas  # noqa: E402  (the systems and the CPU engines' timings)


def agreement(model_name: str, starts, temperature_K: float, timestep_fs: float, device: str, steps: int = 50) -> dict:
    """The same float64 model on ``device`` and on the CPU: ``ReplicaLangevin`` trajectories of
    ``len(starts)`` replicas with the same seeds after ``steps`` steps (max position difference, A), and
    the forces of torch-sim's batched forward on ``device`` against ``DenoiseCalculator`` on the CPU,
    box by box (max difference, eV/A)."""
    import torch

    from ase_denoise import DenoiseCalculator, load_model
    from ase_denoise.md import ReplicaLangevin

    cpu = load_model(model_name).to(dtype=torch.float64)
    dev = load_model(model_name).to(device=device, dtype=torch.float64)
    runs = {}
    for key, m in (("cpu", cpu), ("device", dev)):
        rep = ReplicaLangevin(m, starts, temperature_K=temperature_K, timestep_fs=timestep_fs)
        rep.run(steps, interval=10_000)
        runs[key] = np.stack([rep.atoms(i).positions for i in range(len(starts))])
    out = {"replica_positions_max_diff_A": float(np.abs(runs["cpu"] - runs["device"]).max()),
           "steps": steps, "boxes": len(starts)}
    try:
        import torch_sim as ts

        from ase_denoise.integrations.torchsim import DenoiserTorchSimModel

        wrapped = DenoiserTorchSimModel(dev)
        state = ts.io.atoms_to_state(list(starts), device=wrapped.device, dtype=wrapped.dtype)
        forces = wrapped(state)["forces"].detach().cpu().numpy().reshape(len(starts), -1, 3)
        ref = np.stack([DenoiseCalculator(cpu, dtype=torch.float64).get_forces(a.copy()) for a in starts])
        out["torchsim_forces_max_diff_eV_A"] = float(np.abs(forces - ref).max())
        out["force_scale_eV_A"] = float(np.abs(ref).max())
    except ImportError:
        pass
    return out


def rattled_copies(box, n: int, amplitude: float = 0.05):
    """``n`` copies of ``box``, each rattled by its own seed (independent start structures)."""
    out = []
    for i in range(n):
        a = box.copy()
        a.rattle(amplitude, seed=100 + i)
        out.append(a)
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda")
    p.add_argument("--quick", action="store_true", help="tiny sizes and few steps (a smoke test of the script)")
    p.add_argument("--out", type=Path, default=HERE, help="folder for replicas_gpu.md / replicas_gpu.json")
    args = p.parse_args(argv)
    common.single_thread()
    import torch

    from ase_denoise import load_model

    if args.device.startswith("cuda"):
        assert torch.cuda.is_available(), "no CUDA device"
        gpu = torch.cuda.get_device_name(0)
    else:
        gpu = "none (CPU smoke test)"
    try:
        import torch_sim  # noqa: F401
        have_torchsim = True
    except Exception as err:  # noqa: BLE001 - report the reason, time the rest
        have_torchsim = False
        print(f"torch-sim not importable: {err!r}", flush=True)

    small = [2] if args.quick else [1, 8, 32, 128, 512]
    large_n = [1] if args.quick else [1, 4]
    steps_small, steps_batched, steps_large = (5, 3, 2) if args.quick else (100, 20, 10)
    systems = replicas.systems(max(small))
    large_box = replicas.lj_box(3 if args.quick else 10)
    plan = [("licl-cg-300K", *systems["licl-cg-300K"], small, steps_small, steps_batched),
            ("lj-argon-94K", *systems["lj-argon-94K"], small, steps_small, steps_batched),
            ("lj-argon-94K", rattled_copies(large_box, max(large_n)), 94.4, 10.0, large_n, steps_large, steps_large)]
    checks = {name: agreement(name, frames[:4], temperature_K, dt, args.device, steps=5 if args.quick else 50)
              for name, frames, temperature_K, dt, *_ in plan[:2]}
    print(json.dumps({"agreement_float64": checks}), flush=True)
    results = []
    for name, frames, temperature_K, dt, sizes, n_ase, n_batched in plan:
        cpu_model = load_model(name)
        model = load_model(name).to(args.device)
        n_atoms = len(frames[0])
        row = {"model": name, "atoms": n_atoms}
        t0 = time.perf_counter()
        row["ase_device"] = replicas.ase_steps_per_s(cpu_model, frames[0], temperature_K, dt, n_ase, device=args.device)
        if n_atoms < 1000:  # one CPU thread on 4000 atoms: ~1 step/s, see replicas_large.md
            row["ase_cpu"] = replicas.ase_steps_per_s(cpu_model, frames[0], temperature_K, dt, n_ase)
        # ReplicaLangevin brings its forces back to numpy every step (synchronised); torch-sim's timer syncs
        row["batched"] = {n: replicas.batched_steps_per_s(model, frames[:n], temperature_K, dt, n_batched) for n in sizes}
        if have_torchsim:
            row["torchsim"] = {n: replicas.torchsim_steps_per_s(model, frames[:n], temperature_K, dt, n_batched)
                               for n in sizes}
        print(json.dumps(row), f"({time.perf_counter() - t0:.0f} s)", flush=True)
        results.append(row)
        if args.device.startswith("cuda"):
            torch.cuda.empty_cache()

    peak = torch.cuda.max_memory_allocated() / 1e9 if args.device.startswith("cuda") else float("nan")
    lines = ["# Batched replicas on a GPU", "",
             f"Command: `python benchmarks/gpu_replicas.py` on {gpu} ({common.machine()}); peak GPU memory "
             f"{peak:.1f} GB. Aggregate = boxes x steps/s; the ratio is against ASE + `DenoiseCalculator` on one "
             "CPU thread of the same machine (the baseline of `replicas.md`) where timed, else against ASE on the GPU.",
             "", "| model | atoms per box | engine | device | boxes | steps/s | aggregate box-steps/s | aggregate / ASE on CPU |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    where = "GPU" if args.device.startswith("cuda") else args.device
    for r in results:
        base = r.get("ase_cpu", r["ase_device"])
        tag = "" if "ase_cpu" in r else " (vs ASE on GPU)"
        if "ase_cpu" in r:
            lines.append(f"| {r['model']} | {r['atoms']} | ASE Langevin + DenoiseCalculator | CPU, 1 thread | 1 | "
                         f"{r['ase_cpu']:.1f} | {r['ase_cpu']:.1f} | 1.00 |")
        lines.append(f"| {r['model']} | {r['atoms']} | ASE Langevin + DenoiseCalculator | {where} | 1 | "
                     f"{r['ase_device']:.1f} | {r['ase_device']:.1f} | {r['ase_device'] / base:.2f}{tag} |")
        for engine, key in (("ase_denoise.md.replicas.ReplicaLangevin", "batched"), ("torch-sim nvt_langevin", "torchsim")):
            for n, rate in r.get(key, {}).items():
                lines.append(f"| {r['model']} | {r['atoms']} | {engine} | {where} | {n} | {rate:.1f} | {n * rate:.0f} | "
                             f"{n * rate / base:.2f}{tag} |")
    lines += ["", f"Agreement, float64, the same model on {where} and on the CPU:", ""]
    for name, c in checks.items():
        lines.append(f"* {name}, {c['boxes']} boxes: `ReplicaLangevin` positions after {c['steps']} steps differ by at most "
                     f"{c['replica_positions_max_diff_A']:.1e} A" + (
                         f"; torch-sim's batched forces against `DenoiseCalculator` on the CPU by at most "
                         f"{c['torchsim_forces_max_diff_eV_A']:.1e} eV/A (forces up to {c['force_scale_eV_A']:.2f} eV/A)"
                         if "torchsim_forces_max_diff_eV_A" in c else ""))
    text = "\n".join(lines) + "\n"
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "replicas_gpu.md").write_text(text)
    (args.out / "replicas_gpu.json").write_text(json.dumps({"gpu": gpu, "machine": common.machine(), "agreement": checks,
                                                            "peak_gpu_memory_GB": peak, "results": results}, indent=1) + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
