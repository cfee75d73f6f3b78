#!/usr/bin/env python
"""LJ argon: a noise ladder corrected to sigma -> 0 against the demo's single sigma, over training seeds.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/lj_ladder.py --seeds 0 1 2        # 14 min of training each
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/lj_ladder.py --report-only
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/lj_ladder.py --head energy --seeds 0 1 2  # the free-energy head
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/lj_ladder.py --recipe expansion --seeds 0 1 2

Data: the demo's (``ase-denoise demo``): 300 frames of the 108-atom LJ argon liquid at 94.4 K (seed 0)
for training, 20 frames of an independent run (seed 1) held out. Each run trains the default
architecture on coordinates only with ``noise_std=LEVELS`` for at most ``--minutes`` of wall clock
(twice the demo's 7) and scores the held-out forces at each level, corrected (the calculator's
default), and with a linear extrapolation for comparison. Results go to ``lj_ladder.jsonl`` (one line
per run; resumable: a seed already there is skipped) and the table to ``lj_ladder.md``; ``--head energy``
trains the same recipe with the free-energy head (``lj_ladder_energy.jsonl``, ``lj_ladder_energy.md``).
Recipes: ``conditioned`` (the default: the network takes sigma as an input, ``noise_embedding`` 2, so the
corrected forces are three passes extrapolated) and ``expansion`` (the network is blind to sigma and
returns the coefficients of ``F_0 + s^2 F_1 + s^4 F_2``, ``noise_expansion`` 2: the corrected forces are
``F_0``, one pass) and ``linear-expansion`` (``F_0 + s^2 F_1`` fitted to the three levels); results go to
``lj_ladder[_energy]_<recipe>.*``.
"""

from __future__ import annotations

import os

if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

HERE = Path(__file__).resolve().parent
HEADS = {"vector": "lj_ladder", "energy": "lj_ladder_energy"}  # head -> results file stem
RECIPES = {"conditioned": {}, "expansion": {"noise_expansion": 2}, "linear-expansion": {"noise_expansion": 1}}  # -> model options
LEVELS = (0.025, 0.04, 0.06)
FIGURES = ("slope", "relative_rmse", "cosine")


def stem(head: str, recipe: str = "conditioned", tag: str = "") -> str:
    return HEADS[head] + ("" if recipe == "conditioned" else f"_{recipe}") + (f"_{tag}" if tag else "")


def results_file(head: str, recipe: str = "conditioned", tag: str = "") -> Path:
    return HERE / f"{stem(head, recipe, tag)}.jsonl"


def run_dir_of(work: Path, seed: int, head: str = "vector", recipe: str = "conditioned", tag: str = "") -> Path:
    return work / ((f"ladder_s{seed}" if head == "vector" else f"{head}_s{seed}")
                   + ("" if recipe == "conditioned" else f"_{recipe}") + (f"_{tag}" if tag else ""))


def test_frames(work: Path):
    from ase_denoise.data.reference import lj_argon_frames

    return lj_argon_frames(20, 94.4, cache_dir=work / "data", seed=1)


def run(seed: int, minutes: float, work: Path, head: str = "vector", recipe: str = "conditioned", tag: str = "") -> dict:
    from ase_denoise import TrainConfig, train
    from ase_denoise.data.reference import lj_argon_frames

    frames = lj_argon_frames(300, 94.4, cache_dir=work / "data", seed=0)
    run_dir = run_dir_of(work, seed, head, recipe, tag)
    t0 = time.perf_counter()
    result = train(frames, str(run_dir), noise_std=LEVELS, temperature_K=94.4, head=head,
                   resume=(run_dir / "training_state.pt").exists(),
                   train_config=TrainConfig(epochs=80, max_minutes=minutes, seed=seed), **RECIPES[recipe])
    sys.path.insert(0, str(HERE))
    from study_kit import provenance

    out = {**provenance(1), "seed": seed, "head": head, "recipe": recipe, "levels": list(LEVELS), "epochs": len(result.history),
           "train_s": round(time.perf_counter() - t0), "weights": result.kept}
    return {**out, **score(result.model, test_frames(work))}


def score(model, test) -> dict:
    """The held-out forces at each level, the linear extrapolation through them and the default."""
    from ase_denoise.analysis import force_metrics
    from ase_denoise.data import to_frame
    from ase_denoise.forces import ForcesChoice, extrapolation_weights
    from ase_denoise.inference import evaluate_forces

    frames_test = [to_frame(a, model.config.atomic_numbers) for a in test]
    out, per_level = {}, {}
    for s in list(LEVELS) + [None]:
        pred, ref = evaluate_forces(model, frames_test, forces=ForcesChoice(noise_std=s))
        if s is not None:
            per_level[s] = pred
        m = force_metrics(pred, ref)
        out["corrected" if s is None else f"sigma {s}"] = {k: round(m[k], 4) for k in FIGURES}
    linear = sum(w * per_level[s] for w, s in zip(extrapolation_weights(LEVELS, order=1), LEVELS))
    m = force_metrics(linear, ref)
    out["linear extrapolation"] = {k: round(m[k], 4) for k in FIGURES}
    return out


def rescore(results: Path, work: Path, head: str, recipe: str, tag: str) -> None:
    """Score again, with the weights training keeps today (``TrainConfig.keep_weights``), the runs recorded
    in ``results`` whose record names other weights (runs trained when the best epoch was kept); each record
    keeps its training figures and says which weights and which commit scored it."""
    from ase_denoise import TrainConfig
    from ase_denoise.checkpoint import load_model_file
    from ase_denoise.training.result import kept_weights

    sys.path.insert(0, str(HERE))
    from study_kit import provenance

    weights = kept_weights(TrainConfig())
    rows = [json.loads(line) for line in results.read_text().splitlines() if line.strip()]
    test = test_frames(work)  # read once, not per record
    for row in rows:
        if row.get("weights", "best") == weights:
            continue
        model = load_model_file(run_dir_of(work, row["seed"], head, recipe, tag) / f"{weights}.safetensors")
        row.update(score(model, test), weights=weights, scored=provenance(1)["commit"])
        print(f"seed {row['seed']}: {weights} weights, default forces {row['corrected']}")
    results.write_text("".join(json.dumps(r) + "\n" for r in rows))


def report(head: str = "vector", recipe: str = "conditioned", tag: str = "") -> str:
    rows = [json.loads(line) for line in results_file(head, recipe, tag).read_text().splitlines() if line.strip()]
    keys = [f"sigma {s}" for s in LEVELS] + ["linear extrapolation", "corrected"]
    lines = [
        f"LJ argon, 94.4 K, {head} head, {recipe} recipe, held-out forces (20 frames x 108 atoms) vs true LJ forces; levels {LEVELS} A; "
        f"{len(rows)} training seeds ({', '.join(str(r['seed']) for r in rows)}): mean ± std (min - max).",
        "",
        "| forces | slope | relative RMSE | cosine |",
        "| --- | --- | --- | --- |",
    ]
    for key in keys:
        cells = []
        for fig in FIGURES:
            v = np.array([r[key][fig] for r in rows])
            cells.append(f"{v.mean():.3f} ± {v.std(ddof=1) if len(v) > 1 else 0:.3f} ({v.min():.3f} - {v.max():.3f})")
        lines.append(f"| {key}{' (the calculator default)' if key == 'corrected' else ''} | " + " | ".join(cells) + " |")
    lines += ["", "Per run: " + "; ".join(f"seed {r['seed']}: {r['epochs']} epochs in {r['train_s']} s"
                                          + (f" ({r['date']}, commit {r['commit']})" if "commit" in r else "")
                                          + f", {r.get('weights', 'best')} weights"
                                          + (f" (scored at commit {r['scored']})" if "scored" in r else "")
                                          for r in rows) + "."]
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, nargs="*", default=[0, 1, 2])
    p.add_argument("--minutes", type=float, default=14.0, help="training budget per run (default: twice the demo's 7)")
    p.add_argument("--work-dir", default=str(HERE.parent / "runs" / "lj_ladder"))
    p.add_argument("--head", choices=sorted(HEADS), default="vector")
    p.add_argument("--recipe", choices=sorted(RECIPES), default="conditioned",
                   help="conditioned: sigma an input, corrected by extrapolation; expansion: the head returns the sigma^2 "
                        "expansion's coefficients")
    p.add_argument("--tag", default="", help="a word appended to the results' and runs' names (another protocol, "
                   "e.g. another --minutes), so that they are kept apart from the default protocol's")
    p.add_argument("--report-only", action="store_true")
    p.add_argument("--rescore", action="store_true", help="score the recorded runs again with the weights training "
                   "keeps today (runs that kept the best epoch's: last.safetensors), then report")
    args = p.parse_args(argv)
    results = results_file(args.head, args.recipe, args.tag)
    if args.rescore:
        rescore(results, Path(args.work_dir), args.head, args.recipe, args.tag)
    done = {json.loads(line)["seed"] for line in results.read_text().splitlines() if line.strip()} if results.exists() else set()
    if not (args.report_only or args.rescore):
        for seed in args.seeds:
            if seed in done:
                continue
            out = run(seed, args.minutes, Path(args.work_dir), args.head, args.recipe, args.tag)
            print(json.dumps(out))
            with open(results, "a") as fh:
                fh.write(json.dumps(out) + "\n")
    sys.path.insert(0, str(HERE))
    from common import machine

    table = report(args.head, args.recipe, args.tag)
    flag = ("" if args.head == "vector" else f" --head {args.head}") + (
        "" if args.recipe == "conditioned" else f" --recipe {args.recipe}") + (
        "" if args.minutes == 14.0 else f" --minutes {args.minutes:g}") + (f" --tag {args.tag}" if args.tag else "")
    (HERE / f"{stem(args.head, args.recipe, args.tag)}.md").write_text(
        f"# LJ argon: noise ladder corrected to sigma -> 0 ({args.head} head, {args.recipe} recipe)\n\nCommand: "
        f"`OMP_NUM_THREADS=1 .venv/bin/python benchmarks/lj_ladder.py{flag} --seeds 0 1 2` ({machine()})\n\n" + table + "\n")
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
