"""One-bead water: denoising on coordinates alone vs force matching vs mixed labels, and a pairwise control.

Data: ``water_1bead_300K.npz`` (``make_data.py``: 256 TIP3P molecules, 300 K, NVT at the NPT mean
volume, one bead per molecule at its centre of mass, the total force on the molecule as its mapped
force, a frame every 1.5 ps). The last 20% of the trajectory (in time) is held out; ``N`` training
frames are taken evenly spaced from the first 80%. One bead type ``W`` (placeholder number 1, mass
18.015 amu, ``ase_denoise.data.bead_atoms``), periodic cubic box.

Every run fits the repulsive-wall prior to its training frames (``priors=["repulsive_wall"]``: zero
where the data have samples, a wall below the closest approach) and takes the same number of optimiser
steps (:data:`STEPS`, batch :data:`BATCH`):

* ``denoise-<N>``: denoising, coordinates only, the noise ladder ``"auto"`` derives from the data (the
  inner width of the first bead-bead peak sets it), antithetic pairs, 4 copies per frame;
* ``mixed-<N>``: the same ladder, loss ``"mixed"`` (the variance-reduced mixture of force and noise labels);
* ``force-match-<N>``: force matching on the mapped forces (``noise_std`` only sets the output scale);
* ``denoise-pairwise-<N>``, ``force-match-pairwise-<N>``: the same recipes with the pairwise-only
  architecture :data:`PAIR_MODEL` (``num_interactions=1, correlation=1``, vector head);
* ``denoise-large-<N>``, ``force-match-large-<N>``: the same recipes with the larger :data:`BIG_MODEL`
  (32 channels, ``max_L=2``, correlation 3: four-body messages), to see whether the missing tetrahedral
  order is the default model's size.

``N`` training frames (100 or 480), ``-seed1``/``-seed2`` training seeds 1 and 2 (:data:`RECIPES`,
``--list``).

Why :data:`PAIR_MODEL` is pairwise. With one interaction the network is: node embedding ``h_i`` (a
linear map of bead type and noise conditioning: per-bead constants), one message ``A_i = 1/avg *
sum_j R(r_ij) Y(r_hat_ij) h_j`` (linear in the sum over neighbours; ``R`` the radial MLP of ``|r_ij|``
alone), MACE's first-layer skip ``A_i x node_attrs`` (linear in ``A_i``), a symmetric contraction of
correlation 1 (linear in ``A_i``: products of two or more ``A`` only appear for correlation >= 2), no
residual connection in the first layer (``use_sc=False``) and a *linear* ``1x1o`` readout. Every map
after the sum over ``j`` is linear, so the output on bead i is ``sum_j f(r_ij) r_hat_ij``: a sum of
two-body terms (central, equal and opposite for one bead type: the force of a pair potential), plus
the output of an isolated bead, which is zero (an invariant input gives no vector). The repulsive
wall is a pair term too. A second interaction, or correlation 2, multiplies sums over neighbours and
makes it many-body. ``tests/test_water_study.py`` checks this numerically: the pairwise model's force
on bead 0 of three beads equals the sum of its forces with only bead 1 and only bead 2 present (minus
the isolated bead's), the default model's does not.

Per run (one ``run`` record in ``results/summary.jsonl``, ``benchmarks/study_kit.py``'s runner): held-out force errors against the mapped forces (noisy
instantaneous labels: their conditional mean, the mean force, is what a model can learn at best, so
even a perfect model keeps a large relative error), and a Langevin MD at 300 K (ASE, :data:`MD`)
from the first held-out frame; from its frames the bead-bead RDF, the triplet-angle (O-O-O)
distribution within the first shell (cutoff at the reference RDF's first minimum) and the
tetrahedral order q of the four nearest beads, each compared with the held-out reference by the
RMS difference of the curves (the same figure between the two halves of the held-out data is the
sampling-noise floor, the ``reference`` record). The curves go to ``results/raw/`` (not committed).

    python benchmarks/water/study.py --only denoise-480 force-match-480 denoise-pairwise-480 force-match-pairwise-480 mixed-480
    python benchmarks/water/study.py --tables            # the tables of README.md, from the summary
    python benchmarks/water/study.py --plot              # results/structure_<N>.png, from results/raw/
"""
from __future__ import annotations

import os

if __name__ == "__main__":  # a study process: one thread (set before numpy and torch load; never on import)
    os.environ.setdefault("OMP_NUM_THREADS", "1")

import json  # noqa: E402
import logging  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any, Dict, List, Mapping, Optional, Sequence  # noqa: E402

import numpy as np  # noqa: E402
from ase import Atoms  # noqa: E402

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
from study_kit import REPO, Recipe, RecipeBook, Study, fmt, md_table, mean_std, save_figure  # noqa: E402

import fit_systems  # noqa: E402  (the card's paragraph on fit)

DATA = HERE / "water_1bead_300K.npz"
TEMPERATURE_K = 300.0
BEAD, BEAD_MASS = "W", 18.015  # one bead type; amu (the molecule's mass)
#: the default (many-body) architecture: two interactions, correlation 2 (three-body messages)
MODEL = dict(r_max=6.0, num_channels=16, max_L=1, max_ell=2, num_interactions=2, correlation=2, head="vector",
             radial_mlp=[32, 32])
#: the pairwise-only control: one interaction, correlation 1, linear vector readout (module docstring)
PAIR_MODEL = dict(MODEL, num_interactions=1, correlation=1)
#: a larger many-body model: about 4x the parameters, 2x the cost per forward
BIG_MODEL = dict(MODEL, num_channels=32, max_L=2, correlation=3)
ARCHITECTURES = {"default": MODEL, "pair": PAIR_MODEL, "big": BIG_MODEL}
BATCH = 4  # frame copies per optimiser step (each 256 beads)
STEPS = 1296  # optimiser steps of every run: 3 epochs of dn at 480 frames (432 training x 4 copies / 4), 12 of fm
FM_NOISE_STD = 0.1  # A: force matching's output scale only: eps_hat = sigma F / kT ~ 0.85 for the 0.22 eV/A mapped forces
MD = dict(timestep_fs=4.0, friction_per_fs=0.01, equilibration_ps=1.0, production_ps=5.0, interval=25)
MIN_DISTANCE_STOP = 1.5  # A: two beads closer than this end the MD (the data's closest approach is about 2.4 A)
BIN_WIDTH = 0.05  # A, RDF bins
ANGLE_BINS = 60  # 3 degrees
Q_BINS, Q_RANGE = 40, (-1.0, 1.0)
QUICK = dict(frames_cap=8, steps=4, equilibration_ps=0.02, production_ps=0.06, interval=5, test_frames=4)
FRAME_COUNTS = (100, 480)
SEEDS = (0, 1, 2)
#: recipe word -> (label, loss, architecture)
WORDS = {
    "denoise": ("denoising, coordinates only", "denoising", "default"),
    "mixed": ("mixed labels", "mixed", "default"),
    "force-match": ("force matching", "force_matching", "default"),
    "denoise-pairwise": ("denoising, pairwise model", "denoising", "pair"),
    "force-match-pairwise": ("force matching, pairwise model", "force_matching", "pair"),
    "denoise-large": ("denoising, larger model", "denoising", "big"),
    "force-match-large": ("force matching, larger model", "force_matching", "big"),
}


def _recipes() -> List[Recipe]:
    out = []
    for n in FRAME_COUNTS:
        for word, (label, loss, arch) in WORDS.items():
            copies = 1 if loss == "force_matching" else 4
            out.append(Recipe(f"{word}-{n}", f"{label}, {n} frames", loss=loss, frames=n, n_duplicates=copies,
                              antithetic=copies > 1, noise_std="auto" if loss != "force_matching" else FM_NOISE_STD,
                              priors=("repulsive_wall",), seeds=SEEDS, options=dict(architecture=arch, word=word)))
    return out


RECIPES = _recipes()
BOOK = RecipeBook(RECIPES)
RUNS = BOOK.runs
logger = logging.getLogger("water")


def run_name(word: str, frames: int, seed: int = 0) -> str:
    return BOOK.recipe(f"{word}-{frames}").run_name(seed)


# ----------------------------------------------------------------------------------------------
# data
# ----------------------------------------------------------------------------------------------
def load_frames(path: Path = None) -> List[Atoms]:
    """All frames as periodic bead ``Atoms`` (type ``W``, mass 18.015 amu, wrapped into the box) with
    the mapped forces in ``arrays['ref_forces']`` (eV/A) and ``info['temperature_K']``."""
    from ase_denoise.data import bead_atoms, bead_numbers

    d = np.load(path or STUDY.data)
    numbers = bead_numbers([BEAD])
    types = [BEAD] * d["positions"].shape[1]
    frames = []
    for pos, frc in zip(d["positions"], d["forces"]):
        atoms = bead_atoms(types, pos.astype(np.float64), {BEAD: BEAD_MASS}, numbers, cell=np.asarray(d["cell"]),
                           pbc=True, forces=frc.astype(np.float64))
        atoms.wrap()
        atoms.info["temperature_K"] = float(d["temperature_K"])
        frames.append(atoms)
    return frames


def split(frames: List[Atoms]):
    """(training pool: the first 80% in time order, held-out test: the last 20%)."""
    cut = int(0.8 * len(frames))
    return frames[:cut], frames[cut:]


def training_frames(pool: List[Atoms], n: int) -> List[Atoms]:
    """``n`` frames evenly spaced over the training pool (all of it for ``n >= len(pool)``)."""
    idx = np.unique(np.linspace(0, len(pool) - 1, min(n, len(pool))).round().astype(int))
    return [pool[i] for i in idx]


# ----------------------------------------------------------------------------------------------
# structure: RDF, triplet angles in the first shell, tetrahedral order
# ----------------------------------------------------------------------------------------------
def rdf_r_max(atoms: Atoms) -> float:
    return float(np.floor(0.5 * atoms.cell.lengths().min() / BIN_WIDTH) * BIN_WIDTH)


def first_minimum(r: np.ndarray, g: np.ndarray) -> float:
    """First minimum of ``g(r)`` after its first peak (A), on a curve smoothed over 3 bins."""
    from ase_denoise.analysis import first_peak

    peak, _ = first_peak(r, g)
    smooth = np.convolve(g, np.ones(3) / 3, mode="same")
    start = int(np.searchsorted(r, peak))
    stop = min(len(r) - 1, int(np.searchsorted(r, 2.0 * peak)))
    return float(r[start + int(np.argmin(smooth[start:stop]))])


def structure(frames: Sequence[Atoms], r_max: float, shell: float) -> Dict[str, np.ndarray]:
    """Curves of ``frames``: ``r``, ``g`` (bead-bead RDF), ``theta`` (degrees), ``p_theta`` (angles
    within ``shell`` A, density per degree), ``q``, ``p_q`` (tetrahedral order, density per unit q),
    ``q_mean``."""
    from ase_denoise.analysis import angular_distribution, density_histogram, rdf, tetrahedral_order

    r, g = rdf(list(frames), r_max, n_bins=int(round(r_max / BIN_WIDTH)))
    theta, p_theta = angular_distribution(frames, shell, n_bins=ANGLE_BINS)
    q_values = tetrahedral_order(frames)
    q, p_q = density_histogram(q_values, Q_BINS, Q_RANGE)
    return dict(r=r, g=g, theta=theta, p_theta=p_theta, q=q, p_q=p_q, q_mean=np.array(np.nanmean(q_values)))


def compare(curves: Dict[str, np.ndarray], ref: Dict[str, np.ndarray]) -> Dict[str, float]:
    """RMS differences of the three curves (RDF: dimensionless; angles: 1/degree; q: per unit q)."""
    from ase_denoise.analysis import first_peak

    rms = {key: float(np.sqrt(np.mean((curves[key] - ref[key]) ** 2))) for key in ("g", "p_theta", "p_q")}
    (pr, ph) = first_peak(curves["r"], curves["g"])
    return dict(rdf_rms=rms["g"], angle_rms=rms["p_theta"], q_rms=rms["p_q"], q_mean=float(curves["q_mean"]),
                rdf_peak_r=pr, rdf_peak_g=ph)


def reference(test: List[Atoms]) -> Dict[str, Any]:
    """The held-out frames' curves, the first-shell cutoff (first minimum of their RDF) and the noise
    floor of each figure: the RMS difference between the curves of the first and second half."""
    r_max = rdf_r_max(test[0])
    from ase_denoise.analysis import rdf

    r, g = rdf(test, r_max, n_bins=int(round(r_max / BIN_WIDTH)))
    shell = first_minimum(r, g)
    ref = structure(test, r_max, shell)
    half = len(test) // 2
    floor = compare(structure(test[:half], r_max, shell), structure(test[half:], r_max, shell))
    from ase_denoise.analysis import first_peak

    peak_r, peak_g = first_peak(ref["r"], ref["g"])
    return dict(curves=ref, r_max=r_max, shell_A=shell, half_vs_half=floor, n_frames=len(test),
                rdf_peak_r=peak_r, rdf_peak_g=peak_g, q_mean=float(ref["q_mean"]))


# ----------------------------------------------------------------------------------------------
# one run: train, force errors, MD, structure
# ----------------------------------------------------------------------------------------------
def train_run(name: str, pool: List[Atoms], quick: bool):
    """Train run ``name`` (or resume, or reuse a finished training) on its recipe's frames of ``pool`` ->
    ``(model, n_frames, epochs, seconds, last.safetensors metadata)``."""
    from ase_denoise import TrainConfig, train
    from ase_denoise.checkpoint import load_model_file, read_metadata
    from ase_denoise.data import bead_numbers

    recipe, seed = RUNS[name]
    data = training_frames(pool, recipe.frames)
    steps = STEPS
    if quick:
        data, steps = data[: QUICK["frames_cap"]], QUICK["steps"]
    n_train = len(data) - max(1, int(round(0.1 * len(data))))  # the trainer keeps 10% of the frames for validation
    epochs = max(1, round(steps * BATCH / (n_train * recipe.n_duplicates)))
    work = STUDY.work_dir(name, quick)
    cfg = TrainConfig(loss=recipe.loss, n_duplicates=recipe.n_duplicates, epochs=epochs, batch_size=BATCH, lr=5e-3,
                      seed=seed, valid_fraction=0.1, antithetic_noise=recipe.antithetic, valid_duplicates=2)
    architecture = ARCHITECTURES[recipe.get("architecture")]
    bead_names = {number: name for name, number in bead_numbers([BEAD]).items()}
    last = work / "last.safetensors"
    t0 = time.perf_counter()
    if not (last.exists() and read_metadata(last)["training"]["epochs_completed"] >= epochs):
        train(data, str(work), noise_std=recipe.noise_std, temperature_K=TEMPERATURE_K, train_config=cfg,
              resume=(work / "training_state.pt").exists(), progress=True, priors=list(recipe.priors),
              bead_names=bead_names, **architecture)
    meta = read_metadata(last)
    return load_model_file(work / "best.safetensors"), len(data), epochs, time.perf_counter() - t0, meta


def force_errors(model, test: List[Atoms]) -> Dict[str, float]:
    from ase_denoise.analysis import force_metrics
    from ase_denoise.data import to_frame
    from ase_denoise.inference import evaluate_forces

    pred, ref = evaluate_forces(model, [to_frame(a, model.config.atomic_numbers) for a in test])
    return force_metrics(pred, ref)


def run_md(model, start: Atoms, quick: bool, seed: int = 0) -> Dict[str, Any]:
    """Langevin MD at 300 K (:func:`ase_denoise.md.run_langevin`, :data:`MD`) from ``start``; frames
    of the production part every ``interval`` steps. Stops if two beads come within
    :data:`MIN_DISTANCE_STOP` or a force is not finite."""
    from ase_denoise import DenoiseCalculator
    from ase_denoise.data import DataError
    from ase_denoise.md import run_langevin

    md = dict(MD)
    if quick:
        md.update(equilibration_ps=QUICK["equilibration_ps"], production_ps=QUICK["production_ps"],
                  interval=QUICK["interval"])
    atoms = start.copy()
    atoms.calc = DenoiseCalculator(model)  # a ladder: forces corrected to sigma -> 0
    n_equil = int(round(md["equilibration_ps"] * 1000 / md["timestep_fs"]))
    n_prod = int(round(md["production_ps"] * 1000 / md["timestep_fs"]))
    sampled: List[Atoms] = []
    temps: List[float] = []

    def sample(a: Atoms, step: int) -> None:
        if step > n_equil:
            sampled.append(a.copy())
            temps.append(a.get_temperature())

    t0 = time.perf_counter()
    try:
        res = run_langevin(atoms, temperature_K=TEMPERATURE_K, steps=n_equil + n_prod, timestep_fs=md["timestep_fs"],
                           friction_per_fs=md["friction_per_fs"], interval=md["interval"], seed=seed,
                           observers=[sample], min_distance_stop=MIN_DISTANCE_STOP)
        steps, wall, closest, stopped = res["steps"], res["wall_s"], res["min_distance"], res["stopped"]
    except (RuntimeError, DataError) as exc:  # non-finite positions between two observed steps
        steps, wall, closest, stopped = -1, time.perf_counter() - t0, float("nan"), str(exc)[:200]
    for a in sampled:
        a.calc = None
    return dict(frames=sampled, simulated_ps=max(steps, 0) * md["timestep_fs"] / 1000, wall_s=wall,
                steps_per_s=max(steps, 0) / max(wall, 1e-9), closest_approach_A=float(closest), stopped=stopped,
                mean_temperature_K=float(np.mean(temps)) if temps else float("nan"), settings=md)


class WaterStudy(Study):
    """One-bead water: denoising vs force matching vs mixed labels, and a pairwise control."""

    name = "water"
    here = HERE
    data_file = "water_1bead_300K.npz"
    description = "one-bead water: denoising vs force matching vs a pairwise model (benchmarks/water/README.md)"
    record_keys = {"md-check": ("setup",)}

    def load_frames(self, path):
        return load_frames(path)

    def split(self, frames, recipe):
        return split(frames)

    def train(self, recipe, seed, frames, work, quick):
        model, n_frames, epochs, elapsed, meta = train_run(recipe.run_name(seed), frames, quick)
        return model, dict(n_frames=n_frames, epochs=epochs, train_s_this_call=elapsed,
                           train_steps=meta.get("training", {}).get("steps"),
                           train_elapsed_s=(meta.get("metrics") or {}).get("elapsed_s"),
                           n_parameters=int(sum(p.numel() for p in model.parameters())),
                           priors=[p.describe() for p in model.priors])

    def force_errors(self, model, test, quick):
        from study_kit import short_metrics

        return {"forces": short_metrics(force_errors(model, test[: QUICK["test_frames"]] if quick else test))}

    def measure(self, model, recipe, seed, run, train, test, frames, quick):
        if quick:
            test = test[: QUICK["test_frames"]]
        ref = reference(test)
        self.summary(quick).get("reference", "reference") or self.summary(quick).put(reference_record(ref))
        md = run_md(model, test[0], quick, seed=seed)
        sampled = md.pop("frames")
        out: Dict[str, Any] = dict(md=md, md_frames=len(sampled))
        if sampled and md["stopped"] is None:
            curves = structure(sampled, ref["r_max"], ref["shell_A"])
            out["structure"] = compare(curves, ref["curves"])
            self.raw.mkdir(parents=True, exist_ok=True)
            np.savez(self.curves_path(run, quick), **curves)
            # the MD's own sampling noise: its first half against its second half (each half has half the frames)
            half = len(sampled) // 2
            out["md_half_vs_half"] = compare(structure(sampled[:half], ref["r_max"], ref["shell_A"]),
                                             structure(sampled[half:], ref["r_max"], ref["shell_A"]))
        return out

    def curves_path(self, run: str, quick: bool = False) -> Path:
        return self.raw / f"{run}{'-quick' if quick else ''}_curves.npz"

    def one_line(self, record):
        s = record.get("structure", {})
        return (f"relative RMSE {fmt(record['forces']['relative_rmse'])}; RDF RMS {fmt(s.get('rdf_rms'))}, "
                f"q RMS {fmt(s.get('q_rms'))}, <q> {fmt(s.get('q_mean'))}")

    def add_arguments(self, parser):
        parser.add_argument("--plot", action="store_true", help="results/structure_<N>.png from the runs' curves")
        parser.add_argument("--publish", default=None, metavar="RUN", help="copy this run's model into the zoo as "
                            "water-1bead-300K")
        parser.add_argument("--models-dir", default=str(REPO / "models"), help="zoo directory for --publish")

    def handle(self, args):
        if args.plot:
            for n in FRAME_COUNTS:
                if any(self.curves_path(run_name(w, n), args.quick).exists() for w in WORDS):
                    print(plot(n, quick=args.quick))
        if args.publish:
            print(publish(args.publish, models_dir=Path(args.models_dir), quick=args.quick))

    def tables(self, quick: bool = False):
        out = {"recipes": recipes_table(), "runs": report(quick)}
        if not quick:
            out["md-check"] = md_check_table(quick)
        return out


def reference_record(ref: Mapping[str, Any]) -> Dict[str, Any]:
    """The held-out reference's figures as a ``reference`` record (its curves go to ``results/raw/``)."""
    STUDY.raw.mkdir(parents=True, exist_ok=True)
    np.savez(STUDY.raw / "reference_curves.npz", **ref["curves"])
    return dict(kind="reference", run="reference", r_max=ref["r_max"], shell_A=ref["shell_A"],
                half_vs_half=ref["half_vs_half"], n_frames=ref["n_frames"], rdf_peak_r=ref["rdf_peak_r"],
                rdf_peak_g=ref["rdf_peak_g"], q_mean=ref["q_mean"])


STUDY = WaterStudy(BOOK)


# ----------------------------------------------------------------------------------------------
# table and plot
# ----------------------------------------------------------------------------------------------
def _load(names: Sequence[str], quick: bool = False) -> List[Dict[str, Any]]:
    records = STUDY.by_run(quick=quick)
    return [records[x] for x in names if x in records]


def _ms(values, digits: int = 3, scale: float = 1.0) -> str:
    return mean_std([x for x in values if x is not None], digits, scale)


def report(quick: bool = False) -> str:
    """Mean ± std over seeds per recipe and frame count (markdown); the last rows are noise floors of
    the structural figures: each MD run's first half against its second half, and the same for the
    held-out reference."""
    rows = []
    ref = STUDY.summary(quick).get("reference", "reference")
    for n in FRAME_COUNTS:
        for word, (label, _, _) in WORDS.items():
            res = _load([run_name(word, n, s) for s in SEEDS], quick)
            if not res:
                continue
            st = [r.get("structure", {}) for r in res]
            rows.append([label, n, len(res), _ms([r["forces"]["rmse"] for r in res]),
                         _ms([r["forces"]["relative_rmse"] for r in res]), _ms([r["forces"]["slope"] for r in res]),
                         f"{sum(r['md']['stopped'] is None for r in res)}/{len(res)}", _ms([s.get("rdf_rms") for s in st]),
                         _ms([s.get("angle_rms") for s in st], 2, 1e3), _ms([s.get("q_rms") for s in st]),
                         _ms([s.get("q_mean") for s in st])])
    halves = [r["md_half_vs_half"] for n in FRAME_COUNTS for w in WORDS
              for r in _load([run_name(w, n, s) for s in SEEDS], quick) if "md_half_vs_half" in r]
    if halves:
        rows.append([f"noise: first vs second half of each MD run (mean over {len(halves)} runs)"] + ["-"] * 6
                    + [f"{np.mean([h['rdf_rms'] for h in halves]):.3f}", f"{1e3 * np.mean([h['angle_rms'] for h in halves]):.2f}",
                       f"{np.mean([h['q_rms'] for h in halves]):.3f}", "-"])
    if ref is not None:
        f = ref["half_vs_half"]
        rows.append(["reference: first vs second half of the held-out frames"] + ["-"] * 6
                    + [f"{f['rdf_rms']:.3f}", f"{1e3 * f['angle_rms']:.2f}", f"{f['q_rms']:.3f}", f"{ref['q_mean']:.3f}"])
    return md_table(["recipe", "frames", "seeds", "force RMSE (eV/A)", "relative RMSE", "slope", "MD ran through",
                     "RDF RMS diff", "angle RMS diff (10^-3/deg)", "q RMS diff", "<q>"], rows)


def recipes_table() -> str:
    """The recipe words as declared (each at 100 and 480 frames, seeds 0-2)."""
    arch = {"default": "many-body (2 interactions, correlation 2)", "pair": "pairwise (1 interaction, correlation 1)",
            "big": "larger many-body (32 channels, max_L 2, correlation 3)"}
    return md_table(["recipe", "what it is", "loss", "model", "noise"],
                    [[f"`{w}-<N>`", label, loss, arch[a], "auto ladder, antithetic pairs, 4 copies" if loss != "force_matching"
                      else f"- (sigma {FM_NOISE_STD:g} A only sets the output scale)"] for w, (label, loss, a) in WORDS.items()])


def md_check_table(quick: bool = False) -> str:
    """``md_check.py``'s table from its ``md-check`` records and the single study runs."""
    from water import md_check

    return md_check.report({f"{r['run']}/{r['setup']}": r for r in STUDY.summary(quick).records("md-check")})


def plot(frames: int, path: Optional[Path] = None, quick: bool = False) -> Path:
    """RDF, triplet-angle and q distributions of each recipe (seed 0) at ``frames`` training frames
    over the held-out reference (the curves the runs wrote to ``results/raw/``) -> ``results/structure_<frames>.png``."""
    from ase_denoise.analysis import new_figure

    ref = STUDY.summary(quick).get("reference", "reference")
    rc = dict(np.load(STUDY.raw / "reference_curves.npz"))
    fig = new_figure((15.0, 4.2))
    axes = [fig.add_subplot(1, 3, k + 1) for k in range(3)]
    panels = (("r", "g", "r (Å)", "g(r), bead-bead"), ("theta", "p_theta", "angle (degrees)",
              f"triplet angles within {ref['shell_A']:.2f} Å (1/deg)"), ("q", "p_q", "tetrahedral order q", "density"))
    for ax, (x, y, xl, yl) in zip(axes, panels):
        ax.plot(rc[x], rc[y], "k-", lw=2.2, label="reference (held-out TIP3P)")
        ax.set_xlabel(xl)
        ax.set_ylabel(yl)
    for k, word in enumerate(WORDS):
        path_k = STUDY.curves_path(run_name(word, frames), quick)
        if not path_k.exists():
            continue
        c = dict(np.load(path_k))
        style = "--" if "pairwise" in word else "-"
        for ax, (x, y, _, _) in zip(axes, panels):
            ax.plot(c[x], c[y], style, color=f"C{k}", lw=1.2, label=f"{word}-{frames}")
    axes[0].set_xlim(2.0, rc["r"][-1])
    axes[0].axvline(ref["shell_A"], color="grey", ls=":", lw=0.8)
    axes[0].legend(fontsize=7)
    fig.suptitle(f"one-bead water, 300 K: models trained on {frames} frames (seed 0) vs the held-out reference")
    fig.tight_layout()
    return save_figure(fig, path or STUDY.results / f"structure_{frames}{'-quick' if quick else ''}.png")


# ----------------------------------------------------------------------------------------------
# zoo
# ----------------------------------------------------------------------------------------------
def publish(name: str, zoo_name: str = "water-1bead-300K", models_dir: Path = REPO / "models",
            quick: bool = False) -> Path:
    """Copy run ``name``'s model into ``models/<zoo_name>/`` with its card, a start structure (the
    first held-out frame, 256 beads) and the held-out reference curves (``reference_structure.npz``:
    ``r``, ``g``, ``theta``, ``p_theta``, ``q``, ``p_q``), and register it."""
    import shutil

    import ase.io

    from ase_denoise.checkpoint import load_model_file
    from ase_denoise.zoo import register_model

    [res] = _load([name], quick) or [None]
    if res is None:
        raise FileNotFoundError(f"no record of run {name!r} in {STUDY.summary(quick).path}")
    recipe, seed = RUNS[name]
    if recipe.get("architecture") != "default":
        raise ValueError(f"run {name!r} is a {recipe.get('architecture')} control; publish a run of the default "
                         "architecture")
    model = load_model_file(STUDY.work_dir(name, quick) / "best.safetensors")
    dest_dir = Path(models_dir) / zoo_name
    dest_dir.mkdir(parents=True, exist_ok=True)
    dest = dest_dir / f"{zoo_name}.safetensors"
    shutil.copyfile(STUDY.work_dir(name, quick) / "best.safetensors", dest)
    data = STUDY.data
    pool, test = split(load_frames(data))
    start = test[0].copy()
    del start.arrays["ref_forces"]
    ase.io.write(dest_dir / "start.extxyz", start)
    ref_test = test[: QUICK["test_frames"]] if quick else test
    ref_full = reference(ref_test)
    ref = STUDY.summary(quick).get("reference", "reference") or reference_record(ref_full)
    np.savez_compressed(dest_dir / "reference_structure.npz", shell_A=ref["shell_A"],
                        **{k: np.asarray(v, dtype=np.float32) for k, v in ref_full["curves"].items()})
    for f in (dest, dest_dir / "start.extxyz", dest_dir / "reference_structure.npz"):
        os.chmod(f, 0o644)

    word, n = recipe.get("word"), recipe.frames  # the run family (quick runs use fewer frames)
    meta = json.loads(str(np.load(data)["metadata"]))
    dt_ps = float(meta["frame_interval_ps"])
    fm_rel = _ms([r["forces"]["relative_rmse"] for r in _load([run_name("force-match", n, k) for k in SEEDS], quick)], 2)
    table = []  # | recipe | seeds | RDF | angle | q | <q> |
    for p in WORDS:
        runs = _load([run_name(p, n, s) for s in SEEDS], quick)
        st = [r["structure"] for r in runs if "structure" in r]
        if st:
            table.append(f"| {WORDS[p][0]} | {len(st)} | {_ms([s['rdf_rms'] for s in st])} "
                         f"| {_ms([s['angle_rms'] for s in st], 2, 1e3)} | {_ms([s['q_rms'] for s in st])} "
                         f"| {_ms([s['q_mean'] for s in st])} |")
    f = ref["half_vs_half"]
    table.append(f"| reference, first vs second half of the held-out frames | - | {f['rdf_rms']:.3f} "
                 f"| {1e3 * f['angle_rms']:.2f} | {f['q_rms']:.3f} | {ref['q_mean']:.3f} |")
    seeds = _load([run_name(word, n, s) for s in SEEDS], quick)
    temps = ", ".join(f"{r['md']['mean_temperature_K']:.0f}" for r in seeds)

    def mean_temperature(prefixes) -> str:
        t = [r["md"]["mean_temperature_K"] for p in prefixes for r in _load([run_name(p, n, k) for k in SEEDS], quick)]
        return f"{np.mean(t):.0f} K" if t else "-"
    c, physics, md, s, fe = model.config, model.physics, res["md"], res["structure"], res["forces"]
    names = c.bead_names
    levels = ", ".join(f"{x:g}" for x in model.noise_levels)
    box = float(np.asarray(start.cell.lengths())[0])
    cmd = f"OMP_NUM_THREADS=1 .venv/bin/python benchmarks/water/study.py --only {name} --publish {name}"
    card = f"""# {zoo_name}

One-bead water: each TIP3P molecule is one bead at its centre of mass (type `W`, placeholder number
{min(names)}, mass {BEAD_MASS} amu), {len(start)} beads in a periodic cubic box of {box:.3f} A (density
{meta['density_g_cm3']:.3f} g/cm^3),
300 K. A denoiser trained on **bead coordinates alone** (run `{name}` of `benchmarks/water/study.py`);
`DenoiseCalculator.from_zoo("{zoo_name}")` gives the mean force on each bead (eV/A), the noise ladder
{levels} A extrapolated to sigma -> 0, plus the repulsive wall (forces only: no energy, no stress). A
one-bead model of water must be many-body to get the tetrahedral structure right; this one has two
interactions of correlation 2 (three-body messages).

```python
from ase.io import read
from ase_denoise import DenoiseCalculator
from ase_denoise.zoo import zoo_dir
atoms = read(zoo_dir() / "{zoo_name}" / "start.extxyz")   # 256 beads; or ase_denoise.data.bead_atoms
atoms.calc = DenoiseCalculator.from_zoo("{zoo_name}")     # sha256-checked, no network
```

## Training data

- {res['n_frames']} frames, evenly spaced over the first {len(pool) * dt_ps:g} ps of a {(len(pool) + len(test)) * dt_ps:g}-ps OpenMM NVT run of
  {len(start)} TIP3P molecules (PME, cutoff {10 * meta['cutoff_nm']:g} A, rigid water, 300 K, box from an NPT run at
  {meta['pressure_bar']:g} bar; a frame every {dt_ps:g} ps;
  `benchmarks/water/make_data.py`, data `benchmarks/water/water_1bead_300K.npz`), mapped to the centres
  of mass. The mapped forces in the data were not used.
- Temperature **{physics.temperature_K} K** (kT = {physics.kT:.6f} eV).

## Settings

- noise_std (sigma): noise ladder **{levels} A** (`noise_std="auto"`: the inner width of the first
  bead-bead peak sets it); n_duplicates: **{recipe.n_duplicates}** (noise drawn in antithetic pairs).
- Training: {res['epochs']} epochs ({res.get('train_steps')} optimiser steps), batch {BATCH} frame copies, AdamW lr 0.005
  with cosine schedule, seed {seed}, float32; {(res.get('train_elapsed_s') or res['train_s_this_call']) / 60:.1f} min on one CPU thread.
- Priors: {"; ".join(p.describe(names) for p in model.priors)}.
- Architecture: MACE, head={c.head}, r_max={c.r_max}, num_channels={c.num_channels}, max_ell={c.max_ell},
  max_L={c.max_L}, correlation={c.correlation}, num_interactions={c.num_interactions};
  {sum(p.numel() for p in model.parameters())} parameters.

## Measured figures

Held-out frames: the last {len(test)} ({len(test) * dt_ps:g} ps) of the trajectory.

| figure | value |
| --- | --- |
| force RMSE against the mapped forces (eV/A) | {fe['rmse']:.3f} |
| relative RMSE against the mapped forces | {fe['relative_rmse']:.3f} |
| slope (least squares, predicted against mapped) | {fe['slope']:.3f} |
| RDF RMS difference from the reference | {s['rdf_rms']:.3f} |
| triplet-angle RMS difference (10^-3 per degree) | {1e3 * s['angle_rms']:.2f} |
| tetrahedral order q RMS difference | {s['q_rms']:.3f} |
| mean q (reference {ref['q_mean']:.3f}) | {s['q_mean']:.3f} |

The mapped forces are instantaneous: their spread around the mean force is large, so even a perfect
model keeps a large relative error against them (force matching on the same frames: {fm_rel}). The
structure comes from Langevin MD (ASE, 300 K, {md['settings']['timestep_fs']:g} fs, friction
{md['settings']['friction_per_fs']:g}/fs) from the first held-out frame: {md['settings']['equilibration_ps']:g} ps discarded,
then {md['settings']['production_ps']:g} ps ({md['steps_per_s']:.0f} steps/s on one thread); angles within the first
shell ({ref['shell_A']:.2f} A, the reference RDF's first minimum).

All recipes of `benchmarks/water/study.py` at {n} frames (mean ± std over training seeds; the same
optimiser steps, priors and MD):

| recipe | seeds | RDF RMS | angle RMS (10^-3/deg) | q RMS | mean q |
| --- | --- | --- | --- | --- | --- |
{chr(10).join(table)}

## Limits

- Under-structured: mean q {s['q_mean']:.2f} against {ref['q_mean']:.2f} in the reference. Force matching with the
  same architecture and steps gives the same shortfall, so it is not the lack of force labels; a
  larger model than this one ({c.num_channels} channels, max_L {c.max_L}, correlation {c.correlation}) or longer training is
  the untested suspect. The pairwise control is far worse (q about 0.43).
- The forces are not exactly conservative (a vector head, not the gradient of an energy): in Langevin
  MD at friction {md['settings']['friction_per_fs']:g}/fs the beads ran at {temps} K (target 300 K; the training seeds; the
  statistical error of each, from block averages, is 1-3 K). Force matching's many-body model ran at {mean_temperature(["force-match"])} on
  average, the pairwise controls (central pair forces: conservative by construction) at
  {mean_temperature(["denoise-pairwise", "force-match-pairwise"])}. Use a stronger thermostat if the temperature matters more than the dynamics.
- One state point: 300 K at this density (NVT). A CG water model's mean force depends on both; there
  is no pressure (forces only, no virial) and no transferability claim.
- MD was checked for {md['settings']['equilibration_ps'] + md['settings']['production_ps']:g} ps per run (all runs stayed intact; the wall prior
  keeps beads apart below the data's closest approach).

`start.extxyz` is the first held-out frame; `reference_structure.npz` holds the reference curves
(RDF, triplet angles, q) for plots.
"""
    register_model(models_dir, zoo_name, dest, card, command=cmd, temperature_K=physics.temperature_K,
                   fit_note=fit_systems.card_note(zoo_name),
                   noise_std=list(model.noise_levels),
                   summary=f"one-bead TIP3P water at 300 K (256 beads, periodic), many-body MACE (2 interactions, "
                           f"correlation 2), vector head, noise ladder {levels} A corrected to sigma -> 0, repulsive "
                           f"wall; coordinates only")
    return dest


def main(argv=None) -> int:
    return STUDY.main(argv)


if __name__ == "__main__":
    sys.exit(main())
