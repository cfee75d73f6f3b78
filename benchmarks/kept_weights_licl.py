#!/usr/bin/env python
"""Which weights a LiCl fit keeps: the best epoch's (by validation loss) or the last epoch's, by fit's own MD check.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/kept_weights_licl.py --seeds 0 1 2 3 4

``ase-denoise fit`` on LiCl (``benchmarks/fit_systems.py licl --seed S``, runs in ``runs/fit/licl-seedS``)
recorded, for the trained model (the best epoch's weights, the smallest level by default), the MD check
that decides on the mean-force correction: 8 Langevin replicas, 5 + 20 ps, RDF error against the data with
its noise (``fit.json``, step ``mean-force``, ``before``). This script runs the same check, with the same
seed, on the last epoch's weights of the same training run (``train/last.safetensors``), so each seed's two
figures differ only in the weights. Records go to ``kept_weights_licl.jsonl`` (resumable), the table to
``kept_weights_licl.md``.
"""

from __future__ import annotations

import os

if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse  # noqa: E402
import csv  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Tuple  # noqa: E402

import numpy as np  # noqa: E402

HERE = Path(__file__).resolve().parent
RUNS = HERE.parent / "runs" / "fit"
RESULTS = HERE / "kept_weights_licl.jsonl"
FIGURES = ("rdf_error", "rdf_error_noise", "systematic_error", "collapsed")


def best_epoch(log: Path) -> Tuple[int, int]:
    """(the epoch of lowest validation loss, the epochs logged)"""
    rows = list(csv.DictReader(open(log)))
    losses = [float(r["valid_loss"]) for r in rows]
    return int(np.argmin(losses)), len(rows)


def run(seed: int) -> dict:
    from ase_denoise.checkpoint import load_model_file
    from ase_denoise.data.frames import read_frames
    from ase_denoise.forces import ForcesChoice
    from ase_denoise.model import with_default_forces
    from ase_denoise.refine import check_structure, reference_structure

    sys.path.insert(0, str(HERE))
    from study_kit import provenance

    run_dir = RUNS / f"licl-seed{seed}"
    fit = json.loads((run_dir / "model.safetensors.fit" / "fit.json").read_text())
    before = fit["steps"]["mean-force"]["before"]
    frames = read_frames(str(run_dir / "licl.extxyz"))
    model = load_model_file(run_dir / "model.safetensors.fit" / "train" / "last.safetensors")
    model = with_default_forces(model, ForcesChoice(noise_std=min(model.noise_levels)))  # as fit's plan for ions
    fit_settings = fit["settings"]["fit"]
    check = dict(n_replicas=fit_settings["check_replicas"], equilibration_ps=fit_settings["equilibration_ps"],
                 production_ps=fit_settings["check_ps"], timestep_fs=fit_settings["timestep_fs"],
                 seed=fit["settings"]["train"]["seed"])
    check.update(fit["steps"].get("check-size", {}))  # the check as fit sized it (shortened to its time limit)
    last = check_structure(model, frames, reference=reference_structure(frames), friction_per_fs=0.01, **check)
    epoch, epochs = best_epoch(run_dir / "model.safetensors.fit" / "train" / "log.csv")
    return {**provenance(1), "seed": seed, "best_epoch": epoch, "epochs": epochs,
            "best": {k: before[k] for k in FIGURES},
            "last": {k: (int if k == "collapsed" else float)(getattr(last, k)) for k in FIGURES}}


def report(rows) -> str:
    lines = ["| seed | best epoch (of) | RDF error, best epoch's weights | RDF error, last epoch's | noise (best / last) | "
             "collapsed (best / last) |", "| --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        b, la = r["best"], r["last"]
        lines.append(f"| {r['seed']} | {r['best_epoch']} ({r['epochs']}) | {b['rdf_error']:.3f} | {la['rdf_error']:.3f} | "
                     f"{b['rdf_error_noise']:.3f} / {la['rdf_error_noise']:.3f} | {int(b['collapsed'])} / {int(la['collapsed'])} |")
    b = np.array([r["best"]["rdf_error"] for r in rows])
    la = np.array([r["last"]["rdf_error"] for r in rows])
    sd = (lambda v: v.std(ddof=1) if len(v) > 1 else 0.0)
    lines += ["", f"Mean over {len(rows)} seeds: best {b.mean():.3f} ± {sd(b):.3f}, last {la.mean():.3f} ± {sd(la):.3f}; "
              f"paired difference last - best {np.mean(la - b):+.3f} ± {sd(la - b):.3f}."]
    lines += ["", "Per run: " + "; ".join(f"seed {r['seed']} ({r['date']}, commit {r['commit']}, {r['machine']})" for r in rows) + "."]
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, nargs="*", default=[0, 1, 2, 3, 4])
    p.add_argument("--report-only", action="store_true")
    args = p.parse_args(argv)
    rows = [json.loads(line) for line in RESULTS.read_text().splitlines() if line.strip()] if RESULTS.exists() else []
    if not args.report_only:
        for seed in args.seeds:
            if seed in {r["seed"] for r in rows}:
                continue
            rows.append(run(seed))
            print(json.dumps(rows[-1]), flush=True)
            with open(RESULTS, "a") as fh:
                fh.write(json.dumps(rows[-1]) + "\n")
    rows.sort(key=lambda r: r["seed"])
    table = report(rows)
    (HERE / "kept_weights_licl.md").write_text(
        "# LiCl fit: the best epoch's weights against the last epoch's, by fit's MD check\n\nCommand: "
        "`OMP_NUM_THREADS=1 .venv/bin/python benchmarks/kept_weights_licl.py --seeds 0 1 2 3 4` (fits of "
        "`benchmarks/fit_systems.py licl`; lower is better)\n\n" + table + "\n")
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
