"""The end-to-end demo on Lennard-Jones argon (the README's first command runs it).

1. Sample LJ argon at 94.4 K with the true potential (cached extxyz; true forces kept for evaluation).
2. Train a denoiser on the coordinates alone (duplication sampler, time budget, resumable).
3. Compare ``kT * eps_hat / sigma`` with the true LJ forces on frames from an independent run.
4. Run Langevin MD with the :class:`~ase_denoise.calculator.DenoiseCalculator` and compare its RDF
   with the reference RDF and with the reference RDF of noised frames (``rho_sigma``, which is what
   MD with the smoothed forces samples, docs/design.md).
5. Save the force parity and RDF plots as PNG files.
"""

from __future__ import annotations

import json
import logging
import os
import time
from typing import Any, Dict, List, Union

import ase.io
import numpy as np

from .analysis import first_peak, force_metrics, plot_force_parity, plot_rdf, rdf, rdf_difference
from .calculator import DenoiseCalculator
from .checkpoint import save_model
from .config import TrainConfig
from .data.frames import to_frame
from .data.reference import lj_argon_frames
from .inference import evaluate_forces
from .md.langevin import run_langevin
from .training.sampler import noised_copies
from .training.trainer import STATE_FILE, ProgressCallback, train

logger = logging.getLogger(__name__)

TEMPERATURE_K = 94.4
NOISE_STD = 0.03  # Angstrom; from a sigma scan (0.1, 0.05, 0.03 A): docs/results/lj-argon.md
#: the quick smoke test's model: smaller than ModelConfig's defaults (which the full demo uses)
QUICK_MODEL_OPTIONS = dict(num_channels=8, max_ell=1, correlation=1)


def run_demo(
    output_dir: str = "demo_output",
    *,
    minutes: float = 7.0,
    md_steps: int = 2000,
    quick: bool = False,
    progress: Union[bool, ProgressCallback] = False,
) -> Dict[str, Any]:
    """Run the demo; returns the figures (also written to ``output_dir/summary.json``)."""
    t_start = time.perf_counter()
    os.makedirs(output_dir, exist_ok=True)
    data_dir = os.path.join(output_dir, "data")
    # quick and full runs train different models: separate run dirs, so neither tries to resume the other
    run_dir = os.path.join(output_dir, "run-quick" if quick else "run")
    n_train, n_test = (24, 4) if quick else (300, 20)
    sample_kw = dict(stride=20, equilibration_steps=200) if quick else {}

    logger.info("sampling LJ argon reference data (cached in %s)", data_dir)
    frames = lj_argon_frames(n_train, TEMPERATURE_K, cache_dir=data_dir, seed=0, progress=bool(progress), **sample_kw)
    test_frames = lj_argon_frames(n_test, TEMPERATURE_K, cache_dir=data_dir, seed=1, progress=bool(progress), **sample_kw)
    t_data = time.perf_counter() - t_start

    train_cfg = TrainConfig(epochs=2 if quick else 40, max_minutes=0.3 if quick else minutes, seed=0)
    options = QUICK_MODEL_OPTIONS if quick else {}
    resume = os.path.exists(os.path.join(run_dir, STATE_FILE))
    t0 = time.perf_counter()
    result = train(
        frames, run_dir, noise_std=NOISE_STD, temperature_K=TEMPERATURE_K, train_config=train_cfg,
        resume=resume, progress=progress, **options,
    )
    t_train = time.perf_counter() - t0
    model = result.model
    model_path = os.path.join(output_dir, "lj-argon-demo.safetensors")
    save_model(model, model_path, training=model.metadata["training"], metrics=model.metadata["metrics"], overwrite=True)

    test = [to_frame(a, model.config.atomic_numbers) for a in test_frames]
    pred, ref = evaluate_forces(model, test)
    forces = force_metrics(pred, ref)
    parity_png = plot_force_parity(
        pred, ref, os.path.join(output_dir, "force_parity.png"),
        title=f"LJ argon, held-out frames: denoiser (sigma={NOISE_STD} A) vs true forces",
    )

    atoms = test_frames[0].copy()
    atoms.calc = DenoiseCalculator(model)
    traj_path = os.path.join(output_dir, "md.traj")
    t0 = time.perf_counter()
    md = run_langevin(
        atoms, temperature_K=TEMPERATURE_K, steps=(100 if quick else md_steps), timestep_fs=10.0,
        friction_per_fs=0.01, trajectory=traj_path, interval=10, seed=0, progress=bool(progress), overwrite=True,
    )
    t_md = time.perf_counter() - t0
    md_frames: List = ase.io.read(traj_path, index=":")
    md_frames = md_frames[len(md_frames) // 5 :]  # drop the first 20% as equilibration
    r_max_rdf = 0.49 * float(min(np.diag(frames[0].cell.array)))
    r, g_ref = rdf(frames, r_max_rdf, n_bins=120)
    _, g_sigma = rdf(noised_copies(frames, NOISE_STD), r_max_rdf, n_bins=120)
    _, g_md = rdf(md_frames, r_max_rdf, n_bins=120)
    diff_ref = rdf_difference(g_md, g_ref, r)
    diff_sigma = rdf_difference(g_md, g_sigma, r)
    rdf_png = plot_rdf(
        {"reference MD (true LJ)": (r, g_ref), f"reference + noise (rho_sigma, sigma={NOISE_STD} A)": (r, g_sigma),
         "denoiser MD": (r, g_md)},
        os.path.join(output_dir, "rdf.png"), title="LJ argon 94.4 K: radial distribution function",
    )
    peak_ref, peak_md = first_peak(r, g_ref), first_peak(r, g_md)
    summary: Dict[str, Any] = {
        "training frames": f"{n_train} (108 atoms each), {result.history[-1]['epoch'] + 1 if result.history else 0} epochs, n_duplicates={train_cfg.n_duplicates}",
        "noise_std (A)": NOISE_STD,
        "held-out force cosine": round(forces["cosine"], 4),
        "held-out relative RMSE": round(forces["relative_rmse"], 4),
        "held-out force RMSE (eV/A)": round(forces["rmse"], 5),
        "true force RMS (eV/A)": round(float(np.sqrt(np.mean(ref**2))), 5),
        "force slope (pred vs true)": round(forces["slope"], 4),
        "MD steps/s": round(md["steps_per_second"], 1),
        "MD min pair distance (A)": round(md["min_distance"], 3),
        "MD mean temperature (K)": round(md["mean_temperature_K"], 1),
        "RDF RMS diff vs reference": round(diff_ref["rms"], 4),
        "RDF RMS diff vs rho_sigma": round(diff_sigma["rms"], 4),
        "RDF first peak ref (r, g)": (round(peak_ref[0], 3), round(peak_ref[1], 3)),
        "RDF first peak MD (r, g)": (round(peak_md[0], 3), round(peak_md[1], 3)),
        "wall time data/train/MD (s)": (round(t_data), round(t_train), round(t_md)),
        "wall time total (s)": round(time.perf_counter() - t_start),
        "model": model_path,
        "force parity plot": parity_png,
        "RDF plot": rdf_png,
        "MD trajectory": traj_path,
    }
    if quick:
        summary["note"] = "quick mode (smoke test): tiny data, model and training; the figures are not meaningful"
    with open(os.path.join(output_dir, "summary.json"), "w") as fh:
        json.dump(summary, fh, indent=1, default=str)
    return summary
