#!/usr/bin/env python
"""Which forces of a ladder model: held-out force figures of each way to turn the levels into forces.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/licl/forces_by_setting.py [la-auto-ewald] [--frames 200]

For every trained seed of the recipe (``runs/licl/<recipe>``, ``<recipe>-r1`` ...) and every choice of
forces (the quadratic and the linear sigma -> 0 extrapolation, each trained level alone), on the study's
held-out frames, against the instantaneous force labels (which the denoisers never saw):

* the MSE per component ((eV/A)^2; the label noise is most of it, so only differences count),
* the regression slope of the labels on the model's forces, ``sum(F L) / sum(F F)``: above 1 the
  model's forces are too weak (the smoothing bias of a level shows as ``1 + shrink``),
* the mean force along the Li-Cl pairs on the contact barrier (2.6-3.5 A, attraction > 0, eV/A; as in
  ``committee.py``), per seed, and its spread over the seeds: the quantity that sets the ion pairing.

Force matching with the same priors (``fm-all-ewald``) is listed for comparison. Writes
``results/forces_by_setting.md``.
"""

from __future__ import annotations

import os

if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import committee  # noqa: E402
import study  # noqa: E402

BARRIER = (2.6, 3.5)  # Angstrom


def figures(model, frames, pairs, **choice) -> dict:
    from ase_denoise.data import to_frame
    from ase_denoise.inference import predict

    fr = [to_frame(a, model.config.atomic_numbers) for a in frames]
    labels = np.concatenate([f.ref_forces for f in fr])
    forces = predict(model, fr, **choice)
    along = committee.along_pairs(pairs, forces)
    on_barrier = (pairs[0] >= BARRIER[0]) & (pairs[0] < BARRIER[1])
    return dict(mse=float(((forces - labels) ** 2).mean()), slope=float((forces * labels).sum() / (forces * forces).sum()),
                barrier=float(along[on_barrier].mean()))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("recipe", nargs="?", default="la-auto-ewald")
    p.add_argument("--baseline", default="fm-all-ewald")
    p.add_argument("--frames", type=int, default=200)
    args = p.parse_args(argv)
    frames = study.load_frames()[-study.N_TEST:][: args.frames]
    pairs = committee.li_cl_pairs(frames)
    members = committee.members_of(args.recipe)
    if not members:
        raise SystemExit(f"no trained seed of {args.recipe} in {study.RUNS_DIR}")
    levels = members[0][1].noise_levels
    choices = {"corrected, quadratic in sigma^2": dict(extrapolation_order=2), "corrected, linear": dict(extrapolation_order=1)}
    choices.update({f"level {s:g} A alone": dict(noise_std=s) for s in levels})
    rows = {label: [figures(m, frames, pairs, **c) for _, m in members] for label, c in choices.items()}
    rows[f"force matching (`{args.baseline}`)"] = [figures(m, frames, pairs) for _, m in committee.members_of(args.baseline)]
    n_barrier = int(((pairs[0] >= BARRIER[0]) & (pairs[0] < BARRIER[1])).sum())
    lines = [
        "# Held-out forces of each choice of a ladder model's forces (`forces_by_setting.py`)", "",
        f"Command: `OMP_NUM_THREADS=1 .venv/bin/python benchmarks/licl/forces_by_setting.py {args.recipe}`; "
        f"{len(frames)} held-out frames, {len(members)} seeds of `{args.recipe}` (mean ± std over seeds), "
        f"{n_barrier} Li-Cl pairs on the {BARRIER[0]}-{BARRIER[1]} A barrier.", "",
        "| forces | seeds | MSE vs labels ((eV/A)^2) | slope of labels on forces | barrier pull per seed (eV/A) | spread of the pull |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for label, per_seed in rows.items():
        mse = np.array([r["mse"] for r in per_seed])
        slope = np.array([r["slope"] for r in per_seed])
        pull = np.array([r["barrier"] for r in per_seed])
        sd = lambda x: f" ± {x.std(ddof=1):.3f}" if len(x) > 1 else ""  # noqa: E731
        lines.append(f"| {label} | {len(per_seed)} | {mse.mean():.5f} | {slope.mean():.3f}{sd(slope)} | "
                     f"{', '.join(f'{x:+.3f}' for x in pull)} | {pull.std(ddof=1) if len(pull) > 1 else float('nan'):.3f} |")
    text = "\n".join(lines) + "\n"
    (study.RESULTS / "forces_by_setting.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
