#!/usr/bin/env python
"""The coarse-grained LiCl study: denoising vs force matching, duplication, noise level.

One command regenerates every number and plot of ``benchmarks/licl/README.md`` from the committed
data set ``licl_cg_300K.npz`` (made by ``make_data.py``)::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/licl/study.py --jobs 2

Steps (each skipped when its output exists, so an interrupted study resumes where it stopped):

1. ``reference``: ion-ion RDFs (Li-Li, Li-Cl, Cl-Cl) of the all-atom run, with block-averaged
   standard errors (5 blocks) -> ``reference_rdf.npz`` / ``reference_rdf.png`` (committed).
2. one training run per entry of :data:`RUNS` (``runs/licl/<name>/``, resumable), then CG Langevin
   MD at 300 K through ASE with the learned calculator, then RDFs and stability figures ->
   ``results/<name>.json``.
3. ``report``: ``results.md`` (the table) and the RDF plots ``rdf_*.png``, ``rdf_error_*.png``.

Data split: the last 200 frames (200 ps) are the test set for force errors; "all frames" means the
other 1800; "500 frames" means 500 of them evenly spaced over the same 1.8 ns.
``--publish`` copies the best denoiser to ``models/licl-cg-300K/`` with its card.
"""
from __future__ import annotations

import os

if __name__ == "__main__":  # a study process: one thread (set before numpy and torch load; never on import)
    os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse  # noqa: E402
import functools  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any, Dict, List, Sequence, Tuple  # noqa: E402

import numpy as np  # noqa: E402
from ase import Atoms  # noqa: E402

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
DATA = HERE / "licl_cg_300K.npz"
REFERENCE = HERE / "reference_rdf.npz"
RESULTS = HERE / "results"
OUT = HERE
PAIRS = (("Li", "Li"), ("Li", "Cl"), ("Cl", "Cl"))
RUNS_DIR = REPO / "runs" / "licl"
N_TEST = int(os.environ.get("LICL_N_TEST", 200))
N_BLOCKS = 5
BIN_WIDTH = 0.1  # Angstrom
TEMPERATURE_K = 300.0
MODEL = dict(r_max=7.0, num_channels=16, max_ell=2, correlation=2, head="vector")
DENOISE_EPOCHS = 30  # at 500 frames; every run sees each frame epochs * n_duplicates times
#: the ions' periodic Coulomb sum screened by the solvent: unit charges, eps_r 94 (published estimates of
#: TIP3P's static dielectric constant lie around 90-100), Ewald with LAMMPS' coul/long 10 + pppm settings
EWALD_PRIOR = dict(charges={3: 1.0, 17: -1.0}, relative_permittivity=94.0, alpha=0.3, r_cut=10.0, accuracy=1e-6)

# name -> settings. "frames": 500 or "all"; loss: denoising | force_matching | hybrid.
RUNS: Dict[str, Dict[str, Any]] = {
    **{f"dn-k{k}": dict(loss="denoising", frames=500, noise_std=0.26, n_duplicates=k, epochs=DENOISE_EPOCHS)
       for k in (1, 2, 4, 8)},
    **{f"dn-s{s:.2f}": dict(loss="denoising", frames=500, noise_std=s, n_duplicates=4, epochs=DENOISE_EPOCHS)
       for s in (0.03, 0.05, 0.1, 0.2, 0.3, 0.4)},
    # the duplication study again at sigma 0.1 A (at 0.26 A most runs blow up; see README.md)
    **{f"dn-s0.10-k{k}": dict(loss="denoising", frames=500, noise_std=0.1, n_duplicates=k, epochs=DENOISE_EPOCHS)
       for k in (1, 2, 8)},
    # force matching: same architecture and the same number of optimiser steps as dn-k4
    "fm-500": dict(loss="force_matching", frames=500, noise_std=0.26, n_duplicates=1, epochs=4 * DENOISE_EPOCHS),
    "fm-all": dict(loss="force_matching", frames="all", noise_std=0.26, n_duplicates=1,
                   epochs=round(4 * DENOISE_EPOCHS * 500 / 1800)),
    "hybrid-w0.1": dict(loss="hybrid", frames=500, noise_std=0.26, n_duplicates=4, epochs=DENOISE_EPOCHS, force_weight=0.1),
    "hybrid-w1": dict(loss="hybrid", frames=500, noise_std=0.26, n_duplicates=4, epochs=DENOISE_EPOCHS, force_weight=1.0),
    "hybrid-s0.10-w1": dict(loss="hybrid", frames=500, noise_std=0.1, n_duplicates=4, epochs=DENOISE_EPOCHS, force_weight=1.0),
}
# Beyond one sigma (docs/beyond-one-sigma.md): noise ladders with the sigma -> 0 correction, the
# repulsive-wall prior, mixed labels; "auto" is the ladder ase_denoise.suggest derives from the data
# (Li-Cl contact peak inner width 0.067 A -> 0.0117 / 0.0181 / 0.0259 A at 500 frames); "wide" puts the
# top level's Li-Cl shrink 2 sigma^2 / w^2 near 1 instead of 0.3.
WIDE = (0.021, 0.033, 0.047)
RUNS.update({
    "ld-auto": dict(loss="denoising", frames=500, noise_std="auto", n_duplicates=4, epochs=DENOISE_EPOCHS),
    "ld-auto-wall": dict(loss="denoising", frames=500, noise_std="auto", n_duplicates=4, epochs=DENOISE_EPOCHS,
                         priors=["wall"]),
    "ld-wide-wall": dict(loss="denoising", frames=500, noise_std=WIDE, n_duplicates=4, epochs=DENOISE_EPOCHS,
                         priors=["wall"]),
    "ld-auto-wall-lw": dict(loss="denoising", frames=500, noise_std="auto", n_duplicates=4, epochs=DENOISE_EPOCHS,
                           priors=["wall"], level_weighting="inverse_square"),
    "mixed-auto-wall-lw": dict(loss="mixed", frames=500, noise_std="auto", n_duplicates=4, epochs=DENOISE_EPOCHS,
                               priors=["wall"], level_weighting="inverse_square"),
    "ld-auto-wall-e60": dict(loss="denoising", frames=500, noise_std="auto", n_duplicates=4, epochs=2 * DENOISE_EPOCHS,
                             priors=["wall"]),
    "dn-s0.26-wall": dict(loss="denoising", frames=500, noise_std=0.26, n_duplicates=4, epochs=DENOISE_EPOCHS,
                          priors=["wall"]),
    "mixed-auto-wall": dict(loss="mixed", frames=500, noise_std="auto", n_duplicates=4, epochs=DENOISE_EPOCHS,
                            priors=["wall"]),
    "fm-all-wall": dict(loss="force_matching", frames="all", noise_std=0.26, n_duplicates=1,
                        epochs=round(4 * DENOISE_EPOCHS * 500 / 1800), priors=["wall"]),
    # the frame-count study: the same number of optimiser steps (about 6700) at 100, 500 and 1800 frames
    "ld-auto-wall-100": dict(loss="denoising", frames=100, noise_std="auto", n_duplicates=4,
                             epochs=5 * DENOISE_EPOCHS, priors=["wall"]),
    "ld-auto-wall-all": dict(loss="denoising", frames="all", noise_std="auto", n_duplicates=4,
                             epochs=round(DENOISE_EPOCHS * 500 / 1800), priors=["wall"]),
    "fm-100-wall": dict(loss="force_matching", frames=100, noise_std=0.26, n_duplicates=1,
                        epochs=4 * 5 * DENOISE_EPOCHS, priors=["wall"]),
    # the free-energy head (docs/energy-head.md) with the zoo model's recipe
    "le-auto-wall": dict(loss="denoising", frames=500, noise_std="auto", n_duplicates=4, epochs=DENOISE_EPOCHS,
                         priors=["wall"], head="energy"),
    # the zoo recipe with antithetic noise pairs (N, -N): same optimum, less gradient noise at the small levels
    "la-auto-wall": dict(loss="denoising", frames=500, noise_std="auto", n_duplicates=4, epochs=DENOISE_EPOCHS,
                         priors=["wall"], antithetic=True),
    # ... plus the ions' periodic Coulomb sum in TIP3P's dielectric as a residual prior (the design paper's
    # set-up: LAMMPS computes this term with coul/long + pppm, tutorials/09_licl_lammps_pppm)
    "la-auto-ewald": dict(loss="denoising", frames=500, noise_std="auto", n_duplicates=4, epochs=DENOISE_EPOCHS,
                          priors=["wall", "ewald"], antithetic=True),
    # force matching with the same priors (the Ewald term subtracted from the labels at the clean frames)
    "fm-all-ewald": dict(loss="force_matching", frames="all", noise_std=0.26, n_duplicates=1,
                         epochs=round(4 * DENOISE_EPOCHS * 500 / 1800), priors=["wall", "ewald"]),
    # Averaged weights, trained twice as long: the learned contact free energy moved by kT between
    # late epochs and the kept epoch was partly chance (README, "Antithetic noise pairs"), the signature
    # of gradient noise in the final weights. EMA 0.999 averages the last ~1000 optimiser steps and the
    # last epoch's weights are used; twice the steps = twice the noise draws.
    "la-auto-ewald-long": dict(loss="denoising", frames=500, noise_std="auto", n_duplicates=4,
                               epochs=2 * DENOISE_EPOCHS, priors=["wall", "ewald"], antithetic=True,
                               ema_decay=0.999, weights="last"),
})
#: runs repeated with training seeds 1 and 2 (names "<run>-r1", "<run>-r2"; the base run is seed 0)
SEEDED = ("ld-auto-wall", "ld-wide-wall", "mixed-auto-wall", "fm-all", "fm-all-wall", "dn-s0.26-wall",
          "ld-auto-wall-100", "ld-auto-wall-all", "fm-100-wall", "le-auto-wall", "la-auto-wall", "la-auto-ewald",
          "fm-all-ewald", "la-auto-ewald-long")
EXTRA_SEEDS = (1, 2)
RUNS.update({f"{n}-r{seed}": dict(RUNS[n], seed=seed) for n in SEEDED for seed in EXTRA_SEEDS})


def seed_runs_of(base: str, seeds: Sequence[int]) -> Tuple[str, ...]:
    """Run names of ``base`` at training ``seeds`` (seed 0 is the base name itself)."""
    return tuple(base if seed == 0 else f"{base}-r{seed}" for seed in seeds)


def seed_runs(base: str) -> tuple:
    """The names of a recipe's runs over training seeds: the base run (seed 0), then its ``-rK`` runs
    defined in :data:`RUNS`, by seed (``la-auto-ewald`` has nine seeds)."""
    seeded = (n for n in RUNS if n != base and recipe_of(n) == base)
    return (base,) + tuple(sorted(seeded, key=lambda n: int(n.rsplit("-r", 1)[1])))


def recipe_of(name: str) -> str:
    """The base run of ``name`` (``ld-auto-wall-r1`` -> ``ld-auto-wall``): ``-rK`` with K a seed number."""
    head, _, tail = name.rpartition("-r")
    return head if head and tail.isdigit() else name


#: The zoo recipe's trained weights (seed by seed, "weights_of") with other default forces stored in the
#: model (PhysicsConfig): "-lin" the linear sigma -> 0 extrapolation (weights 0.96 / 0.46 / -0.42 instead
#: of 2.13 / -1.37 / 0.24), "-small" the smallest trained level alone (0.0118 A, no extrapolation). Over
#: the nine seeds the quadratic extrapolation amplified the seeds' errors on the contact barrier into
#: runaway ion pairing (README, "Nine seeds"; "Which forces", session 11).
RUNS["la-auto-ewald-lin"] = dict(RUNS["la-auto-ewald"], default_extrapolation_order=1, weights_of="la-auto-ewald")
RUNS["la-auto-ewald-small"] = dict(RUNS["la-auto-ewald"], default_level="smallest", weights_of="la-auto-ewald")
for _base in ("la-auto-ewald-lin", "la-auto-ewald-small"):
    RUNS.update({f"{_base}-r{seed}": dict(RUNS[_base], seed=seed, weights_of=f"la-auto-ewald-r{seed}") for seed in range(1, 9)})

#: Committees (ase_denoise.calculator.DenoiseCalculator with several models: the members' forces
#: averaged). The seed-to-seed spread of the learned Li-Cl contact free energy is about 2 kT for the
#: denoisers against 0.8 kT for force matching (pmf.py), with the same 500 frames for every seed: a
#: variance of the trained model, which averaging K independently trained members divides by about K.
#: Three disjoint committees of three la-auto-ewald seeds (0-2, 3-5, 6-8) are the committee recipe's
#: three "seeds"; the force-matching committee (seeds 0-2 of fm-all-ewald) is its like-for-like baseline.
RUNS.update({f"la-auto-ewald-r{seed}": dict(RUNS["la-auto-ewald"], seed=seed) for seed in range(3, 9)})
COMMITTEES: Dict[str, Tuple[str, ...]] = {
    "lc3-auto-ewald": seed_runs_of("la-auto-ewald", (0, 1, 2)),
    "lc3-auto-ewald-r1": seed_runs_of("la-auto-ewald", (3, 4, 5)),
    "lc3-auto-ewald-r2": seed_runs_of("la-auto-ewald", (6, 7, 8)),
    "fmc3-all-ewald": seed_runs_of("fm-all-ewald", (0, 1, 2)),
}
RUNS.update({name: dict(RUNS[members[0]], committee=list(members), seed=None) for name, members in COMMITTEES.items()})

STUDIES = {
    "duplicates": ["dn-k1", "dn-k2", "dn-k4", "dn-k8"],
    "duplicates_s0.10": ["dn-s0.10-k1", "dn-s0.10-k2", "dn-s0.10", "dn-s0.10-k8"],
    "sigma": ["dn-s0.03", "dn-s0.05", "dn-s0.10", "dn-s0.20", "dn-k4", "dn-s0.30", "dn-s0.40"],
    "force_matching": ["fm-500", "fm-all", "dn-s0.05", "hybrid-w0.1", "hybrid-w1", "hybrid-s0.10-w1"],
    "ladder": ["dn-s0.05", "ld-auto", "ld-auto-wall", "la-auto-wall", "la-auto-ewald", "ld-wide-wall", "mixed-auto-wall", "fm-all", "fm-all-ewald"],
}
MD = dict(timestep_fs=1.0, friction_per_fs=0.01, equilibration_ps=5.0, production_ps=30.0, interval=10)
BLOWUP_DISTANCE = 1.0  # Angstrom: two ions closer than this end the MD (the all-atom closest approach is 2.14 A)
STABILITY_PS = 10.0
LONG_MD_PS = 100.0  # the longer runs of ``--long-md`` (see :func:`long_md`)
QUICK = dict(frames_cap=40, epochs=1, equilibration_ps=0.05, production_ps=0.2)

logger = logging.getLogger("licl")


# ----------------------------------------------------------------------------------------------
# data
# ----------------------------------------------------------------------------------------------
def load_frames(path: Path = None) -> List[Atoms]:
    """All frames of the data set as periodic ``Atoms`` (wrapped) with ``arrays['ref_forces']`` (eV/A)
    and ``info['temperature_K']``. Read once per process (callers must not modify them)."""
    return _read_frames(Path(DATA if path is None else path).resolve())


@functools.lru_cache(maxsize=2)
def _read_frames(path: Path) -> List[Atoms]:
    d = np.load(path)
    frames = []
    for pos, frc in zip(d["positions"], d["forces"]):
        atoms = Atoms(numbers=d["numbers"], positions=pos.astype(np.float64), cell=d["cell"], pbc=True)
        atoms.wrap()
        atoms.arrays["ref_forces"] = frc.astype(np.float64)
        atoms.info["temperature_K"] = float(d["temperature_K"])
        frames.append(atoms)
    return frames


def split(frames: List[Atoms], which) -> List[Atoms]:
    pool = frames[: len(frames) - N_TEST]
    if which == "all":
        return pool
    idx = np.unique(np.linspace(0, len(pool) - 1, int(which)).round().astype(int))
    return [pool[i] for i in idx]


def rdf_r_max(atoms: Atoms) -> float:
    return float(np.floor(0.5 * atoms.cell.lengths().min() / BIN_WIDTH) * BIN_WIDTH)


def rdfs(frames: List[Atoms], r_max: float) -> Dict[str, np.ndarray]:
    from ase_denoise.analysis import rdf

    n_bins = int(round(r_max / BIN_WIDTH))
    out = {}
    for a, b in PAIRS:
        r, g = rdf(frames, r_max, n_bins=n_bins, elements=(a, b))
        out[f"{a}-{b}"] = g
    out["r"] = r
    return out


def make_reference() -> Dict[str, np.ndarray]:
    """Reference RDFs of all frames with block standard errors; cached in reference_rdf.npz."""
    if REFERENCE.exists():
        return dict(np.load(REFERENCE))
    frames = load_frames()
    r_max = rdf_r_max(frames[0])
    full = rdfs(frames, r_max)
    def chunks(n):
        edges = np.linspace(0, len(frames), n + 1).round().astype(int)
        return [frames[a:b] for a, b in zip(edges[:-1], edges[1:])]

    blocks = [rdfs(chunk, r_max) for chunk in chunks(N_BLOCKS)]
    halves = [rdfs(chunk, r_max) for chunk in chunks(2)]
    out = {"r": full["r"]}
    for a, b in PAIRS:
        key = f"{a}-{b}"
        out[key] = full[key]
        out[f"{key}_err"] = np.std([blk[key] for blk in blocks], axis=0, ddof=1) / np.sqrt(N_BLOCKS)
        # RMS difference between the two halves of the reference: the noise floor of "RDF error"
        out[f"{key}_half_rms"] = np.array(np.sqrt(np.mean((halves[0][key] - halves[1][key]) ** 2)))
    np.savez(REFERENCE, **out)
    plot_rdfs(out, {}, OUT / "reference_rdf.png", "all-atom reference (ions of LiCl/TIP3P, 300 K)")
    return out


# ----------------------------------------------------------------------------------------------
# one run: train, MD, measure
# ----------------------------------------------------------------------------------------------
def train_run(name: str, spec: Dict[str, Any], frames: List[Atoms], work: Path, quick: bool):
    from ase_denoise import TrainConfig, train
    from ase_denoise.checkpoint import load_model_file, read_metadata
    from ase_denoise.priors import EwaldCoulomb

    if spec.get("weights_of"):  # the same trained weights, with other stored default forces
        source = spec["weights_of"] + ("-quick" if quick else "")
        model, n_frames, last = train_run(spec["weights_of"], RUNS[spec["weights_of"]], frames, RUNS_DIR / source, quick)
        return with_defaults(model, spec), n_frames, last
    data = split(frames, spec["frames"])
    epochs = spec["epochs"]
    if quick:
        data, epochs = data[: QUICK["frames_cap"]], QUICK["epochs"]
    last_path = work / "last.safetensors"
    state = work / "training_state.pt"
    cfg = TrainConfig(
        loss=spec["loss"], n_duplicates=spec["n_duplicates"], epochs=epochs, batch_size=8, lr=5e-3,
        force_weight=spec.get("force_weight", 1.0), seed=spec.get("seed", 0), valid_fraction=0.1,
        level_weighting=spec.get("level_weighting", "uniform"), antithetic_noise=spec.get("antithetic", False),
        ema_decay=spec.get("ema_decay", 0.99),
    )
    priors = [{"wall": "repulsive_wall", "ewald": EwaldCoulomb(**EWALD_PRIOR)}.get(p, p) for p in spec.get("priors", [])]
    done = last_path.exists() and read_metadata(last_path)["training"]["epochs_completed"] >= epochs
    if not done:
        train(data, str(work), noise_std=spec["noise_std"], temperature_K=TEMPERATURE_K, train_config=cfg,
              resume=state.exists(), progress=True, priors=priors, **dict(MODEL, head=spec.get("head", MODEL["head"])))
    last = read_metadata(last_path)
    return with_defaults(load_model_file(weights_file(spec, work)), spec), len(data), last


def with_defaults(model, spec: Dict[str, Any]):
    """``model`` with the default forces ``spec`` names stored in its physics: ``"default_level":
    "smallest"`` (its smallest trained level, ``PhysicsConfig.default_noise_std``) or
    ``"default_extrapolation_order": K``. Neither enters training (the kept epoch is the one with the
    lowest validation loss, a denoising loss at the trained levels), so a run trained without them
    gives the weights a run trained with them would."""
    from dataclasses import replace

    stored = {}
    if spec.get("default_level") == "smallest":
        stored["default_noise_std"] = min(model.noise_levels)
    if spec.get("default_extrapolation_order") is not None:
        stored["default_extrapolation_order"] = spec["default_extrapolation_order"]
    if stored:
        model.physics = replace(model.physics, **stored)
    return model


def weights_file(spec: Dict[str, Any], work: Path) -> Path:
    """The weights a run is evaluated with: ``spec["weights"]`` "best" (default; the epoch with the
    lowest validation loss) or "last" (the end of the schedule: with a slow EMA the last weights average
    the final ~1/(1 - ema_decay) steps instead of picking one noisy epoch)."""
    return work / ("last.safetensors" if spec.get("weights") == "last" else "best.safetensors")


def run_md(model, start: Atoms, quick: bool, seed: int = 0, production_ps: float = None,
           equilibration_ps: float = None, noise_std: float = None, extrapolation_order: int = None) -> Dict[str, Any]:
    """CG Langevin MD at 300 K with :func:`ase_denoise.md.run_langevin` (momenta drawn at 300 K, then
    equilibration and production; a frame every ``MD['interval']`` steps of the production part is
    kept). The run 'blew up' if two ions come within :data:`BLOWUP_DISTANCE` (1 A; the ions' closest
    approach in the all-atom reference is 2.1 A: the MD stops there) or a force becomes non-finite."""
    from ase_denoise import DenoiseCalculator
    from ase_denoise.data import DataError
    from ase_denoise.md import run_langevin

    md = dict(MD)
    if quick:
        md.update(equilibration_ps=QUICK["equilibration_ps"], production_ps=QUICK["production_ps"])
    if production_ps is not None:
        md["production_ps"] = production_ps if not quick else QUICK["production_ps"]
    if equilibration_ps is not None:
        md["equilibration_ps"] = equilibration_ps
    atoms = start.copy()
    # None: corrected to sigma -> 0 for a ladder (extrapolation_order None: quadratic in sigma^2 for 3 levels)
    atoms.calc = DenoiseCalculator(model, noise_std=noise_std, extrapolation_order=extrapolation_order)
    n_equil = int(round(md["equilibration_ps"] * 1000 / md["timestep_fs"]))
    n_prod = int(round(md["production_ps"] * 1000 / md["timestep_fs"]))
    sampled: List[Atoms] = []
    temps: List[float] = []
    last = {"step": 0}

    def sample(atoms: Atoms, step: int) -> None:  # every MD["interval"] steps
        last["step"] = step
        if step > n_equil:
            sampled.append(atoms.copy())
            temps.append(atoms.get_temperature())

    status: Dict[str, Any] = {"blew_up": False, "non_finite_force": False}
    t0 = time.perf_counter()
    try:
        res = run_langevin(
            atoms, temperature_K=TEMPERATURE_K, steps=n_equil + n_prod, timestep_fs=md["timestep_fs"],
            friction_per_fs=md["friction_per_fs"], interval=md["interval"], seed=seed, observers=[sample],
            min_distance_stop=BLOWUP_DISTANCE,
        )
        steps, wall, closest = res["steps"], res["wall_s"], res["min_distance"]
        status["blew_up"] = res["stopped"] is not None  # two ions closer than BLOWUP_DISTANCE
    except (RuntimeError, DataError) as exc:
        # run_langevin raises RuntimeError for a non-finite force at an observed step; one between two
        # observed steps makes the positions non-finite, which the calculator refuses (DataError). The
        # run's figures are lost with the exception: steps up to the last observed one, no closest approach.
        status.update(blew_up=True, non_finite_force=True, error=str(exc)[:200])
        steps, wall, closest = last["step"], time.perf_counter() - t0, float("nan")
    return dict(
        frames=sampled, wall_s=wall, steps=int(steps), steps_per_s=steps / max(wall, 1e-9),
        simulated_ps=steps * md["timestep_fs"] / 1000, closest_approach_A=float(closest),
        mean_temperature_K=float(np.mean(temps)) if temps else float("nan"), **status,
    )


def force_errors(model, test: List[Atoms]) -> Dict[str, float]:
    """Force errors against the test frames' labels; a committee (a list of models): its mean forces."""
    from ase_denoise.analysis import force_metrics
    from ase_denoise.data import to_frame
    from ase_denoise.inference import evaluate_forces

    members = model if isinstance(model, list) else [model]
    pairs = [evaluate_forces(m, [to_frame(a, m.config.atomic_numbers) for a in test]) for m in members]
    pred, ref = np.mean([p for p, _ in pairs], axis=0), pairs[0][1]
    m = force_metrics(pred, ref)
    return {"force_rmse_vs_labels": m["rmse"], "force_cosine_vs_labels": m["cosine"], "force_slope_vs_labels": m["slope"]}


def rdf_figures(ref: Dict[str, np.ndarray], g: Dict[str, np.ndarray]) -> Dict[str, Any]:
    from ase_denoise.analysis import first_peak

    out: Dict[str, Any] = {}
    rms = []
    for a, b in PAIRS:
        key = f"{a}-{b}"
        diff = float(np.sqrt(np.mean((g[key] - ref[key]) ** 2)))
        rms.append(diff)
        (pr, ph), (qr, qh) = first_peak(ref["r"], g[key]), first_peak(ref["r"], ref[key])
        out[key] = dict(rms=diff, peak_r=pr, peak_g=ph, ref_peak_r=qr, ref_peak_g=qh)
    out["rms_mean"] = float(np.mean(rms))
    return out


def do_run(name: str, quick: bool = False) -> Dict[str, Any]:
    from ase_denoise.md import min_pair_distance

    RESULTS.mkdir(exist_ok=True)
    out_json = RESULTS / f"{name}{'-quick' if quick else ''}.json"
    if out_json.exists():
        return json.loads(out_json.read_text())
    spec = RUNS[name]
    ref = make_reference()
    frames = load_frames()
    work = RUNS_DIR / (name + ("-quick" if quick else ""))
    t0 = time.perf_counter()
    if "committee" in spec:  # the members' models (trained here if they are not yet): one calculator
        trained = [train_run(m, RUNS[m], frames, RUNS_DIR / (m + ("-quick" if quick else "")), quick)
                   for m in spec["committee"]]
        model, n_frames, last = [t[0] for t in trained], trained[0][1], trained[0][2]
    else:
        model, n_frames, last = train_run(name, spec, frames, work, quick)
    train_wall = time.perf_counter() - t0
    train_meta = last.get("training", {})
    test = frames[-N_TEST:]
    errors = force_errors(model, test[:40] if quick else test)
    md = run_md(model, test[-1], quick)
    sampled = md.pop("frames")
    # stability replicas: other seeds and start frames, 10 ps each (RDFs come from the main run only)
    replicas = [run_md(model, test[-1 - 50 * i], quick, seed=10 * i, production_ps=STABILITY_PS, equilibration_ps=0.0)
                for i in (1, 2)]
    stability = dict(
        runs=1 + len(replicas), blew_up=int(md["blew_up"]) + sum(int(r["blew_up"]) for r in replicas),
        closest_approach_A=float(np.nanmin([md["closest_approach_A"]] + [r["closest_approach_A"] for r in replicas])),
        simulated_ps=float(md["simulated_ps"] + sum(r["simulated_ps"] for r in replicas)),
        non_finite_force=bool(md["non_finite_force"] or any(r["non_finite_force"] for r in replicas)),
    )
    first = model[0] if isinstance(model, list) else model
    result: Dict[str, Any] = dict(
        name=name, spec=spec, n_frames=n_frames, quick=quick,
        train_wall_s_this_call=train_wall, epochs_completed=train_meta.get("epochs_completed"),
        train_steps=train_meta.get("steps"), train_elapsed_s=(last.get("metrics") or {}).get("elapsed_s"),
        best_epoch=(first.metadata.get("metrics") or {}).get("epoch"), box_A=float(frames[0].cell[0, 0]),
        noise_levels=list(first.noise_levels), priors=[p.kind for p in first.priors],
        **errors, md=md, stability=stability,
        reference_closest_approach_A=float(min(min_pair_distance(a, 4.0) for a in frames[::10])),
    )
    if sampled and not md["blew_up"]:
        g = rdfs(sampled, float(ref["r"][-1] + BIN_WIDTH / 2))
        result["rdf"] = rdf_figures(ref, g)
        np.savez(RESULTS / f"{name}{'-quick' if quick else ''}_rdf.npz", **g)
    out_json.write_text(json.dumps(result, indent=1, default=float))
    return result


CONTACT_A = 2.8  # Angstrom: Li-Cl pairs closer than this are contact ion pairs (first minimum of g_LiCl)


def contact_pairs(atoms: Atoms) -> int:
    """Number of Li-Cl pairs closer than :data:`CONTACT_A` (minimum image)."""
    z = atoms.numbers
    d = atoms.get_all_distances(mic=True)[np.ix_(z == 3, z == 17)]
    return int((d < CONTACT_A).sum())


def long_md(name: str, production_ps: float, n_blocks: int = 4, noise_std: float = None,
            extrapolation_order: int = None) -> Dict[str, Any]:
    """A longer CG MD run of a trained model (``runs/licl/<name>/best.safetensors``), to separate models
    whose 30-ps RDF errors differ by less than the sampling noise of 30 ps of MD. Same thermostat and
    start as the main run, another seed (7); the RDF error of the whole run and of each of
    ``n_blocks`` consecutive blocks (their spread is the noise of a run that long) ->
    ``results/long/<name>_<production_ps>ps.json``. ``noise_std``: run one trained level of a ladder
    instead of the corrected forces (``..._<production_ps>ps_level<noise_std>.json``);
    ``extrapolation_order``: the degree of the sigma -> 0 extrapolation (``..._order<k>.json``)."""
    from ase_denoise.checkpoint import load_model_file

    out_dir = RESULTS / "long"
    out_dir.mkdir(parents=True, exist_ok=True)
    out_json = out_dir / (f"{name}_{production_ps:g}ps" + (f"_level{noise_std:g}" if noise_std else "")
                          + (f"_order{extrapolation_order}" if extrapolation_order is not None else "") + ".json")
    if out_json.exists():
        return json.loads(out_json.read_text())
    frames = load_frames()
    path = RUNS_DIR / name / "best.safetensors"
    if path.exists():
        model = load_model_file(path)
    else:  # trained in another checkout: train it again (same seed, same steps)
        model = train_run(name, RUNS[name], frames, RUNS_DIR / name, quick=False)[0]
    ref = make_reference()
    start = frames[-1]
    md = run_md(model, start, quick=False, seed=7, production_ps=production_ps, noise_std=noise_std,
                extrapolation_order=extrapolation_order)
    sampled = md.pop("frames")
    result: Dict[str, Any] = dict(name=name, production_ps=production_ps, noise_std=noise_std,
                                  extrapolation_order=extrapolation_order, md=md)
    if sampled and not md["blew_up"]:
        r_max = float(ref["r"][-1] + BIN_WIDTH / 2)
        g = rdfs(sampled, r_max)
        result["rdf"] = rdf_figures(ref, g)
        # Li-Cl contact pairs (closer than CONTACT_A) every 0.1 ps: the slow variable of this system
        result["contact_pairs_every_0.1ps"] = [contact_pairs(a) for a in sampled[::10]]
        np.savez(out_json.with_name(out_json.stem + "_rdf.npz"), **g)
        edges = np.linspace(0, len(sampled), n_blocks + 1).round().astype(int)
        result["block_ps"] = production_ps / n_blocks
        result["blocks_rms_mean"] = [rdf_figures(ref, rdfs(sampled[a:b], r_max))["rms_mean"]
                                     for a, b in zip(edges[:-1], edges[1:])]
    out_json.write_text(json.dumps(result, indent=1, default=float))
    return result


def long_table(production_ps: float) -> str:
    """The long-MD runs of :func:`long_md` grouped by recipe (seeds -r1, -r2 with their base)."""
    found: Dict[str, List[Dict[str, Any]]] = {}
    for p in sorted((RESULTS / "long").glob(f"*_{production_ps:g}ps.json")):
        res = json.loads(p.read_text())
        base = recipe_of(res["name"])
        found.setdefault(base, []).append(res)
    if not found:
        return ""
    lines = [
        f"Longer MD ({production_ps:g} ps per trained model after 5 ps of equilibration, from the same start "
        f"frame as the main runs, seed 7; `study.py --long-md {production_ps:g} --only ...`). Blocks: the same "
        f"run cut into {next(iter(found.values()))[0].get('block_ps', 0):g}-ps pieces, in time order; a rise "
        "from the first to the last block means the structure is still leaving the start frame's:",
        "",
        "| recipe | training seeds | mean RDF RMS per seed (0, 1, 2) | mean ± std over seeds | Li-Cl peak g per seed | block RMS in time order (mean over seeds) | blown up |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for base, group in found.items():
        group.sort(key=lambda r: r["name"])  # seed 0 (the base name), then -r1, -r2
        ok = [r for r in group if r.get("rdf")]
        rms = np.array([r["rdf"]["rms_mean"] for r in ok])
        blocks = np.array([r["blocks_rms_mean"] for r in ok if r.get("blocks_rms_mean")])
        spread = f"{rms.mean():.3f} ± {rms.std(ddof=1):.3f}" if len(rms) > 1 else (f"{rms.mean():.3f}" if len(rms) else "—")
        lines.append(
            f"| {base} | {len(group)} | {', '.join(f'{x:.3f}' for x in rms) or '—'} | {spread} "
            f"| {', '.join(format(r['rdf']['Li-Cl']['peak_g'], '.1f') for r in ok) or '—'} "
            f"| {' → '.join(f'{b:.2f}' for b in blocks.mean(axis=0)) if len(blocks) else '—'} "
            f"| {sum(int(r['md']['blew_up']) for r in group)}/{len(group)} |"
        )
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------
# report
# ----------------------------------------------------------------------------------------------
def plot_rdfs(ref, curves: Dict[str, Dict[str, np.ndarray]], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8), sharex=True)
    for ax, (a, b) in zip(axes, PAIRS):
        key = f"{a}-{b}"
        r = ref["r"]
        ax.fill_between(r, ref[key] - 2 * ref[f"{key}_err"], ref[key] + 2 * ref[f"{key}_err"], color="0.75", lw=0)
        ax.plot(r, ref[key], "k-", lw=1.5, label="all-atom reference (±2 s.e.)")
        for label, g in curves.items():
            if label.startswith("noised"):  # rho_sigma: what a perfect denoiser's MD samples
                ax.plot(r, g[key], "k:", lw=1.3, label=label)
            else:
                ax.plot(r, g[key], lw=1.1, label=label)
        ax.set_title(key)
        ax.set_xlabel("r (Å)")
        ax.set_xlim(1.5, r[-1])
    axes[0].set_ylabel("g(r)")
    axes[-1].legend(fontsize=7, loc="upper right")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def noised_reference(noise_std: float) -> Dict[str, np.ndarray]:
    """RDFs of the reference frames with Gaussian noise of std ``noise_std`` added to every ion: the
    structure of rho_sigma, which MD with a perfect sigma-denoiser's forces samples (docs/design.md, "The estimator").
    The model-vs-this difference is the learning error; this-vs-reference is the smoothing bias."""
    path = RESULTS / f"noised_reference_s{noise_std:.2f}.npz"
    if path.exists():
        return dict(np.load(path))
    ref = make_reference()
    rng = np.random.default_rng(12345)
    noisy = []
    for atoms in load_frames()[::2]:
        a = atoms.copy()
        a.positions += rng.normal(0.0, noise_std, a.positions.shape)
        a.wrap()
        noisy.append(a)
    g = rdfs(noisy, float(ref["r"][-1] + BIN_WIDTH / 2))
    RESULTS.mkdir(exist_ok=True)
    np.savez(path, **g)
    return g


def _fmt(x, d=3):
    return "—" if x is None or (isinstance(x, float) and not np.isfinite(x)) else f"{x:.{d}f}"


def report(quick: bool = False) -> str:
    ref = make_reference()
    suffix = "-quick" if quick else ""
    results = {}
    for name in RUNS:
        p = RESULTS / f"{name}{suffix}.json"
        if p.exists():
            results[name] = json.loads(p.read_text())
    floor = np.mean([float(ref[f"{a}-{b}_half_rms"]) for a, b in PAIRS])
    lines = [
        f"Noise floor: RMS difference between the two halves (1 ns each) of the reference, mean over pairs = {floor:.3f}.",
        "",
        "| run | loss | frames | sigma (A) | k | RDF RMS Li-Li / Li-Cl / Cl-Cl | mean | mean vs noised ref. | Li-Cl peak r (A) / g | closest approach (A) | runs blown up | force RMSE vs labels (eV/A) | train (s) | MD (s, steps/s) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    q = ref["Li-Cl"]
    from ase_denoise.analysis import first_peak

    pr, ph = first_peak(ref["r"], q)
    lines.insert(2, f"Reference Li-Cl first peak: r = {pr:.2f} A, g = {ph:.2f}.")
    lines.insert(3, "")
    for name, res in results.items():
        spec, md, rdf = res["spec"], res["md"], res.get("rdf")
        stab = res.get("stability") or dict(runs=1, blew_up=int(md["blew_up"]), closest_approach_A=md["closest_approach_A"])
        rms = " / ".join(_fmt(rdf[f"{a}-{b}"]["rms"]) for a, b in PAIRS) if rdf else "—"
        peak = f"{rdf['Li-Cl']['peak_r']:.2f} / {rdf['Li-Cl']['peak_g']:.2f}" if rdf else "—"
        vs_noised = "—"
        g_path = RESULTS / f"{name}{suffix}_rdf.npz"
        levels = res.get("noise_levels") or [spec["noise_std"]]
        if rdf and g_path.exists() and spec["loss"] != "force_matching" and len(levels) == 1:
            g, gn = np.load(g_path), noised_reference(spec["noise_std"])
            vs_noised = _fmt(float(np.mean([np.sqrt(np.mean((g[f"{a}-{b}"] - gn[f"{a}-{b}"]) ** 2)) for a, b in PAIRS])))
            res["rdf"]["rms_mean_vs_noised"] = float(vs_noised)
        lines.append(
            f"| {name} | {spec['loss']}{' w=' + str(spec['force_weight']) if spec['loss'] == 'hybrid' else ''} | {res['n_frames']} "
            f"| {', '.join(f'{x:g}' for x in levels)}{' +wall' if 'repulsive_wall' in res.get('priors', []) else ''}{' +Ewald' if 'coulomb_ewald' in res.get('priors', []) else ''} "
            f"| {spec['n_duplicates']}{' (antithetic pairs)' if spec.get('antithetic') else ''} | {rms} | {_fmt(rdf['rms_mean']) if rdf else '—'} | {vs_noised} | {peak} "
            f"| {_fmt(stab['closest_approach_A'], 2)} | {stab['blew_up']}/{stab['runs']} | {_fmt(res['force_rmse_vs_labels'])} "
            f"| {_fmt(res['train_elapsed_s'], 0)} | {md['wall_s']:.0f}, {md['steps_per_s']:.0f} |"
        )
    lines += ["", seed_table(results)]
    long = long_table(LONG_MD_PS)
    if long:
        lines += ["", long]
    table = "\n".join(lines)
    (OUT / f"results{suffix}.md").write_text(table + "\n")
    readme = OUT / "README.md"
    begin, end = "<!-- results-table: written by study.py -->", "<!-- end results-table -->"
    if not quick and readme.exists() and begin in readme.read_text():
        text = readme.read_text()
        head, rest = text.split(begin, 1)
        tail = rest.split(end, 1)[1] if end in rest else ""
        readme.write_text(f"{head}{begin}\n{table}\n{end}{tail}")
    for study, names in STUDIES.items():
        curves = {}
        for n in names:
            p = RESULTS / f"{n}{suffix}_rdf.npz"
            if p.exists():
                curves[n] = dict(np.load(p))
        if curves and study in ("duplicates", "duplicates_s0.10", "force_matching"):  # one-sigma studies
            sig = 0.1 if study.endswith("s0.10") else 0.26
            curves[f"noised reference, sigma {sig} (rho_sigma)"] = noised_reference(sig)
        if curves:
            plot_rdfs(ref, curves, OUT / f"rdf_{study}{suffix}.png", f"CG MD RDFs: {study} study")
    _plot_errors(results, OUT / f"rdf_error{suffix}.png")
    long_curves = {p.stem[: -len("_rdf")]: dict(np.load(p)) for p in sorted((RESULTS / "long").glob(f"*_{LONG_MD_PS:g}ps_rdf.npz"))}
    if long_curves and not quick:
        plot_rdfs(ref, long_curves, OUT / "rdf_long.png", f"CG MD RDFs over {LONG_MD_PS:g} ps (--long-md)")
    return table


def seed_table(results: Dict[str, Any]) -> str:
    """Runs repeated over training seeds (:data:`SEEDED`; for a committee, disjoint sets of members):
    mean and spread of the mean RDF error."""
    lines = [
        "Over training seeds (each seed: its own training run and MD; blown-up runs count in the last column):",
        "",
        "| run | seeds with RDFs | mean RDF RMS: mean ± std (min - max) | Li-Cl contact peak g: mean | MD runs blown up |",
        "| --- | --- | --- | --- | --- |",
    ]
    committees = tuple(n for n in COMMITTEES if recipe_of(n) == n)  # a committee recipe's "seeds": -r1, -r2
    for base in SEEDED + committees:
        group = [results[n] for n in seed_runs(base) if n in results]
        if not group:
            continue
        rms = np.array([r["rdf"]["rms_mean"] for r in group if r.get("rdf")])
        peaks = [r["rdf"]["Li-Cl"]["peak_g"] for r in group if r.get("rdf")]
        blown = sum(r["stability"]["blew_up"] for r in group)
        runs = sum(r["stability"]["runs"] for r in group)
        spread = f"{rms.mean():.3f} ± {rms.std(ddof=1):.3f} ({rms.min():.3f} - {rms.max():.3f})" if len(rms) > 1 else (
            f"{rms.mean():.3f} (one seed)" if len(rms) else "—")
        lines.append(f"| {base} | {len(rms)} of {len(group)} | {spread} | {np.mean(peaks):.2f} | {blown}/{runs} |"
                     if peaks else f"| {base} | 0 of {len(group)} | — | — | {blown}/{runs} |")
    return "\n".join(lines)


def _plot_errors(results: Dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
    panels = ((axes[0], [("duplicates", "sigma 0.26 A"), ("duplicates_s0.10", "sigma 0.1 A")], "n_duplicates", "n_duplicates k"),
              (axes[1], [("sigma", "k = 4")], "noise_std", "sigma (Å)"))
    for ax, studies, key, label in panels:
        for study, what in studies:
            pts = [(results[n]["spec"][key], results[n]["rdf"]["rms_mean"]) for n in STUDIES[study]
                   if n in results and results[n].get("rdf")]
            if pts:
                x, y = zip(*sorted(pts))
                ax.plot(x, y, "o-", label=f"denoising, 500 frames, {what} (blown-up runs omitted)")
        for n, style in (("fm-all", "k--"), ("fm-500", "k:")):
            if n in results and results[n].get("rdf"):
                ax.axhline(results[n]["rdf"]["rms_mean"], ls=style[1:], color="k", label=f"force matching, {n[3:]} frames")
        ax.set_xlabel(label)
        ax.set_ylabel("RDF RMS error (mean over pairs)")
        if key == "n_duplicates":
            ax.set_xscale("log", base=2)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ----------------------------------------------------------------------------------------------
# zoo
# ----------------------------------------------------------------------------------------------
def best_denoiser() -> str:
    """The pure-denoising run (coordinates only, one model: the zoo holds single files) with the lowest
    mean RDF error that did not blow up."""
    scores = {}
    for name, spec in RUNS.items():
        p = RESULTS / f"{name}.json"
        if spec["loss"] == "denoising" and "committee" not in spec and p.exists():
            res = json.loads(p.read_text())
            if res.get("rdf") and not res["md"]["blew_up"]:
                scores[name] = res["rdf"]["rms_mean"]
    if not scores:
        raise SystemExit("no finished denoising run to publish")
    return min(scores, key=scores.get)


def _seed_line(name: str) -> str:
    """The spread of the mean RDF error over the recipe's training seeds, for the card."""
    scores = []
    for n in seed_runs(name):
        p = RESULTS / f"{n}.json"
        if p.exists() and json.loads(p.read_text()).get("rdf"):
            scores.append(json.loads(p.read_text())["rdf"]["rms_mean"])
    if len(scores) < 2:
        return ""
    return (f"\nThe same recipe over {len(scores)} training seeds: mean RDF RMS (over the three pairs) "
            f"{np.mean(scores):.3f} ± {np.std(scores, ddof=1):.3f} ({', '.join(f'{x:.3f}' for x in scores)}); "
            "this file is seed 0.\n")


def _long_line(name: str) -> str:
    """The longer-MD figures (:func:`long_md`) of the recipe and of force matching on all frames, for the card."""
    def figures(base: str):
        runs = [json.loads(p.read_text()) for n in seed_runs(base)
                for p in [RESULTS / "long" / f"{n}_{LONG_MD_PS:g}ps.json"] if p.exists()]
        runs = [r for r in runs if r.get("rdf")]
        if not runs:
            return None
        rms = [r["rdf"]["rms_mean"] for r in runs]
        spread = f"{np.mean(rms):.3f} ± {np.std(rms, ddof=1):.3f}" if len(rms) > 1 else f"{rms[0]:.3f}"
        peaks = ", ".join(f"{r['rdf']['Li-Cl']['peak_g']:.1f}" for r in runs)
        return f"mean RDF RMS {spread} over {len(runs)} training seed(s), Li-Cl contact peak g {peaks} (seed 0 first)"

    ewald = "ewald" in recipe_of(name)
    baseline = "fm-all-ewald" if ewald else "fm-all"  # force matching with the same priors
    own, fm = figures(name), figures(baseline)
    if own is None:
        return ""
    text = f"\nOver {LONG_MD_PS:g} ps of MD instead of 30 (`study.py --long-md {LONG_MD_PS:g}`): this recipe {own}"
    if fm is not None:
        text += (f"; force matching on all 1800 labelled frames{' with the same priors' if ewald else ''} "
                 f"(`{baseline}`), same protocol: {fm}")
    return text + (". Over the longer runs the ion pairing drifts away from the start frame's, in a direction "
                   "that depends on the training seed, for both; the 30-ps figures above mostly reflect the "
                   "start frame. See the study's README, \"Longer MD\".\n")


def _forces_phrase(model) -> str:
    """What the card's first line says the model's forces are."""
    sigma = ", ".join(f"{x:g}" for x in model.noise_levels)
    if len(model.noise_levels) == 1:
        return f"sigma {sigma} A"
    if model.physics.default_noise_std is not None:
        return f"noise ladder {sigma} A, evaluated at its smallest level {model.physics.default_noise_std:g} A by default"
    return f"noise ladder {sigma} A corrected to sigma -> 0"


def _how_phrase(model) -> str:
    if len(model.noise_levels) == 1:
        return ""
    if model.physics.default_noise_std is not None:
        return (f" at the level {model.physics.default_noise_std:g} A stored as the model's default (`noise_std=s` gives "
                "another trained level, `extrapolation_order=k` the extrapolation to sigma -> 0 through all levels)")
    return " at each trained level, extrapolated to sigma -> 0 (all levels in one batched forward; `noise_std=s` gives one level)"


def _order_line(model) -> str:
    """The card's line on which forces a ladder model returns by default."""
    if len(model.noise_levels) < 2:
        return ""
    from ase_denoise.inference import evaluation_levels

    levels, w = evaluation_levels(model, None)
    physics = model.physics
    if physics.default_noise_std is not None:
        return (f"\n- Default forces: the smallest trained level, sigma = {physics.default_noise_std:g} A, without the "
                f"sigma -> 0 extrapolation (stored in the file, `default_noise_std`; "
                f"`DenoiseCalculator(model, extrapolation_order=2)` gives the quadratic extrapolation). Why: the study's "
                f"README, \"Which forces a ladder model returns\".")
    order = physics.default_extrapolation_order
    kind = {1: "linear", 2: "quadratic"}.get(len(w) - 1 if order is None else order, f"degree {order}")
    return (f"\n- Default forces: sigma -> 0 extrapolation, {kind} in sigma^2, weights {' / '.join(f'{x:.2f}' for x in w)} on the levels"
            + (f" (stored in the file, `default_extrapolation_order={order}`)" if order is not None else "") + ".")


def _lammps_line(model) -> str:
    """The card's paragraph on running a model with an Ewald Coulomb prior in LAMMPS."""
    ewald = [p for p in model.priors if p.kind == "coulomb_ewald"]
    if not ewald:
        return ""
    p = ewald[0]
    return f"""

**In LAMMPS with its own electrostatics.** The ions' Coulomb sum (charges +-1 e in a dielectric of
{p.relative_permittivity:g}) is a prior the network was trained around (delta learning). LAMMPS can compute the
identical term, `pair_style coul/long {p.r_cut:g}` + `kspace_style pppm {p.accuracy:g}` + `kspace_modify gewald
{p.alpha:g}` + `dielectric {p.relative_permittivity:g}` (`ase_denoise.integrations.lammps.coulomb_commands` writes
these lines), with the model's copy switched off: `attach_denoiser(lmp, model, types,
exclude_priors=["coulomb_ewald"])`. `tutorials/09_licl_lammps_pppm.ipynb` runs it and compares the RDFs."""


def publish(name: str, zoo_name: str = "licl-cg-300K", models_dir: Path = REPO / "models") -> Path:
    """Copy run ``name``'s model into ``models/<zoo_name>/``, write its card and registry entry."""
    import shutil

    from ase_denoise.checkpoint import load_model_file
    from ase_denoise.zoo import register_model

    from ase_denoise.checkpoint import save_model

    res = json.loads((RESULTS / f"{name}.json").read_text())
    quick = name.endswith("-quick")
    spec = RUNS[name[: -len("-quick")] if quick else name]
    src = RUNS_DIR / (spec["weights_of"] + ("-quick" if quick else "") if spec.get("weights_of") else name) / "best.safetensors"
    model = load_model_file(src)
    trained_physics = model.physics
    model = with_defaults(model, spec)
    levels = model.noise_levels
    sigma = ", ".join(f"{x:g}" for x in levels)
    ladder = len(levels) > 1
    physics = model.physics
    dest_dir = Path(models_dir) / zoo_name
    dest_dir.mkdir(parents=True, exist_ok=True)
    dest = dest_dir / f"{zoo_name}.safetensors"
    if model.physics == trained_physics:
        shutil.copyfile(src, dest)
    else:  # the recipe stores its extrapolation order with the weights
        meta = model.metadata
        save_model(model, dest, training=meta["training"], metrics=meta["metrics"], overwrite=True)
    os.chmod(dest, 0o644)
    shutil.copyfile(REFERENCE, dest_dir / "reference_rdf.npz")  # for the tutorial's RDF overlay
    os.chmod(dest_dir / "reference_rdf.npz", 0o644)
    import ase.io

    start = load_frames()[-1].copy()  # a test-set frame: the start of CG MD in the tutorial
    del start.arrays["ref_forces"]
    ase.io.write(dest_dir / "start.extxyz", start)
    os.chmod(dest_dir / "start.extxyz", 0o644)
    c = model.config
    rdf = res["rdf"]
    box = res.get("box_A") or float(load_frames()[0].cell[0, 0])
    n_params = sum(p.numel() for p in model.parameters())
    cmd = f"OMP_NUM_THREADS=1 .venv/bin/python benchmarks/licl/study.py --publish {name}"
    card = f"""# {zoo_name}

Coarse-grained LiCl solution at 300 K: the 48 ions of 24 LiCl in water (2.7 M after NPT equilibration), water
integrated out; vector head, {_forces_phrase(model)}.
A denoiser trained on **ion coordinates alone**; `DenoiseCalculator.from_zoo("{zoo_name}")` gives the mean
force on each ion, `kT * eps_hat / sigma` in eV/Angstrom{_how_phrase(model)}, plus the model's priors
(forces only: no energy, no stress).

```python
from ase_denoise import DenoiseCalculator
atoms.calc = DenoiseCalculator.from_zoo("{zoo_name}")   # sha256-checked, no network
```

It is the run `{name}` of the study in `benchmarks/licl/README.md`; the figures below, and the README
there, say how it compares with the other recipes and with force matching on all labelled frames. Use it
at the state point it was trained at (300 K, this box and concentration): a CG force field is a potential
of mean force of one state point.

## Training data

- {res['n_frames']} frames (evenly spaced over the first 1.8 ns) of all-atom OpenMM MD of 24 Li+, 24 Cl- and
  460 TIP3P waters (Joung-Cheatham ions) in a cubic box of {box:.3f} Angstrom, NVT at 300 K after NPT
  equilibration (`benchmarks/licl/make_data.py`, data set `benchmarks/licl/licl_cg_300K.npz`).
- The denoiser saw ion positions only; the force labels in the data set were not used.
- Temperature: **{physics.temperature_K} K** (kT = {physics.kT:.6f} eV).

## Settings

- noise_std (sigma): **{sigma} Angstrom**{" (the ladder `--noise-std auto` derives from the data)" if res['spec']['noise_std'] == "auto" else ""}; n_duplicates: **{res['spec']['n_duplicates']}**.
- Priors: {"; ".join(p.describe() for p in model.priors) or "none"}.{_order_line(model)}
- Training: {res['epochs_completed']} epochs, batch size 8{", noise drawn in antithetic pairs (N, -N)" if res['spec'].get('antithetic') else ""}, AdamW lr 0.005 with cosine schedule, EMA 0.99,
  10% of frames held out for validation, seed {res['spec'].get('seed', 0)}, float32; weights of the epoch with the lowest validation
  loss (epoch {res.get('best_epoch')}); {res['train_elapsed_s'] / 60:.1f} min of training on one CPU thread.
- Architecture: MACE backbone, head={c.head}, r_max={c.r_max}, num_channels={c.num_channels},
  max_ell={c.max_ell}, max_L={c.max_L}, correlation={c.correlation}, num_interactions={c.num_interactions};
  element table {list(c.atomic_numbers)}; {n_params} parameters.

## Measured figures

CG Langevin MD through ASE (300 K, 1 fs, friction 0.01/fs, {res['md']['simulated_ps']:.0f} ps from a test-set
frame), ion-ion RDFs against the all-atom reference (2 ns), bins of 0.1 A up to half the box:

| figure | value |
| --- | --- |
| RDF RMS difference Li-Li / Li-Cl / Cl-Cl | {rdf['Li-Li']['rms']:.3f} / {rdf['Li-Cl']['rms']:.3f} / {rdf['Cl-Cl']['rms']:.3f} |
| Li-Cl first peak, model (r Angstrom, g) | {rdf['Li-Cl']['peak_r']:.2f}, {rdf['Li-Cl']['peak_g']:.2f} |
| Li-Cl first peak, reference (r Angstrom, g) | {rdf['Li-Cl']['ref_peak_r']:.2f}, {rdf['Li-Cl']['ref_peak_g']:.2f} |
| closest ion-ion approach during MD | {res['md']['closest_approach_A']:.2f} Angstrom |
| force RMSE vs instantaneous labels (200 test frames; a mean force cannot reach 0) | {res['force_rmse_vs_labels']:.3f} eV/Angstrom |
| MD speed (48 ions, one CPU thread) | {res['md']['steps_per_s']:.0f} steps/s |
{_seed_line(name)}{_long_line(name)}

`reference_rdf.npz` next to the weights holds the all-atom RDFs (`r`, `Li-Li`, `Li-Cl`, `Cl-Cl`, block
standard errors `*_err`) and `start.extxyz` a starting configuration (a test-set frame); the tutorial
`tutorials/07_licl_cg.ipynb` runs CG MD from it and overlays the RDFs.{_lammps_line(model)}
"""
    register_model(
        models_dir, zoo_name, dest, card, command=cmd, temperature_K=physics.temperature_K,
        noise_std=list(levels) if ladder else levels[0],
        summary=f"coarse-grained LiCl(aq) ions at 300 K (48 ions, periodic), vector head, "
                + (_forces_phrase(model) + ", repulsive wall" if ladder else f"sigma {sigma} A")
                + (", Ewald Coulomb prior (LAMMPS coul/long + pppm can compute it)"
                   if any(p.kind == "coulomb_ewald" for p in model.priors) else "")
                + (", trained with antithetic noise pairs" if res["spec"].get("antithetic") else ""))
    return dest


def main(argv=None) -> int:
    global DATA, REFERENCE, RESULTS, OUT, RUNS_DIR
    parser = argparse.ArgumentParser(description="LiCl CG study: denoising vs force matching")
    parser.add_argument("--only", nargs="*", default=None, help="run only these runs (default: all)")
    parser.add_argument("--jobs", type=int, default=1, help="runs in parallel (one process each, 1 thread)")
    parser.add_argument("--quick", action="store_true", help="tiny settings: a smoke test of the pipeline")
    parser.add_argument("--report-only", action="store_true")
    parser.add_argument("--train-only", action="store_true",
                        help="train the --only runs (a committee: its members) and stop: no MD, no result file")
    parser.add_argument("--long-md", type=float, default=None, metavar="PS",
                        help="instead of training: a longer MD run (PS ps) of each --only run's trained model")
    parser.add_argument("--level", type=float, default=None, metavar="SIGMA",
                        help="with --long-md: run this trained level of a ladder instead of the corrected forces")
    parser.add_argument("--order", type=int, default=None, metavar="K",
                        help="with --long-md: extrapolate to sigma -> 0 with degree K in sigma^2 (default: 2 for 3 levels)")
    parser.add_argument("--no-report", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--publish", default=None,
                        help="copy this run's model (or 'best': the denoiser with the lowest RDF error) into the zoo as licl-cg-300K")
    parser.add_argument("--models-dir", default=str(REPO / "models"), help="zoo directory for --publish")
    parser.add_argument("--data", default=str(DATA), help="data set (default: the committed licl_cg_300K.npz)")
    parser.add_argument("--out-dir", default=str(HERE), help="where reference, results and plots go (default: here)")
    parser.add_argument("--runs-dir", default=str(RUNS_DIR), help="training runs (default: runs/licl)")
    args = parser.parse_args(argv)
    DATA, OUT, RUNS_DIR = Path(args.data), Path(args.out_dir), Path(args.runs_dir)
    REFERENCE, RESULTS = OUT / "reference_rdf.npz", OUT / "results"
    OUT.mkdir(parents=True, exist_ok=True)
    RUNS_DIR.mkdir(parents=True, exist_ok=True)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    names = args.only if args.only is not None else list(RUNS)
    unknown = [n for n in names if n not in RUNS]
    if unknown:
        parser.error(f"unknown runs {unknown}; known: {list(RUNS)}")
    make_reference()
    if args.long_md is not None:
        if args.jobs > 1:
            parser.error("--long-md runs one process; start several for parallel runs")
        for n in names:
            res = long_md(n, args.long_md, noise_std=args.level, extrapolation_order=args.order)
            print(f"{n}: {args.long_md:g} ps, RDF RMS {res.get('rdf', {}).get('rms_mean', float('nan')):.3f}, "
                  f"blocks {res.get('blocks_rms_mean')}, blew up {res['md']['blew_up']}")
        print(long_table(args.long_md))
        return 0
    if not args.report_only:
        if args.jobs > 1 and len(names) > 1:
            pending = list(names)
            procs: List[subprocess.Popen] = []
            while pending or procs:
                while pending and len(procs) < args.jobs:
                    n = pending.pop(0)
                    cmd = [sys.executable, __file__, "--only", n, "--no-report", "--data", str(DATA),
                           "--out-dir", str(OUT), "--runs-dir", str(RUNS_DIR)] + (["--quick"] if args.quick else [])
                    cmd += ["--train-only"] if args.train_only else []
                    log = open(RUNS_DIR / f"{n}{'-quick' if args.quick else ''}.log", "w")
                    procs.append(subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT))
                time.sleep(2)
                for p in list(procs):
                    if p.poll() is not None:
                        procs.remove(p)
                        if p.returncode:
                            print(f"run {p.args[3]} failed (rc {p.returncode}); see {RUNS_DIR}/{p.args[3]}.log")
        elif args.train_only:
            for n in names:
                for member in RUNS[n].get("committee", [n]):
                    work = RUNS_DIR / (member + ("-quick" if args.quick else ""))
                    train_run(member, RUNS[member], load_frames(), work, args.quick)
                    print(f"{member}: trained in {work}")
            return 0
        else:
            for n in names:
                t0 = time.perf_counter()
                res = do_run(n, quick=args.quick)
                print(f"{n}: RDF RMS {res.get('rdf', {}).get('rms_mean', float('nan')):.3f}, "
                      f"blew up {res['md']['blew_up']}, {time.perf_counter() - t0:.0f} s")
    if not args.no_report:
        print(report(quick=args.quick))
    if args.publish:
        name = best_denoiser() if args.publish == "best" else args.publish
        print("published", name, "as licl-cg-300K:", publish(name, models_dir=Path(args.models_dir)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
