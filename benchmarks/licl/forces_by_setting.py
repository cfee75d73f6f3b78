#!/usr/bin/env python
"""Which forces of a ladder model: held-out force figures of each way to turn the levels into forces.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/licl/forces_by_setting.py [denoise-ladder-wall-ewald-antithetic] [--frames 200]

For every trained seed of the recipe (``runs/licl/<recipe>``, ``<recipe>-seed1`` ...) and every choice of
forces (the quadratic and the linear sigma -> 0 extrapolation, each trained level alone), on the study's
held-out frames, against the instantaneous force labels (which the denoisers never saw):

* the MSE per component ((eV/A)^2; the label noise is most of it, so only differences count),
* the regression slope of the labels on the model's forces, ``sum(F L) / sum(F F)``: above 1 the
  model's forces are too weak (the smoothing bias of a level shows as ``1 + shrink``),
* the mean force along the Li-Cl pairs on the contact barrier (2.6-3.5 A, attraction > 0, eV/A; as in
  ``committee.py``), per seed, and its spread over the seeds: the quantity that sets the ion pairing.

Force matching with the same priors (``force-match-wall-ewald-1800``) is listed for comparison. Writes a
``forces_by_setting`` record into ``results/summary.jsonl`` (table: ``study.py --tables``).
"""

from __future__ import annotations

import os

if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
from licl import committee, study  # noqa: E402

BARRIER = (2.6, 3.5)  # Angstrom


def figures(model, frames, pairs, **choice) -> dict:
    from ase_denoise.data import to_frame
    from ase_denoise.forces import ForcesChoice
    from ase_denoise.inference import predict

    fr = [to_frame(a, model.config.atomic_numbers) for a in frames]
    labels = np.concatenate([f.ref_forces for f in fr])
    forces = predict(model, fr, forces=ForcesChoice(**choice))
    along = committee.along_pairs(pairs, forces)
    on_barrier = (pairs[0] >= BARRIER[0]) & (pairs[0] < BARRIER[1])
    return dict(mse=float(((forces - labels) ** 2).mean()), slope=float((forces * labels).sum() / (forces * forces).sum()),
                barrier=float(along[on_barrier].mean()))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("recipe", nargs="?", default=study.LADDER)
    p.add_argument("--baseline", default="force-match-wall-ewald-1800")
    p.add_argument("--frames", type=int, default=200)
    args = p.parse_args(argv)
    frames = study.load_frames()[-study.N_TEST:][: args.frames]
    pairs = committee.li_cl_pairs(frames)
    members = committee.members_of(args.recipe)
    if not members:
        raise SystemExit(f"no trained seed of {args.recipe} in {study.STUDY.runs_dir}")
    levels = members[0][1].noise_levels
    choices = {"corrected, quadratic in sigma^2": dict(extrapolation_order=2), "corrected, linear": dict(extrapolation_order=1)}
    choices.update({f"level {s:g} A alone": dict(noise_std=s) for s in levels})
    rows = {label: [figures(m, frames, pairs, **c) for _, m in members] for label, c in choices.items()}
    rows[f"force matching (`{args.baseline}`)"] = [figures(m, frames, pairs) for _, m in committee.members_of(args.baseline)]
    n_barrier = int(((pairs[0] >= BARRIER[0]) & (pairs[0] < BARRIER[1])).sum())
    out = []
    for label, per_seed in rows.items():
        slope = np.array([r["slope"] for r in per_seed])
        pull = np.array([r["barrier"] for r in per_seed])
        out.append(dict(label=label, seeds=len(per_seed), mse=float(np.mean([r["mse"] for r in per_seed])),
                        slope_mean=float(slope.mean()), slope_std=float(slope.std(ddof=1)) if len(slope) > 1 else None,
                        pulls=pull.tolist(), pull_spread=float(pull.std(ddof=1)) if len(pull) > 1 else None))
    from licl import tables

    rec = study.STUDY.summary().put(dict(kind="forces_by_setting", run=args.recipe, baseline=args.baseline,
                                         n_frames=len(frames), n_barrier_pairs=n_barrier, rows=out,
                                         date=time.strftime("%Y-%m-%d")))
    print(tables.forces_by_setting(rec))
    return 0


if __name__ == "__main__":
    sys.exit(main())
