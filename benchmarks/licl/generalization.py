"""Does a LiCl denoiser generalise or memorise? The denoising loss on frames it trained on against held-out frames.

For a noisy copy ``y = x + N`` at level sigma the denoising loss of a score estimate ``eps`` is
``|eps + N/sigma|^2`` per component; the zero predictor scores ``|N/sigma|^2`` (about 1). The
*explained fraction* ``R = 1 - loss(model) / loss(zero)`` is the part of the label variance the model
accounts for. On frames drawn from the same distribution as the training frames, a model that learned
the score of the density (what Tweedie's formula needs) has the same ``R`` on both sets. A model that
learned the training frames themselves (the optimum of the loss over a finite set at small sigma is the
score of the smoothed *empirical* distribution, which points back at the nearest training frame) has
a larger ``R`` on its own frames than on held-out ones.

On held-out frames the loss is also a proper score of the forces, measured without labels:
``loss(model) - loss(exact smoothed score) = E|eps - eps*|^2``, so between two models a difference
``dR`` in held-out ``R`` is a difference of ``(kT/sigma)^2 * loss(zero) * dR`` in mean squared force
error per component ((eV/A)^2) against the score at that sigma. A force-matching model is scored the
same way (``--levels``), its forces taken as they are.

Both sets get the same number of fresh noise draws per frame and level; model and zero predictor are
scored on the same draws, so the difference has little noise. Per level, with the priors included
(total forces ``kT * eps / sigma + prior``, as the calculator returns them, turned back into ``eps``).

    OMP_NUM_THREADS=1 python benchmarks/licl/generalization.py RUN [RUN ...] [--draws 8] [--frames 200]
    OMP_NUM_THREADS=1 python benchmarks/licl/generalization.py RUN ... --levels 0.0118 0.0184 0.0263   # force matching

``RUN`` is a study run (``runs/licl/RUN``; the weights the study used: ``last`` for recipes with
``weights="last"``, else ``best``). The per-frame losses go to ``results/raw/generalization/RUN.json``
(not committed); one ``generalization`` record per run, with the paired difference to the first RUN,
into ``results/summary.jsonl`` (table: ``study.py --tables``, ``results/tables.md``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any, Dict

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
from licl import study  # noqa: E402


def explained_fraction(model, frames, noise_std: float, draws: int, seed: int) -> Dict[str, float]:
    """Mean loss of the model and of the zero predictor over ``draws`` noise draws per frame at
    ``noise_std``, and ``R = 1 - model / zero`` with its standard error over frames. A model without
    that level (force matching: one force field for every input) is scored with its forces as they are."""

    from ase_denoise.data import to_frame
    from ase_denoise.forces import ForcesChoice
    from ase_denoise.inference import predict

    kT = model.kT  # eV
    rng = np.random.default_rng(seed)
    per_frame_model, per_frame_zero = [], []
    for atoms in frames:
        noisy, noises = [], []
        for _ in range(draws):
            n = rng.normal(0.0, noise_std, size=(len(atoms), 3))
            a = atoms.copy()
            a.positions = a.positions + n
            noisy.append(to_frame(a, model.config.atomic_numbers))
            noises.append(n)
        level = noise_std if noise_std in model.noise_levels else None
        forces = predict(model, noisy, forces=ForcesChoice(noise_std=level), batch_size=draws).reshape(draws, len(atoms), 3)
        eps = noise_std * forces / kT
        target = -np.stack(noises) / noise_std
        per_frame_model.append(np.mean((eps - target) ** 2))
        per_frame_zero.append(np.mean(target**2))
    m, z = np.array(per_frame_model), np.array(per_frame_zero)
    r = 1.0 - m / z
    return dict(loss_model=float(m.mean()), loss_zero=float(z.mean()), explained=float(1 - m.mean() / z.mean()),
                explained_se=float(r.std(ddof=1) / np.sqrt(len(r))), per_frame_model=np.round(m, 8).tolist(),
                per_frame_zero=np.round(z, 8).tolist())  # 1e-8: far below the paired differences (1e-5)


def measure(run: str, n_frames: int, draws: int, runs_dir: Path, levels=None) -> Dict[str, Any]:
    from ase_denoise.checkpoint import load_model_file
    from ase_denoise.training.sampler import split_frames

    recipe = study.recipe_of(run)
    source = study.BOOK.recipe(recipe.get("weights_of")).run_name(study.RUNS[run][1]) if recipe.get("weights_of") else run
    weights = study.weights_file(recipe, runs_dir / source)
    model = study.with_defaults(load_model_file(weights), recipe)
    cfg = model.metadata["training"]["train_config"]
    frames = study.load_frames()
    data = study.split(frames, recipe.frames)
    train_ids, _ = split_frames(len(data), cfg["valid_fraction"], cfg["seed"])
    rng = np.random.default_rng(0)
    trained = [data[i] for i in rng.choice(train_ids, size=min(n_frames, len(train_ids)), replace=False)]
    test = frames[-study.N_TEST:][:n_frames]  # never seen in training (the study's test set)
    out: Dict[str, Any] = dict(run=run, weights=weights.name, draws=draws,
                               n_frames=len(test), levels={})
    for level in (levels or model.noise_levels):
        out["levels"][f"{level:g}"] = dict(
            trained=explained_fraction(model, trained, level, draws, seed=1),
            held_out=explained_fraction(model, test, level, draws, seed=2),
        )
    return out


def paired_difference(run: Dict[str, Any], base: Dict[str, Any], kT: float) -> Dict[str, Dict[str, float]]:
    """Held-out, level by level: ``R(run) - R(base)`` and its standard error from the per-frame
    differences (same frames, same noise draws), and the same as a difference in mean squared force
    error per component, ``(kT/sigma)^2 * loss(zero) * dR`` ((eV/A)^2; positive: ``run`` is closer to
    the score at that sigma)."""
    out = {}
    for level, v in run["levels"].items():
        if level not in base["levels"]:
            continue
        a, b = v["held_out"], base["levels"][level]["held_out"]
        if a["per_frame_zero"] != b["per_frame_zero"]:
            raise ValueError(f"{run['run']} and {base['run']} were not scored on the same draws")
        d = np.array(b["per_frame_model"]) - np.array(a["per_frame_model"])  # loss(base) - loss(run)
        z = float(np.mean(a["per_frame_zero"]))
        dr, se = float(d.mean() / z), float(d.std(ddof=1) / np.sqrt(len(d)) / z)
        scale = (kT / float(level)) ** 2 * z
        out[level] = dict(dR=dr, dR_se=se, d_force_mse=dr * scale, d_force_mse_se=se * scale)
    return out


def record(res: Dict[str, Any], base: Dict[str, Any], kT: float, levels_scored=None) -> Dict[str, Any]:
    """The summary record of one run: per level the explained fractions (trained and held-out frames)
    and the paired held-out difference to ``base`` (None for ``base`` itself)."""
    paired = paired_difference(res, base, kT)
    short = ("explained", "explained_se", "loss_model", "loss_zero")
    return dict(kind="generalization", run=res["run"], weights=res["weights"], draws=res["draws"], n_frames=res["n_frames"],
                base=base["run"], levels_scored=levels_scored, date=time.strftime("%Y-%m-%d"),
                levels={level: dict(trained={k: v["trained"][k] for k in short}, held_out={k: v["held_out"][k] for k in short},
                                    paired=None if res is base else paired.get(level))
                        for level, v in res["levels"].items()})


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+")
    p.add_argument("--draws", type=int, default=8, help="noise draws per frame and level")
    p.add_argument("--frames", type=int, default=200, help="frames per set")
    p.add_argument("--runs-dir", default=str(study.STUDY.runs_dir))
    p.add_argument("--levels", type=float, nargs="*", default=None,
                   help="sigmas to score at (default: the model's own levels; a force-matching model needs them)")
    args = p.parse_args(argv)
    out_dir = study.STUDY.raw / "generalization"
    out_dir.mkdir(parents=True, exist_ok=True)
    results = []
    for run in args.runs:
        path = out_dir / f"{run}.json"
        if path.exists():
            res = json.loads(path.read_text())
        else:
            res = measure(run, args.frames, args.draws, Path(args.runs_dir), args.levels)
            path.write_text(json.dumps(res) + "\n")
        results.append(res)
    from ase import units

    from licl import tables

    kT = units.kB * study.TEMPERATURE_K  # eV
    for res in results:
        study.STUDY.summary().put(record(res, results[0], kT, args.levels))
    print(tables.generalization(study.STUDY.summary().records("generalization")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
