#!/usr/bin/env python
"""A system the project never tuned on, fitted as a new user would: EMT copper at 600 K.

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/emt_copper.py            # about 25 min on 2 cores

1. 300 frames of fcc copper (108 atoms, 3x3x3 cells) from Langevin MD with ASE's EMT at 600 K
   (``ase_denoise.data.reference.emt_metal_frames``, seed 0), the forces dropped; 20 frames of an
   independent run (seed 1) with their EMT forces held out;
2. ``ase-denoise fit`` on the 300 frames with its defaults, four epochs, and MD checks sized for a
   solid (4 replicas, 0.5 + 2 ps at 2 fs);
3. the fitted model's forces against EMT's on the held-out frames (slope of predicted on true,
   relative RMSE, cosine), beside the fit's own label-free force scale.

Writes ``benchmarks/emt_copper.json`` and copies the fit's report (``report.md`` and its plots) to
``docs/results/fit-example/``: what ``fit`` leaves next to a model, as a user sees it.
"""

from __future__ import annotations

import os

if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "2")

import json  # noqa: E402
import shlex  # noqa: E402
import shutil  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
WORK = REPO / "runs" / "fit" / "emt-copper"
RECORD = HERE / "emt_copper.json"
EXAMPLE = REPO / "docs" / "results" / "fit-example"
sys.path.insert(0, str(HERE))
from study_kit import provenance  # noqa: E402
CHECKS = ["--check-replicas", "4", "--equilibration-ps", "0.5", "--check-ps", "2", "--timestep-fs", "2"]


def main() -> int:
    import ase.io

    from ase_denoise import load_model
    from ase_denoise.analysis import force_metrics
    from ase_denoise.cli import main as cli_main
    from ase_denoise.data.reference import emt_metal_frames
    from ase_denoise.inference import evaluate_forces

    WORK.mkdir(parents=True, exist_ok=True)
    train = emt_metal_frames(300, 600.0, seed=0, cache_dir=WORK, progress=True)
    held_out = emt_metal_frames(20, 600.0, seed=1, cache_dir=WORK, progress=True)
    data = WORK / "cu.extxyz"
    if not data.exists():
        frames = [a.copy() for a in train]
        for a in frames:
            del a.arrays["ref_forces"]  # coordinates only
        ase.io.write(data, frames)
    output = WORK / "cu.safetensors"
    argv = ["fit", "--data", os.path.relpath(data, REPO), "--output", os.path.relpath(output, REPO), "--epochs", "4",
            *CHECKS]
    resume = ["--resume"] if (WORK / "cu.safetensors.fit" / "fit.json").exists() else []
    t0 = time.perf_counter()
    os.chdir(REPO)
    if not output.exists() or resume:
        code = cli_main(argv + resume)
        if code:
            return code
    fit_s = time.perf_counter() - t0
    if resume and RECORD.exists():  # a resumed fit: its recorded time, plus what this resume took
        fit_s += json.loads(RECORD.read_text())["fit_wall_s"]
    model = load_model(str(output))
    steps = json.loads((WORK / "cu.safetensors.fit" / "fit.json").read_text())["steps"]
    pred, ref = evaluate_forces(model, held_out)
    m = force_metrics(pred, ref)
    if steps.get("mean-force", {}).get("kept"):  # the shipped model is the corrected one: the trained one too
        trained = load_model(str(WORK / "cu.safetensors.fit" / "trained.safetensors"))
        m_trained = force_metrics(*evaluate_forces(trained, held_out))
    else:
        m_trained = m
    keys = ("slope", "relative_rmse", "cosine", "rmse")
    record = dict(
        command="ase-denoise " + shlex.join(argv), fit_wall_s=round(fit_s), verdict=steps["validate"]["verdict"],
        held_out={k: round(float(m[k]), 4) for k in keys},
        held_out_as_trained={k: round(float(m_trained[k]), 4) for k in keys},
        force_scale=steps["validate"]["force_scale"],
        mean_force={k: steps["mean-force"][k] for k in ("kept",)} | {
            f"{w}_{k}": steps["mean-force"][w][k] for w in ("before", "after") for k in ("systematic_error",)} | {
            f"{w}_force_scale": steps["mean-force"][w]["force_scale"]["ratio"] for w in ("before", "after")}
        if "mean-force" in steps else None,
        **provenance(os.environ.get("OMP_NUM_THREADS")),
    )
    RECORD.write_text(json.dumps(record, indent=1) + "\n")
    report = WORK / "cu.report"
    EXAMPLE.mkdir(parents=True, exist_ok=True)
    for f in report.iterdir():
        shutil.copy(f, EXAMPLE / f.name)
    print(json.dumps(record, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
