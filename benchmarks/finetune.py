#!/usr/bin/env python
"""Fine-tuning a denoiser from a MACE backbone versus training it from scratch (LJ argon, CPU).

1. Data: Lennard-Jones argon at 94.4 K (108 atoms, periodic, :func:`ase_denoise.data.reference.lj_argon_frames`),
   three independent Langevin runs: ``seed=2`` labelled frames for MACE (energies and forces of the
   true potential), ``seed=0`` unlabelled frames for the denoisers, ``seed=1`` held-out test frames.
2. MACE: a small ``ScaleShiftMACE`` (16 channels, L=1, max_ell 2, correlation 2, 2 layers, r_max 5 A,
   first layer ``RealAgnosticInteractionBlock`` like ase_denoise's backbone) trained with mace's own
   API (``config_from_atoms`` -> ``AtomicData`` -> mace's DataLoader, ``WeightedEnergyForcesLoss``
   with mace's default weights 1/100, Adam, float64 as mace's default) for ``--mace-minutes``, then
   written with ``torch.save(model, path)`` exactly as ``mace_run_train`` writes its ``.model``.
3. (a) ``denoiser_from_mace(path, trust_pickle=True)``: backbone copied, fresh edge head; (b) the same
   ``ModelConfig`` built from scratch. Both trained by denoising the same frames with the same
   :class:`TrainConfig` and seed, on the data ``ase_denoise.train(frames, dir, initial_model=model)``
   prepares (:func:`finetune_data`; a :class:`Trainer` subclass, since the test scores are taken every
   epoch); the fresh head of (a) and every tensor of (b) come from the same seeded initialisation, so
   the only difference is the copied backbone.
4. After every epoch (and before the first) the EMA weights are evaluated on the held-out frames
   against the true LJ forces: cosine similarity and relative RMSE of ``kT * eps_hat / sigma``.

Usage (one torch thread; the table goes to stdout and to ``--output``)::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/finetune.py
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/finetune.py --quick    # a 1-minute smoke run
"""

from __future__ import annotations

import os

if __name__ == "__main__":  # a benchmark process: one thread (set before numpy and torch load; never on import)
    os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse  # noqa: E402
import logging  # noqa: E402
import shlex  # noqa: E402
import shutil  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from typing import Dict, List, Sequence  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

if os.path.dirname(os.path.abspath(__file__)) not in sys.path:  # imported from elsewhere (run as a script: it is)
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402  (MACE builder, mace imports, held-out force figures, machine description)

from ase_denoise.analysis import force_metrics  # noqa: E402
from ase_denoise.config import ModelConfig, TrainConfig  # noqa: E402
from ase_denoise.training import prepare_data  # noqa: E402
from ase_denoise.data.reference import lj_argon_frames  # noqa: E402
from ase_denoise.testing import default_dtype  # noqa: E402
from ase_denoise.training import Trainer  # noqa: E402

logger = logging.getLogger("finetune")

TEMPERATURE_K = 94.4
NOISE_STD = 0.03  # Angstrom, the demo's value
R_MAX = 5.0


# --------------------------------------------------------------------------------------------------
# MACE, trained with mace's own API
# --------------------------------------------------------------------------------------------------
def mace_loader(frames, batch_size: int, shuffle: bool):
    m = common.mace_api()
    keys = m.KeySpecification(info_keys={"energy": "ref_energy"}, arrays_keys={"forces": "ref_forces"})
    table = m.AtomicNumberTable([18])
    dataset = [
        m.data.AtomicData.from_config(m.data.config_from_atoms(a, key_specification=keys), z_table=table, cutoff=R_MAX)
        for a in frames
    ]
    return m.torch_geometric.dataloader.DataLoader(dataset=dataset, batch_size=batch_size, shuffle=shuffle, drop_last=shuffle)


def train_mace(frames, minutes: float, seed: int = 0) -> tuple:
    """ScaleShiftMACE energy+forces model trained for ``minutes`` (float64). Returns (model, info)."""
    m = common.mace_api()
    with default_dtype(torch.float64):
        torch.manual_seed(seed)  # mace's data loader shuffles with torch's global generator
        loader = mace_loader(frames, batch_size=4, shuffle=True)
        stats_loader = mace_loader(frames, batch_size=8, shuffle=False)
        atomic_energies = np.zeros(1)  # an isolated LJ atom has zero energy
        mean, rms = m.modules.compute_mean_rms_energy_forces(stats_loader, atomic_energies)
        # 16x0e+16x1o, max_ell 2, correlation 2, 2 layers, radial MLP [64, 64, 64] (ModelConfig's defaults)
        config = ModelConfig(
            atomic_numbers=[18], r_max=R_MAX, num_channels=16, max_L=1, max_ell=2, correlation=2, num_interactions=2,
            avg_num_neighbors=float(m.modules.compute_avg_num_neighbors(stats_loader)),
        )
        model = common.mace_energy_model(config, atomic_energies=atomic_energies, scale=rms, shift=mean)
        loss_fn = m.modules.WeightedEnergyForcesLoss(energy_weight=1.0, forces_weight=100.0)
        optimizer = torch.optim.Adam(model.parameters(), lr=5e-3, amsgrad=True)
        start, steps, epochs, losses = time.perf_counter(), 0, 0, []
        while time.perf_counter() - start < minutes * 60.0:
            for batch in loader:
                loss = loss_fn(pred=model(batch.to_dict(), training=True), ref=batch)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                losses.append(loss.item())
                steps += 1
                if time.perf_counter() - start >= minutes * 60.0:
                    break
            epochs += 1
            logger.info("MACE epoch %d: %d steps, loss %.5f, %.0f s", epochs, steps, np.mean(losses[-20:]), time.perf_counter() - start)
    info = dict(steps=steps, epochs=epochs, seconds=time.perf_counter() - start, final_loss=float(np.mean(losses[-20:])))
    return model.eval(), info


def mace_test_forces(model, frames) -> Dict[str, float]:
    with default_dtype(torch.float64):
        pred = []
        for batch in mace_loader(frames, batch_size=4, shuffle=False):
            pred.append(model(batch.to_dict(), training=False)["forces"].detach().numpy())
    return force_metrics(np.concatenate(pred), np.concatenate([a.arrays["ref_forces"] for a in frames]))


# --------------------------------------------------------------------------------------------------
# Denoisers
# --------------------------------------------------------------------------------------------------
class TestEvalTrainer(Trainer):
    """A Trainer that also scores its EMA weights on held-out frames after every epoch."""

    def __init__(self, *args, test_frames: Sequence, **kwargs):
        super().__init__(*args, **kwargs)
        self.test_frames = list(test_frames)
        self.test_rows: List[Dict[str, float]] = []
        self._score(epoch=0)

    def _score(self, epoch: int) -> None:
        m = common.force_figures(self.eval_model(), self.test_frames, self.cfg.batch_size)
        self.test_rows.append(dict(epoch=epoch, cosine=m["cosine"], relative_rmse=m["relative_rmse"],
                                   slope=m["slope"], elapsed_s=self.elapsed_s))
        logger.info("%s epoch %d: test cosine %.4f relative RMSE %.4f", self.output_dir, epoch, m["cosine"], m["relative_rmse"])

    def _end_epoch(self) -> bool:
        stop = super()._end_epoch()
        self._score(epoch=self.epoch)
        return stop


def finetune_data(model, frames):
    """Architecture, physics and converted frames for training ``model`` further on ``frames``: what
    ``ase_denoise.train(frames, dir, initial_model=model)`` derives (the model's architecture, element
    table and avg_num_neighbors; its noise level; the frames' temperature, else the model's). Spelled
    out here because the per-epoch test scores need a :class:`Trainer` subclass, which ``train`` does
    not take."""
    architecture = model.config.to_dict()
    table = architecture.pop("atomic_numbers")
    return prepare_data(frames, noise_std=model.noise_levels, atomic_numbers=table,
                        default_temperature_K=model.temperature_K, **architecture)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mace-minutes", type=float, default=4.0, help="MACE training budget (min)")
    parser.add_argument("--epochs", type=int, default=15, help="denoiser epochs (both runs)")
    parser.add_argument("--n-mace", type=int, default=60, help="labelled frames for MACE (seed 2)")
    parser.add_argument("--n-train", type=int, default=100, help="unlabelled frames for the denoisers (seed 0)")
    parser.add_argument("--n-test", type=int, default=20, help="held-out frames (seed 1)")
    parser.add_argument("--duplicates", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0, help="TrainConfig seed (split, noise, fresh weights) of both runs")
    parser.add_argument("--work-dir", default="runs/finetune_benchmark")
    parser.add_argument("--output", default=None, help="markdown file (default benchmarks/finetune.md; --quick: in --work-dir)")
    parser.add_argument("--mace-model", default=None, help="reuse this MACE .model (written by an earlier run) instead of training one")
    parser.add_argument("--append", action="store_true", help="append the section to --output instead of overwriting it")
    parser.add_argument("--quick", action="store_true", help="tiny smoke run (about a minute)")
    args = parser.parse_args(argv)
    if args.quick:
        args.mace_minutes, args.epochs, args.n_mace, args.n_train, args.n_test = 0.2, 2, 8, 12, 4
        args.work_dir = args.work_dir + "_quick"
    if args.output is None:
        here = os.path.dirname(os.path.abspath(__file__))
        args.output = os.path.join(args.work_dir, "finetune.md") if args.quick else os.path.join(here, "finetune.md")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", stream=sys.stdout)
    common.single_thread(1)
    warnings.simplefilter("ignore")  # TorchScript notices of e3nn/mace blocks at every model build
    t_start = time.perf_counter()

    data_dir = os.path.join(args.work_dir, "data")
    kw = dict(stride=20, equilibration_steps=200, melt_steps=100) if args.quick else {}
    mace_frames = lj_argon_frames(args.n_mace, TEMPERATURE_K, seed=2, cache_dir=data_dir, **kw)
    frames = lj_argon_frames(args.n_train, TEMPERATURE_K, seed=0, cache_dir=data_dir, **kw)
    test_frames = lj_argon_frames(args.n_test, TEMPERATURE_K, seed=1, cache_dir=data_dir, **kw)
    t_data = time.perf_counter() - t_start

    from ase_denoise.integrations.mace import denoiser_from_mace, load_mace_model

    if args.mace_model:
        model_path = args.mace_model
        mace_model = load_mace_model(model_path, trust_pickle=True)  # our own file from an earlier run
        mace_info = dict(reused=model_path)
    else:
        model_path = os.path.join(args.work_dir, "lj_argon_mace.model")
        mace_model, mace_info = train_mace(mace_frames, args.mace_minutes)
        torch.save(mace_model, model_path)  # what mace_run_train writes
    mace_metrics = mace_test_forces(mace_model, test_frames)
    logger.info("MACE on test frames: %s", mace_metrics)

    adapted, report = denoiser_from_mace(model_path, noise_std=NOISE_STD, temperature_K=TEMPERATURE_K, trust_pickle=True, seed=args.seed)
    logger.info("%s", report.summary())
    config, physics, converted = finetune_data(adapted, frames)
    cfg = TrainConfig(n_duplicates=args.duplicates, epochs=args.epochs, batch_size=4, lr=5e-3, valid_fraction=0.1, seed=args.seed)

    runs = {}
    for name, initial in (("finetuned", adapted), ("scratch", None)):
        out = os.path.join(args.work_dir, name)
        shutil.rmtree(out, ignore_errors=True)
        t0 = time.perf_counter()
        trainer = TestEvalTrainer(config, physics, converted, out, cfg, initial_model=initial, test_frames=test_frames)
        trainer.fit()
        runs[name] = dict(rows=trainer.test_rows, seconds=time.perf_counter() - t0)

    command = "OMP_NUM_THREADS=1 .venv/bin/python benchmarks/finetune.py " + " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
    md = render(args, cfg, report, mace_info, mace_metrics, runs, t_data, time.perf_counter() - t_start, command.strip())
    print(md)
    with open(args.output, "a" if args.append else "w") as fh:
        fh.write(("\n" if args.append else "") + md)
    logger.info("wrote %s", args.output)
    return 0


def render(args, cfg, report, mace_info, mace_metrics, runs, t_data, total_s, command) -> str:
    ft, sc = runs["finetuned"]["rows"], runs["scratch"]["rows"]
    title = f"{args.n_train} training frames, {args.epochs} epochs, seed {args.seed}"
    lines = [
        f"{'##' if args.append else '#'} Denoiser fine-tuned from a MACE backbone vs trained from scratch: {title}",
        "",
        "LJ argon, 94.4 K, 108 atoms (periodic). Force error of `kT * eps_hat / sigma` (sigma = "
        f"{NOISE_STD} A) against the true LJ forces on {args.n_test} held-out frames from an independent run "
        "(EMA weights, clean positions). Epoch 0 is before training. Same frames, `ModelConfig`, "
        "`TrainConfig` and seed for both runs; the fine-tuned run starts from the copied MACE backbone.",
        "",
        "| epoch | fine-tuned cosine | fine-tuned rel. RMSE | scratch cosine | scratch rel. RMSE |",
        "| ---: | ---: | ---: | ---: | ---: |",
    ]
    for a, b in zip(ft, sc):
        lines.append(f"| {a['epoch']} | {a['cosine']:.4f} | {a['relative_rmse']:.4f} | {b['cosine']:.4f} | {b['relative_rmse']:.4f} |")
    best = lambda rows: max(rows, key=lambda r: r["cosine"])  # noqa: E731
    lines += [
        "",
        f"Best epoch: fine-tuned cosine {best(ft)['cosine']:.4f} (epoch {best(ft)['epoch']}), "
        f"scratch cosine {best(sc)['cosine']:.4f} (epoch {best(sc)['epoch']}). "
        f"Training time: fine-tuned {runs['finetuned']['seconds']:.0f} s, scratch {runs['scratch']['seconds']:.0f} s.",
        "",
        f"{'###' if args.append else '##'} Setup",
        "",
        (f"* MACE: the model written by an earlier run of this script (`{mace_info['reused']}`). "
         if "reused" in mace_info else
         f"* MACE (`ScaleShiftMACE`, 16x0e+16x1o, max_ell 2, correlation 2, 2 layers, r_max {R_MAX} A, radial MLP "
         "[64, 64, 64], first layer `RealAgnosticInteractionBlock`), trained with mace's API on "
         f"{args.n_mace} labelled frames (seed 2) with `WeightedEnergyForcesLoss` (1, 100), Adam lr 5e-3, "
         f"batch 4, float64: {mace_info['steps']} steps ({mace_info['epochs']} epochs) in {mace_info['seconds']:.0f} s. ")
        + f"Its own forces on the test frames: cosine {mace_metrics['cosine']:.4f}, relative RMSE "
        f"{mace_metrics['relative_rmse']:.4f}.",
        f"* Transfer (`denoiser_from_mace(path, trust_pickle=True)` on the saved `.model`): "
        f"{len(report.transferred)} tensors, {report.n_params_transferred} of {report.n_params} trainable "
        f"parameters ({100 * report.fraction_transferred:.1f}%); left fresh: "
        f"{', '.join(sorted({n.name.rsplit('.', 2)[0] for n in report.skipped}))}; MACE tensors not used: "
        f"{', '.join(sorted({n.name.split('.')[0] for n in report.unused}))}.",
        f"* Denoisers: {args.n_train} unlabelled frames (seed 0; {cfg.valid_fraction:.0%} held out for validation "
        f"by frame), `TrainConfig(n_duplicates={cfg.n_duplicates}, epochs={cfg.epochs}, batch_size={cfg.batch_size}, "
        f"lr={cfg.lr}, ema_decay={cfg.ema_decay}, lr_schedule='{cfg.lr_schedule}', seed={cfg.seed}, dtype='{cfg.dtype}')`, "
        "edge head.",
        f"* Data generation {t_data:.0f} s; total wall time {total_s / 60:.1f} min.",
        "",
        f"Command: `{command}`",
        "",
        f"Machine: {common.machine()}; load average {common.load_average()} at the end (other jobs shared the cores).",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
