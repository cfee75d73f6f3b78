#!/usr/bin/env python
"""One-bead water: is the missing tetrahedral order the model's, or the MD set-up's?

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/water/md_check.py denoise-480 force-match-480   # md-check records
    .venv/bin/python benchmarks/water/md_check.py --report                                         # the table
    .venv/bin/python benchmarks/water/md_check.py denoise-480 --quick                              # a smoke test

``study.py`` runs each model once: one start frame (the first held-out frame), 4 fs, 1 ps discarded,
5 ps kept. Every many-body model there gives <q> 0.47-0.51 against the reference's 0.562. This
script runs the same models under other set-ups, to see whether the figures move:

* ``4fs``: the study's time step and friction, but :data:`N_REPLICAS` replicas started from held-out
  frames spread over the held-out set (``ase_denoise.refine.run_replicas``: one batched
  forward per step), 2 ps discarded, 10 ps kept each;
* ``2fs``: the same with half the time step.

Per set-up it reports the pooled figures of all replicas against the held-out reference (as in the
study), the spread of the per-replica figures (standard error over replicas) and the mean kinetic
temperature. A model's figures that agree between the set-ups and with its single study run are
the model's; figures that move with the time step or the start are the set-up's.

Models: ``runs/water/<name>/best.safetensors`` (trained by ``study.py --only <name>``); ``denoise-480``
falls back to the zoo model ``water-1bead-300K``, which is that run (seed 0, published from it).
``<name>+mean-force``: the model with the label-free mean-force correction of
:func:`ase_denoise.refine.mean_force.correct_mean_forces` (a pair table) against its training frames, to see
what a pair correction does to a many-body deficit. Each (model, set-up) is one ``md-check`` record in
the study's ``results/summary.jsonl``; ``study.py --tables`` writes the table into the README.
"""

from __future__ import annotations

import os

if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any, Dict, List  # noqa: E402

import numpy as np  # noqa: E402

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
from water import study  # noqa: E402

N_REPLICAS = 4
SETUPS = {  # name -> (timestep fs, friction 1/fs, equilibration ps, production ps)
    "4fs": (4.0, 0.01, 2.0, 10.0),
    "2fs": (2.0, 0.01, 2.0, 10.0),
}
SAMPLE_PS = 0.1  # a frame every 0.1 ps, as the study
QUICK = dict(equilibration_ps=0.04, production_ps=0.2, replicas=2)
logger = logging.getLogger("water.md_check")


def load(name: str):
    """(model, where it came from) for a run name; ``<run>+mean-force``: that model after
    ``ase_denoise.refine.mean_force.correct_mean_forces`` against its own training frames (a pair table from
    the data's pair structure, no labels, no MD)."""
    from ase_denoise import load_model
    from ase_denoise.checkpoint import load_model_file

    base, corrected = (name[: -len("+mean-force")], True) if name.endswith("+mean-force") else (name, False)
    path = study.STUDY.work_dir(base) / "best.safetensors"
    if path.exists():
        model, source = load_model_file(path), str(path)
    elif base == "denoise-480":
        model, source = load_model("water-1bead-300K"), "zoo water-1bead-300K (= denoise-480, seed 0)"
    else:
        raise FileNotFoundError(f"no trained model for {base}: run benchmarks/water/study.py --only {base} first")
    if corrected:
        from ase_denoise.refine import correct_mean_forces

        pool, _ = study.split(study.load_frames())
        frames = study.RUNS[base][0].frames
        fix = correct_mean_forces(model, study.training_frames(pool, frames))
        logger.info("%s: mean-force mismatch %.3f -> %.3f kT", name, *(max(m.values()) for m in (fix.before, fix.after)))
        model, source = fix.model, f"{source}, mean-force corrected against its {frames} training frames"
    return model, source


def starts(test, n: int):
    """``n`` held-out frames evenly spaced over the held-out set (the first is the study's start)."""
    idx = np.linspace(0, len(test) - 1, n).round().astype(int)
    return [test[i] for i in idx]


def held_out():
    """(the held-out frames, their reference curves: ``study.reference``)."""
    _, test = study.split(study.load_frames())
    return test, study.reference(test)


def check(name: str, setup: str, quick: bool = False, loaded=None, reference=None) -> Dict[str, Any]:
    """Replicas of run ``name`` under ``setup``. ``loaded``: :func:`load`'s result and ``reference``:
    :func:`held_out`'s, when the caller already has them (one model, several set-ups)."""
    from ase_denoise.refine import run_replicas

    model, source = loaded or load(name)
    test, ref = reference or held_out()
    dt, friction, equil, prod = SETUPS[setup]
    n = N_REPLICAS
    if quick:
        equil, prod, n = QUICK["equilibration_ps"], QUICK["production_ps"], QUICK["replicas"]
    t0 = time.perf_counter()
    kept, info = run_replicas(model, starts(test, n), temperature_K=study.TEMPERATURE_K, equilibration_ps=equil,
                              production_ps=prod, timestep_fs=dt, friction_per_fs=friction,
                              sample_every=max(1, int(round(SAMPLE_PS * 1000 / dt))),
                              seeds=[7000 + i for i in range(n)])
    wall = time.perf_counter() - t0
    intact = [frames for frames, c in zip(kept, info["collapsed_at_step"]) if c is None and frames]
    result: Dict[str, Any] = dict(
        kind="md-check", run=name, model=source, setup=setup, timestep_fs=dt, friction_per_fs=friction, equilibration_ps=equil,
        production_ps=prod, replicas=n, intact=len(intact), wall_s=wall,
        batch_steps_per_s=info["batch_steps_per_s"], mean_temperature_K=info["mean_temperature_K"],
        closest_approach_A=float(np.min(info["closest_approach_A"])), stopped=info["stopped"])
    if intact and not info["stopped"]:
        pooled = [a for frames in intact for a in frames]
        result["pooled"] = study.compare(study.structure(pooled, ref["r_max"], ref["shell_A"]), ref["curves"])
        per = [study.compare(study.structure(frames, ref["r_max"], ref["shell_A"]), ref["curves"]) for frames in intact]
        result["per_replica"] = per
        result["frames"] = len(pooled)
    logger.info("%s %s: %s", name, setup, {k: v for k, v in result.items() if k != "per_replica"})
    return result


def _stat(values: List[float], scale: float = 1.0, digits: int = 3) -> str:
    v = np.asarray(values, dtype=float) * scale
    if len(v) < 2:
        return f"{v.mean():.{digits}f}"
    return f"{v.mean():.{digits}f} ± {v.std(ddof=1) / np.sqrt(len(v)):.{digits}f}"


def report(results: Dict[str, Dict[str, Any]]) -> str:
    """The markdown table: the study's single run, then each set-up (pooled figure; per replica: mean
    ± standard error over replicas)."""
    rows = ["| model | MD | kinetic T (K) | RDF RMS | angles RMS (x 10^-3 / deg) | q RMS | <q> |",
            "| --- | --- | --- | --- | --- | --- | --- |"]
    ref = study.STUDY.summary().get("reference", "reference")
    runs = study.STUDY.by_run()
    names = list(dict.fromkeys(r["run"] for r in results.values()))
    for name in names:
        s = runs.get(name)
        if s is not None:
            st = s.get("structure", {})
            rows.append(f"| {name} | study: 1 run, 4 fs, 1 + 5 ps | {s['md']['mean_temperature_K']:.1f} | "
                        f"{st['rdf_rms']:.3f} | {1000 * st['angle_rms']:.2f} | {st['q_rms']:.3f} | {st['q_mean']:.3f} |")
        for setup in SETUPS:
            r = results.get(f"{name}/{setup}")
            if r is None or "pooled" not in r:
                continue
            p, per = r["pooled"], r["per_replica"]
            label = (f"{r['intact']}/{r['replicas']} replicas, {r['timestep_fs']:g} fs, {r['equilibration_ps']:g} + "
                     f"{r['production_ps']:g} ps: pooled (per replica)")
            rows.append(
                f"| {name} | {label} | {r['mean_temperature_K']:.1f} | {p['rdf_rms']:.3f} "
                f"({_stat([x['rdf_rms'] for x in per])}) | {1000 * p['angle_rms']:.2f} "
                f"({_stat([x['angle_rms'] for x in per], 1000, 2)}) | {p['q_rms']:.3f} "
                f"({_stat([x['q_rms'] for x in per])}) | {p['q_mean']:.3f} ({_stat([x['q_mean'] for x in per])}) |")
    rows.append(f"| reference | held-out frames | 300 | - | - | - | {ref['q_mean']:.3f} |")
    return "\n".join(rows)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="runs of study.py (trained models) to check")
    parser.add_argument("--setups", nargs="*", default=list(SETUPS), choices=list(SETUPS))
    parser.add_argument("--quick", action="store_true", help="tiny runs, nothing saved")
    parser.add_argument("--report", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    store = study.STUDY.summary()
    reference = None
    for name in args.names:
        todo = [setup for setup in args.setups if args.quick or store.get("md-check", name, setup=setup) is None]
        if not todo:
            continue
        loaded, reference = load(name), reference or held_out()  # once per model (+mean-force: one correction)
        for setup in todo:
            res = check(name, setup, quick=args.quick, loaded=loaded, reference=reference)
            if args.quick:
                print(json.dumps({k: v for k, v in res.items() if k != "per_replica"}, indent=1, default=float))
                continue
            store.put(dict(res, date=time.strftime("%Y-%m-%d")))  # after each set-up: resumable
    if args.report:
        print(report({f"{r['run']}/{r['setup']}": r for r in store.records("md-check")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
