#!/usr/bin/env python
"""Reproduce a shipped model of the zoo (``models/``): one command per model.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/train_zoo.py lj-argon-94K

does, for the named recipe:

1. sample the training frames (and an independent held-out run) with the true potential
   (:func:`ase_denoise.data.reference.lj_argon_frames`, cached under ``--work-dir``);
2. train the denoiser on the coordinates alone for a fixed number of epochs (no wall-clock stop,
   so the run is deterministic; an interrupted run resumes when the same command is run again);
3. evaluate it: force cosine, relative RMSE and RMSE (eV/Angstrom) of ``kT * eps_hat / sigma``
   against the true forces on the held-out frames, and the RDF of Langevin MD run with the learned
   calculator against the reference RDF (and against the RDF of the noised reference frames,
   ``rho_sigma``, which is what MD with the sigma-smoothed forces of a one-level model samples;
   docs/design.md, "The estimator"; a model trained at several levels is corrected to sigma -> 0);
4. write ``models/<name>/<name>.safetensors`` and the model card ``models/<name>/README.md``,
   and add or replace the model's entry (file, sha256, size, summary, card) in ``models/registry.json``.

Weights are reproducible (same seeds, same number of steps, one torch thread); the file's bytes are
not (safetensors writes its metadata table in hash order), so the sha256 in the registry identifies
the shipped file, not every re-run. ``--models-dir`` writes somewhere other than the repository's
``models/`` (e.g. to compare a re-run with the shipped model). ``--quick`` is a smoke test of the
pipeline (a few frames, one epoch, a short MD); its zoo goes under ``--work-dir`` unless
``--models-dir`` is given.
"""

from __future__ import annotations

import os

if __name__ == "__main__":  # a benchmark process: one thread (set before numpy and torch load; never on import)
    os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import shlex  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from typing import Any, Dict  # noqa: E402

import numpy as np  # noqa: E402

if os.path.dirname(os.path.abspath(__file__)) not in sys.path:  # imported from elsewhere (run as a script: it is)
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402  (held-out force figures, one-thread setting)
import fit_systems  # noqa: E402  (the card's paragraph on fit)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
logger = logging.getLogger("train_zoo")

# ----------------------------------------------------------------------------------------------
# Recipes. Changing one changes the model: re-run the command and commit the new files.
# ----------------------------------------------------------------------------------------------
RECIPES: Dict[str, Dict[str, Any]] = {
    "lj-argon-94K": dict(
        summary="Lennard-Jones liquid argon at 94.4 K (108 atoms, periodic), vector head, noise ladder "
                "0.025 / 0.04 / 0.06 A, expansion head: the sigma -> 0 forces in one pass",
        system="lj_argon",
        temperature_K=94.4,
        # Angstrom: the ladder of the README's LJ study (3 seeds); the one-level model before it used 0.03 A
        noise_std=[0.025, 0.04, 0.06],
        n_train=300,  # frames of the seed-0 run (10% of them held out for validation by frame)
        n_test=40,  # frames of the independent seed-1 run, never seen in training
        train_seed=0,
        test_seed=1,
        model_options=dict(
            head="vector", r_max=5.0, num_channels=16, max_ell=2, max_L=1, correlation=2, num_interactions=2,
            noise_expansion=2,  # the head returns F_0 + s^2 F_1 + s^4 F_2: the default forces are F_0, one pass
        ),
        train_config=dict(
            n_duplicates=4, epochs=90, batch_size=4, lr=5e-3, valid_fraction=0.1, seed=0, dtype="float32"
        ),
        md=dict(steps=3000, timestep_fs=10.0, friction_per_fs=0.01, interval=10, seed=0),
    ),
}
#: --quick: a smoke test of the pipeline (not a model): few, short-sampled frames, one epoch, a short MD
QUICK = dict(n_train=12, n_test=4, sampling=dict(stride=20, equilibration_steps=200, melt_steps=100),
             epochs=1, md_steps=50)


def _sample(recipe: Dict[str, Any], data_dir: str, progress: bool):
    from ase_denoise.data.reference import lj_argon_frames

    if recipe["system"] != "lj_argon":
        raise ValueError(f"unknown system {recipe['system']!r}")
    T = recipe["temperature_K"]
    kw = recipe.get("sampling", {})
    train = lj_argon_frames(recipe["n_train"], T, cache_dir=data_dir, seed=recipe["train_seed"], progress=progress, **kw)
    test = lj_argon_frames(recipe["n_test"], T, cache_dir=data_dir, seed=recipe["test_seed"], progress=progress, **kw)
    return train, test


def evaluate(model, recipe: Dict[str, Any], train_frames, test_frames, work_dir: str) -> Dict[str, Any]:
    """Held-out force figures and MD RDF figures (units in the keys)."""
    import ase.io

    from ase_denoise.analysis import first_peak, rdf, rdf_difference
    from ase_denoise.calculator import DenoiseCalculator
    from ase_denoise.md import run_langevin
    from ase_denoise.training.sampler import noised_copies

    fm = common.force_figures(model, test_frames)

    md_cfg = recipe["md"]
    atoms = test_frames[0].copy()
    atoms.calc = DenoiseCalculator(model)
    traj = os.path.join(work_dir, "md.traj")
    md = run_langevin(
        atoms, temperature_K=recipe["temperature_K"], steps=md_cfg["steps"], timestep_fs=md_cfg["timestep_fs"],
        friction_per_fs=md_cfg["friction_per_fs"], trajectory=traj, interval=md_cfg["interval"],
        seed=md_cfg["seed"], overwrite=True,
    )
    md_frames = ase.io.read(traj, index=":")
    md_frames = md_frames[len(md_frames) // 5 :]  # first 20% dropped as equilibration
    r_cut = 0.49 * float(min(np.diag(train_frames[0].cell.array)))
    r, g_ref = rdf(train_frames, r_cut, n_bins=120)
    levels = list(np.atleast_1d(recipe["noise_std"]))
    # rho_sigma is what a one-level model's MD samples; a multi-level model is corrected to sigma -> 0
    _, g_sigma = rdf(noised_copies(train_frames, levels[0]), r_cut, n_bins=120) if len(levels) == 1 else (r, None)
    _, g_md = rdf(md_frames, r_cut, n_bins=120)
    _, g_test = rdf(test_frames, r_cut, n_bins=120)  # independent reference run: the statistical floor
    d_ref = rdf_difference(g_md, g_ref, r)
    d_sigma = rdf_difference(g_md, g_sigma, r) if g_sigma is not None else {"rms": float("nan")}
    d_floor = rdf_difference(g_test, g_ref, r)
    (p_ref_r, p_ref_g), (p_md_r, p_md_g) = first_peak(r, g_ref), first_peak(r, g_md)
    return {
        "n_test_frames": len(test_frames),
        "force_cosine": fm["cosine"],
        "force_relative_rmse": fm["relative_rmse"],
        "force_rmse_eV_per_A": fm["rmse"],
        "true_force_rms_eV_per_A": fm["ref_rms"],
        "force_slope": fm["slope"],
        "md_steps": md_cfg["steps"],
        "md_timestep_fs": md_cfg["timestep_fs"],
        "md_mean_temperature_K": md["mean_temperature_K"],
        "md_min_pair_distance_A": md["min_distance"],
        "md_steps_per_second": md["steps_per_second"],
        "rdf_rms_diff_vs_reference": d_ref["rms"],
        "rdf_max_abs_diff_vs_reference": d_ref["max_abs"],
        "rdf_rms_diff_vs_rho_sigma": d_sigma["rms"],
        "rdf_rms_diff_independent_reference_run": d_floor["rms"],
        "rdf_first_peak_reference_A_g": [p_ref_r, p_ref_g],
        "rdf_first_peak_md_A_g": [p_md_r, p_md_g],
    }


def _fmt(x: float, digits: int = 4) -> str:
    return "—" if x != x else f"{x:.{digits}g}"  # NaN: not applicable


def _history_line(history, selected: int) -> str:
    """How the validation force error (monitoring only) evolved: where training stopped helping."""
    rows = [h for h in history if "force_relative_rmse" in h]
    if not rows:
        return "- (no validation force figures: the frames carried no reference forces)"
    def at(e):
        return next((h["force_relative_rmse"] for h in rows if int(h["epoch"]) == e), float("nan"))
    late = [h["force_relative_rmse"] for h in rows[len(rows) // 3 :]]
    marks = sorted({0, 5, 10, selected, int(rows[-1]["epoch"])})
    return (
        "- Validation force relative RMSE (validation frames; reference forces used for monitoring only) by epoch: "
        + ", ".join(f"{e}: {_fmt(at(e), 3)}" for e in marks)
        + f"; over the last two thirds of the run it stayed between {_fmt(min(late), 3)} and {_fmt(max(late), 3)}."
    )


def write_card(path: str, name: str, recipe: Dict[str, Any], model, figures: Dict[str, Any], history,
               file_name: str, sha256: str, size_bytes: int, command: str, train_minutes: float) -> None:
    cfg, physics = model.config, model.physics
    sigma = ", ".join(f"{s:g}" for s in model.noise_levels)
    tc = recipe["train_config"]
    epochs_done = len(history)
    last = history[-1] if history else {}
    arch = ", ".join(f"{k}={v}" for k, v in recipe["model_options"].items())
    n_params = sum(p.numel() for p in model.parameters())
    selected = int(model.metadata["metrics"].get("epoch", epochs_done - 1))  # type: ignore[attr-defined]
    from ase_denoise.config import TrainConfig
    from ase_denoise.training.result import kept_weights

    kept = kept_weights(TrainConfig(**tc))
    f = figures
    lines = [
        f"# {name}",
        "",
        recipe["summary"] + ".",
        "",
        "A MACE denoiser trained on coordinates only; `DenoiseCalculator.from_zoo(\"" + name + "\")` gives",
        "forces `kT * eps_hat / sigma` in eV/Angstrom (forces only: no energy, no stress).",
        "",
        "```python",
        "from ase_denoise import DenoiseCalculator",
        f"atoms.calc = DenoiseCalculator.from_zoo(\"{name}\")   # sha256-checked, no network",
        "```",
        "",
        "## Training data",
        "",
        f"- {recipe['n_train']} frames of a 108-atom Lennard-Jones argon liquid (fcc 3x3x3 melted, periodic cubic "
        "box of 17.34 Angstrom at 1.374 g/cm^3), sampled with the TRUE LJ potential "
        "(epsilon 0.0104 eV, sigma 3.40 Angstrom, cutoff 8.5 Angstrom, shifted) by ASE Langevin MD: "
        "10 fs step, friction 0.01/fs, 3 ps melt at 300 K, 10 ps equilibration, one frame every 1 ps "
        f"(`ase_denoise.data.reference.lj_argon_frames(n_frames={recipe['n_train']}, temperature_K={recipe['temperature_K']}, "
        f"seed={recipe['train_seed']})`).",
        "- The denoiser saw positions only; the true forces were kept for evaluation.",
        f"- Temperature: **{physics.temperature_K} K** (kT = {physics.kT:.6g} eV).",
        f"- Held-out test set: {recipe['n_test']} frames of an independent run "
        f"(seed={recipe['test_seed']}), never seen in training.",
        "",
        "## Settings",
        "",
        f"- noise_std (sigma): **{sigma} Angstrom**; n_duplicates: **{tc['n_duplicates']}** "
        "(independent noise draws per frame per epoch).",
        f"- Training: {epochs_done} epochs (of {tc['epochs']}), batch size {tc['batch_size']}, AdamW lr {tc['lr']} "
        f"with cosine schedule, EMA 0.99, {int(tc['valid_fraction'] * 100)}% of frames held out for validation "
        f"(split by frame), seed {tc['seed']}, {tc['dtype']}; {train_minutes:.1f} min of training on one CPU thread "
        "(the demo trains 7 minutes).",
        f"- Weights: the EMA weights of epoch {selected} (" + (
            "the last: training keeps the last epoch's weights for a denoising loss, whose validation loss does not "
            "rank epochs; docs/design.md, \"Which weights are kept\"" if kept == "last" else
            "lowest validation denoising loss") + "; the epoch numbering starts at 0).",
        f"- Architecture: MACE backbone, {arch}; radial_mlp {cfg.radial_mlp}"
        + (f", edge_mlp {cfg.edge_mlp}" if cfg.head == "edge" else "") + ", "
        f"avg_num_neighbors {cfg.avg_num_neighbors:.4g} (measured on the data); element table {cfg.symbols}; "
        f"pbc {list(physics.pbc)}; {n_params} parameters.",
        f"- Final validation denoising loss {last.get('valid_loss', float('nan')):.5f} (about 1 is the floor: "
        "the noise is mostly unpredictable; judge the model by the figures below).",
        _history_line(history, selected),
        "",
        "## Measured figures",
        "",
        f"Held-out frames ({f['n_test_frames']} frames x 108 atoms), predicted vs true LJ forces at the clean positions:",
        "",
        "| figure | value |",
        "| --- | --- |",
        f"| force cosine | {_fmt(f['force_cosine'])} |",
        f"| relative RMSE (RMSE / RMS true force) | {_fmt(f['force_relative_rmse'])} |",
        f"| force RMSE (eV/Angstrom) | {_fmt(f['force_rmse_eV_per_A'])} |",
        f"| RMS true force (eV/Angstrom) | {_fmt(f['true_force_rms_eV_per_A'])} |",
        f"| slope, predicted vs true | {_fmt(f['force_slope'])} |",
        "",
        f"Langevin MD with the learned calculator ({f['md_steps']} steps of {f['md_timestep_fs']} fs, friction "
        f"{recipe['md']['friction_per_fs']}/fs, from the first held-out frame; first 20% dropped), RDF up to "
        "0.49 box length, 120 bins:",
        "",
        "| figure | value |",
        "| --- | --- |",
        f"| RDF RMS difference vs reference MD (true LJ) | {_fmt(f['rdf_rms_diff_vs_reference'])} |",
        f"| RDF max abs difference vs reference | {_fmt(f['rdf_max_abs_diff_vs_reference'])} |",
        f"| RDF RMS difference vs noised reference (rho_sigma) | {_fmt(f['rdf_rms_diff_vs_rho_sigma'])} |",
        f"| RDF RMS difference, held-out reference run ({f['n_test_frames']} frames, true LJ) vs reference: "
        f"sampling noise | {_fmt(f['rdf_rms_diff_independent_reference_run'])} |",
        f"| first peak, reference (r Angstrom, g) | {_fmt(f['rdf_first_peak_reference_A_g'][0])}, "
        f"{_fmt(f['rdf_first_peak_reference_A_g'][1])} |",
        f"| first peak, denoiser MD (r Angstrom, g) | {_fmt(f['rdf_first_peak_md_A_g'][0])}, "
        f"{_fmt(f['rdf_first_peak_md_A_g'][1])} |",
        f"| MD mean temperature (K) | {_fmt(f['md_mean_temperature_K'])} |",
        f"| MD minimum pair distance (Angstrom) | {_fmt(f['md_min_pair_distance_A'])} |",
        "",
        *(["The learned forces are the sigma-smoothed forces (bias O(sigma^2), docs/design.md \"The estimator\"): MD with",
           "them samples rho_sigma, so its RDF is compared both with the reference and with the RDF of the noised reference",
           "frames."] if len(model.noise_levels) == 1 else
          (["The network returns, in one pass, the coefficients of the forces' expansion in sigma^2 fitted over the trained",
            "levels (docs/noise-ladder.md, \"The expansion head\"); the calculator's default is its sigma -> 0 term."]
           if cfg.noise_expansion else
           ["The calculator evaluates the trained levels in one batched forward and extrapolates the forces to sigma -> 0",
            "(docs/noise-ladder.md)."])
          + ["`DenoiseCalculator.from_zoo(name, forces=ForcesChoice(noise_std=s))` gives one level's smoothed forces.",
             "MD with the sigma -> 0 forces samples the unsmoothed density, so there is no rho_sigma to compare with (—)."]),
        "",
        "## Reproduce",
        "",
        "```bash",
        command,
        "```",
        "",
        "This samples the data (cached under the work directory), trains, evaluates, and rewrites this card, the",
        "weights and the registry entry. The weights are reproducible; the file's bytes are not (safetensors writes",
        "its metadata in hash order), so a re-run gets a new sha256.",
        "",
        fit_systems.card_note(name),
        "",
        "## File",
        "",
        f"- `{file_name}`: {size_bytes} bytes",
        f"- sha256: `{sha256}`",
        "",
    ]
    with open(path, "w") as fh:
        fh.write("\n".join(lines))


def build(name: str, work_dir: str, models_dir: str, progress: bool = False,
          epochs: int = 0, md_steps: int = 0, quick: bool = False) -> Dict[str, Any]:
    """Run the recipe ``name`` end to end; returns the registry entry written. ``quick``: the
    :data:`QUICK` settings (a smoke test; its data and run go to ``<work_dir>/<name>-quick``)."""
    from ase_denoise.checkpoint import save_model
    from ase_denoise.config import TrainConfig
    from ase_denoise.training import STATE_FILE, train

    recipe = json.loads(json.dumps(RECIPES[name]))  # deep copy
    if quick:
        recipe.update(n_train=QUICK["n_train"], n_test=QUICK["n_test"], sampling=QUICK["sampling"])
        recipe["train_config"]["epochs"] = QUICK["epochs"]
        recipe["md"]["steps"] = QUICK["md_steps"]
    if epochs:
        recipe["train_config"]["epochs"] = epochs
    if md_steps:
        recipe["md"]["steps"] = md_steps
    work_dir = os.path.abspath(os.path.join(work_dir, name + ("-quick" if quick else "")))
    run_dir = os.path.join(work_dir, "run")
    os.makedirs(work_dir, exist_ok=True)
    t0 = time.perf_counter()
    train_frames, test_frames = _sample(recipe, os.path.join(work_dir, "data"), progress)
    logger.info("data ready in %.0f s", time.perf_counter() - t0)

    resume = os.path.exists(os.path.join(run_dir, STATE_FILE))
    result = train(
        train_frames, run_dir, noise_std=recipe["noise_std"], temperature_K=recipe["temperature_K"],
        train_config=TrainConfig(**recipe["train_config"]), resume=resume, progress=progress,
        **recipe["model_options"],
    )
    if result.stopped != "epochs" or len(result.history) < recipe["train_config"]["epochs"]:
        raise RuntimeError(f"training stopped early ({result.stopped}); run the command again to resume")
    train_minutes = float(result.history[-1]["elapsed_s"]) / 60.0
    model = result.model
    logger.info("trained %d epochs in %.1f min; evaluating", len(result.history), train_minutes)

    figures = evaluate(model, recipe, train_frames, test_frames, work_dir)
    logger.info("figures: %s", json.dumps(figures))

    from ase_denoise import zoo

    out_dir = os.path.join(models_dir, name)
    os.makedirs(out_dir, exist_ok=True)
    file_name = f"{name}.safetensors"
    weights = os.path.join(out_dir, file_name)
    meta = model.metadata  # type: ignore[attr-defined]
    training = dict(meta["training"], zoo_name=name, recipe=recipe, selected_epoch_metrics=meta["metrics"])
    save_model(model, weights, training=training, metrics=figures, overwrite=True)
    os.chmod(weights, 0o644)  # save_model writes through a private temporary file (0600)
    sha, size = zoo.sha256_file(weights), os.path.getsize(weights)
    command = "OMP_NUM_THREADS=1 .venv/bin/python benchmarks/train_zoo.py " + shlex.quote(name)
    if quick or epochs or md_steps:  # a test build: say so in the card
        command += (" --quick" if quick else "") + (f" --epochs {epochs}" if epochs else "") + (
            f" --md-steps {md_steps}" if md_steps else "")
    write_card(os.path.join(out_dir, "README.md"), name, recipe, model, figures, result.history,
               file_name, sha, size, command, train_minutes)
    with open(os.path.join(work_dir, "figures.json"), "w") as fh:
        json.dump(figures, fh, indent=1)
    entry = zoo.ModelEntry(
        name=name, file=f"{name}/{file_name}", sha256=sha, size_bytes=size, summary=recipe["summary"],
        card=f"{name}/README.md", temperature_K=recipe["temperature_K"], noise_std=recipe["noise_std"],
        command=command,
    )
    zoo.update_registry(entry, models_dir)
    return entry.to_dict()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("name", choices=sorted(RECIPES), help="model to build")
    p.add_argument("--work-dir", default=os.path.join(REPO, "runs", "zoo"),
                   help="data cache and training run (default runs/zoo/, git-ignored); re-running resumes")
    p.add_argument("--models-dir", default=None,
                   help="zoo directory to write (default models/; with --quick: WORK_DIR/quick-models)")
    p.add_argument("--epochs", type=int, default=0, help="override the recipe's epochs (testing only)")
    p.add_argument("--md-steps", type=int, default=0, help="override the recipe's MD steps (testing only)")
    p.add_argument("--quick", action="store_true",
                   help=f"smoke test: {QUICK['n_train']} + {QUICK['n_test']} short-sampled frames, "
                        f"{QUICK['epochs']} epoch, {QUICK['md_steps']} MD steps (about a minute)")
    p.add_argument("--progress", action="store_true", help="progress bars")
    args = p.parse_args(argv)
    if args.models_dir is None:
        args.models_dir = os.path.join(args.work_dir, "quick-models") if args.quick else os.path.join(REPO, "models")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    common.single_thread(1)
    entry = build(args.name, args.work_dir, args.models_dir, progress=args.progress,
                  epochs=args.epochs, md_steps=args.md_steps, quick=args.quick)
    print(json.dumps(entry, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
