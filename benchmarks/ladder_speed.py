#!/usr/bin/env python
"""Cost of the sigma -> 0 correction: a force call of a three-level model against a one-level model and
against MACE's own energy+forces calculator, in one process, on the same structures.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/ladder_speed.py            # 64, 512, 4096 atoms
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/ladder_speed.py --quick    # 64, 256 atoms

Models: the argon benchmark architecture of ``speed.py`` (``common.HYPERPARAMETERS``, vector head,
float32). The corrected calculator evaluates its three levels in one batched forward (the graph tiled
three times) and extrapolates; the one-level calculator is today's model. Positions change before
every round (no cache helps); medians after warm-up, calls interleaved in random order. The last line
is machine-readable: ``corrected_over_mace=<ratio at the largest size> corrected_over_single=<ratio>``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Dict, List

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

LEVELS = (0.025, 0.04, 0.06)


def measure(n: int, repeats: int) -> Dict[str, float]:
    import torch

    from ase_denoise import DenoiseCalculator, PhysicsConfig
    from ase_denoise.model import build_model
    from ase_denoise.data import to_frame
    from ase_denoise.data.neighbours import average_num_neighbors

    atoms = common.argon(n)
    avg = average_num_neighbors([to_frame(atoms, [18])], common.HYPERPARAMETERS["r_max"])
    single_cfg = common.argon_config("vector", avg)
    ladder_cfg = common.argon_config("vector", avg, noise_embedding=2)
    single = build_model(single_cfg, common.argon_physics(), torch.float32, seed=0)
    ladder = build_model(ladder_cfg, PhysicsConfig(common.ARGON_TEMPERATURE_K, LEVELS, (True,) * 3), torch.float32, seed=0)
    mace = common.mace_energy_model(common.argon_config("edge", avg), torch.float32, seed=0)
    copies = {name: atoms.copy() for name in ("mace", "single", "corrected")}
    copies["single"].calc = DenoiseCalculator(single)
    copies["corrected"].calc = DenoiseCalculator(ladder)
    copies["mace"].calc = common.mace_calculator(mace, torch.float32)  # last: it edits ASE's class attribute
    rng = np.random.default_rng(0)

    def move() -> None:
        shift = rng.normal(0.0, 0.01, (n, 3))
        for a in copies.values():
            a.positions = atoms.positions + shift

    fns = {name: (lambda a=a: a.get_forces()) for name, a in copies.items()}
    return common.interleaved(fns, repeats=repeats, warmup=2, before_round=move)


def main(argv: List[str] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="64 and 256 atoms only")
    p.add_argument("--sizes", type=int, nargs="+", default=None)
    args = p.parse_args(argv)
    common.single_thread()
    sizes = args.sizes or ([64, 256] if args.quick else [64, 512, 4096])
    print(common.machine())
    print(f"levels {LEVELS} A; medians (ms), 1 torch thread, float32; ratio = corrected / other\n")
    print("| atoms | MACE E+F | one level | corrected (3 levels) | corrected / MACE | corrected / one level |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: |")
    last = {}
    for n in sizes:
        t = measure(n, repeats=11 if n <= 512 else 5)
        last = t
        print(f"| {n} | {1e3 * t['mace']:.1f} | {1e3 * t['single']:.1f} | {1e3 * t['corrected']:.1f} "
              f"| {t['corrected'] / t['mace']:.2f} | {t['corrected'] / t['single']:.2f} |")
    print(f"\ncorrected_over_mace={last['corrected'] / last['mace']:.3f} "
          f"corrected_over_single={last['corrected'] / last['single']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
