"""``ase-denoise fit``: from frames to a checked force field, the validated recipe by default.

Commands import the library inside their functions: ``ase-denoise --help`` and ``ase-denoise models list``
must not pay for importing torch and MACE (start-up cost, seconds)."""

from __future__ import annotations

import argparse
import shlex
import sys
import time

from ..config import FitConfig, ModelConfig, TrainConfig, add_arguments, options_from_args
from .common import command, training_progress
from .train import _noise_std_arg


def add_parsers(sub) -> None:
    p = sub.add_parser("fit", help="from frames to a checked force field in one command: settings read off the data, "
                       "training, the label-free corrections that help, MD against the data, a report")
    p.add_argument("--data", required=True, help="equilibrium frames, any file ASE can read (e.g. extxyz)")
    p.add_argument("--output", required=True, help="model file to write (.safetensors); the report goes next to it")
    p.add_argument("--temperature-K", type=float, default=None,
                   help="temperature of the data, K (default: the frames' info['temperature_K'])")
    p.add_argument("--run-dir", default=None, help="the steps' files (default: OUTPUT.fit)")
    p.add_argument("--resume", action="store_true", help="continue a fit in --run-dir, skipping the finished steps")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --output file")
    p.add_argument("--noise-std", nargs="+", default=["auto"], metavar="SIGMA",
                   help="noise level(s), Angstrom, or 'auto' (default: the ladder read off the data)")
    add_arguments(p.add_argument_group("the system and the checks"), FitConfig)
    add_arguments(p.add_argument_group("training (over the recipe's: antithetic noise pairs, smoothed bonded priors "
                                       "for a molecule)"), TrainConfig)
    add_arguments(p.add_argument_group("model (MACE hyperparameters)"), ModelConfig, r_max={
        "type": str, "help": "MACE cutoff, Angstrom, or 'auto' (default: the data's first coordination shells)",
    })


@command("fit")
def cmd_fit(args: argparse.Namespace) -> int:
    from ..errors import TrainingError
    from ..fitting import fit

    model_options = options_from_args(args, ModelConfig)
    if "r_max" in model_options and model_options["r_max"] != "auto":
        model_options["r_max"] = float(model_options["r_max"])
    model_options["noise_std"] = _noise_std_arg(args.noise_std)
    settings = FitConfig(**options_from_args(args, FitConfig))
    argv = getattr(args, "argv", None) or sys.argv[1:]
    t0 = time.perf_counter()
    try:
        result = fit(args.data, args.output, temperature_K=args.temperature_K, settings=settings,
                     train_options=options_from_args(args, TrainConfig), model_options=model_options,
                     run_dir=args.run_dir, resume=args.resume, overwrite=args.overwrite,
                     progress=training_progress(),
                     command="ase-denoise " + shlex.join(a for a in argv if a != "--resume"))
    except KeyboardInterrupt:
        print(f"\ninterrupted; continue with the same command plus --resume (steps in {args.run_dir or args.output + '.fit'})",
              file=sys.stderr)
        return 130
    except TrainingError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"fitted in {(time.perf_counter() - t0) / 60:.1f} min: {result.verdict}")
    print(f"model written to {result.path}; report {result.report}")
    return 0
