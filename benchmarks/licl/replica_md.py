#!/usr/bin/env python
"""Many short replicas from frames across the data: an RDF error whose MD noise is measured.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/licl/replica_md.py la-auto-ewald-small fm-all-ewald ... [--table]

One 30-ps run from one start frame (the study's protocol) moves a model's RDF error by about 0.05
between start frames and MD seeds, as much as the recipes differ. Here each trained model (the study's
``runs/licl/<name>``, default forces as stored, e.g. ``la-auto-ewald-small``: the smallest level) runs
``--replicas`` independent Langevin replicas (300 K, 1 fs, friction 0.01/fs, as the study), all in one
batched forward per step (:class:`ase_denoise.replicas.ReplicaLangevin`), each from its own frame of
the data (evenly spaced over the 1.8 ns of the training pool, so their starts are independent) and
its own thermostat seed: ``--equilibration-ps`` discarded, ``--production-ps`` kept (a frame every
0.1 ps). Figures, per model -> ``results/replicas/<name>.json``:

* ``rms_mean``: the study's RDF error (RMS over bins against the 2-ns reference, mean over the three
  pairs) of all replicas' frames pooled, and ``rms_boot``: its standard error from resampling the
  replicas (bootstrap over replicas, 200 draws): the MD noise of this figure;
* the Li-Cl peak height, the Li-Cl contact pairs per frame (closer than 2.8 A; mean and maximum),
* replicas that came closer than 1 A (counted as collapsed; their frames after that are dropped).

``--table`` writes ``results/replicas.md``: per recipe the mean ± std over training seeds, the mean
``rms_boot`` (how much of that spread is MD noise), and the protocol's floor: the same figure for the
reference trajectory itself, cut into windows of the production length at the same start frames.
"""

from __future__ import annotations

import os

if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any, Dict, List  # noqa: E402

import numpy as np  # noqa: E402

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import study  # noqa: E402

OUT_DIR = study.RESULTS / "replicas"
SAMPLE_EVERY = 100  # steps (0.1 ps at 1 fs)
N_BOOT = 200


def start_indices(n_replicas: int) -> np.ndarray:
    """Start frames: evenly spaced over the training pool (the frames before the held-out ones)."""
    n_pool = len(study.load_frames()) - study.N_TEST
    return np.linspace(0, n_pool - 1, n_replicas).round().astype(int)


def pooled_figures(ref, per_replica: List[List], rng: np.random.Generator) -> Dict[str, Any]:
    """The study's RDF figures of the pooled frames (:func:`ase_denoise.md_validation.compare_with_reference`
    against the 2-ns reference), under the keys of ``results/replicas/*.json``."""
    from ase_denoise.md_validation import compare_with_reference

    figs = compare_with_reference(ref, per_replica, study.PAIRS, rng, bin_width=study.BIN_WIDTH)
    g = figs["rdfs"]
    return dict(rdf=study.rdf_figures(ref, g), rms_mean=figs["rdf_error"], rms_boot=figs["rdf_error_noise"],
                rms_systematic=figs["systematic_error"], rms_per_replica=figs["rdf_error_per_replica"], g=g)


def run_model(name: str, n_replicas: int, equilibration_ps: float, production_ps: float, seed: int = 0,
              quick: bool = False, model=None, label: str = "") -> Dict[str, Any]:
    """The replicas of one study run's model -> ``OUT_DIR/<name><label>_<N>x<production>ps.json`` (skipped
    when it exists). ``quick``: the study's quick model (``runs/licl/<name>-quick``, trained if missing);
    ``model``: another model to run under the name ``<name><label>`` (e.g. a refined one)."""
    from tqdm import tqdm

    from ase_denoise.md_validation import run_replicas

    OUT_DIR.mkdir(parents=True, exist_ok=True)
    tag = f"{name}{label}{'-quick' if quick else ''}_{n_replicas}x{production_ps:g}ps"
    out_json = OUT_DIR / f"{tag}.json"
    if out_json.exists():
        return json.loads(out_json.read_text())
    frames = study.load_frames()
    work = study.RUNS_DIR / (name + ("-quick" if quick else ""))
    if model is None:
        model = study.train_run(name, study.RUNS[name], frames, work, quick=quick)[0]
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
        name=name + label, quick=quick, n_replicas=n_replicas, start_frames=idx.tolist(), seeds=seeds, equilibration_ps=equilibration_ps,
        production_ps=production_ps, noise_levels=list(model.noise_levels),
        default_noise_std=model.physics.default_noise_std,
        default_extrapolation_order=model.physics.default_extrapolation_order,
        wall_s=info["wall_s"], batch_steps_per_s=info["batch_steps_per_s"], stopped=info["stopped"],
        collapsed=int(sum(c is not None for c in collapsed_at)), collapsed_at_step=collapsed_at,
        closest_approach_A=info["closest_approach_A"], mean_temperature_K=info["mean_temperature_K"],
        frames_per_replica=[len(k) for k in kept],
    )
    if all(len(k) for k in kept):
        figs = pooled_figures(ref, kept, np.random.default_rng(seed))
        g = figs.pop("g")
        result.update(figs)
        contacts = [study.contact_pairs(a) for k in kept for a in k]
        result.update(contact_pairs_mean=float(np.mean(contacts)), contact_pairs_max=int(np.max(contacts)))
        np.savez(OUT_DIR / f"{tag}_rdf.npz", **g)
    out_json.write_text(json.dumps(result, indent=1, default=float))
    return result


def check_against_data(name: str, choice=None, production_ps: float = 10.0, equilibration_ps: float = 5.0,
                       seed: int = 1, n_replicas: int = 8, model=None) -> Dict[str, Any]:
    """What a user without the 2-ns reference can measure: :func:`ase_denoise.md_validation.check_structure`
    of the run's model against its own 500 training frames (their RDFs and block errors), with starts
    and thermostat seeds independent of :func:`run_model`'s (frames halfway between the evenly spaced
    ones, seeds ``1000 * (seed + 1) + i``) -> ``OUT_DIR/check/<name>_<choice>_<N>x<production>ps.json``.
    ``model``: the run's model if already loaded."""
    from ase_denoise.md_validation import ForcesChoice, check_structure, reference_structure

    choice = ForcesChoice() if choice is None else choice
    tag = "default" if choice == ForcesChoice() else (
        f"level{choice.noise_std:g}" if choice.noise_std is not None else f"order{choice.extrapolation_order}")
    out_json = OUT_DIR / "check" / f"{name}_{tag}_{n_replicas}x{production_ps:g}ps.json"
    if out_json.exists():
        return json.loads(out_json.read_text())
    out_json.parent.mkdir(parents=True, exist_ok=True)
    frames = study.load_frames()
    spec = study.RUNS[name]
    if model is None:
        model = study.train_run(name, spec, frames, study.RUNS_DIR / name, quick=False)[0]
    data = study.split(frames, spec["frames"])
    spacing = len(data) / n_replicas
    starts = [data[int(spacing * (i + 0.5))] for i in range(n_replicas)]
    check = check_structure(model, data, choice, equilibration_ps=equilibration_ps, production_ps=production_ps,
                            seed=seed, reference=reference_structure(data, pairs=study.PAIRS), start_frames=starts)
    result = dict(name=name, choice=dict(noise_std=choice.noise_std, extrapolation_order=choice.extrapolation_order),
                  label=choice.label, n_replicas=n_replicas, production_ps=production_ps, seed=seed,
                  systematic_error=check.systematic_error, rdf_error=check.rdf_error,
                  rdf_error_noise=check.rdf_error_noise, systematic_per_pair=check.systematic_per_pair,
                  collapsed=check.collapsed, mean_temperature_K=check.mean_temperature_K, wall_s=check.wall_s)
    out_json.write_text(json.dumps(result, indent=1, default=float))
    return result


def refine_run(name: str, iterations: int = 1, production_ps: float = 10.0, equilibration_ps: float = 5.0,
               n_replicas: int = 8, seed: int = 1, quick: bool = False) -> Dict[str, Any]:
    """:func:`ase_denoise.md_validation.refine_structure` of a run's model against its own training
    frames (the starts and thermostat seeds of :func:`check_against_data`), every corrected model saved
    as ``runs/licl/<name>/refined_<i>.safetensors`` (``<i>`` corrections), figures ->
    ``OUT_DIR/refine/<name>_ibi<iterations>.json``. Then the chosen model's evaluation against the
    2-ns reference (:func:`run_model`, under ``<name>-ibi<iterations>``)."""
    from ase_denoise.checkpoint import load_model_file, save_model
    from ase_denoise.md_validation import reference_structure, refine_structure

    out_json = OUT_DIR / "refine" / f"{name}{'-quick' if quick else ''}_ibi{iterations}.json"
    work = study.RUNS_DIR / (name + ("-quick" if quick else ""))
    frames = study.load_frames()
    spec = study.RUNS[name]
    if out_json.exists():
        result = json.loads(out_json.read_text())
    else:
        model = study.train_run(name, spec, frames, work, quick=quick)[0]
        out_json.parent.mkdir(parents=True, exist_ok=True)
        data = study.split(frames, spec["frames"])
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
        result = dict(name=name, iterations=iterations, chosen=ref.chosen, n_replicas=n_replicas,
                      production_ps=production_ps, seed=seed,
                      checks=[dict(systematic_error=c.systematic_error, rdf_error=c.rdf_error,
                                   rdf_error_noise=c.rdf_error_noise, systematic_per_pair=c.systematic_per_pair,
                                   collapsed=c.collapsed, wall_s=c.wall_s) for c in ref.checks])
        out_json.write_text(json.dumps(result, indent=1, default=float))
    chosen = result["chosen"]
    if quick:
        result["evaluation"] = None
    elif chosen:
        model = study.with_defaults(load_model_file(work / f"refined_{chosen}.safetensors"), spec)
        result["evaluation"] = run_model(name, n_replicas, 5.0, 20.0, model=model, label=f"-ibi{iterations}")
    else:  # no correction chosen: the model as trained, whose evaluation is run_model's own
        result["evaluation"] = run_model(name, n_replicas, 5.0, 20.0)
    return result


def mean_force_run(name: str, iterations: int = 6, n_replicas: int = 8, quick: bool = False) -> Dict[str, Any]:
    """:func:`ase_denoise.mean_force.correct_mean_forces` of a run's model against its own training frames
    (no MD), the corrected model saved as ``runs/licl/<name>/mean_force.safetensors``, figures ->
    ``OUT_DIR/mean_force/<name>.json``; then the corrected model's evaluation against the 2-ns reference
    (:func:`run_model`, under ``<name>-mf``)."""
    import time

    from ase_denoise.checkpoint import load_model_file, save_model
    from ase_denoise.md_validation import reference_structure
    from ase_denoise.mean_force import correct_mean_forces

    work = study.RUNS_DIR / (name + ("-quick" if quick else ""))
    out_json = OUT_DIR / "mean_force" / f"{name}{'-quick' if quick else ''}.json"
    spec = study.RUNS[name]
    frames = study.load_frames()
    if out_json.exists():
        result = json.loads(out_json.read_text())
    else:
        model = study.train_run(name, spec, frames, work, quick=quick)[0]
        data = study.split(frames, spec["frames"])
        if quick:
            data = data[: study.QUICK["frames_cap"]]
        t0 = time.perf_counter()
        res = correct_mean_forces(model, data, iterations=iterations, reference=reference_structure(data, pairs=study.PAIRS))
        wall = time.perf_counter() - t0
        work.mkdir(parents=True, exist_ok=True)
        save_model(res.model, work / "mean_force.safetensors", overwrite=True)
        r = res.r
        result = dict(name=name, iterations=iterations, n_frames=len(data), wall_s=wall, mismatch=res.mismatch,
                      li_cl_correction_contact_eV=float(res.correction_at["Li-Cl"][int(np.argmin(abs(r - 2.35)))]))
        out_json.parent.mkdir(parents=True, exist_ok=True)
        out_json.write_text(json.dumps(result, indent=1, default=float))
    if not quick:
        model = study.with_defaults(load_model_file(work / "mean_force.safetensors"), spec)
        result["evaluation"] = run_model(name, n_replicas, 5.0, 20.0, model=model, label="-mf")
    return result


def mean_force_table(recipes: List[str], n_replicas: int = 8, production_ps: float = 20.0) -> str:
    """Per seed of each recipe: the mean-force mismatch before and after the correction and the
    evaluation against the 2-ns reference of the model as trained and corrected (:func:`mean_force_run`)."""
    lines = [
        "", "## Mean-force correction (Kirkwood's relation on the training frames, no MD)", "",
        "`replica_md.py --mean-force <runs>`: `ase_denoise.mean_force.correct_mean_forces` (6 iterations) against each "
        "run's own training frames, then the corrected model evaluated against the 2-ns reference as above. Mismatch: "
        "RMS of W_data - W_model over the sampled bins (kT), Li-Cl; correction: the Li-Cl table at 2.35 A (eV).", "",
        "| run | mismatch Li-Cl before -> after (kT) | correction at contact (eV) | evaluation before | evaluation after "
        "| Li-Cl peak before / after (ref 12.7) | contact pairs before / after (ref 8.1) | collapsed after |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    summary = []
    for recipe in recipes:
        before_all, after_all = [], []
        for seed in range(20):
            name = recipe if seed == 0 else f"{recipe}-r{seed}"
            mf = OUT_DIR / "mean_force" / f"{name}.json"
            before = OUT_DIR / f"{name}_{n_replicas}x{production_ps:g}ps.json"
            after = OUT_DIR / f"{name}-mf_{n_replicas}x{production_ps:g}ps.json"
            if not (mf.exists() and before.exists() and after.exists()):
                continue
            res, b, a = (json.loads(x.read_text()) for x in (mf, before, after))
            before_all.append(b["rms_mean"])
            after_all.append(a["rms_mean"])
            lines.append(f"| {name} | {res['mismatch'][0]['Li-Cl']:.3f} -> {res['mismatch'][-1]['Li-Cl']:.3f} "
                         f"| {res['li_cl_correction_contact_eV']:+.4f} | {b['rms_mean']:.3f} | {a['rms_mean']:.3f} "
                         f"| {b['rdf']['Li-Cl']['peak_g']:.1f} / {a['rdf']['Li-Cl']['peak_g']:.1f} "
                         f"| {b['contact_pairs_mean']:.1f} / {a['contact_pairs_mean']:.1f} | {a['collapsed']}/{a['n_replicas']} |")
        if before_all:
            sd = (lambda x: np.std(x, ddof=1)) if len(before_all) > 1 else (lambda x: 0.0)
            gain = np.subtract(before_all, after_all)
            summary.append(f"`{recipe}`, {len(before_all)} seeds: {np.mean(before_all):.3f} ± {sd(before_all):.3f} as "
                           f"trained, {np.mean(after_all):.3f} ± {sd(after_all):.3f} corrected (mean ± std over seeds); "
                           f"paired gain {np.mean(gain):.3f} ± {sd(gain) / np.sqrt(len(gain)):.3f} (mean ± standard error).")
    if not summary:
        return ""
    return "\n".join(lines + [""] + summary) + "\n"


def reference_floor(n_replicas: int, production_ps: float) -> Dict[str, Any]:
    """The figure for the reference trajectory itself: windows of ``production_ps`` (its frames are 1 ps
    apart) at the same start frames, pooled, against the whole reference. What a perfect model's MD
    would score with this protocol (up to the reference frames being 1 ps apart, the replicas' 0.1 ps)."""
    frames = study.load_frames()
    ref = study.make_reference()
    n = max(1, int(round(production_ps)))
    windows = [frames[i: i + n] for i in start_indices(n_replicas)]
    figs = pooled_figures(ref, windows, np.random.default_rng(0))
    figs.pop("g")
    return figs


def table(n_replicas: int, production_ps: float) -> str:
    found: Dict[str, List[Dict[str, Any]]] = {}
    for p in sorted(OUT_DIR.glob(f"*_{n_replicas}x{production_ps:g}ps.json")):
        res = json.loads(p.read_text())
        if not res.get("quick") and res["name"] in study.RUNS:  # refined models: refinement_table
            found.setdefault(study.recipe_of(res["name"]), []).append(res)
    floor = reference_floor(n_replicas, production_ps)
    lines = [
        "# Replica MD: RDF error with its MD noise (`replica_md.py`)",
        "",
        f"Command: `OMP_NUM_THREADS=1 .venv/bin/python benchmarks/licl/replica_md.py <runs> --replicas {n_replicas} "
        f"--production-ps {production_ps:g}`; per model {n_replicas} replicas from frames evenly spaced over the 1.8-ns "
        "training pool, 300 K Langevin (1 fs, 0.01/fs), equilibration discarded, frames every 0.1 ps pooled. "
        "'MD noise' is the bootstrap (over replicas) standard error of one model's figure; the spread over seeds "
        "contains it.",
        "",
        f"Floor of this protocol (the reference trajectory's own {n_replicas} windows of {production_ps:g} ps at the "
        f"same start frames): {floor['rms_mean']:.3f} ± {floor['rms_boot']:.3f}, systematic part "
        f"{floor['rms_systematic']:.3f} (zero for a perfect model: the check of the noise subtraction). 'Systematic part': "
        "the RMS difference with the sampling variances of both RDFs subtracted bin by bin (model: bootstrap over "
        "replicas; reference: its block standard error), an estimate of the model's own RDF error that does "
        "not depend on how long it ran.",
        "",
        "| recipe | seeds | RDF error per seed | mean ± std over seeds | MD noise per model | systematic part, mean ± std "
        "| Li-Cl peak (ref 12.7) "
        "| contact pairs mean / max (ref 8.1 / 12) | collapsed replicas | batch steps/s |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for recipe, runs in found.items():
        runs = sorted(runs, key=lambda r: study.RUNS[r["name"]].get("seed", 0))
        ok = [r for r in runs if "rms_mean" in r]
        errs = [r["rms_mean"] for r in ok]
        spread = f"{np.mean(errs):.3f} ± {np.std(errs, ddof=1):.3f}" if len(errs) > 1 else (f"{errs[0]:.3f}" if errs else "-")
        lines.append(
            f"| `{recipe}` | {len(runs)} | {', '.join(f'{e:.3f}' for e in errs)} | {spread} "
            f"| {np.mean([r['rms_boot'] for r in ok]):.3f} "
            f"| {np.mean([r['rms_systematic'] for r in ok]):.3f} ± {np.std([r['rms_systematic'] for r in ok], ddof=1) if len(ok) > 1 else 0:.3f} "
            f"| {np.mean([r['rdf']['Li-Cl']['peak_g'] for r in ok]):.1f} "
            f"| {np.mean([r['contact_pairs_mean'] for r in ok]):.1f} / {max(r['contact_pairs_max'] for r in ok)} "
            f"| {sum(r['collapsed'] for r in runs)}/{sum(r['n_replicas'] for r in runs)} "
            f"| {np.mean([r['batch_steps_per_s'] for r in runs]):.1f} |")
    return "\n".join(lines) + "\n"


def selection_table(recipe: str, n_replicas: int, production_ps: float, check_ps: float = 10.0,
                    groups=((0, 1, 2), (3, 4, 5), (6, 7, 8))) -> str:
    """Label-free seed selection: in each group of training seeds keep the one whose MD matches its own
    training frames best (:func:`check_against_data`, systematic error), then score the kept seeds with
    the independent replica run against the 2-ns reference (:func:`run_model`)."""
    rows = {}
    for seed in sorted({s for g in groups for s in g}):
        name = recipe if seed == 0 else f"{recipe}-r{seed}"
        check = OUT_DIR / "check" / f"{name}_default_{n_replicas}x{check_ps:g}ps.json"
        run = OUT_DIR / f"{name}_{n_replicas}x{production_ps:g}ps.json"
        if check.exists() and run.exists():
            rows[seed] = (json.loads(check.read_text()), json.loads(run.read_text()))
    if len(rows) < 3:
        return ""
    seeds = sorted(rows)
    chk = np.array([rows[s][0]["systematic_error"] for s in seeds])
    ev = np.array([rows[s][1]["rms_mean"] for s in seeds])
    ev_sys = np.array([rows[s][1]["rms_systematic"] for s in seeds])

    def ranks(x):
        return np.argsort(np.argsort(x))

    rho = float(np.corrcoef(ranks(chk), ranks(ev_sys))[0, 1])
    lines = [
        "",
        f"## Label-free seed selection (`{recipe}`)",
        "",
        f"Check: each seed's MD against its own 500 training frames (`replica_md.py --check --production-ps {check_ps:g}`: "
        f"{n_replicas} replicas from other frames and with other thermostat seeds than the evaluation run, {check_ps:g} ps "
        "kept each). Evaluation: the run above against the 2-ns reference.",
        "",
        "| seed | check: systematic error vs own data | check: RMS ± MD noise | evaluation: RDF error | evaluation: systematic part |",
        "| --- | --- | --- | --- | --- |",
    ]
    for s, c, e, es in zip(seeds, chk, ev, ev_sys):
        lines.append(f"| {s} | {c:.3f} | {rows[s][0]['rdf_error']:.3f} ± {rows[s][0]['rdf_error_noise']:.3f} | {e:.3f} | {es:.3f} |")
    lines += ["", f"Spearman rank correlation of the check with the evaluation's systematic part over {len(seeds)} seeds: {rho:.2f}.", ""]
    kept = []
    for g in groups:
        have = [s for s in g if s in rows]
        if len(have) == len(g):
            best = min(have, key=lambda s: rows[s][0]["systematic_error"])
            kept.append(best)
            lines.append(f"* seeds {', '.join(map(str, g))}: kept seed {best} (evaluation {rows[best][1]['rms_mean']:.3f})")
    if len(kept) > 1:
        sel = [rows[s][1]["rms_mean"] for s in kept]
        lines += ["", f"Kept seeds: RDF error {np.mean(sel):.3f} ± {np.std(sel, ddof=1):.3f} over {len(kept)} selections, "
                  f"against {np.mean(ev):.3f} ± {np.std(ev, ddof=1):.3f} for all {len(seeds)} seeds."]
    # the expectation of best-of-3 over every choice of three seeds (not independent of each other)
    from itertools import combinations

    triples = list(combinations(seeds, 3))
    picked = [rows[min(t, key=lambda s: rows[s][0]["systematic_error"])][1]["rms_mean"] for t in triples]
    oracle = [min(rows[s][1]["rms_mean"] for s in t) for t in triples]
    lines += [f"Over all {len(triples)} sets of three of these seeds: the kept seed's RDF error averages "
              f"{np.mean(picked):.3f} (std {np.std(picked, ddof=1):.3f}); keeping the truly best of each set would "
              f"give {np.mean(oracle):.3f}."]
    return "\n".join(lines) + "\n"


def refinement_table(recipe: str, iterations: int, n_replicas: int = 8, production_ps: float = 20.0) -> str:
    """Per seed of ``recipe``: the label-free checks before and after each correction
    (:func:`refine_run`), the correction chosen, and the evaluation against the 2-ns reference of the
    model as trained and of the chosen one."""
    rows = []
    for seed in range(20):
        name = recipe if seed == 0 else f"{recipe}-r{seed}"
        ref_json = OUT_DIR / "refine" / f"{name}_ibi{iterations}.json"
        before = OUT_DIR / f"{name}_{n_replicas}x{production_ps:g}ps.json"
        if not (ref_json.exists() and before.exists()):
            continue
        res = json.loads(ref_json.read_text())
        after = OUT_DIR / f"{name}-ibi{iterations}_{n_replicas}x{production_ps:g}ps.json" if res["chosen"] else before
        if after.exists():
            rows.append((seed, res, json.loads(before.read_text()), json.loads(after.read_text())))
    if not rows:
        return ""
    lines = [
        "", f"## Structure refinement (`{recipe}`, {iterations} corrections)", "",
        f"`replica_md.py --refine {iterations} <runs>`: `ase_denoise.md_validation.refine_structure` against each seed's own "
        "500 training frames (the check's starts and thermostat seeds, 8 replicas x (5 + 10) ps per check; after each "
        "correction a new check with other thermostat seeds), the model with the smallest systematic error kept "
        "(0: the model as trained), then evaluated against the 2-ns reference as above.", "",
        "| seed | check: systematic error after 0, 1, ... corrections | kept | evaluation before | evaluation after "
        "| Li-Cl peak before / after (ref 12.7) | contact pairs before / after (ref 8.1) |",
        "| --- | --- | --- | --- | --- | --- | --- |"]
    for seed, res, b, a in rows:
        checks = ", ".join(f"{c['systematic_error']:.3f}" for c in res["checks"])
        lines.append(f"| {seed} | {checks} | {res['chosen']} | {b['rms_mean']:.3f} | {a['rms_mean']:.3f} "
                     f"| {b['rdf']['Li-Cl']['peak_g']:.1f} / {a['rdf']['Li-Cl']['peak_g']:.1f} "
                     f"| {b['contact_pairs_mean']:.1f} / {a['contact_pairs_mean']:.1f} |")
    eb = [b["rms_mean"] for _, _, b, _ in rows]
    ea = [a["rms_mean"] for _, _, _, a in rows]
    sd = (lambda x: np.std(x, ddof=1)) if len(rows) > 1 else (lambda x: 0.0)
    lines += ["", f"Over {len(rows)} seeds: {np.mean(eb):.3f} ± {sd(eb):.3f} as trained, {np.mean(ea):.3f} ± {sd(ea):.3f} "
              f"refined (mean ± std over seeds); paired gain {np.mean(np.subtract(eb, ea)):.3f} ± "
              f"{sd(np.subtract(eb, ea)) / np.sqrt(len(rows)):.3f} (mean ± standard error)."]
    if len(rows) >= 3:  # keep the best of three seeds by the first check (before any correction), refined
        from itertools import combinations

        first = {seed: res["checks"][0]["systematic_error"] for seed, res, _, _ in rows}
        final = {seed: res["checks"][res["chosen"]]["systematic_error"] for seed, res, _, _ in rows}
        after = {seed: a["rms_mean"] for seed, _, _, a in rows}
        triples = list(combinations(sorted(after), 3))
        by_first = [after[min(t, key=first.get)] for t in triples]
        by_final = [after[min(t, key=final.get)] for t in triples]
        lines.append(f"Best of three seeds by the first check, refined: {np.mean(by_first):.3f} on average over all "
                     f"{len(triples)} sets of three (std {np.std(by_first, ddof=1):.3f}); by the check after "
                     f"refinement: {np.mean(by_final):.3f} (std {np.std(by_final, ddof=1):.3f}).")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    import logging

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="*", help="study runs (their trained models are used; trained if missing)")
    p.add_argument("--replicas", type=int, default=8)
    p.add_argument("--equilibration-ps", type=float, default=5.0)
    p.add_argument("--production-ps", type=float, default=20.0)
    p.add_argument("--table", action="store_true", help="write results/replicas.md from the finished runs")
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
        from ase_denoise.md_validation import ForcesChoice, forces_choices

        for name in args.runs:
            model = study.train_run(name, study.RUNS[name], study.load_frames(), study.RUNS_DIR / name, quick=False)[0]
            for choice in forces_choices(model) if args.all_choices else [ForcesChoice()]:
                res = check_against_data(name, choice, production_ps=args.production_ps, model=model)
                print(f"{name}, {res['label']}: systematic {res['systematic_error']:.3f} (RMS {res['rdf_error']:.3f} "
                      f"± {res['rdf_error_noise']:.3f}), collapsed {res['collapsed']}, {res['wall_s']:.0f} s")
        return 0
    for name in args.runs:
        res = run_model(name, args.replicas, args.equilibration_ps, args.production_ps)
        print(f"{name}: RDF error {res.get('rms_mean', float('nan')):.3f} ± {res.get('rms_boot', float('nan')):.3f}, "
              f"collapsed {res['collapsed']}/{res['n_replicas']}, {res['wall_s']:.0f} s")
    if args.table:
        text = (table(args.replicas, args.production_ps)
                + selection_table("la-auto-ewald-small", args.replicas, args.production_ps)
                + refinement_table("la-auto-ewald-small", 2, args.replicas, args.production_ps)
                + mean_force_table(["la-auto-ewald-small", "fm-all-ewald"], args.replicas, args.production_ps))
        (study.RESULTS / "replicas.md").write_text(text)
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
