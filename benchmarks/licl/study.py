#!/usr/bin/env python
"""The coarse-grained LiCl study: denoising vs force matching, noise levels, duplication, priors, seeds.

Recipes are declared in :data:`RECIPES` (``study.py --list``); the runner, the summary and the report
writer are ``benchmarks/study_kit.py``'s. One command trains, runs and measures runs::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/licl/study.py --jobs 2 --only RUN ...

Per run (one record in ``results/summary.jsonl``): training on the data set ``licl_cg_300K.npz``
(``make_data.py``), force errors against the instantaneous labels of the 200 test frames, CG Langevin MD
at 300 K through ASE (30 ps from the last test frame, plus two 10-ps stability runs from other frames),
ion-ion RDFs against the all-atom reference ``reference_rdf.npz``. The other LiCl scripts write their
own records into the same summary: ``--long-md`` here (longer MD of a trained model), ``replica_md.py``,
``pmf.py``, ``committee.py``, ``forces_by_setting.py``, ``generalization.py``.

``--tables`` rewrites every generated table of ``README.md`` and ``results/tables.md`` from the summary;
``--plots`` draws the RDF plots from the runs' RDFs (``results/raw/``, written by the runs, not
committed); ``--publish RUN`` copies a run's model into the zoo as ``licl-cg-300K``.

Data split: the last 200 frames (200 ps) are the test set; ``frames="all"`` means the other 1800; 500
(or 100) frames are evenly spaced over the same 1.8 ns.
"""
from __future__ import annotations

import os

if __name__ == "__main__":  # a study process: one thread (set before numpy and torch load; never on import)
    os.environ.setdefault("OMP_NUM_THREADS", "1")

import functools  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any, Dict, List, Mapping, Optional  # noqa: E402

import numpy as np  # noqa: E402
from ase import Atoms  # noqa: E402

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
from study_kit import REPO, Recipe, RecipeBook, Study, fmt, save_figure  # noqa: E402

import fit_systems  # noqa: E402  (the card's paragraph on fit)

DATA = HERE / "licl_cg_300K.npz"
REFERENCE = HERE / "reference_rdf.npz"
PAIRS = (("Li", "Li"), ("Li", "Cl"), ("Cl", "Cl"))
N_TEST = int(os.environ.get("LICL_N_TEST", 200))
N_BLOCKS = 5
BIN_WIDTH = 0.1  # Angstrom
TEMPERATURE_K = 300.0
MODEL = dict(r_max=7.0, num_channels=16, max_ell=2, correlation=2, head="vector")
EPOCHS = 30  # denoisers at 500 frames; every run sees each frame epochs * n_duplicates times
FM_EPOCHS = {500: 4 * EPOCHS, "all": round(4 * EPOCHS * 500 / 1800), 100: 4 * 5 * EPOCHS}  # the 4-copy denoisers' optimiser steps
#: the ions' periodic Coulomb sum screened by the solvent: unit charges, eps_r 94 (published estimates of
#: TIP3P's static dielectric constant lie around 90-100), Ewald with LAMMPS' coul/long 10 + pppm settings
EWALD_PRIOR = dict(charges={3: 1.0, 17: -1.0}, relative_permittivity=94.0, alpha=0.3, r_cut=10.0, accuracy=1e-6)
MD = dict(timestep_fs=1.0, friction_per_fs=0.01, equilibration_ps=5.0, production_ps=30.0, interval=10)
BLOWUP_DISTANCE = 1.0  # Angstrom: two ions closer than this end the MD (the all-atom closest approach is 2.14 A)
STABILITY_PS = 10.0
LONG_MD_PS = 100.0
QUICK = dict(frames_cap=40, epochs=1, equilibration_ps=0.05, production_ps=0.2)
#: the MD figures a record keeps
MD_KEYS = ("wall_s", "steps_per_s", "simulated_ps", "closest_approach_A", "blew_up")
CONTACT_A = 2.8  # Angstrom: Li-Cl pairs closer than this are contact ion pairs (first minimum of g_LiCl)
AUTO = (0.0118, 0.0184, 0.0263)  # the ladder "auto" derives at 500 frames (for the tables' sigma column)


# ----------------------------------------------------------------------------------------------
# recipes
# ----------------------------------------------------------------------------------------------
def denoise(name: str, meaning: str, sigma: Any = "auto", copies: int = 4, **kw) -> Recipe:
    options = dict(epochs=EPOCHS)
    options.update(kw.pop("options", {}))
    return Recipe(name, meaning, loss=kw.pop("loss", "denoising"), frames=kw.pop("frames", 500), noise_std=sigma,
                  n_duplicates=copies, options=options, **kw)


def force_match(name: str, meaning: str, frames: Any = "all", **kw) -> Recipe:
    return Recipe(name, meaning, loss="force_matching", frames=frames, noise_std=0.26, n_duplicates=1,
                  options=dict(epochs=FM_EPOCHS[frames], **kw.pop("options", {})), **kw)


THREE = (0, 1, 2)
WALL, EWALD = ("wall",), ("wall", "ewald")
LADDER = "denoise-ladder-wall-ewald-antithetic"  # the zoo recipe's training
RECIPES: List[Recipe] = [
    # one sigma: the paper's 0.26 A with 1-8 noisy copies, a sigma scan at 4 copies, copies again at 0.1 A
    *[denoise(f"denoise-sigma0.26-copies{k}", f"denoising, sigma 0.26 A, {k} noisy cop{'y' if k == 1 else 'ies'} per frame",
              0.26, k) for k in (1, 2)],
    denoise("denoise-sigma0.26", "denoising, sigma 0.26 A (the design paper's), 4 copies", 0.26),
    denoise("denoise-sigma0.26-copies8", "denoising, sigma 0.26 A, 8 copies", 0.26, 8),
    *[denoise(f"denoise-sigma{s:.2f}", f"denoising, sigma {s:g} A, 4 copies", s) for s in (0.03, 0.05, 0.1, 0.2, 0.3, 0.4)],
    *[denoise(f"denoise-sigma0.10-copies{k}", f"denoising, sigma 0.1 A, {k} cop{'y' if k == 1 else 'ies'}", 0.1, k)
      for k in (1, 2, 8)],
    # force matching: the same architecture and optimiser steps as denoise-sigma0.26
    force_match("force-match-500", "force matching on 500 labelled frames", 500),
    force_match("force-match-1800", "force matching on all 1800 labelled frames", seeds=THREE),
    denoise("hybrid-sigma0.26-weight0.1", "denoising loss + 0.1 x force-matching loss, sigma 0.26 A", 0.26,
            loss="hybrid", options=dict(force_weight=0.1)),
    denoise("hybrid-sigma0.26-weight1", "denoising loss + force-matching loss, sigma 0.26 A", 0.26,
            loss="hybrid", options=dict(force_weight=1.0)),
    denoise("hybrid-sigma0.10-weight1", "denoising loss + force-matching loss, sigma 0.1 A", 0.1,
            loss="hybrid", options=dict(force_weight=1.0)),
    # beyond one sigma (docs/noise-ladder.md): noise ladders corrected to sigma -> 0 ("auto": the ladder
    # ase_denoise.training.suggest derives from the data), the repulsive wall, mixed labels, antithetic pairs, Ewald
    denoise("denoise-ladder", "denoising, the noise ladder `auto` derives from the data, corrected to sigma -> 0"),
    denoise("denoise-ladder-wall", "the same ladder + the repulsive-wall prior", priors=WALL, seeds=THREE),
    denoise("denoise-wide-ladder-wall", "a wider ladder (0.021 / 0.033 / 0.047 A) + wall", (0.021, 0.033, 0.047),
            priors=WALL, seeds=THREE),
    denoise("denoise-ladder-wall-level-weighted", "ladder + wall, the levels weighted by (sigma_ref/sigma)^2",
            priors=WALL, options=dict(level_weighting="inverse_square")),
    denoise("mixed-ladder-wall-level-weighted", "mixed labels, ladder + wall, levels weighted", loss="mixed",
            priors=WALL, options=dict(level_weighting="inverse_square")),
    denoise("denoise-ladder-wall-60-epochs", "ladder + wall, twice the epochs", priors=WALL,
            options=dict(epochs=2 * EPOCHS)),
    denoise("denoise-sigma0.26-wall", "denoising, sigma 0.26 A + wall", 0.26, priors=WALL, seeds=THREE),
    denoise("mixed-ladder-wall", "mixed labels (variance-reduced), ladder + wall", loss="mixed", priors=WALL,
            seeds=THREE),
    force_match("force-match-wall-1800", "force matching on 1800 frames + wall", priors=WALL, seeds=THREE),
    # the frame-count study: the same optimiser steps (about 6700) at 100, 500 and 1800 frames
    denoise("denoise-ladder-wall-100", "ladder + wall on 100 frames, same optimiser steps", frames=100,
            priors=WALL, seeds=THREE, options=dict(epochs=5 * EPOCHS)),
    denoise("denoise-ladder-wall-1800", "ladder + wall on all 1800 frames, same optimiser steps", frames="all",
            priors=WALL, seeds=THREE, options=dict(epochs=round(EPOCHS * 500 / 1800))),
    force_match("force-match-wall-100", "force matching on 100 frames + wall", 100, priors=WALL, seeds=THREE),
    denoise("denoise-ladder-wall-energy-head", "ladder + wall, energy head (docs/energy-head.md)", priors=WALL,
            head="energy", seeds=THREE),
    denoise("denoise-ladder-wall-antithetic", "ladder + wall, noise drawn in antithetic pairs (N, -N)",
            priors=WALL, antithetic=True, seeds=THREE),
    # ... plus the ions' periodic Coulomb sum in TIP3P's dielectric as a residual prior (the design paper's
    # set-up: LAMMPS computes this term with coul/long + pppm, tutorials/09_licl_lammps_pppm)
    denoise(LADDER, "ladder + wall + Ewald Coulomb prior, antithetic pairs", priors=EWALD, antithetic=True,
            seeds=tuple(range(9))),
    force_match("force-match-wall-ewald-1800", "force matching on 1800 frames with the wall + Ewald priors",
                priors=EWALD, seeds=THREE),
    # twice the training with a slow weight average and the last epoch's weights (EMA 0.999: about the
    # last 1000 optimiser steps), against gradient noise in the final weights
    denoise(f"{LADDER}-60-epochs-averaged", "the Ewald recipe, 60 epochs, EMA 0.999, last-epoch weights",
            priors=EWALD, antithetic=True, seeds=THREE,
            options=dict(epochs=2 * EPOCHS, ema_decay=0.999, weights="last")),
    # the Ewald recipe's trained weights, seed by seed, with other default forces stored in the model
    # (nothing is retrained): the linear sigma -> 0 extrapolation, or the smallest level alone
    denoise(f"{LADDER}-linear-extrapolation", "the Ewald recipe's weights; default forces: the linear "
            "sigma -> 0 extrapolation", priors=EWALD, antithetic=True, seeds=tuple(range(9)),
            options=dict(default_extrapolation_order=1, weights_of=LADDER)),
    denoise(f"{LADDER}-smallest-level", "the Ewald recipe's weights; default forces: the smallest level "
            "(0.0118 A); the zoo model licl-cg-300K", priors=EWALD, antithetic=True, seeds=tuple(range(9)),
            options=dict(default_level="smallest", weights_of=LADDER)),
    # committees (one calculator, the members' mean forces): disjoint sets of three seeds
    denoise(f"committee-{LADDER}", "committee (mean forces) of three seeds of the Ewald recipe", priors=EWALD,
            antithetic=True, seeds=THREE,
            options=dict(committee=LADDER, seed_names={0: "seeds0-2", 1: "seeds3-5", 2: "seeds6-8"})),
    force_match("committee-force-match-wall-ewald-1800", "committee of the three force-matching seeds with "
                "wall + Ewald", priors=EWALD, options=dict(committee="force-match-wall-ewald-1800",
                                                          seed_names={0: "seeds0-2"})),
]
BOOK = RecipeBook(RECIPES)
RUNS = BOOK.runs  # run name -> (recipe, seed)

#: the plots of ``--plots``: name -> (runs, title); one-sigma studies get rho_sigma (the noised reference)
PLOTS = {
    "duplicates": [f"denoise-sigma0.26-copies{k}" for k in (1, 2)] + ["denoise-sigma0.26", "denoise-sigma0.26-copies8"],
    "duplicates_s0.10": ["denoise-sigma0.10-copies1", "denoise-sigma0.10-copies2", "denoise-sigma0.10", "denoise-sigma0.10-copies8"],
    "sigma": ["denoise-sigma0.03", "denoise-sigma0.05", "denoise-sigma0.10", "denoise-sigma0.20", "denoise-sigma0.26",
              "denoise-sigma0.30", "denoise-sigma0.40"],
    "force_matching": ["force-match-500", "force-match-1800", "denoise-sigma0.05", "hybrid-sigma0.26-weight0.1",
                       "hybrid-sigma0.26-weight1", "hybrid-sigma0.10-weight1"],
    "ladder": ["denoise-sigma0.05", "denoise-ladder", "denoise-ladder-wall", "denoise-ladder-wall-antithetic", LADDER,
               "denoise-wide-ladder-wall", "mixed-ladder-wall", "force-match-1800", "force-match-wall-ewald-1800"],
}


def recipe_of(run: str) -> Recipe:
    return RUNS[run.partition("+")[0]][0]


# ----------------------------------------------------------------------------------------------
# data
# ----------------------------------------------------------------------------------------------
def load_frames(path: Optional[Path] = None) -> List[Atoms]:
    """All frames of the data set as periodic ``Atoms`` (wrapped) with ``arrays['ref_forces']`` (eV/A)
    and ``info['temperature_K']``. Read once per process (callers must not modify them)."""
    return _read_frames(Path(STUDY.data if path is None else path).resolve())


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
    """Training frames: ``"all"`` the 1800 before the test set, or ``which`` evenly spaced over them."""
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


def make_reference(path: Optional[Path] = None) -> Dict[str, np.ndarray]:
    """Reference RDFs of all frames with block standard errors (5 blocks) and the two halves' RMS
    difference (the noise floor); cached in ``reference_rdf.npz`` (committed)."""
    path = Path(path or STUDY.reference)
    if path.exists():
        return dict(np.load(path))
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
        out[f"{key}_half_rms"] = np.array(np.sqrt(np.mean((halves[0][key] - halves[1][key]) ** 2)))
    np.savez_compressed(path, **out)
    plot_rdfs(out, {}, path.with_suffix(".png"), "all-atom reference (ions of LiCl/TIP3P, 300 K)")
    return out


def reference_figures(ref: Mapping[str, np.ndarray]) -> Dict[str, Any]:
    """The reference's noise floor (two halves, mean over pairs) and Li-Cl first peak."""
    from ase_denoise.analysis import first_peak

    pr, ph = first_peak(ref["r"], ref["Li-Cl"])
    return dict(floor=float(np.mean([float(ref[f"{a}-{b}_half_rms"]) for a, b in PAIRS])), li_cl_peak_r=pr, li_cl_peak_g=ph)


def reference_record(quick: bool = False) -> Dict[str, Any]:
    """The ``reference`` record: the reference RDFs' floor and peak, the box, the ions' closest approach."""
    from ase_denoise.md import min_pair_distance

    frames = load_frames()
    return STUDY.summary(quick).put(dict(kind="reference", run="reference", **reference_figures(make_reference()),
                                    box_A=float(frames[0].cell[0, 0]),
                                    closest_approach_A=float(min(min_pair_distance(a, 4.0) for a in frames[::10]))))


def noised_reference(noise_std: float, quick: bool = False) -> Dict[str, np.ndarray]:
    """RDFs of the reference frames with Gaussian noise of std ``noise_std`` added to every ion: the
    structure of rho_sigma, which MD with a perfect sigma-denoiser's forces samples (docs/design.md, "The
    estimator"). Model against this: the learning error; this against the reference: the smoothing bias."""
    path = STUDY.raw / f"noised_reference_s{noise_std:.2f}{'-quick' if quick else ''}.npz"
    if path.exists():
        return dict(np.load(path))
    ref = make_reference()
    rng = np.random.default_rng(12345)
    noisy = []
    for atoms in load_frames()[:: 40 if quick else 2]:
        a = atoms.copy()
        a.positions += rng.normal(0.0, noise_std, a.positions.shape)
        a.wrap()
        noisy.append(a)
    g = rdfs(noisy, float(ref["r"][-1] + BIN_WIDTH / 2))
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **g)
    return g


def rdf_figures(ref: Mapping[str, np.ndarray], g: Mapping[str, np.ndarray]) -> Dict[str, Any]:
    """Per pair the RMS difference from the reference and the first peak; their mean RMS ``rms_mean``."""
    from ase_denoise.analysis import first_peak

    out: Dict[str, Any] = {}
    for a, b in PAIRS:
        key = f"{a}-{b}"
        pr, ph = first_peak(ref["r"], g[key])
        out[key] = dict(rms=float(np.sqrt(np.mean((g[key] - ref[key]) ** 2))), peak_r=pr, peak_g=ph)
    out["rms_mean"] = float(np.mean([out[f"{a}-{b}"]["rms"] for a, b in PAIRS]))
    return out


def short_rdf(figures: Mapping[str, Any]) -> Dict[str, Any]:
    """What a record keeps of :func:`rdf_figures`: the RMS per pair, their mean and the Li-Cl first peak."""
    out = {f"{a}-{b}": figures[f"{a}-{b}"]["rms"] for a, b in PAIRS}
    out.update(rms_mean=figures["rms_mean"], peak_r=figures["Li-Cl"]["peak_r"], peak_g=figures["Li-Cl"]["peak_g"])
    return out


def contact_pairs(atoms: Atoms) -> int:
    """Number of Li-Cl pairs closer than :data:`CONTACT_A` (minimum image)."""
    z = atoms.numbers
    d = atoms.get_all_distances(mic=True)[np.ix_(z == 3, z == 17)]
    return int((d < CONTACT_A).sum())


# ----------------------------------------------------------------------------------------------
# training and MD
# ----------------------------------------------------------------------------------------------
def with_defaults(model, recipe: Recipe):
    """``model`` with the default forces ``recipe`` names stored in its physics: ``default_level``
    "smallest" (its smallest trained level, ``PhysicsConfig.default_noise_std``) or
    ``default_extrapolation_order``. Neither enters training (the kept epoch is the one with the
    lowest validation loss, a denoising loss at the trained levels)."""
    from dataclasses import replace

    stored = {}
    if recipe.get("default_level") == "smallest":
        stored["default_noise_std"] = min(model.noise_levels)
    if recipe.get("default_extrapolation_order") is not None:
        stored["default_extrapolation_order"] = recipe.get("default_extrapolation_order")
    if stored:
        model.physics = replace(model.physics, **stored)
    return model


def weights_file(recipe: Recipe, work: Path) -> Path:
    """The weights a run is evaluated with: the epoch with the lowest validation loss (``best``), or
    the end of the schedule for ``weights="last"`` (with a slow EMA: an average over the last steps)."""
    return work / ("last.safetensors" if recipe.get("weights") == "last" else "best.safetensors")


def train_run(recipe: Recipe, seed: int, frames: List[Atoms], work: Path, quick: bool):
    """Train (or resume, or reuse) one run on ``frames`` (all the data set's frames: the recipe picks its
    training frames) -> ``(model, n_frames, last.safetensors metadata)``. ``weights_of`` recipes reuse
    the named recipe's run of the same seed and store their default forces."""
    from ase_denoise import TrainConfig, train
    from ase_denoise.checkpoint import load_model_file, read_metadata
    from ase_denoise.priors import EwaldCoulomb

    if recipe.get("weights_of"):
        source = BOOK.recipe(recipe.get("weights_of"))
        model, n_frames, last = train_run(source, seed, frames, STUDY.work_dir(source.run_name(seed), quick), quick)
        return with_defaults(model, recipe), n_frames, last
    data = split(frames, recipe.frames)
    epochs = recipe.get("epochs")
    if quick:
        data, epochs = data[: QUICK["frames_cap"]], QUICK["epochs"]
    last_path = work / "last.safetensors"
    cfg = TrainConfig(
        loss=recipe.loss, n_duplicates=recipe.n_duplicates, epochs=epochs, batch_size=8, lr=5e-3,
        force_weight=recipe.get("force_weight", 1.0), seed=seed, valid_fraction=0.1,
        level_weighting=recipe.get("level_weighting", "uniform"), antithetic_noise=recipe.antithetic,
        ema_decay=recipe.get("ema_decay", 0.99),
    )
    priors = [{"wall": "repulsive_wall", "ewald": EwaldCoulomb(**EWALD_PRIOR)}[p] for p in recipe.priors]
    done = last_path.exists() and read_metadata(last_path)["training"]["epochs_completed"] >= epochs
    if not done:
        train(data, str(work), noise_std=recipe.noise_std, temperature_K=TEMPERATURE_K, train_config=cfg,
              resume=(work / "training_state.pt").exists(), progress=True, priors=priors,
              **dict(MODEL, head=recipe.head))
    return with_defaults(load_model_file(weights_file(recipe, work)), recipe), len(data), read_metadata(last_path)


def committee_members(recipe: Recipe, seed: int) -> List[str]:
    """The member runs of a committee recipe's "seed" ``seed``: with ``committee_size`` K (default 3) its
    member recipe's seeds ``K seed .. K seed + K - 1`` (disjoint sets of members)."""
    member, k = BOOK.recipe(recipe.get("committee")), recipe.get("committee_size", 3)
    return [member.run_name(s) for s in range(k * seed, k * seed + k)]


def run_md(model, start: Atoms, quick: bool, seed: int = 0, production_ps: float = None,
           equilibration_ps: float = None, noise_std: float = None, extrapolation_order: int = None) -> Dict[str, Any]:
    """CG Langevin MD at 300 K with :func:`ase_denoise.md.run_langevin` (momenta drawn at 300 K, then
    equilibration and production; a frame every ``MD['interval']`` steps of the production part). The
    run 'blew up' if two ions come within :data:`BLOWUP_DISTANCE` or a force becomes non-finite."""
    from ase_denoise import DenoiseCalculator, ForcesChoice
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
    atoms.calc = DenoiseCalculator(model, forces=ForcesChoice(noise_std=noise_std, extrapolation_order=extrapolation_order))
    n_equil = int(round(md["equilibration_ps"] * 1000 / md["timestep_fs"]))
    n_prod = int(round(md["production_ps"] * 1000 / md["timestep_fs"]))
    sampled: List[Atoms] = []
    temps: List[float] = []
    last = {"step": 0}

    def sample(atoms: Atoms, step: int) -> None:
        last["step"] = step
        if step > n_equil:
            sampled.append(atoms.copy())
            temps.append(atoms.get_temperature())

    status: Dict[str, Any] = {"blew_up": False, "non_finite_force": False}
    t0 = time.perf_counter()
    try:
        res = run_langevin(atoms, temperature_K=TEMPERATURE_K, steps=n_equil + n_prod, timestep_fs=md["timestep_fs"],
                           friction_per_fs=md["friction_per_fs"], interval=md["interval"], seed=seed,
                           observers=[sample], min_distance_stop=BLOWUP_DISTANCE)
        steps, wall, closest = res["steps"], res["wall_s"], res["min_distance"]
        status["blew_up"] = res["stopped"] is not None
    except (RuntimeError, DataError):
        # a non-finite force at an observed step raises RuntimeError; between two observed steps it makes
        # the positions non-finite, which the calculator refuses (DataError)
        status.update(blew_up=True, non_finite_force=True)
        steps, wall, closest = last["step"], time.perf_counter() - t0, float("nan")
    return dict(frames=sampled, wall_s=wall, steps=int(steps), steps_per_s=steps / max(wall, 1e-9),
                simulated_ps=steps * md["timestep_fs"] / 1000, closest_approach_A=float(closest),
                mean_temperature_K=float(np.mean(temps)) if temps else float("nan"), **status)


def load_trained(run: str, quick: bool = False):
    """The model of study run ``run`` as the study evaluates it (trained here if missing); a committee: a list."""
    recipe, seed = RUNS[run]
    frames = load_frames()
    if recipe.get("committee"):
        return [load_trained(m, quick) for m in committee_members(recipe, seed)]
    return train_run(recipe, seed, frames, STUDY.work_dir(run, quick), quick)[0]


# ----------------------------------------------------------------------------------------------
# the study
# ----------------------------------------------------------------------------------------------
class LiClStudy(Study):
    """Coarse-grained LiCl(aq): denoising on ion coordinates against force matching on the ions' forces."""

    name = "licl"
    here = HERE
    data_file = "licl_cg_300K.npz"
    description = "coarse-grained LiCl: denoising vs force matching (benchmarks/licl/README.md)"
    record_keys = {"long_md": ("production_ps", "level", "order"), "replicas": ("n_replicas", "production_ps"),
                   "check": ("choice", "production_ps"), "refine": ("iterations",),
                   "generalization": ("levels_scored",)}

    def configure(self, out_dir=None, runs_dir=None, data=None) -> None:
        super().configure(out_dir, runs_dir, data)
        self.reference = self.out_dir / "reference_rdf.npz"

    def load_frames(self, path):
        return load_frames(path)

    def split(self, frames, recipe):
        return frames, frames[-N_TEST:]  # train_run picks the recipe's frames from all of them

    def train(self, recipe, seed, frames, work, quick):
        if recipe.get("committee"):
            members = [train_run(*RUNS[m], frames, self.work_dir(m, quick), quick) for m in committee_members(recipe, seed)]
            model, n_frames, last = [m for m, _, _ in members], members[0][1], members[0][2]
        else:
            model, n_frames, last = train_run(recipe, seed, frames, work, quick)
        first = model[0] if isinstance(model, list) else model
        return model, dict(n_frames=n_frames, epochs_completed=last["training"].get("epochs_completed"),
                           train_elapsed_s=(last.get("metrics") or {}).get("elapsed_s"),
                           best_epoch=(first.metadata.get("metrics") or {}).get("epoch"))

    def force_errors(self, model, test, quick):
        from study_kit import force_errors, short_metrics

        models = model if isinstance(model, list) else [model]
        errors = force_errors(models[0], test[:40] if quick else test, committee=models[1:])
        return {"forces": {"all": short_metrics(errors["all"], ("rmse",))}}

    def measure(self, model, recipe, seed, run, train, test, frames, quick):
        ref = make_reference()
        md = run_md(model, test[-1], quick)
        sampled = md.pop("frames")
        # stability replicas: other seeds and start frames, 10 ps each (RDFs come from the main run only)
        replicas = [run_md(model, test[-1 - 50 * i], quick, seed=10 * i, production_ps=STABILITY_PS, equilibration_ps=0.0)
                    for i in (1, 2)]
        for r in replicas:
            r.pop("frames")
        stability = dict(runs=3, blew_up=int(md["blew_up"]) + sum(int(r["blew_up"]) for r in replicas),
                         closest_approach_A=float(np.nanmin([md["closest_approach_A"]] + [r["closest_approach_A"] for r in replicas])))
        out: Dict[str, Any] = dict(md={k: md[k] for k in MD_KEYS}, stability=stability)
        if sampled and not md["blew_up"]:
            g = rdfs(sampled, float(ref["r"][-1] + BIN_WIDTH / 2))
            out["rdf"] = short_rdf(rdf_figures(ref, g))
            self.raw.mkdir(parents=True, exist_ok=True)
            np.savez(self.raw / f"{run}{'-quick' if quick else ''}_rdf.npz", **g)
            first = model[0] if isinstance(model, list) else model
            if recipe.loss != "force_matching" and len(first.noise_levels) == 1:  # against rho_sigma
                gn = noised_reference(recipe.noise_std, quick)
                out["rdf"]["rms_mean_vs_noised"] = float(np.mean(
                    [np.sqrt(np.mean((g[f"{a}-{b}"] - gn[f"{a}-{b}"]) ** 2)) for a, b in PAIRS]))
        return out

    def one_line(self, record):
        return (f"RDF RMS {fmt((record.get('rdf') or {}).get('rms_mean'))}, blew up {record['stability']['blew_up']}"
                f"/{record['stability']['runs']}")

    # -- longer MD of a trained model ---------------------------------------------------------
    def long_md(self, run: str, production_ps: float, n_blocks: int = 4, level: float = None, order: int = None):
        """A longer CG MD run of a trained model (same thermostat and start frame as the main run, MD seed
        7): the RDF error of the whole run and of ``n_blocks`` consecutive blocks (their trend shows
        drift), Li-Cl contact pairs every 0.1 ps. ``level``: one trained level of a ladder instead of the
        model's default forces; ``order``: the degree of the sigma -> 0 extrapolation. -> record
        ``long_md``."""
        found = self.summary().get("long_md", run, production_ps=production_ps, level=level, order=order)
        if found:
            return found
        model = load_trained(run)
        ref = make_reference()
        md = run_md(model, load_frames()[-1], quick=False, seed=7, production_ps=production_ps, noise_std=level,
                    extrapolation_order=order)
        sampled = md.pop("frames")
        record: Dict[str, Any] = dict(kind="long_md", run=run, production_ps=production_ps, level=level, order=order,
                                      md={k: md[k] for k in MD_KEYS}, date=time.strftime("%Y-%m-%d"))
        if sampled and not md["blew_up"]:
            r_max = float(ref["r"][-1] + BIN_WIDTH / 2)
            g = rdfs(sampled, r_max)
            record["rdf"] = short_rdf(rdf_figures(ref, g))
            contacts = [contact_pairs(a) for a in sampled[::10]]  # every 0.1 ps
            record["contact_pairs"] = dict(start=contacts[0], mean=float(np.mean(contacts)), end=contacts[-1],
                                           max=int(np.max(contacts)))
            tag = f"{run}_{production_ps:g}ps" + (f"_level{level:g}" if level else "") + (f"_order{order}" if order else "")
            self.raw.mkdir(parents=True, exist_ok=True)
            np.savez(self.raw / f"long_{tag}_rdf.npz", **g)
            edges = np.linspace(0, len(sampled), n_blocks + 1).round().astype(int)
            record["block_ps"] = production_ps / n_blocks
            record["blocks_rms_mean"] = [rdf_figures(ref, rdfs(sampled[a:b], r_max))["rms_mean"]
                                         for a, b in zip(edges[:-1], edges[1:])]
        return self.summary().put(record)

    # -- command line ---------------------------------------------------------------------------
    def add_arguments(self, parser):
        parser.add_argument("--train-only", action="store_true", help="train the --only runs (a committee: its "
                            "members) and stop: no MD, no record")
        parser.add_argument("--long-md", type=float, default=None, metavar="PS",
                            help="instead of training: a longer MD run (PS ps) of each --only run's trained model")
        parser.add_argument("--level", type=float, default=None, metavar="SIGMA",
                            help="with --long-md: run this trained level of a ladder instead of the default forces")
        parser.add_argument("--order", type=int, default=None, metavar="K",
                            help="with --long-md: extrapolate to sigma -> 0 with degree K in sigma^2")
        parser.add_argument("--plots", action="store_true", help="draw the RDF plots from results/raw/")
        parser.add_argument("--publish", default=None, metavar="RUN", help="copy this run's model into the zoo as licl-cg-300K")
        parser.add_argument("--models-dir", default=str(REPO / "models"), help="zoo directory for --publish")

    def main(self, argv=None) -> int:
        args = list(sys.argv[1:] if argv is None else argv)
        # --long-md and --train-only replace the runner: strip --only so that Study.main does not train
        if "--long-md" in args or "--train-only" in args:
            return self._special(args)
        return super().main(args)

    def _special(self, argv) -> int:
        import argparse

        parser = argparse.ArgumentParser()
        parser.add_argument("--only", nargs="*", default=[])
        parser.add_argument("--quick", action="store_true")
        for flag in ("--data", "--out-dir", "--runs-dir"):
            parser.add_argument(flag, default=None)
        parser.add_argument("--jobs", type=int, default=1)
        self.add_arguments(parser)
        args, _ = parser.parse_known_args(argv)
        self.configure(args.out_dir, args.runs_dir, args.data)
        for n in args.only:
            if n not in RUNS:
                parser.error(f"unknown run {n}")
        if args.train_only:
            for n in args.only:
                recipe, seed = RUNS[n]
                members = committee_members(recipe, seed) if recipe.get("committee") else [n]
                for m in members:
                    train_run(*RUNS[m], load_frames(), self.work_dir(m, args.quick), args.quick)
                    print(f"{m}: trained in {self.work_dir(m, args.quick)}")
            return 0
        for n in args.only:
            res = self.long_md(n, args.long_md, level=args.level, order=args.order)
            print(f"{n}: {args.long_md:g} ps, RDF RMS {fmt((res.get('rdf') or {}).get('rms_mean'))}, "
                  f"blocks {res.get('blocks_rms_mean')}, blew up {res['md']['blew_up']}")
        return 0

    def handle(self, args):
        if self.summary(args.quick).get("reference", "reference") is None:
            reference_record(args.quick)
        if args.plots:
            for path in plot_all(args.quick):
                print("wrote", path)
        if args.publish:
            print("published", args.publish, "as licl-cg-300K:", publish(args.publish, models_dir=Path(args.models_dir),
                                                                        quick=args.quick))

    # -- tables -----------------------------------------------------------------------------------
    def documents(self, quick: bool = False) -> Dict[Path, Dict[str, str]]:
        from licl import tables

        return tables.documents(self, quick)

    def tables(self, quick: bool = False) -> Dict[str, str]:
        return self.documents(quick)[self.readme]


STUDY = LiClStudy(BOOK)


# ----------------------------------------------------------------------------------------------
# plots
# ----------------------------------------------------------------------------------------------
def plot_rdfs(ref, curves: Dict[str, Dict[str, np.ndarray]], path: Path, title: str) -> Path:
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
            ax.plot(r, g[key], "k:" if label.startswith("noised") else "-", lw=1.3 if label.startswith("noised") else 1.1,
                    label=label)
        ax.set_title(key)
        ax.set_xlabel("r (Å)")
        ax.set_xlim(1.5, r[-1])
    axes[0].set_ylabel("g(r)")
    axes[-1].legend(fontsize=7, loc="upper right")
    fig.suptitle(title)
    fig.tight_layout()
    return save_figure(fig, path)


def plot_errors(records: Mapping[str, Mapping[str, Any]], path: Path) -> Path:
    """Mean RDF error against the number of copies and against sigma (single-sigma denoisers)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
    panels = ((axes[0], [("duplicates", "sigma 0.26 A"), ("duplicates_s0.10", "sigma 0.1 A")], "n_duplicates", "n_duplicates k"),
              (axes[1], [("sigma", "k = 4")], "noise_std", "sigma (Å)"))
    for ax, studies, key, label in panels:
        for plot, what in studies:
            pts = [(recipe_of(n).get(key), records[n]["rdf"]["rms_mean"]) for n in PLOTS[plot]
                   if n in records and records[n].get("rdf")]
            if pts:
                x, y = zip(*sorted(pts))
                ax.plot(x, y, "o-", label=f"denoising, 500 frames, {what} (blown-up runs omitted)")
        for n, style in (("force-match-1800", "--"), ("force-match-500", ":")):
            if n in records and records[n].get("rdf"):
                ax.axhline(records[n]["rdf"]["rms_mean"], ls=style, color="k", label=f"force matching, {n.rsplit('-', 1)[1]} frames")
        ax.set_xlabel(label)
        ax.set_ylabel("RDF RMS error (mean over pairs)")
        if key == "n_duplicates":
            ax.set_xscale("log", base=2)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return save_figure(fig, path)


def plot_all(quick: bool = False) -> List[Path]:
    """The RDF plots of the runs whose RDFs are in ``results/raw/`` (written by the runs themselves)."""
    ref = make_reference()
    suffix = "-quick" if quick else ""
    out = [] if quick else [plot_rdfs(ref, {}, STUDY.out_dir / "reference_rdf.png",
                                      "all-atom reference (ions of LiCl/TIP3P, 300 K)")]
    for plot, names in PLOTS.items():
        curves = {n: dict(np.load(STUDY.raw / f"{n}{suffix}_rdf.npz")) for n in names
                  if (STUDY.raw / f"{n}{suffix}_rdf.npz").exists()}
        if curves and plot in ("duplicates", "duplicates_s0.10", "force_matching"):  # one-sigma studies
            sig = 0.1 if plot.endswith("s0.10") else 0.26
            curves[f"noised reference, sigma {sig} (rho_sigma)"] = noised_reference(sig, quick)
        if curves:
            out.append(plot_rdfs(ref, curves, STUDY.out_dir / f"rdf_{plot}{suffix}.png", f"CG MD RDFs: {plot} study"))
    out.append(plot_errors(STUDY.by_run(quick=quick), STUDY.out_dir / f"rdf_error{suffix}.png"))
    long_curves = {p.stem[len("long_"): -len("_rdf")]: dict(np.load(p))
                   for p in sorted(STUDY.raw.glob(f"long_*_{LONG_MD_PS:g}ps_rdf.npz"))}
    if long_curves and not quick:
        out.append(plot_rdfs(ref, long_curves, STUDY.out_dir / "rdf_long.png", f"CG MD RDFs over {LONG_MD_PS:g} ps (--long-md)"))
    return out


# ----------------------------------------------------------------------------------------------
# zoo
# ----------------------------------------------------------------------------------------------
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
        return (f" at the level {model.physics.default_noise_std:g} A stored as the model's default "
                "(`forces=ForcesChoice(noise_std=s)` gives another trained level, `ForcesChoice(extrapolation_order=k)` "
                "the extrapolation to sigma -> 0 through all levels)")
    return (" at each trained level, extrapolated to sigma -> 0 (all levels in one batched forward; "
            "`forces=ForcesChoice(noise_std=s)` gives one level)")


def _order_line(model) -> str:
    """The card's line on which forces a ladder model returns by default."""
    if len(model.noise_levels) < 2:
        return ""
    from ase_denoise.forces import evaluation_levels

    levels, w = evaluation_levels(model)
    physics = model.physics
    if physics.default_noise_std is not None:
        return (f"\n- Default forces: the smallest trained level, sigma = {physics.default_noise_std:g} A, without the "
                f"sigma -> 0 extrapolation (stored in the file, `default_noise_std`; "
                f"`DenoiseCalculator(model, forces=ForcesChoice(extrapolation_order=2))` gives the quadratic "
                f"extrapolation). Why: the study's "
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


def _seed_line(run: str, records) -> str:
    """The spread of the mean RDF error over the recipe's training seeds, for the card."""
    scores = [records[n]["rdf"]["rms_mean"] for n in recipe_of(run).runs() if n in records and records[n].get("rdf")]
    if len(scores) < 2:
        return ""
    return (f"\nThe same recipe over {len(scores)} training seeds: mean RDF RMS (over the three pairs) "
            f"{np.mean(scores):.3f} ± {np.std(scores, ddof=1):.3f} ({', '.join(f'{x:.3f}' for x in scores)}); "
            "this file is seed 0.\n")


def publish(run: str, zoo_name: str = "licl-cg-300K", models_dir: Path = REPO / "models", quick: bool = False) -> Path:
    """Copy run ``run``'s model into ``models/<zoo_name>/``, write its card and registry entry."""
    import shutil

    import ase.io

    from ase_denoise.checkpoint import load_model_file, save_model
    from ase_denoise.zoo import register_model

    records = STUDY.by_run(quick=quick)
    res = records[run]
    recipe, seed = RUNS[run]
    source = BOOK.recipe(recipe.get("weights_of")).run_name(seed) if recipe.get("weights_of") else run
    src = weights_file(recipe, STUDY.work_dir(source, quick))
    model = load_model_file(src)
    trained_physics = model.physics
    model = with_defaults(model, recipe)
    levels = model.noise_levels
    sigma = ", ".join(f"{x:g}" for x in levels)
    ladder = len(levels) > 1
    physics = model.physics
    dest_dir = Path(models_dir) / zoo_name
    dest_dir.mkdir(parents=True, exist_ok=True)
    dest = dest_dir / f"{zoo_name}.safetensors"
    if model.physics == trained_physics:
        shutil.copyfile(src, dest)
    else:  # the recipe stores its default forces with the weights
        meta = model.metadata
        save_model(model, dest, training=meta["training"], metrics=meta["metrics"], overwrite=True)
    os.chmod(dest, 0o644)
    shutil.copyfile(STUDY.reference, dest_dir / "reference_rdf.npz")  # for the tutorial's RDF overlay
    os.chmod(dest_dir / "reference_rdf.npz", 0o644)
    start = load_frames()[-1].copy()  # a test-set frame: the start of CG MD in the tutorial
    del start.arrays["ref_forces"]
    ase.io.write(dest_dir / "start.extxyz", start)
    os.chmod(dest_dir / "start.extxyz", 0o644)
    ref = reference_figures(make_reference())
    box = float(load_frames()[0].cell[0, 0])
    c = model.config
    rdf = res["rdf"]
    n_params = sum(p.numel() for p in model.parameters())
    cmd = f"OMP_NUM_THREADS=1 .venv/bin/python benchmarks/licl/study.py --publish {run}"
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

It is the run `{run}` of the study in `benchmarks/licl/README.md`; the figures below, and the README
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

- noise_std (sigma): **{sigma} Angstrom**{" (the ladder `--noise-std auto` derives from the data)" if recipe.noise_std == "auto" else ""}; n_duplicates: **{recipe.n_duplicates}**.
- Priors: {"; ".join(p.describe() for p in model.priors) or "none"}.{_order_line(model)}
- Training: {res['epochs_completed']} epochs, batch size 8{", noise drawn in antithetic pairs (N, -N)" if recipe.antithetic else ""}, AdamW lr 0.005 with cosine schedule, EMA 0.99,
  10% of frames held out for validation, seed {seed}, float32; weights of the epoch with the lowest validation
  loss (epoch {res.get('best_epoch')}); {res['train_elapsed_s'] / 60:.1f} min of training on one CPU thread.
- Architecture: MACE backbone, head={c.head}, r_max={c.r_max}, num_channels={c.num_channels},
  max_ell={c.max_ell}, max_L={c.max_L}, correlation={c.correlation}, num_interactions={c.num_interactions};
  element table {list(c.atomic_numbers)}; {n_params} parameters.

## Measured figures

CG Langevin MD through ASE (300 K, 1 fs, friction 0.01/fs, {res['md']['simulated_ps']:.0f} ps from a test-set
frame), ion-ion RDFs against the all-atom reference (2 ns), bins of 0.1 A up to half the box:

| figure | value |
| --- | --- |
| RDF RMS difference Li-Li / Li-Cl / Cl-Cl | {rdf['Li-Li']:.3f} / {rdf['Li-Cl']:.3f} / {rdf['Cl-Cl']:.3f} |
| Li-Cl first peak, model (r Angstrom, g) | {rdf['peak_r']:.2f}, {rdf['peak_g']:.2f} |
| Li-Cl first peak, reference (r Angstrom, g) | {ref['li_cl_peak_r']:.2f}, {ref['li_cl_peak_g']:.2f} |
| closest ion-ion approach during MD | {res['md']['closest_approach_A']:.2f} Angstrom |
| force RMSE vs instantaneous labels (200 test frames; a mean force cannot reach 0) | {res['forces']['all']['rmse']:.3f} eV/Angstrom |
| MD speed (48 ions, one CPU thread) | {res['md']['steps_per_s']:.0f} steps/s |
{_seed_line(run, records)}
`reference_rdf.npz` next to the weights holds the all-atom RDFs (`r`, `Li-Li`, `Li-Cl`, `Cl-Cl`, block
standard errors `*_err`) and `start.extxyz` a starting configuration (a test-set frame); the tutorial
`tutorials/07_licl_cg.ipynb` runs CG MD from it and overlays the RDFs.{_lammps_line(model)}
"""
    register_model(
        models_dir, zoo_name, dest, card, command=cmd, temperature_K=physics.temperature_K,
        fit_note=fit_systems.card_note(zoo_name),
        noise_std=list(levels) if ladder else levels[0],
        summary="coarse-grained LiCl(aq) ions at 300 K (48 ions, periodic), vector head, "
                + (_forces_phrase(model) + ", repulsive wall" if ladder else f"sigma {sigma} A")
                + (", Ewald Coulomb prior (LAMMPS coul/long + pppm can compute it)"
                   if any(p.kind == "coulomb_ewald" for p in model.priors) else "")
                + (", trained with antithetic noise pairs" if recipe.antithetic else ""))
    return dest


def main(argv=None) -> int:
    return STUDY.main(argv)


if __name__ == "__main__":
    sys.exit(main())
