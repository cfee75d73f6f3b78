#!/usr/bin/env python
"""Many short replicas from frames across the data: an RDF error whose MD noise is measured.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/licl/replica_md.py denoise-ladder-wall-ewald-antithetic-smallest-level force-match-wall-ewald-1800 ...

One 30-ps run from one start frame (the study's protocol) moves a model's RDF error by about 0.05
between start frames and MD seeds, as much as the recipes differ. Here each trained model (the study's
``runs/licl/<run>``, default forces as stored, e.g. the smallest level for ``...-smallest-level``) runs
``--replicas`` independent Langevin replicas (300 K, 1 fs, friction 0.01/fs, as the study), all in one
batched forward per step (:class:`ase_denoise.md.replicas.ReplicaLangevin`), each from its own frame of
the data (evenly spaced over the 1.8 ns of the training pool, so their starts are independent) and
its own thermostat seed: ``--equilibration-ps`` discarded, ``--production-ps`` kept (a frame every
0.1 ps). Figures, per model -> a ``replicas`` record in ``results/summary.jsonl``:

* ``rms_mean``: the study's RDF error (RMS over bins against the 2-ns reference, mean over the three
  pairs) of all replicas' frames pooled, and ``rms_boot``: its standard error from resampling the
  replicas (bootstrap over replicas, 200 draws): the MD noise of this figure;
* ``rms_systematic``: the same with both RDFs' sampling variances subtracted bin by bin;
* the Li-Cl peak height, the Li-Cl contact pairs per frame (closer than 2.8 A; mean and maximum),
* replicas that came closer than 1 A (counted as collapsed; their frames after that are dropped).

``--check`` (a ``check`` record): the model's MD against its own training frames, as a user without the
2-ns reference would check it. ``--refine K`` (``refine``): structure refinement against the training
frames, then the kept model's evaluation (run ``<run>+refined``). ``--mean-force`` (``mean_force``):
the mean-force correction (no MD), then the corrected model's evaluation (``<run>+mean-force``). The
tables are the study's (``study.py --tables``: README "Replicas across the data" and after).
"""

from __future__ import annotations

import os

if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any, Dict, List  # noqa: E402

import numpy as np  # noqa: E402

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
from licl import study  # noqa: E402

SAMPLE_EVERY = 100  # steps (0.1 ps at 1 fs)
N_BOOT = 200


def summary():
    return study.STUDY.summary()


def start_indices(n_replicas: int) -> np.ndarray:
    """Start frames: evenly spaced over the training pool (the frames before the held-out ones)."""
    n_pool = len(study.load_frames()) - study.N_TEST
    return np.linspace(0, n_pool - 1, n_replicas).round().astype(int)


def pooled_figures(ref, per_replica: List[List], rng: np.random.Generator) -> Dict[str, Any]:
    """The study's RDF figures of the pooled frames (:func:`ase_denoise.refine.compare_with_reference`
    against the 2-ns reference), under the keys of ``results/replicas/*.json``."""
    from ase_denoise.refine import compare_with_reference

    figs = compare_with_reference(ref, per_replica, study.PAIRS, rng, bin_width=study.BIN_WIDTH)
    g = figs["rdfs"]
    return dict(rdf=study.short_rdf(study.rdf_figures(ref, g)), rms_mean=figs["rdf_error"], rms_boot=figs["rdf_error_noise"],
                rms_systematic=figs["systematic_error"], rms_per_replica=figs["rdf_error_per_replica"], g=g)


def run_model(name: str, n_replicas: int, equilibration_ps: float, production_ps: float, seed: int = 0,
              quick: bool = False, model=None, label: str = "") -> Dict[str, Any]:
    """The replicas of one study run's model -> a ``replicas`` record of run ``<name><label>`` (skipped
    when it exists). ``quick``: the study's quick model (``runs/licl/<name>-quick``, trained if missing;
    the record goes to ``summary-quick.jsonl``); ``model``: another model to run under the name
    ``<name><label>`` (e.g. a refined one, ``label="+refined"``)."""
    from tqdm import tqdm

    from ase_denoise.refine import run_replicas

    store = study.STUDY.summary(quick)
    found = store.get("replicas", name + label, n_replicas=n_replicas, production_ps=production_ps)
    if found:
        return found
    frames = study.load_frames()
    if model is None:
        model = study.load_trained(name, quick)
    ref = study.make_reference()
    idx = start_indices(n_replicas)
    starts = [frames[i] for i in idx]
    md = study.MD
    seeds = [1000 * (seed + 1) + i for i in range(n_replicas)]
    with tqdm(total=int(round((equilibration_ps + production_ps) * 1000 / md["timestep_fs"])), desc=name,
              unit="step", mininterval=30) as bar:
        kept, info = run_replicas(
            model, starts, temperature_K=study.TEMPERATURE_K, equilibration_ps=equilibration_ps,
            production_ps=production_ps, timestep_fs=md["timestep_fs"], friction_per_fs=md["friction_per_fs"],
            sample_every=SAMPLE_EVERY, seeds=seeds, collapse_distance=study.BLOWUP_DISTANCE, progress=bar.update)
    collapsed_at = info["collapsed_at_step"]
    result: Dict[str, Any] = dict(
        kind="replicas", run=name + label, n_replicas=n_replicas, start_frames=idx.tolist(), seeds=seeds,
        equilibration_ps=equilibration_ps, production_ps=production_ps,
        default_noise_std=model.physics.default_noise_std,
        default_extrapolation_order=model.physics.default_extrapolation_order,
        wall_s=info["wall_s"], batch_steps_per_s=info["batch_steps_per_s"], stopped=info["stopped"],
        collapsed=int(sum(c is not None for c in collapsed_at)), closest_approach_A=float(np.min(info["closest_approach_A"])),
        mean_temperature_K=info["mean_temperature_K"], frames_per_replica=[len(k) for k in kept],
        date=time.strftime("%Y-%m-%d"),
    )
    if all(len(k) for k in kept):
        figs = pooled_figures(ref, kept, np.random.default_rng(seed))
        g = figs.pop("g")
        figs.pop("rms_per_replica")
        result.update(figs)
        contacts = [study.contact_pairs(a) for k in kept for a in k]
        result.update(contact_pairs_mean=float(np.mean(contacts)), contact_pairs_max=int(np.max(contacts)))
        study.STUDY.raw.mkdir(parents=True, exist_ok=True)
        np.savez(study.STUDY.raw / f"replicas_{name}{label}{'-quick' if quick else ''}_{n_replicas}x{production_ps:g}ps_rdf.npz", **g)
    return store.put(result)


def check_against_data(name: str, choice=None, production_ps: float = 10.0, equilibration_ps: float = 5.0,
                       seed: int = 1, n_replicas: int = 8, model=None) -> Dict[str, Any]:
    """What a user without the 2-ns reference can measure: :func:`ase_denoise.refine.check_structure`
    of the run's model against its own 500 training frames (their RDFs and block errors), with starts
    and thermostat seeds independent of :func:`run_model`'s (frames halfway between the evenly spaced
    ones, seeds ``1000 * (seed + 1) + i``) -> a ``check`` record (``choice``: "default", "level<s>",
    "order<k>"). ``model``: the run's model if already loaded."""
    from ase_denoise.forces import ForcesChoice
    from ase_denoise.refine import check_structure, reference_structure

    choice = ForcesChoice() if choice is None else choice
    tag = "default" if choice == ForcesChoice() else (
        f"level{choice.noise_std:g}" if choice.noise_std is not None else f"order{choice.extrapolation_order}")
    found = summary().get("check", name, choice=tag, production_ps=production_ps)
    if found:
        return found
    frames = study.load_frames()
    if model is None:
        model = study.load_trained(name)
    data = study.split(frames, study.recipe_of(name).frames)
    spacing = len(data) / n_replicas
    starts = [data[int(spacing * (i + 0.5))] for i in range(n_replicas)]
    check = check_structure(model, data, forces=choice, equilibration_ps=equilibration_ps, production_ps=production_ps,
                            seed=seed, reference=reference_structure(data, pairs=study.PAIRS), start_frames=starts)
    result = dict(kind="check", run=name, choice=tag, label=choice.label, n_replicas=n_replicas,
                  production_ps=production_ps, seed=seed, systematic_error=check.systematic_error,
                  rdf_error=check.rdf_error, rdf_error_noise=check.rdf_error_noise, collapsed=check.collapsed,
                  mean_temperature_K=check.mean_temperature_K, wall_s=check.wall_s, date=time.strftime("%Y-%m-%d"))
    return summary().put(result)


def refine_run(name: str, iterations: int = 1, production_ps: float = 10.0, equilibration_ps: float = 5.0,
               n_replicas: int = 8, seed: int = 1, quick: bool = False) -> Dict[str, Any]:
    """:func:`ase_denoise.refine.refine_structure` of a run's model against its own training
    frames (the starts and thermostat seeds of :func:`check_against_data`), every corrected model saved
    as ``runs/licl/<name>/refined_<i>.safetensors`` (``<i>`` corrections), figures -> a ``refine``
    record. Then the chosen model's evaluation against the 2-ns reference (:func:`run_model`, under
    ``<name>+refined``)."""
    from ase_denoise.checkpoint import load_model_file, save_model
    from ase_denoise.refine import reference_structure, refine_structure

    store = study.STUDY.summary(quick)
    work = study.STUDY.work_dir(name, quick)
    frames = study.load_frames()
    recipe = study.recipe_of(name)
    result = store.get("refine", name, iterations=iterations)
    if result is None:
        model = study.load_trained(name, quick)
        data = study.split(frames, recipe.frames)
        if quick:
            data = data[: study.QUICK["frames_cap"]]
        spacing = len(data) / n_replicas
        starts = [data[int(spacing * (i + 0.5))] for i in range(n_replicas)]
        ref = refine_structure(model, data, iterations=iterations, production_ps=production_ps,
                               equilibration_ps=equilibration_ps, seed=seed, start_frames=starts,
                               reference=reference_structure(data, pairs=study.PAIRS))
        work.mkdir(parents=True, exist_ok=True)
        for i, m in enumerate(ref.models[1:], start=1):
            save_model(m, work / f"refined_{i}.safetensors", overwrite=True)
        result = store.put(dict(kind="refine", run=name, iterations=iterations, chosen=ref.chosen, n_replicas=n_replicas,
                                production_ps=production_ps, seed=seed, date=time.strftime("%Y-%m-%d"),
                                checks=[dict(systematic_error=c.systematic_error, rdf_error=c.rdf_error,
                                             rdf_error_noise=c.rdf_error_noise, collapsed=c.collapsed, wall_s=c.wall_s)
                                        for c in ref.checks]))
    result = dict(result)
    chosen = result["chosen"]
    if quick:
        result["evaluation"] = None
    elif chosen:
        model = study.with_defaults(load_model_file(work / f"refined_{chosen}.safetensors"), recipe)
        result["evaluation"] = run_model(name, n_replicas, 5.0, 20.0, model=model, label="+refined")
    else:  # no correction chosen: the model as trained, whose evaluation is run_model's own
        result["evaluation"] = run_model(name, n_replicas, 5.0, 20.0)
    return result


def mean_force_run(name: str, iterations: int = 6, n_replicas: int = 8, quick: bool = False) -> Dict[str, Any]:
    """:func:`ase_denoise.refine.mean_force.correct_mean_forces` of a run's model against its own training frames
    (no MD), the corrected model saved as ``runs/licl/<name>/mean_force.safetensors``, figures -> a
    ``mean_force`` record; then the corrected model's evaluation against the 2-ns reference
    (:func:`run_model`, under ``<name>+mean-force``)."""
    from ase_denoise.checkpoint import load_model_file, save_model
    from ase_denoise.refine import reference_structure
    from ase_denoise.refine import correct_mean_forces

    store = study.STUDY.summary(quick)
    work = study.STUDY.work_dir(name, quick)
    recipe = study.recipe_of(name)
    frames = study.load_frames()
    result = store.get("mean_force", name)
    if result is None:
        model = study.load_trained(name, quick)
        data = study.split(frames, recipe.frames)
        if quick:
            data = data[: study.QUICK["frames_cap"]]
        t0 = time.perf_counter()
        res = correct_mean_forces(model, data, iterations=iterations, reference=reference_structure(data, pairs=study.PAIRS))
        wall = time.perf_counter() - t0
        work.mkdir(parents=True, exist_ok=True)
        save_model(res.model, work / "mean_force.safetensors", overwrite=True)
        r = res.r
        result = store.put(dict(kind="mean_force", run=name, iterations=iterations, n_frames=len(data), wall_s=wall,
                                mismatch=res.mismatch, date=time.strftime("%Y-%m-%d"),
                                li_cl_correction_contact_eV=float(res.correction_at["Li-Cl"][int(np.argmin(abs(r - 2.35)))])))
    result = dict(result)
    if not quick:
        model = study.with_defaults(load_model_file(work / "mean_force.safetensors"), recipe)
        result["evaluation"] = run_model(name, n_replicas, 5.0, 20.0, model=model, label="+mean-force")
    return result


def reference_floor(n_replicas: int, production_ps: float) -> Dict[str, Any]:
    """The figure for the reference trajectory itself: windows of ``production_ps`` (its frames are 1 ps
    apart) at the same start frames, pooled, against the whole reference. What a perfect model's MD
    would score with this protocol (up to the reference frames being 1 ps apart, the replicas' 0.1 ps),
    as a ``replica_floor`` record (``--floor`` writes it)."""
    frames = study.load_frames()
    ref = study.make_reference()
    n = max(1, int(round(production_ps)))
    windows = [frames[i: i + n] for i in start_indices(n_replicas)]
    figs = pooled_figures(ref, windows, np.random.default_rng(0))
    return dict(kind="replica_floor", run="reference", n_replicas=n_replicas, production_ps=production_ps,
                **{k: figs[k] for k in ("rms_mean", "rms_boot", "rms_systematic")})


def main(argv=None) -> int:
    import logging

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="*", help="study runs (their trained models are used; trained if missing)")
    p.add_argument("--replicas", type=int, default=8)
    p.add_argument("--equilibration-ps", type=float, default=5.0)
    p.add_argument("--production-ps", type=float, default=20.0)
    p.add_argument("--floor", action="store_true", help="the protocol's floor: the reference trajectory's own windows")
    p.add_argument("--check", action="store_true",
                   help="instead: check_against_data (the model's MD against its own 500 training frames)")
    p.add_argument("--all-choices", action="store_true", help="with --check: every way the model can return forces")
    p.add_argument("--refine", type=int, default=None, metavar="K",
                   help="instead: structure refinement (K corrections) against the run's own training frames, "
                        "then the chosen model's evaluation")
    p.add_argument("--mean-force", action="store_true",
                   help="instead: the mean-force correction (no MD) against the run's own training frames, then the "
                        "corrected model's evaluation")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    unknown = [n for n in args.runs if n not in study.RUNS]
    if args.floor:
        print(summary().put(reference_floor(args.replicas, args.production_ps)))
    if unknown:
        p.error(f"unknown runs {unknown}")
    if args.refine is not None:
        for name in args.runs:
            res = refine_run(name, args.refine)
            checks = ", ".join(f"{c['systematic_error']:.3f}" for c in res["checks"])
            ev = res["evaluation"]
            print(f"{name}: systematic after 0..{args.refine} corrections {checks}; chosen {res['chosen']}; "
                  f"evaluation {ev.get('rms_mean', float('nan')):.3f} ± {ev.get('rms_boot', float('nan')):.3f}")
        return 0
    if args.mean_force:
        for name in args.runs:
            res = mean_force_run(name)
            ev = res["evaluation"]
            print(f"{name}: Li-Cl mean-force mismatch {res['mismatch'][0]['Li-Cl']:.3f} -> {res['mismatch'][-1]['Li-Cl']:.3f} kT "
                  f"({res['wall_s']:.1f} s); evaluation {ev.get('rms_mean', float('nan')):.3f} ± {ev.get('rms_boot', float('nan')):.3f}")
        return 0
    if args.check:
        from ase_denoise.forces import ForcesChoice, forces_choices

        for name in args.runs:
            model = study.load_trained(name)
            for choice in forces_choices(model) if args.all_choices else [ForcesChoice()]:
                res = check_against_data(name, choice, production_ps=args.production_ps, model=model)
                print(f"{name}, {res['label']}: systematic {res['systematic_error']:.3f} (RMS {res['rdf_error']:.3f} "
                      f"± {res['rdf_error_noise']:.3f}), collapsed {res['collapsed']}, {res['wall_s']:.0f} s")
        return 0
    for name in args.runs:
        res = run_model(name, args.replicas, args.equilibration_ps, args.production_ps)
        print(f"{name}: RDF error {res.get('rms_mean', float('nan')):.3f} ± {res.get('rms_boot', float('nan')):.3f}, "
              f"collapsed {res['collapsed']}/{res['n_replicas']}, {res['wall_s']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
