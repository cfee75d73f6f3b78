#!/usr/bin/env python
"""Training where graphs are small: a two-atom harmonic dimer ladder, timed per epoch, and checked.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/dimer_training.py            # 10 epochs, about 5 min
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/dimer_training.py --epochs 2  # a quick look
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/dimer_training.py --k 2 --noise-std 0.025 0.04 0.055 --minutes 8 \
        --noise-expansion 2                                                        # the expansion head

3000 exact Boltzmann frames of a harmonic H2-like dimer (k = 5 eV/A^2, d0 = 1.5 A, 300 K;
``ase_denoise.data.reference.sample_harmonic_dimer``), ``train`` with its defaults (the auto ladder,
8 noisy copies per frame and epoch, batches of ``batch_atoms`` atoms) for ``--epochs`` epochs on one
torch thread. Printed: the training's wall time and time per epoch (the speed goal: 10 epochs in 8
minutes; the epochs' own clock, validation included, model building not), the optimiser steps per epoch, and the trained model's default forces on 500 fresh frames
against the exact ``-k (d - d0)`` (slope and relative RMSE), so that speed is never bought with
accuracy, and the stiffness of every level against its exact smoothed value ``k / (1 + 2 k sigma^2 / kT)``
and of the default forces against ``k`` (fitted over ``d0 +- 2 sqrt(kT / k)``). ``--k``, ``--noise-std``,
``--minutes`` and ``--noise-expansion`` (0: the conditioned ladder) change the protocol. Appends a record to ``benchmarks/dimer_training.jsonl``; the last line is machine-readable::

    epoch_s=<wall time per epoch> ten_epochs_min=<10 x epoch_s / 60> slope=<...> relative_rmse=<...>
"""

from __future__ import annotations

import os

if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from study_kit import provenance  # noqa: E402

RECORDS = HERE / "dimer_training.jsonl"
K, D0, TEMPERATURE_K = 5.0, 1.5, 300.0


def stiffness(model, k: float, forces) -> float:
    """The bond stiffness (eV/A^2) of ``model``'s forces, a line through the force on atom 2 along the bond
    at 31 lengths over d0 +- 2 thermal widths."""
    import numpy as np
    from ase import Atoms
    from ase.units import kB

    from ase_denoise.inference import predict, structure_frame

    ds = D0 + np.linspace(-2, 2, 31) * np.sqrt(kB * TEMPERATURE_K / k)
    frames = [structure_frame(Atoms("HH", positions=[[0, 0, 0], [d, 0, 0]]), model) for d in ds]
    along = predict(model, frames, forces=forces)[1::2, 0]
    return float(-np.polyfit(ds - D0, along, 1)[0])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--frames", type=int, default=3000)
    p.add_argument("--k", type=float, default=K, help="bond stiffness, eV/A^2")
    p.add_argument("--noise-std", type=float, nargs="+", default=None, help="the ladder, A (default: auto)")
    p.add_argument("--minutes", type=float, default=None, help="training budget (wall clock)")
    p.add_argument("--noise-expansion", type=int, default=0, help="degree of the head's expansion in sigma^2 (0: conditioned)")
    p.add_argument("--no-record", action="store_true", help="print only, append nothing")
    args = p.parse_args(argv)
    k = args.k

    import torch

    from ase_denoise import train
    from ase_denoise.analysis import force_metrics
    from ase.units import kB

    from ase_denoise.config import TrainConfig
    from ase_denoise.forces import ForcesChoice
    from ase_denoise.data.reference import harmonic_dimer_forces, sample_harmonic_dimer
    from ase_denoise.inference import evaluate_forces

    torch.set_num_threads(1)
    frames = sample_harmonic_dimer(args.frames, k=k, d0=D0, temperature_K=TEMPERATURE_K, seed=0)
    test = sample_harmonic_dimer(500, k=k, d0=D0, temperature_K=TEMPERATURE_K, seed=1)
    config = TrainConfig(epochs=args.epochs, n_duplicates=8, max_minutes=args.minutes)
    options = {"noise_std": args.noise_std} if args.noise_std else {}
    if args.noise_expansion:
        options["noise_expansion"] = args.noise_expansion
    with tempfile.TemporaryDirectory() as work:
        t0 = time.perf_counter()
        result = train(frames, work, temperature_K=TEMPERATURE_K, train_config=config, **options)
        wall = time.perf_counter() - t0
    model = result.model
    predicted, _ = evaluate_forces(model, test)
    exact = [harmonic_dimer_forces(a.positions, k, D0) for a in test]
    kT = kB * TEMPERATURE_K
    levels = {f"{s:g}": round(stiffness(model, k, ForcesChoice(noise_std=s)) / (k / (1 + 2 * k * s**2 / kT)), 4)
              for s in model.noise_levels}
    metrics = force_metrics(predicted, exact)
    epochs = len(result.history)
    steps = result.history[0]["step"] if result.history else None  # optimiser steps after the first epoch
    clock = result.history[-1]["elapsed_s"] if result.history else wall  # the epochs' own clock (no model build)
    record = dict(
        frames=args.frames, k=k, epochs=epochs, noise_std=list(model.noise_levels),
        noise_expansion=model.config.noise_expansion,
        frames_per_batch=config.frames_per_batch(2), steps_per_epoch=steps,
        train_wall_s=round(wall, 1), epochs_s=round(clock, 1), epoch_s=round(clock / max(epochs, 1), 2),
        ten_epochs_min=round(10 * clock / max(epochs, 1) / 60, 2),
        slope=round(float(metrics["slope"]), 4), relative_rmse=round(float(metrics["relative_rmse"]), 4),
        level_stiffness_over_smoothed=levels, default_stiffness_over_k=round(stiffness(model, k, None) / k, 4),
        forces=model.physics.describe_default_forces(), **provenance(os.environ.get("OMP_NUM_THREADS")),
    )
    print(json.dumps(record, indent=1))
    if not args.no_record:
        with open(RECORDS, "a") as fh:
            fh.write(json.dumps(record) + "\n")
    print(f"epoch_s={record['epoch_s']} ten_epochs_min={record['ten_epochs_min']} slope={record['slope']} "
          f"relative_rmse={record['relative_rmse']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
