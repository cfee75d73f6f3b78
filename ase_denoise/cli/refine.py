"""The label-free checks and corrections: ``choose-forces``, ``check-md``, ``refine-structure``,
``refine-torsions``, ``correct-mean-forces`` (:mod:`ase_denoise.refine`).

Commands import the library inside their functions: ``ase-denoise --help`` and ``ase-denoise models list``
must not pay for importing torch and MACE (start-up cost, seconds)."""

from __future__ import annotations

import argparse
import os
import sys

from tqdm import tqdm

from .common import command, refuse_existing


def add_parsers(sub) -> None:
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


def _md_check_arguments(p: argparse.ArgumentParser, what: str = "periodic", friction: float = 0.01) -> None:
    """The options of the label-free MD checks (:mod:`ase_denoise.refine`)."""
    p.add_argument("--data", required=True, help="equilibrium frames of the model's system (e.g. its training data), "
                   f"{what}, any file ASE can read")
    p.add_argument("--replicas", type=int, default=8, help="Langevin replicas per check, one batched run (default 8)")
    p.add_argument("--equilibration-ps", type=float, default=5.0, help="discarded part of each replica (default 5)")
    p.add_argument("--production-ps", type=float, default=20.0, help="kept part of each replica (default 20)")
    p.add_argument("--timestep-fs", type=float, default=1.0)
    p.add_argument("--friction", type=float, default=friction, help=f"Langevin friction, 1/fs (default {friction:g})")
    p.add_argument("--seed", type=int, default=0)


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.0f} min" if seconds < 7200 else f"{seconds / 3600:.1f} h"


def _announce(args: argparse.Namespace, model, frames, n_checks: int, label: str) -> int:
    """Print what the MD checks will run and how long they should take (from a few timed batched steps
    of this model on this machine); returns the steps of one check."""
    import time

    from ..md import ReplicaLangevin
    from ..refine.replica_md import spread_starts

    steps = int(round((args.equilibration_ps + args.production_ps) * 1000 / args.timestep_fs))
    replicas = ReplicaLangevin(model, spread_starts(frames, args.replicas), temperature_K=model.temperature_K,
                               timestep_fs=args.timestep_fs, friction_per_fs=args.friction)
    replicas.run(2)  # warm-up
    t0 = time.perf_counter()
    replicas.run(5)
    rate = 5 / max(time.perf_counter() - t0, 1e-9)
    print(f"{label}: {n_checks} check(s) of {args.replicas} Langevin replicas x ({args.equilibration_ps:g} ps discarded + "
          f"{args.production_ps:g} ps kept) at {args.timestep_fs:g} fs, friction {args.friction:g}/fs, "
          f"{model.temperature_K:g} K: {n_checks * steps} batched steps, about {_duration(n_checks * steps / rate)} "
          f"at {rate:.1f} steps/s here", flush=True)
    return steps


def _md_checks(args: argparse.Namespace, runs) -> list:
    """Read ``args.data``, check it against every model of ``runs`` ((label, model, choice) triples) and
    run :func:`~ase_denoise.refine.check_structure` for each, a progress bar and a printed line each."""
    from ..data import read_frames
    from ..inference import structure_frame
    from ..refine import check_structure, reference_structure

    frames = read_frames(args.data)
    checked = set()
    for label, model, _ in runs:  # the model's elements, finite positions, a large enough cell; once per model
        if id(model) not in checked:
            checked.add(id(model))
            for i, atoms in enumerate(frames):
                structure_frame(atoms, model, what=f"frame {i} of {args.data} (for {label})")
    reference = reference_structure(frames)
    steps = _announce(args, runs[0][1], frames, len(runs), "MD checks")
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
    refuse_existing(args.output, args.overwrite)
    if os.path.exists(args.model) and os.path.realpath(args.model) == os.path.realpath(args.output):
        raise ValueError(f"--output is the --model file itself: write the {what} model to another file")


@command("choose-forces")
def cmd_choose_forces(args: argparse.Namespace) -> int:
    from ..checkpoint import save_model
    from ..forces import forces_choices
    from ..model import with_default_forces
    from ..refine import best_check
    from ..zoo import load_model

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
    save_model(with_default_forces(model, best.forces), args.output, training=meta.get("training"),
               metrics=meta.get("metrics"), overwrite=args.overwrite)
    print(f"chosen: {best.forces.label} (systematic RDF error {best.systematic_error:.3f} against the data's; "
          f"MD noise of each figure about {best.rdf_error_noise:.3f}); written to {args.output}")
    return 0


@command("check-md")
def cmd_check_md(args: argparse.Namespace) -> int:
    from ..forces import ForcesChoice
    from ..refine import best_check
    from ..zoo import load_model

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
    from ..data import read_frames
    from ..inference import structure_frame
    from ..zoo import load_model

    model = load_model(args.model)
    frames = read_frames(args.data)
    for i, atoms in enumerate(frames):
        structure_frame(atoms, model, what=f"frame {i} of {args.data}")
    return model, frames


@command("refine-structure")
def cmd_refine_structure(args: argparse.Namespace) -> int:
    from ..checkpoint import save_model
    from ..refine import refine_structure

    _check_model_output(args, "refined")
    model, frames = _model_and_frames(args)
    steps = (args.iterations + 1) * _announce(args, model, frames, args.iterations + 1, "refine-structure")
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


@command("refine-torsions")
def cmd_refine_torsions(args: argparse.Namespace) -> int:
    from ..checkpoint import save_model
    from ..priors import parse_dihedrals
    from ..refine import refine_torsions

    _check_model_output(args, "refined")
    dihedrals = parse_dihedrals(args.dihedrals) if args.dihedrals else None  # refused before any data are read
    model, frames = _model_and_frames(args)
    steps = (args.iterations + 1) * _announce(args, model, frames, args.iterations + 1, "refine-torsions")
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


@command("correct-mean-forces")
def cmd_correct_mean_forces(args: argparse.Namespace) -> int:
    from ..checkpoint import save_model
    from ..refine import correct_mean_forces

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
