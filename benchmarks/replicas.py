#!/usr/bin/env python
"""Batched Langevin replicas against separate ASE runs: aggregate steps/s, one process, one thread.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/replicas.py            # writes benchmarks/replicas.md
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/replicas.py --quick

For each zoo model (``licl-cg-300K``: 48 ions, noise ladder corrected to sigma -> 0, wall prior;
``lj-argon-94K``: 108 atoms) it times ASE's ``Langevin`` with ``DenoiseCalculator`` on one box
(what 32 separate runs on this one thread would get in aggregate: the same steps/s), then
:class:`ase_denoise.replicas.ReplicaLangevin` with N boxes in one batched forward per step; the
aggregate is N x its steps/s. Start frames are data frames (LiCl) or true-LJ frames, one per replica.
Rounds alternate (ASE, then each N) ``--rounds`` times and the best round of each is kept, so load
from other processes hits all alike.
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
sys.path.insert(0, str(HERE / "licl"))
import common  # noqa: E402


def systems(n_max: int):
    from ase_denoise.reference import lj_argon_frames

    import study

    licl = study.load_frames()[: 2 * n_max : 2]
    lj = lj_argon_frames(20, 94.4, cache_dir=HERE.parent / "runs" / "lj_ladder" / "data", seed=1)
    lj = (lj * (n_max // len(lj) + 1))[:n_max]
    return {"licl-cg-300K": (licl, 300.0, 1.0), "lj-argon-94K": (lj, 94.4, 10.0)}


def ase_steps_per_s(model, atoms, temperature_K: float, timestep_fs: float, steps: int) -> float:
    from ase import units
    from ase.md.langevin import Langevin

    from ase_denoise import DenoiseCalculator

    atoms = atoms.copy()
    atoms.calc = DenoiseCalculator(model)
    dyn = Langevin(atoms, timestep_fs * units.fs, temperature_K=temperature_K, friction=0.01 / units.fs,
                   fixcm=False, rng=np.random.default_rng(0))
    dyn.run(2)  # warm-up
    t = time.perf_counter()
    dyn.run(steps)
    return steps / (time.perf_counter() - t)


def batched_steps_per_s(model, starts, temperature_K: float, timestep_fs: float, steps: int) -> float:
    from ase_denoise.replicas import ReplicaLangevin

    batch = ReplicaLangevin(model, starts, temperature_K=temperature_K, timestep_fs=timestep_fs)
    batch.run(2, interval=1000)  # warm-up
    return batch.run(steps, interval=1000)["steps_per_s"]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--replicas", type=int, nargs="+", default=[8, 32])
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args(argv)
    common.single_thread()
    from ase_denoise import load_model

    sizes = [4] if args.quick else args.replicas
    ase_steps, batch_steps = (20, 5) if args.quick else (200, 20)
    results = {}
    for name, (frames, temperature_K, dt) in systems(max(sizes)).items():
        model = load_model(name)
        best = {"ase": 0.0, **{n: 0.0 for n in sizes}}
        for _ in range(1 if args.quick else args.rounds):
            best["ase"] = max(best["ase"], ase_steps_per_s(model, frames[0], temperature_K, dt, ase_steps))
            for n in sizes:
                best[n] = max(best[n], batched_steps_per_s(model, frames[:n], temperature_K, dt, batch_steps))
        results[name] = {"atoms": len(frames[0]), "ase_steps_per_s": best["ase"],
                         "batched": {str(n): {"steps_per_s": best[n], "aggregate": n * best[n],
                                              "ratio_to_ase": n * best[n] / best["ase"]} for n in sizes}}
    lines = ["# Batched replicas vs separate ASE runs", "",
             f"Command: `OMP_NUM_THREADS=1 .venv/bin/python benchmarks/replicas.py{' --quick' if args.quick else ''}` "
             f"({common.machine()}).", "",
             "| model | atoms per box | ASE Langevin, one box (steps/s) | replicas N | batched steps/s | "
             "aggregate replica-steps/s | aggregate / ASE |", "| --- | --- | --- | --- | --- | --- | --- |"]
    for name, r in results.items():
        for n, b in r["batched"].items():
            lines.append(f"| {name} | {r['atoms']} | {r['ase_steps_per_s']:.0f} | {n} | {b['steps_per_s']:.1f} | "
                         f"{b['aggregate']:.0f} | {b['ratio_to_ase']:.2f} |")
    text = "\n".join(lines) + "\n"
    if not args.quick:
        (HERE / "replicas.md").write_text(text)
        (HERE / "replicas.json").write_text(json.dumps(results, indent=1) + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
