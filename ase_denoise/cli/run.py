"""``ase-denoise md`` and ``ase-denoise eval``: run a model, and measure its forces against labels.

Commands import the library inside their functions: ``ase-denoise --help`` and ``ase-denoise models list``
must not pay for importing torch and MACE (start-up cost, seconds)."""

from __future__ import annotations

import argparse
import json
import os
import sys

from ..config import add_arguments, options_from_args
from ..forces import ForcesChoice
from ..md.langevin import OVERLAP_DISTANCE
from .common import command, refuse_existing, with_units

#: units of the figures ``md`` and ``eval`` print
MD_UNITS = {"wall_s": "s", "steps_per_second": "1/s", "ns_per_day": "ns/day", "min_distance": "A",
            "max_force": "eV/A"}
EVAL_UNITS = {"rmse": "eV/A", "mae": "eV/A"}


def add_parsers(sub) -> None:
    p = sub.add_parser("md", help="run Langevin MD with a denoiser")
    p.add_argument("--model", required=True, nargs="+",
                   help="model file or zoo name; several: a committee (the same recipe trained with different "
                        "seeds), whose mean forces drive the MD")
    add_arguments(p.add_argument_group("which forces (a noise ladder)"), ForcesChoice)
    p.add_argument("--structure", required=True, help="starting structure, any file ASE can read (last frame used)")
    p.add_argument("--temperature-K", type=float, default=None,
                   help="thermostat temperature, K (default: the model's training temperature; another one needs "
                        "--allow-other-temperature)")
    p.add_argument("--allow-other-temperature", action="store_true",
                   help="run at a temperature other than the model's training temperature (its forces are that "
                        "ensemble's)")
    p.add_argument("--min-distance-stop", type=float, default=OVERLAP_DISTANCE,
                   help=f"end the run when two atoms come closer than this, Angstrom (default {OVERLAP_DISTANCE}; 0: off)")
    p.add_argument("--steps", type=int, required=True)
    p.add_argument("--timestep-fs", type=float, default=5.0)
    p.add_argument("--friction", type=float, default=0.01, help="Langevin friction, 1/fs (default 0.01)")
    p.add_argument("--interval", type=int, default=10, help="write/log every N steps")
    p.add_argument("--output", required=True, help="trajectory file (.traj or .extxyz)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--overwrite", action="store_true")

    p = sub.add_parser("eval", help="force error of a denoiser against reference forces in frames")
    p.add_argument("--model", required=True, help="model file or zoo name")
    p.add_argument("--data", required=True, help="frames with per-atom force labels, any file ASE can read")
    add_arguments(p.add_argument_group("which forces (a noise ladder)"), ForcesChoice)
    p.add_argument("--parity", default=None, help="write a force parity plot (PNG) here")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --parity file")


@command("md")
def cmd_md(args: argparse.Namespace) -> int:
    from ..calculator import DenoiseCalculator
    from ..data import read_frames
    from ..md import run_langevin

    refuse_existing(args.output, args.overwrite)
    atoms = read_frames(args.structure, index="-1")[-1]
    atoms.calc = DenoiseCalculator(args.model if len(args.model) > 1 else args.model[0],
                                   forces=ForcesChoice(**options_from_args(args, ForcesChoice)))
    temperature_K = atoms.calc.temperature_K if args.temperature_K is None else args.temperature_K
    stats = run_langevin(
        atoms, temperature_K=temperature_K, steps=args.steps, timestep_fs=args.timestep_fs,
        friction_per_fs=args.friction, trajectory=args.output, interval=args.interval, seed=args.seed,
        progress=True, overwrite=args.overwrite, allow_other_temperature=args.allow_other_temperature,
        min_distance_stop=args.min_distance_stop or None,
    )
    print(json.dumps(with_units(stats, MD_UNITS), indent=1))
    if stats["stopped"]:
        print(f"warning: MD stopped early: {stats['stopped']}", file=sys.stderr)
    print(f"trajectory written to {args.output}")
    return 0


@command("eval")
def cmd_eval(args: argparse.Namespace) -> int:
    from ..analysis import force_metrics, plot_force_parity
    from ..data import read_frames
    from ..inference import evaluate_forces, structure_frame
    from ..zoo import load_model

    if args.parity:
        refuse_existing(args.parity, args.overwrite)  # before the work; a symlink counts as existing
    model = load_model(args.model)
    frames = [structure_frame(a, model, what=f"frame {i}") for i, a in enumerate(read_frames(args.data))]
    missing = sum(f.ref_forces is None for f in frames)
    if missing:
        print(f"error: {missing} of {len(frames)} frames carry no reference forces "
              "(arrays['ref_forces'] or calculator forces); nothing to compare against", file=sys.stderr)
        return 2
    pred, ref = evaluate_forces(model, frames, forces=ForcesChoice(**options_from_args(args, ForcesChoice)))
    metrics = force_metrics(pred, ref)
    print(json.dumps(with_units(metrics, EVAL_UNITS), indent=1))
    if args.parity:
        print("parity plot:", plot_force_parity(pred, ref, args.parity, title=os.path.basename(args.model),
                                                overwrite=args.overwrite))
    return 0
