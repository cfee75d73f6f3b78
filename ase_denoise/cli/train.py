"""``ase-denoise train``.

Commands import the library inside their functions: ``ase-denoise --help`` and ``ase-denoise models list``
must not pay for importing torch and MACE (start-up cost, seconds)."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import List

from ..config import ModelConfig, PhysicsConfig, TrainConfig, add_arguments, options_from_args
from ..forces import ForcesChoice
from ..priors.specs import SHORT_FORMS, parse_prior
from .common import _sig, command, refuse_existing, training_progress


def add_parsers(sub) -> None:
    p = sub.add_parser("train", help="train a denoiser on equilibrium frames")
    p.add_argument("--data", required=True, help="frames, any file ASE can read (e.g. extxyz)")
    p.add_argument("--output", required=True, help="model file to write (.safetensors)")
    p.add_argument("--run-dir", default=None, help="checkpoints/log directory (default: OUTPUT.run)")
    p.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda (default cpu); under "
                   "torchrun each process takes cuda:LOCAL_RANK")
    p.add_argument("--resume", action="store_true", help="continue the run in --run-dir")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --output file")
    # options and defaults come from the dataclasses (ase_denoise.config): one definition each
    physics = p.add_argument_group("physics of the data")
    add_arguments(physics, PhysicsConfig, noise_std={
        "nargs": "+", "type": str, "metavar": "SIGMA",
        "help": "noise standard deviation sigma, Angstrom: one level, several (a ladder: forces are then "
                "corrected to sigma -> 0), or 'auto' (default: a ladder derived from the data, reasoning printed)",
    })
    physics.add_argument(
        "--prior", action="append", default=[], metavar="SPEC",
        help="add a prior (repeatable): 'wall' (repulsive wall below each pair's closest approach in the data), "
             "'bonded' (harmonic bonds and angles of a molecule, fitted to the data; every frame the same molecule), "
             "'nonbonded-wall' (with 'bonded': the wall on the pairs the bonded priors do not hold), "
             "'dihedrals:4-6-8-14,6-8-14-16' (torsion free energies on those atom quadruples, 0-based, fitted to "
             "the data's dihedrals; learned as a residual), 'coulomb:...' (DSF Coulomb, charges in e) or "
             "'ewald:...' (periodic Ewald Coulomb, as LAMMPS coul/long + pppm); Coulomb terms are learned as a "
             "residual. Forms: " + "; ".join(SHORT_FORMS),
    )
    add_arguments(p.add_argument_group("training"), TrainConfig)
    add_arguments(p.add_argument_group("model (MACE hyperparameters)"), ModelConfig, r_max={
        "type": str, "help": "MACE cutoff, Angstrom, or 'auto' (the data's first coordination shells)",
    })


def _distributed_setup(device: str):
    """Under ``torchrun`` (WORLD_SIZE > 1): join the process group; returns (rank, world_size, device).

    Backend ``nccl`` with one GPU per process when ``device`` is ``cuda``, else ``gloo`` on the CPU.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return 0, 1, device
    import torch  # start-up cost: only under torchrun
    import torch.distributed as dist

    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if device.startswith("cuda"):
        torch.cuda.set_device(local_rank)
        device = f"cuda:{local_rank}"
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.startswith("cuda") else "gloo")
    return rank, world_size, device


def _noise_std_arg(values: List[str]):
    """``['auto']`` -> ``'auto'``; otherwise the levels as floats (Angstrom)."""
    if values == ["auto"]:
        return "auto"
    try:
        return [float(v) for v in values]
    except ValueError:
        raise ValueError(f"--noise-std {' '.join(values)}: give sigma values in Angstrom or the single word 'auto'") from None


@command("train")
def cmd_train(args: argparse.Namespace) -> int:
    from ..checkpoint import load_model_file, save_model
    from ..data import read_frames
    from ..errors import TrainingError
    from ..training import train

    if not args.resume:  # a resumed run finishes the output it was started for
        refuse_existing(args.output, args.overwrite)
    run_dir = args.run_dir or args.output + ".run"
    # the model is written after training: make its directory now, not fail once training is done
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    cfg = TrainConfig(**options_from_args(args, TrainConfig))
    model_options = options_from_args(args, ModelConfig)
    if "r_max" in model_options and model_options["r_max"] != "auto":
        model_options["r_max"] = float(model_options["r_max"])
    noise_std = _noise_std_arg(args.noise_std or ["auto"])
    priors = [parse_prior(spec) for spec in args.prior]  # refused now, before any data are read
    default_forces = ForcesChoice(noise_std=args.default_noise_std, extrapolation_order=args.default_extrapolation_order)
    frames = read_frames(args.data)
    rank, world_size, device = _distributed_setup(args.device)
    t0 = time.perf_counter()
    try:  # 'auto' settings are read off the data in prepare_data, which logs its reasoning
        result = train(
            frames, run_dir, noise_std=noise_std, temperature_K=args.temperature_K, train_config=cfg,
            default_forces=default_forces, priors=priors, resume=args.resume, progress=training_progress(),
            rank=rank, world_size=world_size, device=device,
            **model_options,
        )
    except KeyboardInterrupt:
        print(f"\ninterrupted; resume with the same command plus --resume (state in {run_dir})", file=sys.stderr)
        return 130
    except TrainingError as exc:  # e.g. --resume with other options, or a non-finite loss
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if rank != 0:
        return 0
    kept = load_model_file(result.path)
    meta = kept.metadata
    save_model(kept, args.output, training=meta["training"], metrics=meta["metrics"],
               overwrite=args.overwrite or args.resume)
    print(f"trained in {time.perf_counter() - t0:.0f} s ({result.stopped}); model written to {args.output}")
    if result.history:
        print(f"{result.kept} epoch:", json.dumps({k: _sig(v) for k, v in meta["metrics"].items()}))
    return 0
