#!/usr/bin/env python
"""The default forces of every zoo model against MACE's energy+forces call, in one process.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/zoo_speed.py              # about 64, 512, 4096 atoms
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/zoo_speed.py --quick      # about 64, 256 atoms
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/zoo_speed.py --output benchmarks/zoo_speed.md

For each zoo model (loaded by name, sha256-checked): its own system repeated to about each size (the
first frame of its data set: the argon benchmark liquid for ``lj-argon-94K``, the LiCl and water CG
data sets; the six-bead alanine dipeptide, a molecule, only at its own size), and three ASE
calculators on the same positions, changed before every round (no cache helps):

* **default**: ``DenoiseCalculator(model)``, the forces the model returns by default (its stored
  level, or the sigma -> 0 extrapolation through its ladder), priors included;
* **one level**: the same model at its smallest trained level alone, priors included;
* **expansion**: the model's architecture and physics (priors, stored default) rebuilt with the expansion
  head (``noise_expansion = min(levels - 1, 2)``, no conditioning on sigma; fresh weights, which do not
  change the cost): what the same default forces cost when the network returns the sigma -> 0 term in
  one pass (docs/noise-ladder.md, "The expansion head");
* **MACE**: MACE's own energy model (``ScaleShiftMACE``, forces by autograd) with the zoo model's
  hyperparameters (cutoff, channels, max_L, max_ell, correlation, interactions, radial MLP, element
  table, avg_num_neighbors; ``benchmarks/common.py``), in the zoo model's dtype, no priors.

Medians after warm-up, calls interleaved in a fresh random order each round, one torch thread. The
ratios are the figure; the milliseconds depend on the machine and on what else runs on it. The last
line is machine-readable: ``worst_default_over_mace=<largest default/MACE ratio at the largest size>``.
"""

from __future__ import annotations

import os

if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse  # noqa: E402
import itertools  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Dict, List, Optional, Tuple  # noqa: E402

import numpy as np  # noqa: E402

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import common  # noqa: E402
from study_kit import provenance  # noqa: E402


def _repeat_for(n_base: int, target: int) -> Tuple[int, int, int]:
    """The most cubic repeat (a <= b <= c) whose atom count is closest to ``target``."""
    best = min(((a, b, c) for a, b, c in itertools.combinations_with_replacement(range(1, 17), 3)),
               key=lambda r: (abs(r[0] * r[1] * r[2] * n_base - target), r[2] - r[0]))
    return best


def base_structure(name: str):
    """One frame of the zoo model's own system (``None`` size limit for a molecule: its own size only)."""
    from ase import Atoms

    if name == "lj-argon-94K":
        return common.argon(4), True
    if name == "licl-cg-300K":
        d = np.load(HERE / "licl" / "licl_cg_300K.npz")
        return Atoms(numbers=d["numbers"], positions=d["positions"][0], cell=d["cell"], pbc=True), True
    if name == "water-1bead-300K":
        d = np.load(HERE / "water" / "water_1bead_300K.npz")
        n = d["positions"].shape[1]  # one bead per molecule, atomic number 1 in the model
        return Atoms(numbers=[1] * n, positions=d["positions"][0], cell=d["cell"], pbc=True), True
    if name == "ala2-cg-300K":
        from ala2 import cg

        return cg.map_frames()[0], False
    raise SystemExit(f"zoo_speed: no system for zoo model {name!r}; add one to base_structure")


def measure(name: str, atoms, repeats: int) -> Dict[str, float]:
    from dataclasses import replace

    from ase_denoise import DenoiseCalculator, ForcesChoice, load_model
    from ase_denoise.model import build_model

    model = load_model(name)
    dtype = next(model.parameters()).dtype
    mace = common.mace_energy_model(model.config, dtype, seed=0)
    keys = ("mace", "one level", "default") + (("expansion",) if len(model.noise_levels) > 1 else ())
    copies = {key: atoms.copy() for key in keys}
    copies["default"].calc = DenoiseCalculator(model)
    if "expansion" in copies:
        twin = replace(model.config, noise_embedding=0, noise_expansion=min(len(model.noise_levels) - 1, 2))
        copies["expansion"].calc = DenoiseCalculator(build_model(twin, model.physics, dtype, seed=0))
    copies["one level"].calc = DenoiseCalculator(model, forces=ForcesChoice(noise_std=min(model.noise_levels)))
    copies["mace"].calc = common.mace_calculator(mace, dtype)  # last: it edits ASE's class attribute
    rng = np.random.default_rng(0)
    start = atoms.positions.copy()

    def move() -> None:
        shift = rng.normal(0.0, 0.005, start.shape)
        for a in copies.values():
            a.positions = start + shift

    fns = {key: (lambda a=a: a.get_forces()) for key, a in copies.items()}
    times = common.interleaved(fns, repeats=repeats, warmup=2, before_round=move)
    times["describe"] = model.physics.describe_default_forces()
    times["dtype"] = str(dtype).replace("torch.", "")
    return times


HEADER = ["| zoo model | atoms | MACE E+F | one level | default forces | expansion | one level / MACE | default / MACE | "
          "expansion / MACE | default forces |", "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]


def table(sizes: List[int], names: List[str], out=print) -> Tuple[Dict[str, Dict[int, float]], float]:
    """Time every zoo model in ``names`` at about each of ``sizes`` atoms (a molecule at its own size), passing
    each table row to ``out`` as it is measured; returns {name: {atoms: default/MACE}} and the largest
    default/MACE ratio at the largest size of a periodic model."""
    ratios: Dict[str, Dict[int, float]] = {}
    worst = 0.0
    for line in HEADER:
        out(line)
    for name in names:
        base, periodic = base_structure(name)
        targets = sizes if periodic else [len(base)]
        for i, target in enumerate(targets):
            atoms = base.repeat(_repeat_for(len(base), target)) if periodic else base
            t = measure(name, atoms, repeats=11 if len(atoms) <= 600 else 5)
            ratio = t["default"] / t["mace"]
            ratios.setdefault(name, {})[len(atoms)] = ratio
            if i == len(targets) - 1 and periodic:
                worst = max(worst, ratio)
            expansion_ms, expansion_ratio = "-", "-"  # a one-level model has no expansion
            if "expansion" in t:
                expansion_ms, expansion_ratio = f"{1e3 * t['expansion']:.1f}", f"{t['expansion'] / t['mace']:.2f}"
            out(f"| {name} | {len(atoms)} | {1e3 * t['mace']:.1f} | {1e3 * t['one level']:.1f} | "
                f"{1e3 * t['default']:.1f} | {expansion_ms} | {t['one level'] / t['mace']:.2f} | {ratio:.2f} | "
                f"{expansion_ratio} | {t['describe']} ({t['dtype']}) |")
    return ratios, worst


def main(argv: Optional[List[str]] = None) -> int:
    from ase_denoise.zoo import list_models

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="about 64 and 256 atoms only")
    p.add_argument("--sizes", type=int, nargs="+", default=None)
    p.add_argument("--models", nargs="+", default=None, help="zoo names (default: every model in the registry)")
    p.add_argument("--output", help="also write the report (Markdown) to this file")
    args = p.parse_args(argv)
    lines: List[str] = []

    def out(line: str = "") -> None:
        print(line, flush=True)
        lines.append(line)

    common.single_thread()
    sizes = args.sizes or ([64, 256] if args.quick else [64, 512, 4096])
    names = args.models or list_models()
    out("# Default forces of the zoo models against MACE")
    out()
    command = " ".join(["benchmarks/zoo_speed.py", *(argv if argv is not None else sys.argv[1:])])
    out(f"`{command}`, commit {provenance(1)['commit']}; {common.machine()}; load average {common.load_average()}")
    out()
    out("Medians (ms), 1 torch thread; ratios against MACE's energy+forces call with the model's hyperparameters "
        "(`benchmarks/zoo_speed.py` says what is timed).")
    out()
    _, worst = table(sizes, names, out)
    if args.output:
        Path(args.output).write_text("\n".join(lines) + "\n")
    print(f"\nworst_default_over_mace={worst:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
