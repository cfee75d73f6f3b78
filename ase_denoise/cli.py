"""Command line: ``ase-denoise train | md | eval | demo | models``. Printing and progress bars live here."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from typing import List, Optional

from .config import ModelConfig, PhysicsConfig, TrainConfig, add_arguments, options_from_args

log = logging.getLogger("ase_denoise.cli")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ase-denoise", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", required=True)

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
        "required": True, "nargs": "+", "type": str, "metavar": "SIGMA",
        "help": "noise standard deviation sigma, Angstrom: one level, several (a ladder: forces are then "
                "corrected to sigma -> 0), or 'auto' (a ladder derived from the data, reasoning printed)",
    })
    physics.add_argument(
        "--prior", action="append", default=[], metavar="SPEC",
        help="add a prior (repeatable): 'wall' (repulsive wall below each pair's closest approach in the data), "
             "'bonded' (harmonic bonds and angles of a molecule, fitted to the data; every frame the same molecule), "
             "'nonbonded-wall' (with 'bonded': the wall on the pairs the bonded priors do not hold), "
             "'dihedrals:4-6-8-14,6-8-14-16' (torsion free energies on those atom quadruples, 0-based, fitted to "
             "the data's dihedrals; learned as a residual), "
             "'coulomb:Li=1,Cl=-1,eps=78,alpha=0.2,cutoff=10' (DSF Coulomb, charges in e) or "
             "'ewald:Li=1,Cl=-1,eps=94,alpha=0.3,cutoff=10,accuracy=1e-6' (periodic Ewald Coulomb, as LAMMPS "
             "coul/long + pppm); Coulomb terms are learned as a residual",
    )
    add_arguments(p.add_argument_group("training"), TrainConfig)
    add_arguments(p.add_argument_group("model (MACE hyperparameters)"), ModelConfig, r_max={
        "type": str, "help": "MACE cutoff, Angstrom, or 'auto' (the data's first coordination shells)",
    })

    p = sub.add_parser("md", help="run Langevin MD with a denoiser")
    p.add_argument("--model", required=True, nargs="+",
                   help="model file or zoo name; several: a committee (the same recipe trained with different "
                        "seeds), whose mean forces drive the MD")
    p.add_argument("--noise-std", type=float, default=None,
                   help="evaluate this trained noise level (default: the model's level, or forces corrected to sigma -> 0)")
    p.add_argument("--structure", required=True, help="starting structure, any file ASE can read (last frame used)")
    p.add_argument("--temperature-K", type=float, required=True)
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
    p.add_argument("--noise-std", type=float, default=None,
                   help="evaluate this trained noise level (default: the model's level, or forces corrected to sigma -> 0)")
    p.add_argument("--parity", default=None, help="write a force parity plot (PNG) here")

    p = sub.add_parser("choose-forces", help="MD of each way a noise-ladder model can return forces against the "
                       "data's RDFs (no labels); writes a copy of the model storing the best as its default")
    p.add_argument("--model", required=True, help="model file or zoo name")
    p.add_argument("--output", required=True, help="model file to write with the chosen default forces")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --output file")
    _md_check_arguments(p)

    p = sub.add_parser("check-md", help="MD of one or more models (e.g. training seeds) against the data's RDFs, "
                       "no labels: each model's noise-subtracted RDF error, and the best")
    p.add_argument("--model", required=True, nargs="+", help="model files or zoo names (their default forces)")
    _md_check_arguments(p)

    p = sub.add_parser("refine-structure", help="correct a model's pair structure towards the data's RDFs, no labels "
                       "(iterative Boltzmann inversion into a tabulated pair prior); writes the best model")
    p.add_argument("--model", required=True, help="model file or zoo name")
    p.add_argument("--output", required=True, help="model file to write (the checked best of the corrections)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --output file")
    p.add_argument("--iterations", type=int, default=1, help="corrections, each followed by a check (default 1)")
    p.add_argument("--damping", type=float, default=1.0, help="fraction of kT ln(g_md/g_data) added per iteration")
    p.add_argument("--cutoff", type=float, default=None, help="range of the pair table, A (default: the model's r_max)")
    _md_check_arguments(p)

    p = sub.add_parser("refine-torsions", help="correct a molecule model's torsion distributions towards the data's, "
                       "no labels (iterative Boltzmann inversion into a dihedral correction); writes the best model")
    p.add_argument("--model", required=True, help="model file or zoo name")
    p.add_argument("--output", required=True, help="model file to write (the checked best of the corrections)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --output file")
    p.add_argument("--dihedrals", default=None, help="atom quadruples, e.g. '4-6-8-14,6-8-14-16' (0-based; default: "
                   "those of the model's torsion prior)")
    p.add_argument("--iterations", type=int, default=1, help="corrections, each followed by a check (default 1)")
    p.add_argument("--damping", type=float, default=1.0, help="fraction of kT ln(p_md/p_data) added per iteration")
    p.add_argument("--joint", action="store_true", help="correct the joint distribution of the dihedrals in pairs "
                   "(1st with 2nd, ...; a peptide's phi and psi) beside a one-dimensional correction already there")
    _md_check_arguments(p, what="one molecule in every frame", friction=0.05)

    p = sub.add_parser("correct-mean-forces", help="a model's mean forces along each element pair against its "
                       "data's RDFs (Kirkwood's relation, no labels, no MD): the mismatch, and with --output a "
                       "corrected model (a tabulated pair prior)")
    p.add_argument("--model", required=True, help="model file or zoo name")
    p.add_argument("--data", required=True, help="frames of the model's ensemble (e.g. its training frames; any ASE format)")
    p.add_argument("--output", default=None, help="model file to write with the correction (default: only report the mismatch)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --output file")
    p.add_argument("--iterations", type=int, default=6, help="correction iterations (default 6)")
    p.add_argument("--damping", type=float, default=1.0, help="fraction of W_data - W_model added per iteration")
    p.add_argument("--cutoff", type=float, default=None, help="range of the pair table, A (default: the model's r_max)")

    p = sub.add_parser("demo", help="LJ argon end to end: data, training, force recovery, MD, RDF")
    p.add_argument("--output", default="demo_output", help="directory for data, model and plots")
    p.add_argument("--minutes", type=float, default=7.0, help="training budget (default 7)")
    p.add_argument("--md-steps", type=int, default=4000, help="Langevin steps of 10 fs (default 4000)")
    p.add_argument("--quick", action="store_true", help="tiny settings for a smoke test (~1 min)")

    p = sub.add_parser("models", help="the model zoo: list, show a model card, verify checksums")
    p.add_argument("--models-dir", default=None,
                   help="zoo directory (default: $ASE_DENOISE_MODELS_DIR or the shipped models)")
    msub = p.add_subparsers(dest="models_command", required=True)
    msub.add_parser("list", help="names, sizes and summaries of the shipped models")
    q = msub.add_parser("show", help="registry entry and model card of one model")
    q.add_argument("name")
    msub.add_parser("verify", help="check every model's sha256 and that it loads (exit 1 if one fails)")
    return parser


def _md_check_arguments(p: argparse.ArgumentParser, what: str = "periodic", friction: float = 0.01) -> None:
    """The options of the label-free MD checks (``ase_denoise.md_validation``)."""
    p.add_argument("--data", required=True, help="equilibrium frames of the model's system (e.g. its training data), "
                   f"{what}, any file ASE can read")
    p.add_argument("--replicas", type=int, default=8, help="Langevin replicas per check, one batched run (default 8)")
    p.add_argument("--equilibration-ps", type=float, default=5.0, help="discarded part of each replica (default 5)")
    p.add_argument("--production-ps", type=float, default=20.0, help="kept part of each replica (default 20)")
    p.add_argument("--timestep-fs", type=float, default=1.0)
    p.add_argument("--friction", type=float, default=friction, help=f"Langevin friction, 1/fs (default {friction:g})")
    p.add_argument("--seed", type=int, default=0)


def _sig(value):
    """Floats to 5 significant digits for printing (``round(v, 5)`` turns 3e-6 eV/A into 0.0)."""
    return float(f"{value:.5g}") if isinstance(value, float) else value


def _distributed_setup(device: str):
    """Under ``torchrun`` (WORLD_SIZE > 1): join the process group; returns (rank, world_size, device).

    Backend ``nccl`` with one GPU per process when ``device`` is ``cuda``, else ``gloo`` on the CPU.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return 0, 1, device
    import torch
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


def _prior_arg(spec: str):
    """``wall``, ``bonded``, ``nonbonded-wall``, ``dihedrals:4-6-8-14[,...]``,
    ``coulomb:Li=1,Cl=-1,eps=78[,alpha=0.2][,cutoff=10]`` (DSF) or
    ``ewald:Li=1,Cl=-1,eps=94[,alpha=0.3][,cutoff=10][,accuracy=1e-6]`` -> a prior (or 'repulsive_wall')."""
    from ase.data import atomic_numbers

    from .priors import DSFCoulomb, EwaldCoulomb

    if spec == "wall":
        return "repulsive_wall"
    if spec == "bonded":
        return "bonded"
    if spec == "nonbonded-wall":
        return "nonbonded_wall"
    if spec.startswith("dihedrals:"):
        from .priors import parse_dihedrals

        parse_dihedrals(spec.partition(":")[2])  # refused here, before any data are read
        return spec
    usage = ("use 'wall', 'bonded', 'nonbonded-wall', 'dihedrals:i-j-k-l[,...]', "
             "'coulomb:Li=1,Cl=-1,eps=78[,alpha=0.2][,cutoff=10]' (DSF) or "
             "'ewald:Li=1,Cl=-1,eps=94[,alpha=0.3][,cutoff=10][,accuracy=1e-6]'")
    kind, _, rest = spec.partition(":")
    if kind not in ("coulomb", "ewald") or not rest:
        raise ValueError(f"--prior {spec!r}: {usage}")
    values = dict(item.split("=", 1) for item in rest.split(",") if "=" in item)
    names = ("eps", "alpha", "cutoff") + (("accuracy",) if kind == "ewald" else ())
    settings = {k: float(values.pop(k)) for k in names if k in values}
    unknown = [k for k in values if k not in atomic_numbers]
    if unknown or "eps" not in settings:
        raise ValueError(f"--prior {spec!r}: unknown element(s) {unknown} or missing eps=<relative permittivity>; {usage}")
    charges = {atomic_numbers[k]: float(v) for k, v in values.items()}
    if kind == "ewald":
        return EwaldCoulomb(charges, settings["eps"], alpha=settings.get("alpha", 0.3),
                            r_cut=settings.get("cutoff", 10.0), accuracy=settings.get("accuracy", 1e-6))
    return DSFCoulomb(charges, settings["eps"], alpha=settings.get("alpha", 0.2), r_cut=settings.get("cutoff", 10.0))


def cmd_train(args: argparse.Namespace) -> int:
    from .checkpoint import load_model_file, save_model
    from .data import read_frames
    from .training import TrainingError, train

    if os.path.exists(args.output) and not args.overwrite:
        raise FileExistsError(f"{args.output!r} exists; pass --overwrite to replace it")
    run_dir = args.run_dir or args.output + ".run"
    # the model is written after training: make its directory now, not fail once training is done
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    cfg = TrainConfig(**options_from_args(args, TrainConfig))
    model_options = options_from_args(args, ModelConfig)
    if "r_max" in model_options and model_options["r_max"] != "auto":
        model_options["r_max"] = float(model_options["r_max"])
    noise_std = _noise_std_arg(args.noise_std)
    priors = [_prior_arg(spec) for spec in args.prior]
    frames = read_frames(args.data)
    rank, world_size, device = _distributed_setup(args.device)
    if noise_std == "auto" or model_options.get("r_max") == "auto":
        from .suggest import pairs_held_by_priors, suggest_settings

        # with --smoothed-priors the bonded priors' smoothing leaves the target: their pairs do not set sigma
        suggestion = suggest_settings(frames, exclude_pairs=pairs_held_by_priors(priors, frames) if cfg.smoothed_priors else None)
        if rank == 0:
            print("settings from the data:")
            for line in suggestion.reasoning:
                print("  " + line)
        if noise_std == "auto":
            noise_std = list(suggestion.noise_std)
        if model_options.get("r_max") == "auto":
            model_options["r_max"] = suggestion.r_max
    t0 = time.perf_counter()
    try:
        result = train(
            frames, run_dir, noise_std=noise_std, temperature_K=args.temperature_K, train_config=cfg,
            default_noise_std=args.default_noise_std, default_extrapolation_order=args.default_extrapolation_order,
            priors=priors, resume=args.resume, progress=True, rank=rank, world_size=world_size, device=device,
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
    best = load_model_file(result.best_path)
    meta = best.metadata
    save_model(best, args.output, training=meta["training"], metrics=meta["metrics"], overwrite=args.overwrite)
    print(f"trained in {time.perf_counter() - t0:.0f} s ({result.stopped}); model written to {args.output}")
    if result.history:
        print("best epoch:", json.dumps({k: _sig(v) for k, v in meta["metrics"].items()}))
    return 0


def cmd_md(args: argparse.Namespace) -> int:
    from .calculator import DenoiseCalculator
    from .data import read_frames
    from .md import run_langevin

    if os.path.exists(args.output) and not args.overwrite:
        raise FileExistsError(f"{args.output!r} exists; pass --overwrite to replace it")
    atoms = read_frames(args.structure, index="-1")[-1]
    atoms.calc = DenoiseCalculator(args.model if len(args.model) > 1 else args.model[0], noise_std=args.noise_std)
    stats = run_langevin(
        atoms, temperature_K=args.temperature_K, steps=args.steps, timestep_fs=args.timestep_fs,
        friction_per_fs=args.friction, trajectory=args.output, interval=args.interval, seed=args.seed,
        progress=True, overwrite=args.overwrite,
    )
    print(json.dumps(stats, indent=1))
    if stats["stopped"]:
        print(f"warning: MD stopped early: {stats['stopped']}", file=sys.stderr)
    print(f"trajectory written to {args.output}")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from .analysis import force_metrics, plot_force_parity
    from .data import read_frames
    from .inference import evaluate_forces, structure_frame
    from .zoo import load_model

    model = load_model(args.model)
    frames = [structure_frame(a, model, what=f"frame {i}") for i, a in enumerate(read_frames(args.data))]
    missing = sum(f.ref_forces is None for f in frames)
    if missing:
        print(f"error: {missing} of {len(frames)} frames carry no reference forces "
              "(arrays['ref_forces'] or calculator forces); nothing to compare against", file=sys.stderr)
        return 2
    pred, ref = evaluate_forces(model, frames, noise_std=args.noise_std)
    metrics = force_metrics(pred, ref)
    print(json.dumps({k: _sig(v) for k, v in metrics.items()}, indent=1))
    if args.parity:
        print("parity plot:", plot_force_parity(pred, ref, args.parity, title=os.path.basename(args.model)))
    return 0


def _md_checks(args: argparse.Namespace, runs) -> list:
    """Read ``args.data``, check it against every model of ``runs`` ((label, model, choice) triples) and
    run :func:`~ase_denoise.md_validation.check_structure` for each, a progress bar and a printed line each."""
    from tqdm import tqdm

    from .data import read_frames
    from .inference import structure_frame
    from .md_validation import check_structure, reference_structure

    frames = read_frames(args.data)
    checked = set()
    for label, model, _ in runs:  # the model's elements, finite positions, a large enough cell; once per model
        if id(model) not in checked:
            checked.add(id(model))
            for i, atoms in enumerate(frames):
                structure_frame(atoms, model, what=f"frame {i} of {args.data} (for {label})")
    reference = reference_structure(frames)
    steps = int(round((args.equilibration_ps + args.production_ps) * 1000 / args.timestep_fs))
    checks = []
    for label, model, choice in runs:
        with tqdm(total=steps, desc=label[:40], unit="step", mininterval=10) as bar:
            checks.append(check_structure(
                model, frames, choice, n_replicas=args.replicas, equilibration_ps=args.equilibration_ps,
                production_ps=args.production_ps, timestep_fs=args.timestep_fs, friction_per_fs=args.friction,
                seed=args.seed, reference=reference, progress=bar.update))
        print(f"{label}: {checks[-1].figures()}")
    return checks


def _check_model_output(args: argparse.Namespace, what: str) -> None:
    """Refuse an existing ``--output`` (unless ``--overwrite``) and an ``--output`` that is the ``--model``
    file itself: a command that writes a new model never replaces what the user had."""
    if os.path.exists(args.output) and not args.overwrite:
        raise FileExistsError(f"{args.output!r} exists; pass --overwrite to replace it")
    if os.path.exists(args.model) and os.path.realpath(args.model) == os.path.realpath(args.output):
        raise ValueError(f"--output is the --model file itself: write the {what} model to another file")


def cmd_choose_forces(args: argparse.Namespace) -> int:
    from .checkpoint import save_model
    from .md_validation import best_check, forces_choices, with_default_forces
    from .zoo import load_model

    _check_model_output(args, "chosen")
    model = load_model(args.model)
    choices = forces_choices(model)
    if len(choices) == 1:
        print(f"{args.model} has one noise level ({model.noise_levels[0]} A): one way to return forces, nothing to choose")
        return 0
    checks = _md_checks(args, [(c.label, model, c) for c in choices])
    try:
        best = best_check(checks)
    except RuntimeError as exc:
        print(f"error: {exc}; nothing written", file=sys.stderr)
        return 1
    meta = model.metadata
    save_model(with_default_forces(model, best.choice), args.output, training=meta.get("training"),
               metrics=meta.get("metrics"), overwrite=args.overwrite)
    print(f"chosen: {best.choice.label} (systematic RDF error {best.systematic_error:.3f} against the data's; "
          f"MD noise of each figure about {best.rdf_error_noise:.3f}); written to {args.output}")
    return 0


def cmd_check_md(args: argparse.Namespace) -> int:
    from .md_validation import ForcesChoice, best_check
    from .zoo import load_model

    runs = [(name, load_model(name), ForcesChoice()) for name in args.model]
    checks = _md_checks(args, runs)
    try:
        best = best_check(checks)
    except RuntimeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"best: {runs[checks.index(best)][0]} (systematic RDF error {best.systematic_error:.3f}; MD noise of each "
          f"figure about {best.rdf_error_noise:.3f})")
    return 0


def _model_and_frames(args: argparse.Namespace):
    """The model ``--model`` (file or zoo name) and the frames of ``--data``, each frame checked
    against the model (elements, bead types, cell) with a message naming the frame."""
    from .data import read_frames
    from .inference import structure_frame
    from .zoo import load_model

    model = load_model(args.model)
    frames = read_frames(args.data)
    for i, atoms in enumerate(frames):
        structure_frame(atoms, model, what=f"frame {i} of {args.data}")
    return model, frames


def cmd_refine_structure(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from .checkpoint import save_model
    from .md_validation import refine_structure

    _check_model_output(args, "refined")
    model, frames = _model_and_frames(args)
    steps = (args.iterations + 1) * int(round((args.equilibration_ps + args.production_ps) * 1000 / args.timestep_fs))
    with tqdm(total=steps, desc="refine-structure", unit="step", mininterval=10) as bar:
        result = refine_structure(
            model, frames, iterations=args.iterations, damping=args.damping, cutoff=args.cutoff,
            n_replicas=args.replicas, equilibration_ps=args.equilibration_ps, production_ps=args.production_ps,
            timestep_fs=args.timestep_fs, friction_per_fs=args.friction, seed=args.seed, progress=bar.update)
    for i, check in enumerate(result.checks):
        print(f"{i} correction(s): {check.figures()}")
    if result.chosen == 0:
        print("no correction improved on the model's own MD structure; the model is written unchanged")
    meta = model.metadata
    save_model(result.model, args.output, training=meta.get("training"), metrics=meta.get("metrics"),
               overwrite=args.overwrite)
    print(f"chosen: {result.chosen} correction(s) (systematic RDF error {result.checks[result.chosen].systematic_error:.3f}); "
          f"written to {args.output}")
    return 0


def cmd_refine_torsions(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from .checkpoint import save_model
    from .md_validation import refine_torsions
    from .priors import parse_dihedrals

    _check_model_output(args, "refined")
    dihedrals = parse_dihedrals(args.dihedrals) if args.dihedrals else None  # refused before any data are read
    model, frames = _model_and_frames(args)
    steps = (args.iterations + 1) * int(round((args.equilibration_ps + args.production_ps) * 1000 / args.timestep_fs))
    with tqdm(total=steps, desc="refine-torsions", unit="step", mininterval=10) as bar:
        result = refine_torsions(
            model, frames, dihedrals, iterations=args.iterations, damping=args.damping, n_replicas=args.replicas,
            equilibration_ps=args.equilibration_ps, production_ps=args.production_ps, timestep_fs=args.timestep_fs,
            friction_per_fs=args.friction, seed=args.seed, progress=bar.update, joint=args.joint)
    for i in range(len(result.marginal_kl)):
        print(f"{i} correction(s): {result.figures(i)}")
    if result.chosen == 0:
        print("no correction improved on the model's own torsion distributions; the model is written unchanged")
    meta = model.metadata
    save_model(result.model, args.output, training=meta.get("training"), metrics=meta.get("metrics"),
               overwrite=args.overwrite)
    print(f"chosen: {result.chosen} correction(s) ({'joint' if args.joint else 'marginal'} torsion KL "
          f"{result.score(result.chosen):.3f}); written to {args.output}")
    return 0


def cmd_correct_mean_forces(args: argparse.Namespace) -> int:
    from .checkpoint import save_model
    from .mean_force import correct_mean_forces

    if args.output is not None:
        _check_model_output(args, "corrected")
    model, frames = _model_and_frames(args)
    result = correct_mean_forces(model, frames, iterations=args.iterations if args.output else 0,
                                 damping=args.damping, cutoff=args.cutoff)

    def line(m):
        return ", ".join(f"{k} {v:.3f}" for k, v in m.items())

    print(f"mean-force mismatch against the data's RDFs (kT; 0: Kirkwood's relation holds): {line(result.before)}")
    if args.output is None:
        return 0
    print(f"after {args.iterations} iteration(s): {line(result.after)}")
    for key, u in result.correction_at.items():
        print(f"  pair correction {key}: {u.min():+.4f} .. {u.max():+.4f} eV")
    meta = model.metadata
    save_model(result.model, args.output, training=meta.get("training"), metrics=meta.get("metrics"),
               overwrite=args.overwrite)
    print(f"written to {args.output}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    summary = run_demo(args.output, minutes=args.minutes, md_steps=args.md_steps, quick=args.quick, progress=True)
    print("\n=== ase_denoise demo: Lennard-Jones argon, 94.4 K ===")
    for key, value in summary.items():
        print(f"{key:>28}: {value}")
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    from . import zoo

    if args.models_command == "list":
        root = zoo.zoo_dir(args.models_dir)
        entries = zoo.read_registry(args.models_dir)
        print(f"models in {root}:")
        width = max([len(n) for n in entries] + [4])
        for name in sorted(entries):
            e = entries[name]
            print(f"  {name:<{width}}  {e.size_bytes / 1e6:6.2f} MB  {e.summary}")
        if not entries:
            print("  (none)")
        return 0
    if args.models_command == "show":
        entry = zoo.model_info(args.name, args.models_dir)
        print(json.dumps(entry.to_dict(), indent=1))
        print()
        print(zoo.card_text(args.name, args.models_dir))
        return 0
    # verify
    results = zoo.verify_models(args.models_dir, load=True)
    for name, ok, message in results:
        print(f"{'OK  ' if ok else 'FAIL'} {name}: {message}")
    failed = [name for name, ok, _ in results if not ok]
    if failed:
        print(f"error: {len(failed)} of {len(results)} model(s) failed verification: {', '.join(failed)}",
              file=sys.stderr)
        return 1
    print(f"all {len(results)} model(s) verified")
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(asctime)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    commands = {"train": cmd_train, "md": cmd_md, "eval": cmd_eval, "choose-forces": cmd_choose_forces,
                "check-md": cmd_check_md, "refine-structure": cmd_refine_structure,
                "refine-torsions": cmd_refine_torsions,
                "correct-mean-forces": cmd_correct_mean_forces, "demo": cmd_demo,
                "models": cmd_models}
    try:
        return commands[args.command](args)
    except (ValueError, FileExistsError, FileNotFoundError, PermissionError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
