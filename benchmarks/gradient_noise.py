#!/usr/bin/env python
"""Gradient noise of the denoising loss: independent noise draws vs antithetic pairs ``(N, -N)``.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/gradient_noise.py           # writes gradient_noise.md
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/gradient_noise.py --quick   # fewer batches

The LiCl CG set (500 frames, ``benchmarks/licl``) with the zoo recipe's settings (the ``auto`` sigma
ladder, the wall prior, batch 8, 4 draws per frame). For each trained level and each sampler setting,
the gradient of one batch's training loss (:meth:`ase_denoise.training.Trainer.loss_gradient`) is taken
over ``--batches`` batches of the real :class:`ase_denoise.training.sampler.DuplicationSampler` (one level each)
at fixed weights: those of the zoo model ``licl-cg-300K`` (late in training, where the noise decides
what is learned) and a fresh initialisation. Printed per level: the total gradient variance (the trace
of the covariance over batches) of each setting, their ratio (how many times more batches independent
draws would need for the same gradient noise), and the distance between the two mean gradients in
units of its standard error (both settings estimate the same expected gradient; a value far above 3
would say they do not).

Why it works: in the pair's summed loss the cross term ``2 N . (eps(x+N) - eps(x-N)) / sigma`` replaces
``2 N . eps(x+N) / sigma`` and its leading part, linear in ``N`` with variance growing as ``1/sigma^2``,
cancels; the expectation is untouched because each copy is still a Gaussian draw.
"""
from __future__ import annotations

import os

if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def gradients(trainer, noise_std: float, antithetic: bool, n_batches: int, seed: int) -> np.ndarray:
    """[n_batches, n_weights]: loss gradients over batches of a one-level sampler (first batch of each epoch)."""
    from ase_denoise.training.sampler import DuplicationSampler

    sampler = DuplicationSampler(trainer.frames, trainer.train_ids, trainer.cfg.n_duplicates, noise_std,
                                 trainer.cfg.batch_size, seed, antithetic=antithetic)
    return np.array([trainer.loss_gradient(next(sampler.epoch(e))) for e in range(n_batches)])


def compare(trainer, noise_std: float, n_batches: int, seed: int = 11) -> dict:
    g_ind = gradients(trainer, noise_std, False, n_batches, seed)
    g_ant = gradients(trainer, noise_std, True, n_batches, seed)
    var_ind, var_ant = g_ind.var(0, ddof=1).sum(), g_ant.var(0, ddof=1).sum()
    gap = np.linalg.norm(g_ind.mean(0) - g_ant.mean(0)) / np.sqrt((var_ind + var_ant) / n_batches)
    return dict(noise_std=noise_std, var_independent=var_ind, var_antithetic=var_ant, ratio=var_ind / var_ant,
                mean_gap_in_standard_errors=gap)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batches", type=int, default=48)
    parser.add_argument("--quick", action="store_true", help="12 batches, trained weights only")
    parser.add_argument("--output", default=str(HERE / "gradient_noise.md"))
    args = parser.parse_args(argv)
    n_batches = 12 if args.quick else args.batches

    from licl import study
    from common import machine
    from ase_denoise import TrainConfig, load_model
    from ase_denoise.training import prepare_data
    from ase_denoise.training import Trainer

    frames = study.split(study.load_frames(), 500)
    zoo = load_model("licl-cg-300K")
    config, physics, converted = prepare_data(frames, noise_std=list(zoo.noise_levels),
                                              temperature_K=study.TEMPERATURE_K, priors=["repulsive_wall"],
                                              **study.MODEL)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(config, physics, converted, tmp, TrainConfig(n_duplicates=4, batch_size=8, seed=0))
        fresh = {k: v.clone() for k, v in trainer.model.state_dict().items()}
        for label, weights in (("zoo licl-cg-300K", zoo.state_dict()), ("fresh initialisation", fresh)):
            if args.quick and label != "zoo licl-cg-300K":
                continue
            trainer.model.load_state_dict(weights)
            for s in physics.noise_std:
                row = dict(weights=label, **compare(trainer, s, n_batches))
                rows.append(row)
                print(f"{label:22s} sigma {s:.4f} A: tr Var independent {row['var_independent']:.3g}, antithetic "
                      f"{row['var_antithetic']:.3g}, ratio {row['ratio']:.2f}, mean gap "
                      f"{row['mean_gap_in_standard_errors']:.2f} s.e.", flush=True)
    lines = [
        "# Gradient noise: independent noise draws vs antithetic pairs",
        "",
        f"`benchmarks/gradient_noise.py{' --quick' if args.quick else ''}`; LiCl CG, 500 frames, batch 8 "
        f"(4 frames x 2 draws when antithetic), {n_batches} batches per cell; {machine()}.",
        "",
        "| weights | sigma (A) | tr Var, independent | tr Var, antithetic | ratio | mean gradients differ by (s.e.) |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    lines += [f"| {r['weights']} | {r['noise_std']:.4f} | {r['var_independent']:.3g} | {r['var_antithetic']:.3g} "
              f"| {r['ratio']:.2f} | {r['mean_gap_in_standard_errors']:.2f} |" for r in rows]
    Path(args.output).write_text("\n".join(lines) + "\n")
    print("wrote", args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
