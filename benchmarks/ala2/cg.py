"""Alanine dipeptide, coarse-grained to six beads: the free energy over the backbone dihedrals.

The CG benchmark of CGnet / CGSchNet and the flow-matching CG papers, on this project's all-atom data
(``ala2_aa_300K.npz``, ``make_data.py``: amber14 + GBn2, no constraints, 300 K, 5 ns, a frame every
2 ps).

**Mapping.** Six beads, each one heavy atom: the five backbone atoms C (ACE), N, CA, C (ALA), N (NME)
and the alanine CB, as in CGSchNet (Husic et al., J. Chem. Phys. 153, 194101 (2020)). CGnet (Wang et
al., ACS Cent. Sci. 5, 755 (2019)) kept the five backbone atoms alone. Our network is O(3)-equivariant,
so its forces on a structure's mirror image are the mirrored forces. On the five backbone beads the
mirror image of alpha_R (phi, psi) is alpha_L (-phi, -psi), so a 5-bead model must give both the same
free energy, which L-alanine does not have. With CB, the mirror image of L-alanine is D-alanine, which
the data never show, and the beads carry the chirality. Each bead is its own type (six placeholder
numbers, named in the model's bead table).

**Mapped forces.** Each bead is one atom (a slice map), so the force on that atom in the all-atom
frame is a mapped force. Its mean at fixed bead positions is the mean force (CG coordinate = the
atom's Cartesian position; exact here, since no bond is constrained). Force matching regresses on it.

**Priors.** CGnet's: harmonic bonds (5) and angles (5) of the bead chain, fitted by Boltzmann
inversion to the training frames (:func:`ase_denoise.priors.fit_bonded_priors`), and a repulsive
wall per bead pair below its closest approach in the data. The network learns the rest (torsions,
non-bonded terms, the bonds' anharmonicity).

Recipes (:data:`RECIPES`, ``--list``; the words are ``study.py``'s), the same MACE (vector head unless
the recipe says energy head, r_max 6 A: every bead sees every other) and the same number of optimiser
steps:

* ``denoise-<N>``: denoising, coordinates only, the ``auto`` ladder, antithetic pairs, 4 copies per
  frame; ``auto`` reads its widths off the narrowest peak, a bond's, although the bonds are in the priors;
* ``denoise-smoothed-<N>``: the same with ``TrainConfig.smoothed_priors`` (the target's residual is taken
  against the bonded priors as the noise smooths them) and the ``auto`` rule applied to the bead pairs no
  bonded prior covers (:func:`soft_ladder`: about 2.6 times wider, so about 7 times less label variance);
* ``mixed-<N>``, ``mixed-smoothed-<N>``: the variance-reduced mixture of force and noise labels with either ladder;
* ``force-match-<N>``: force matching on the mapped forces;
* ``...-energy-head-<N>``: the energy head (``head="energy"``, forces the gradient of a learned free
  energy, so conservative: CGnet's and CGSchNet's form);
* ``...-torsions-<N>``: torsion priors on phi and psi as well (each dihedral's free energy fitted to the
  training frames, :func:`ase_denoise.priors.fit_dihedral_priors`, learned as a residual like the bonded priors).

``N`` frames from the start of the trajectory (500 or all 2000 of the training 80%); ``-seed1``/``-seed2``
are training seeds 1 and 2. ``<run>+corrected<k>`` (``--refine <run>``, :func:`refine_run`): the trained
model of ``<run>`` with ``k`` steps of iterative Boltzmann correction of its phi and psi distributions
towards the training frames' (:func:`ase_denoise.priors.fit_dihedral_correction`; no labels, the
weights unchanged), each step from the previous MD; ``-half``: a damped step, ``-joint``: the joint
phi-psi step.

**Figures per run** (a ``cg-run`` record in ``results/summary.jsonl``; the sampled phi/psi in ``results/raw/``):

* held-out mapped-force errors. The labels are instantaneous and noisy, so even the exact mean force
  has an RMSE well above zero; only the ranking between runs means anything;
* CG MD: ``n_replicas`` Langevin replicas in one batched forward per step
  (:class:`ase_denoise.md.replicas.ReplicaLangevin`, 300 K, 2 fs, friction 0.05/fs; records of the same
  runs at 0.01/fs carry ``variant="friction-0.01"``), started from frames
  spread over the training set. After equilibration, phi/psi are sampled every 0.2 ps. The figures
  are: the basin populations; the KL divergence of the model's phi/psi histogram (20-degree bins)
  from the reference's (all 2500 frames); the populations of beta's two regions (C7eq, PII); the KL of
  the phi and psi marginals, their mutual information, and the KL from the held-out last 500 frames.

Commands:

    python benchmarks/ala2/cg.py --only denoise-2000 force-match-2000 mixed-2000   # trains, runs MD, writes records
    python benchmarks/ala2/cg.py --tables                     # every table of README.md (as study.py --tables)
    python benchmarks/ala2/cg.py --plot RUN ...               # results/cg_fes.png (from results/raw/)
    python benchmarks/ala2/cg.py --refine denoise-smoothed-torsions-2000 --iterations 2   # +corrected1, +corrected2
"""
from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import logging  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any, Dict, List, Sequence  # noqa: E402

import numpy as np  # noqa: E402
from ase import Atoms  # noqa: E402

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
from study_kit import REPO, RecipeBook, Study, fmt, short_metrics  # noqa: E402

import fit_systems  # noqa: E402  (the card's paragraph on fit)

from ala2 import study as aa  # noqa: E402  (the recipe words, the data)

DATA = HERE / "ala2_aa_300K.npz"
TEMPERATURE_K = 300.0

#: the beads, in order: (all-atom name, bead type)
BEADS = (("ACE.C", "C-ace"), ("ALA.N", "N"), ("ALA.CA", "CA"), ("ALA.CB", "CB"), ("ALA.C", "C"), ("NME.N", "N-nme"))
BONDS = ((0, 1), (1, 2), (2, 3), (2, 4), (4, 5))
ANGLES = ((0, 1, 2), (1, 2, 3), (1, 2, 4), (3, 2, 4), (2, 4, 5))
PHI, PSI = (0, 1, 2, 4), (1, 2, 4, 5)
MASSES = {"C-ace": 12.011, "N": 14.007, "CA": 12.011, "CB": 12.011, "C": 12.011, "N-nme": 14.007}

MODEL = dict(r_max=6.0, num_channels=16, max_ell=2, correlation=2)  # the head is the recipe's
STEPS = 6000  # optimiser steps of every run (batch 16)
BATCH = 16
MD = dict(n_replicas=32, timestep_fs=2.0, friction_per_fs=0.05, equilibration_ps=5.0, production_ps=25.0,
          sample_every_ps=0.2)
QUICK = dict(frames_cap=40, steps=20, n_replicas=4, equilibration_ps=0.02, production_ps=0.2)
FRAME_COUNTS = (500, 2000)
SEEDS = (0, 1, 2)
BIN_DEG = 20.0


#: the recipe words of the CG study, in the tables' order (``study.WORDS`` says what each is)
WORDS = ("denoise", "denoise-smoothed", "denoise-smoothed-energy-head", "denoise-smoothed-torsions", "mixed",
         "mixed-smoothed", "force-match", "force-match-energy-head", "force-match-torsions")
RECIPES = aa.recipes(WORDS)
BOOK = RecipeBook(RECIPES)
RUNS = BOOK.runs
logger = logging.getLogger("ala2-cg")


def seed_runs(word: str, n: int, suffix: str = "") -> List[str]:
    """The run names of recipe ``<word>-<n>`` over :data:`SEEDS` (seed 0 first), each with ``suffix``
    (e.g. ``+corrected1``, a torsion-corrected run)."""
    r = BOOK.recipe(f"{word}-{n}")
    return [r.run_name(seed) + suffix for seed in SEEDS]


def bead_table() -> Dict[str, int]:
    from ase_denoise.data import bead_numbers

    return bead_numbers([t for _, t in BEADS])


def map_frames(path: Path = DATA) -> List[Atoms]:
    """The CG frames: bead positions (A) and mapped forces (``arrays['ref_forces']``, eV/A)."""
    from ase_denoise.data import bead_atoms

    d = np.load(path)
    names = [str(x) for x in d["names"]]
    index = [names.index(atom) for atom, _ in BEADS]
    types, numbers = [t for _, t in BEADS], bead_table()
    frames = []
    for pos, frc in zip(d["positions"], d["forces"]):
        atoms = bead_atoms(types, pos[index].astype(np.float64), MASSES, numbers, forces=frc[index])
        atoms.info["temperature_K"] = float(d["temperature_K"])
        frames.append(atoms)
    return frames


def dihedrals(positions: np.ndarray) -> np.ndarray:
    """phi, psi (degrees, in [-180, 180)) of bead positions [n, 6, 3]."""
    from ase.geometry import get_dihedrals

    positions = np.asarray(positions, dtype=np.float64).reshape(-1, len(BEADS), 3)
    out = []
    for i, j, k, l in (PHI, PSI):
        out.append(get_dihedrals(positions[:, j] - positions[:, i], positions[:, k] - positions[:, j],
                                 positions[:, l] - positions[:, k]))
    return (np.stack(out, axis=1) + 180.0) % 360.0 - 180.0


def histogram(phi_psi: np.ndarray, bin_deg: float = BIN_DEG) -> np.ndarray:
    """Counts on the Ramachandran plane, ``360 / bin_deg`` bins per angle."""
    edges = np.linspace(-180.0, 180.0, int(round(360.0 / bin_deg)) + 1)
    counts, _, _ = np.histogram2d(phi_psi[:, 0], phi_psi[:, 1], bins=[edges, edges])
    return counts


def kl_divergence(reference: np.ndarray, model: np.ndarray) -> float:
    """KL(reference || model) of two phi/psi samples [n, 2] (nats), over 20-degree bins with half a
    count added to every bin of both (Jeffreys), so that a bin one sample missed is finite."""
    p, q = histogram(reference) + 0.5, histogram(model) + 0.5
    p, q = p / p.sum(), q / q.sum()
    return float((p * np.log(p / q)).sum())


#: bins per angle of the figures CG diffusion papers report beside KL (64 x 64 on the Ramachandran plane)
FIELD_BINS = 64
#: the probability an empty bin is given before taking its free energy (as those papers' evaluation code does)
EMPTY_BIN = 1e-6


def _field_histograms(reference: np.ndarray, model: np.ndarray) -> tuple:
    p = histogram(reference, 360.0 / FIELD_BINS).ravel()
    q = histogram(model, 360.0 / FIELD_BINS).ravel()
    return p / p.sum(), q / q.sum()


def js_divergence(reference: np.ndarray, model: np.ndarray) -> float:
    """Jensen-Shannon divergence (nats, between 0 and ln 2) of two phi/psi samples [n, 2] (degrees) over
    64 x 64 bins: ``(KL(p || m) + KL(q || m)) / 2`` with ``m = (p + q) / 2``; empty bins add nothing, so
    no pseudo-count is needed. Symmetric, unlike :func:`kl_divergence`."""
    p, q = _field_histograms(reference, model)
    m = 0.5 * (p + q)

    def kl_to_m(x):
        held = x > 0
        return float(np.sum(x[held] * np.log(x[held] / m[held])))

    return 0.5 * (kl_to_m(p) + kl_to_m(q))


def pmf_rmse(reference: np.ndarray, model: np.ndarray) -> float:
    """Root-mean-square difference (kT) of the two free-energy surfaces ``-ln p`` of two phi/psi samples
    [n, 2] (degrees) over 64 x 64 bins, each bin weighted by the mean of its two probabilities (the bins
    either sample visits count, the rest do not); an empty bin is given probability 1e-6. This is the
    weighting of the PMF error in recent CG diffusion papers' evaluation; multiply by kT (2.49 kJ/mol at
    300 K) for energy units."""
    p, q = _field_histograms(reference, model)
    weight = 0.5 * (p + q)
    difference = np.log(np.maximum(p, EMPTY_BIN)) - np.log(np.maximum(q, EMPTY_BIN))
    return float(np.sqrt(np.sum(weight * difference**2) / np.sum(weight)))


def basin_populations(phi_psi: np.ndarray, n_blocks: int = 10, split_beta: bool = False) -> Dict[str, List[float]]:
    """``make_data.basin_populations`` under the basins' short names (``beta/C7eq/PII``, ``alpha_R``,
    ``alpha_L/C7ax``), or with ``split_beta`` its four regions (beta split into ``C7eq`` and ``PII``):
    name -> [population, block standard error]."""
    from ala2 import make_data

    basins = make_data.REGIONS if split_beta else make_data.BASINS
    return {k.split(" ")[0]: [float(x) for x in v] for k, v in make_data.basin_populations(phi_psi, n_blocks, basins).items()}


def soft_ladder(frames: List[Atoms]) -> tuple:
    """The ``auto`` rule (:mod:`ase_denoise.training.suggest`) applied to the bead pairs that no bonded prior
    holds (neither bonded nor the ends of an angle): the bonds and angles are in the priors, and
    with ``smoothed_priors`` their smoothing is taken out of the target, so the noise need only
    respect the narrowest remaining peak (N - N(NME), 1-4 through psi: about 0.1 A wide). What
    ``train(..., noise_std="auto")`` does with ``TrainConfig(smoothed_priors=True)``."""
    from ase_denoise.training import suggest_settings

    held = {(min(i, j), max(i, j)) for i, j in BONDS} | {(min(i, k), max(i, k)) for i, _, k in ANGLES}
    return suggest_settings(frames, exclude_pairs=held).noise_std


def split(frames: List[Atoms]):
    """(training pool: the first 80% in time order, held-out test: the last 20%)."""
    cut = int(0.8 * len(frames))
    return frames[:cut], frames[cut:]


def train_run(name: str, pool: List[Atoms], quick: bool):
    """Train run ``name`` (or resume, or reuse) on its recipe's first frames of ``pool`` ->
    ``(model, n_frames, epochs, seconds)``."""
    from ase_denoise import TrainConfig, train
    from ase_denoise.checkpoint import load_model_file
    from ase_denoise.config import PhysicsConfig
    from ase_denoise.priors import fit_bonded_priors, fit_dihedral_priors

    recipe, seed = RUNS[name]
    data = pool[: recipe.frames]
    steps = STEPS
    if quick:
        data, steps = data[: QUICK["frames_cap"]], QUICK["steps"]
    samples_per_epoch = len(data) * recipe.n_duplicates
    epochs = max(1, round(steps * BATCH / samples_per_epoch))
    work = STUDY.work_dir(name, quick)
    cfg = TrainConfig(loss=recipe.loss, n_duplicates=recipe.n_duplicates, epochs=epochs, batch_size=BATCH, lr=5e-3,
                      seed=seed, valid_fraction=0.1, antithetic_noise=recipe.antithetic,
                      smoothed_priors=recipe.get("smoothed"))
    kT = PhysicsConfig(temperature_K=TEMPERATURE_K, noise_std=(0.01,)).kT
    priors = [*fit_bonded_priors(data, kT, bonds=BONDS, angles=ANGLES), "repulsive_wall"]
    if recipe.get("torsions"):
        priors.append(fit_dihedral_priors(data, kT, [PHI, PSI]))
    names = {z: t for t, z in bead_table().items()}
    t0 = time.perf_counter()
    # noise_std "auto": with smoothed_priors, the soft ladder (the priors' pairs left out)
    train(data, str(work), noise_std=recipe.noise_std, temperature_K=TEMPERATURE_K, train_config=cfg,
          resume=(work / "training_state.pt").exists(), progress=True, priors=priors, bead_names=names,
          head=recipe.head, **MODEL)
    return load_model_file(work / "best.safetensors"), len(data), epochs, time.perf_counter() - t0


def force_errors(model, test: List[Atoms]) -> Dict[str, Any]:
    from ase_denoise.analysis import force_metrics
    from ase_denoise.data import to_frame
    from ase_denoise.inference import evaluate_forces

    frames = [to_frame(a, model.config.atomic_numbers) for a in test]
    pred, ref = evaluate_forces(model, frames)
    types = np.tile([t for _, t in BEADS], len(test))
    out = {"all": force_metrics(pred, ref)}
    for t in dict.fromkeys(types):
        out[t] = force_metrics(pred[types == t], ref[types == t])
    return out


def bond_lengths(positions: np.ndarray) -> np.ndarray:
    index = np.asarray(BONDS)
    return np.linalg.norm(positions[:, index[:, 1]] - positions[:, index[:, 0]], axis=-1)


def run_md(model, starts: Sequence[Atoms], reference: List[Atoms], quick: bool, seed: int = 0) -> Dict[str, Any]:
    """Batched Langevin replicas; phi/psi sampled after equilibration; returns the figures and the
    sampled phi/psi [samples, 2] (in time order within each replica, replicas one after another)."""
    from ase_denoise.md import ReplicaLangevin

    md = dict(MD)
    if quick:
        md.update(n_replicas=QUICK["n_replicas"], equilibration_ps=QUICK["equilibration_ps"],
                  production_ps=QUICK["production_ps"])
    picks = np.linspace(0, len(starts) - 1, md["n_replicas"]).round().astype(int)
    runner = ReplicaLangevin(model, [starts[i] for i in picks], temperature_K=TEMPERATURE_K,
                             timestep_fs=md["timestep_fs"], friction_per_fs=md["friction_per_fs"],
                             seeds=[1000 * seed + i for i in range(len(picks))])
    interval = max(1, int(round(md["sample_every_ps"] * 1000 / md["timestep_fs"])))
    n_equil = int(round(md["equilibration_ps"] * 1000 / md["timestep_fs"]))
    n_prod = int(round(md["production_ps"] * 1000 / md["timestep_fs"]))
    samples: List[np.ndarray] = []
    from tqdm import tqdm

    bar = tqdm(total=n_equil + n_prod, desc=f"CG MD, {len(picks)} replicas", unit="step", disable=quick,
               mininterval=5.0)

    def observe(step: int, positions: np.ndarray, velocities: np.ndarray) -> None:
        bar.update(step - bar.n)
        if step > n_equil:
            samples.append(positions.copy())

    res = runner.run(n_equil + n_prod, interval=interval, observers=[observe])
    bar.close()
    x = np.stack(samples, axis=1) if samples else np.zeros((len(picks), 0, len(BEADS), 3))  # [replicas, t, beads, 3]
    phi_psi = dihedrals(x.reshape(-1, len(BEADS), 3))
    ref_x = np.stack([a.positions for a in reference])
    ref_bonds, bonds = bond_lengths(ref_x), bond_lengths(x.reshape(-1, len(BEADS), 3))
    intact = np.all(np.abs(bonds - ref_bonds.mean(axis=0)) < 0.5, axis=1).reshape(len(picks), -1).all(axis=1)
    temps = res["temperatures_K"]
    return dict(
        n_replicas=len(picks), timestep_fs=md["timestep_fs"], friction_per_fs=md["friction_per_fs"], md_seed=seed,
        simulated_ps_per_replica=res["steps"] * md["timestep_fs"] / 1000,
        aggregate_ns=len(picks) * n_prod * md["timestep_fs"] / 1e6, stopped=res["stopped"],
        steps_per_s=res["steps_per_s"], replica_steps_per_s=res["steps_per_s"] * len(picks),
        mean_temperature_K=float(temps[len(temps) // 2:].mean()) if len(temps) else float("nan"),
        replicas_intact=int(intact.sum()),
        bond_std_ratio=float(np.mean(bonds.std(axis=0) / ref_bonds.std(axis=0))) if len(bonds) > 1 else float("nan"),
    ), phi_psi


def reference_phi_psi(frames: List[Atoms]) -> np.ndarray:
    return dihedrals(np.stack([a.positions for a in frames]))


def marginals_product(phi_psi: np.ndarray, copies: int = 13, seed: int = 0) -> np.ndarray:
    """Samples [copies * n, 2] of the product of the phi and psi marginals of ``phi_psi`` [n, 2] (psi
    shuffled against phi): the joint density a model that knew only the two one-dimensional free
    energies, as the torsion priors do, would sample."""
    rng = np.random.default_rng(seed)
    return np.concatenate([np.stack([phi_psi[:, 0], rng.permutation(phi_psi[:, 1])], axis=1) for _ in range(copies)])


def marginal_figures(reference: np.ndarray, model: np.ndarray) -> Dict[str, float]:
    """Where a phi/psi KL comes from: the KL of each one-dimensional marginal
    (:func:`ase_denoise.refine.torsion_marginal_kl`: 20-degree bins, half a count per bin as
    :func:`kl_divergence`) and the mutual information between phi and psi (nats, of the 20-degree
    histogram) of ``model``; what a torsion correction can fix is the first two. Angles in degrees."""
    from ase_denoise.refine import torsion_marginal_kl

    kl_phi, kl_psi = torsion_marginal_kl(np.radians(reference), np.radians(model), BIN_DEG)
    joint = histogram(model) + 0.5
    joint /= joint.sum()
    independent = joint.sum(axis=1, keepdims=True) * joint.sum(axis=0, keepdims=True)
    return dict(kl_phi=float(kl_phi), kl_psi=float(kl_psi),
                mutual_information=float((joint * np.log(joint / independent)).sum()))


def sample_figures(phi_psi: np.ndarray, frames: List[Atoms]) -> Dict[str, Any]:
    """The figures of one model's MD samples (degrees) against the reference (all frames): KL, the JS
    divergence and PMF RMSE over 64 x 64 bins, basin and
    region populations (blocks: the samples in 10 pieces), the marginals' KL and mutual information, and
    the KL from the held-out last 20% alone."""
    if len(phi_psi) < 2:
        return dict(kl=float("nan"), populations={})
    ref = reference_phi_psi(frames)
    held_out = reference_phi_psi(split(frames)[1])
    return dict(kl=kl_divergence(ref, phi_psi), js=js_divergence(ref, phi_psi), pmf_rmse_kT=pmf_rmse(ref, phi_psi),
                populations=basin_populations(phi_psi),
                regions=basin_populations(phi_psi, split_beta=True), **marginal_figures(ref, phi_psi),
                kl_held_out=kl_divergence(held_out, phi_psi))


class CGStudy(Study):
    """Alanine dipeptide coarse-grained to six beads: the free energy over phi/psi."""

    name = "ala2-cg"
    here = HERE
    data_file = "ala2_aa_300K.npz"
    kind = "cg-run"
    description = "alanine dipeptide, 6-bead CG: denoising vs force matching (benchmarks/ala2/README.md)"
    record_keys = aa.AllAtomStudy.record_keys

    def load_frames(self, path):
        return map_frames(path)

    def split(self, frames, recipe):
        return split(frames)

    def train(self, recipe, seed, frames, work, quick):
        model, n_frames, epochs, elapsed = train_run(recipe.run_name(seed), frames, quick)
        return model, dict(n_frames=n_frames, epochs=epochs, train_s=elapsed)

    def force_errors(self, model, test, quick):
        return {"forces": {"all": short_metrics(force_errors(model, test[: 20 if quick else len(test)])["all"], ("rmse",))}}

    def measure(self, model, recipe, seed, run, train, test, frames, quick):
        md_seed = self.md_seed if self.md_seed is not None else seed
        md, phi_psi = run_md(model, train[: recipe.frames], frames, quick, seed=md_seed)
        self.save_samples(run, phi_psi, quick)
        return dict(md=md, **sample_figures(phi_psi, frames), **({"variant": self.variant} if self.variant else {}))

    md_seed = None
    variant = None

    def save_samples(self, run: str, phi_psi: np.ndarray, quick: bool) -> Path:
        self.raw.mkdir(parents=True, exist_ok=True)
        path = self.samples_path(run, quick)
        np.save(path, phi_psi.astype(np.float32))
        return path

    def samples_path(self, run: str, quick: bool = False) -> Path:
        return self.raw / f"cg-{run}{'-quick' if quick else ''}{'-' + self.variant if self.variant else ''}.phi_psi.npy"

    def one_line(self, record):
        return f"KL {fmt(record.get('kl'))}, {record['md']['replicas_intact']}/{record['md']['n_replicas']} replicas intact"

    def add_arguments(self, parser):
        parser.add_argument("--plot", nargs="*", default=None, help="free-energy surfaces of these runs (default: seed 0 "
                            "of each recipe at 2000 frames) against the reference, from results/raw/")
        parser.add_argument("--plot-name", default="cg_fes", help="--plot writes results/<name>.png (cg_fes_500, "
                            "cg_fes_refined, cg_fes_joint: the README's other surfaces)")
        parser.add_argument("--publish", default=None, metavar="RUN", help="copy this run's model into the zoo as ala2-cg-300K")
        parser.add_argument("--models-dir", default=str(REPO / "models"), help="zoo directory for --publish")
        parser.add_argument("--refine", nargs="*", default=[], metavar="RUN", help="iterative Boltzmann correction of "
                            "these runs' phi/psi (coordinates only; after their MD): RUN+corrected1, +corrected2, ...")
        parser.add_argument("--iterations", type=int, default=2, help="correction iterations for --refine")
        parser.add_argument("--damping", type=float, default=1.0, help="fraction of each --refine step applied "
                            "(RUN+corrected<k>-half for 0.5)")
        parser.add_argument("--joint", action="store_true", help="--refine fits the joint phi/psi correction (beside "
                            "the --start iteration's one-dimensional one): RUN+corrected<k>-joint")
        parser.add_argument("--start", type=int, default=0, help="--refine continues from this full-step iteration "
                            "(its correction and MD) instead of the uncorrected run")
        parser.add_argument("--md-seed", type=int, default=None, help="thermostat seed of the MD (default: the run's "
                            "training seed); the records carry variant md-seed-<K>: the MD-sampling scatter")

    def run(self, run, quick=False):
        return super().run(run, quick)

    def handle(self, args):
        ensure_reference(self.summary(args.quick), self.data)
        for name in args.refine:
            if name not in RUNS:
                raise SystemExit(f"unknown run {name}")
            refine_run(name, iterations=args.iterations, damping=args.damping, quick=args.quick, start=args.start,
                       joint=args.joint)
        if args.plot is not None:
            print(plot(args.plot or [r.name for r in RECIPES if r.frames == max(FRAME_COUNTS)], quick=args.quick,
                       path=self.results / f"{args.plot_name}{'-quick' if args.quick else ''}.png"))
        if args.publish:
            print(publish(args.publish, models_dir=Path(args.models_dir), quick=args.quick))

    def main(self, argv=None) -> int:
        args = list(sys.argv[1:] if argv is None else argv)
        self.md_seed = int(args[args.index("--md-seed") + 1]) if "--md-seed" in args else None
        self.variant = None if self.md_seed is None else f"md-seed-{self.md_seed}"
        try:
            return super().main(args)
        finally:
            self.md_seed = self.variant = None

    def documents(self, quick: bool = False):
        from ala2 import tables

        return tables.documents(self, quick)

    def tables(self, quick: bool = False):
        return self.documents(quick)[self.readme]


STUDY = CGStudy(BOOK)


def refined_name(name: str, k: int, damping: float = 1.0, joint: bool = False) -> str:
    """The run name of iteration ``k`` of :func:`refine_run`: ``<name>+corrected<k>`` for full steps,
    ``-joint`` for a joint phi/psi step, ``-half`` for a step damped by 0.5 (other dampings: ``-d<damping>``)."""
    damp = "" if damping == 1.0 else ("-half" if damping == 0.5 else f"-d{damping:g}")
    return f"{name}+corrected{k}" + ("-joint" if joint else "") + damp


def refine_run(name: str, iterations: int = 2, damping: float = 1.0, quick: bool = False, start: int = 0,
               joint: bool = False) -> List[Dict[str, Any]]:
    """Iterative Boltzmann correction of run ``name``'s torsions, coordinates only: from the phi/psi
    of its MD (``results/raw/``, the run's MD first if missing) and of its training frames,
    :func:`ase_denoise.priors.fit_dihedral_correction` fits the correction, which is added to the
    trained model at inference (weights unchanged) and saved as ``runs/ala2-cg/<name>+corrected<k>/``;
    the MD is rerun with it (thermostat seed ``training seed + 100 k``), and so on ``iterations`` times.
    Each iteration is a ``cg-run`` record as for the runner's.

    ``start`` > 0 continues from the full-step iteration ``start`` (its model, correction included,
    and MD samples) instead of the uncorrected run; with ``damping`` < 1 the new iterations are damped
    (:func:`refined_name`), e.g. a damped second step after a full first. ``joint``: the new steps fit
    the joint phi/psi correction (:func:`ase_denoise.priors.fit_dihedral_pair_correction`, 3 orders per
    angle) beside the start's one-dimensional one."""
    from ase_denoise.checkpoint import load_model_file, save_model
    from ase_denoise.model import with_prior
    from ase_denoise.priors import dihedral_angles, fit_dihedral_correction, fit_dihedral_pair_correction

    recipe, seed = RUNS[name]
    frames = STUDY.frames()
    pool, test = split(frames)
    train_frames = pool[: recipe.frames][: QUICK["frames_cap"] if quick else None]
    start_name = refined_name(name, start) if start else name
    samples_path = STUDY.samples_path(start_name, quick)
    if not samples_path.exists():
        if start:
            raise FileNotFoundError(f"{samples_path} is missing: run --refine {name} --iterations {start} first")
        STUDY.run(name, quick=quick)
    base = load_model_file(STUDY.work_dir(start_name, quick) / "best.safetensors")  # the start's correction included
    kT = base.kT
    target = dihedral_angles(train_frames, [PHI, PSI])
    sampled = np.radians(np.load(samples_path).astype(np.float64))
    kind = "dihedral_pair_correction" if joint else "dihedral_correction"
    correction = next((p for p in base.priors if p.kind == kind), None)  # with_prior replaces it
    results = []
    for k in range(start + 1, start + iterations + 1):
        if joint:
            correction = fit_dihedral_pair_correction(sampled, target, kT, [(PHI, PSI)], previous=correction,
                                                      damping=damping)
        else:
            correction = fit_dihedral_correction(sampled, target, kT, [PHI, PSI], previous=correction, damping=damping)
        model = with_prior(base, correction)
        refined = refined_name(name, k, damping, joint)
        work = STUDY.work_dir(refined, quick)
        work.mkdir(parents=True, exist_ok=True)
        save_model(model, work / "best.safetensors", overwrite=True,
                   training=dict(refined_from=name, iteration=k, damping=damping, joint=joint))
        md, phi_psi = run_md(model, pool[: recipe.frames], frames, quick, seed=seed + 100 * k)
        STUDY.save_samples(refined, phi_psi, quick)
        result = STUDY.summary(quick).put(dict(
            kind="cg-run", run=refined, recipe=recipe.name, seed=seed, refined_from=name, iteration=k, damping=damping,
            joint=joint, correction=correction.to_dict(),
            forces={"all": short_metrics(force_errors(model, test[: 20 if quick else len(test)])["all"], ("rmse",))},
            md=md, **sample_figures(phi_psi, frames), date=time.strftime("%Y-%m-%d")))
        logger.info("%s: KL %.3f, populations %s", refined, result["kl"],
                    {b.split(" ")[0]: round(v[0], 3) for b, v in result["populations"].items()})
        results.append(result)
        sampled = np.radians(phi_psi.astype(np.float64))
    return results


def ensure_reference(summary, data: Path = None) -> Dict[str, Any]:
    """The ``cg-reference`` record of ``summary`` (written from the data when missing): the tables need it."""
    return summary.get("cg-reference", "reference") or summary.put(reference_figures(data))


def reference_figures(data: Path = None) -> Dict[str, Any]:
    """The reference (all frames, mapped) as the tables use it: populations of the basins and regions
    (10 blocks), the KL, JS divergence and PMF RMSE between its halves, the KL of the product of the first 2000 training frames'
    marginals; the marginal figures of the reference, of those training frames and of their product, each
    with the KL from the held-out last 500 frames -> the ``cg-reference`` record."""
    frames = map_frames(data or STUDY.data)
    ref = reference_phi_psi(frames)
    half = len(ref) // 2
    pool, test = split(frames)
    train = reference_phi_psi(pool[: max(FRAME_COUNTS)])
    held_out = reference_phi_psi(test)
    rows = {}
    for label, sample in (("reference", ref), ("training frames", train), ("product of their marginals", marginals_product(train))):
        rows[label] = dict(marginal_figures(ref, sample), kl=kl_divergence(ref, sample), kl_held_out=kl_divergence(held_out, sample))
    return dict(kind="cg-reference", run="reference", populations=basin_populations(ref),
                regions=basin_populations(ref, split_beta=True), kl_between_halves=kl_divergence(ref[:half], ref[half:]),
                js_between_halves=js_divergence(ref[:half], ref[half:]),
                pmf_rmse_kT_between_halves=pmf_rmse(ref[:half], ref[half:]),
                n_frames=len(ref), n_training=len(train), kl_marginals_product=kl_divergence(ref, marginals_product(train)),
                marginals=rows)


def plot(names: Sequence[str], path: Path = None, quick: bool = False) -> Path:
    """Free-energy surfaces -kT ln p(phi, psi) of the reference and of the runs ``names`` (their sampled
    phi/psi in ``results/raw/``, written by the runs) -> ``results/cg_fes.png``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from study_kit import save_figure

    samples = [("reference (all-atom, 5 ns)", reference_phi_psi(STUDY.frames()))]
    for name in names:
        f = STUDY.samples_path(name, quick)
        if f.exists():
            samples.append((name, np.load(f).astype(np.float64)))
    kT = 8.617333262e-5 * TEMPERATURE_K * 96.485  # kJ/mol
    fig, axes = plt.subplots(1, len(samples), figsize=(3.4 * len(samples), 3.2), squeeze=False)
    fig.subplots_adjust(wspace=0.45)
    for ax, (label, pp) in zip(axes[0], samples):
        counts = histogram(pp, 10.0)
        with np.errstate(divide="ignore"):
            fes = -kT * np.log(counts / counts.sum())
        fes -= np.nanmin(fes[np.isfinite(fes)])
        im = ax.imshow(np.where(np.isfinite(fes), fes, np.nan).T, origin="lower", extent=(-180, 180, -180, 180),
                       vmin=0, vmax=15, cmap="viridis")
        import textwrap

        ax.set_title("\n".join(textwrap.wrap(label.replace("+", " +"), 24)), fontsize=8)
        ax.set_xlabel("phi (deg)")
        ax.set_ylabel("psi (deg)")
    fig.colorbar(im, ax=axes[0].tolist(), label="free energy (kJ/mol)", shrink=0.8)
    return save_figure(fig, path or STUDY.results / f"cg_fes{'-quick' if quick else ''}.png")


def publish(name: str, zoo_name: str = "ala2-cg-300K", models_dir: Path = REPO / "models", quick: bool = False) -> Path:
    """Copy run ``name``'s model into ``models/<zoo_name>/`` with its card, a start structure (a
    held-out frame) and the reference phi/psi samples (for the tutorial), and register it."""
    import shutil

    import ase.io

    from ase_denoise.checkpoint import load_model_file
    from ase_denoise.zoo import register_model

    records = STUDY.by_run(quick=quick)
    res = records.get(name)
    if res is None:
        raise FileNotFoundError(f"no record of run {name!r} in {STUDY.summary(quick).path}")
    base_name, _, correction = name.partition("+")  # a run corrected by refine_run: its training is the base's
    iteration = correction[len("corrected"):] if correction else ""
    base = records.get(base_name)
    if base is None:
        raise FileNotFoundError(f"no record of run {base_name!r}, which {name!r} corrects")
    suffix = f"+{correction}" if correction else ""
    recipe, seed = RUNS[base_name]
    model = load_model_file(STUDY.work_dir(name, quick) / "best.safetensors")
    dest_dir = Path(models_dir) / zoo_name
    dest_dir.mkdir(parents=True, exist_ok=True)
    dest = dest_dir / f"{zoo_name}.safetensors"
    shutil.copyfile(STUDY.work_dir(name, quick) / "best.safetensors", dest)
    frames = STUDY.frames()
    start = split(frames)[1][0].copy()
    del start.arrays["ref_forces"]
    ase.io.write(dest_dir / "start.extxyz", start)
    ref = reference_phi_psi(frames)
    np.savez_compressed(dest_dir / "reference_phi_psi.npz", phi_psi_deg=ref.astype(np.float32))
    for f in (dest, dest_dir / "start.extxyz", dest_dir / "reference_phi_psi.npz"):
        os.chmod(f, 0o644)
    figures = reference_figures(STUDY.data)
    word = recipe.get("word")
    seeds = [records[n] for n in seed_runs(word, recipe.frames, suffix) if n in records]
    c, physics = model.config, model.physics
    names = c.bead_names
    levels = ", ".join(f"{x:g}" for x in model.noise_levels)
    md = res["md"]
    basins = list(figures["populations"])
    rows = "\n".join(f"| {b} | {res['populations'][b][0]:.3f} ± {res['populations'][b][1]:.3f} | "
                     f"{figures['populations'][b][0]:.3f} ± {figures['populations'][b][1]:.3f} |" for b in basins)
    kl_seeds = ", ".join(f"{r['kl']:.3f}" for r in seeds)
    torsions = any(p.kind == "dihedrals" for p in model.priors)
    fm_line = ""
    for fm_word, fm_what in (("force-match", "the bonded priors and the wall"),
                             ("force-match-torsions", "the same priors, torsions included")):
        if fm_word == "force-match-torsions" and not torsions:
            continue
        for fm_suffix in dict.fromkeys(("", suffix)):
            fm = [records[n] for n in seed_runs(fm_word, recipe.frames, fm_suffix) if n in records]
            if fm:
                fm_line += (f"\n- Force matching on the {base['n_frames']} frames' mapped forces with {fm_what}"
                            + (", with the same torsion correction" if fm_suffix else "") + ", the same protocol and "
                            f"optimiser steps (`{fm_word}-{base['n_frames']}{fm_suffix}`): KL "
                            + ", ".join(f"{r['kl']:.3f}" for r in fm) + f" over {len(fm)} training seed(s).")
    prior_words = "the bonded priors, the wall and the torsion priors on phi and psi" if torsions else \
        "the bonded priors and the wall"
    torsion_limit = (f"\n- The torsion priors are the training frames' phi and psi free energies. A sample with exactly "
                     f"those two marginals and no\n  correlation between phi and psi is at KL "
                     f"{figures['kl_marginals_product']:.3f} from the reference (this model's MD: {res['kl']:.3f}); what a "
                     "model adds beyond that is\n  the coupling of phi and psi, which no prior here carries." if torsions else "")
    pool, test = split(frames)
    held_out_line = (f"\n- KL from the held-out last 500 frames alone (1 ns that no training, prior or correction saw; a "
                     f"sparse histogram):\n  {res['kl_held_out']:.3f}; "
                     f"the {base['n_frames']} training frames themselves are at "
                     f"{kl_divergence(reference_phi_psi(test), reference_phi_psi(pool[: base['n_frames']])):.3f} from them."
                     if res.get("kl_held_out") is not None else "")
    refined_line = (f"\n- Torsion correction (`cg.py --refine`; `ase-denoise refine-torsions` does the same for any "
                    f"molecule): {iteration} step(s) of\n  iterative Boltzmann inversion on phi and psi, each from the "
                    f"model's own replica MD against the training frames'\n  distributions (no labels), added at "
                    f"inference only (the weights are as trained). KL of the model as trained: {base['kl']:.3f}."
                    if iteration else "")
    ladder_how = ("(`soft_ladder`: the `auto` rule applied to the bead pairs no bonded prior covers), the bonded "
                  "priors subtracted from the target as the noise smooths them (`smoothed_priors=True`)"
                  if recipe.get("smoothed") else "(`noise_std=\"auto\"`: the C-N bonds' width sets it)")
    cmd = (f"OMP_NUM_THREADS=1 .venv/bin/python benchmarks/ala2/cg.py --only {base_name}"
           + (f" --refine {base_name} --iterations {iteration}" if iteration else "") + f" --publish {name}")
    friction = md.get("friction_per_fs", 0.01)
    if c.head == "energy":
        heating = (f"- Its forces are the gradient of a free energy (energy head), so Langevin MD holds the temperature\n"
                   f"  (this model: {md['mean_temperature_K']:.0f} K mean kinetic temperature in the replicas above).")
    else:
        heating = (f"- Its forces are not exactly conservative (vector head): their work heats Langevin MD against a weak\n"
                   f"  friction (this model: {md['mean_temperature_K']:.0f} K mean kinetic temperature at {friction:g}/fs in the\n"
                   f"  replicas above; `benchmarks/ala2/heating.py`, `benchmarks/ala2/README.md`, \"The MD runs hot\").\n"
                   f"  Use a friction of at least 0.05/fs.")
    card = f"""# {zoo_name}

Alanine dipeptide (ACE-ALA-NME) in implicit water at 300 K, coarse-grained to six beads: the backbone
atoms C (ACE), N, CA, C (ALA), N (NME) and the alanine CB (the CGSchNet map, Husic et al., J. Chem. Phys.
153, 194101 (2020)). A denoiser trained on **bead coordinates alone** (run `{name}` of
`benchmarks/ala2/cg.py`); `DenoiseCalculator.from_zoo("{zoo_name}")` gives the mean force on each bead
(eV/A), the noise ladder {levels} A extrapolated to sigma -> 0, plus {prior_words}
(forces only: no energy). Bead types, each its own placeholder number:
{", ".join(f"{z} = {t}" for z, t in sorted(names.items()))} (`model.config.bead_names`; build structures with
`ase_denoise.data.bead_atoms`).

```python
from ase_denoise import DenoiseCalculator
atoms.calc = DenoiseCalculator.from_zoo("{zoo_name}")   # sha256-checked, no network
```

## Training data

- The first {base['n_frames']} frames ({base['n_frames'] * 2 / 1000:g} ns, a frame every 2 ps) of all-atom OpenMM MD: amber14 + GBn2 implicit
  solvent, no constraints, 300 K (`benchmarks/ala2/make_data.py`, data `benchmarks/ala2/ala2_aa_300K.npz`),
  mapped to the six beads. The mapped forces in the data were not used.
- Temperature **{physics.temperature_K} K** (kT = {physics.kT:.6f} eV).

## Settings

- noise_std (sigma): noise ladder **{levels} A** {ladder_how}; n_duplicates: **{recipe.n_duplicates}**
  (noise drawn in antithetic pairs).
- Training: {base['epochs']} epochs, batch {BATCH}, AdamW lr 0.005 with cosine schedule, seed {seed}, float32;
  {base['train_s'] / 60:.1f} min on one CPU thread.{refined_line}
- Priors: {"; ".join(p.describe(names) for p in model.priors)}.
- Architecture: MACE, head={c.head}, r_max={c.r_max}, num_channels={c.num_channels}, max_ell={c.max_ell},
  max_L={c.max_L}, correlation={c.correlation}, num_interactions={c.num_interactions};
  {sum(p.numel() for p in model.parameters())} parameters.

## Measured figures

CG Langevin MD: {md['n_replicas']} replicas in one batched forward per step (`ReplicaLangevin`, 300 K, 2 fs,
friction {friction:g}/fs), each {md['simulated_ps_per_replica']:.0f} ps from a training frame, the first
{MD['equilibration_ps']:g} ps discarded: {md['aggregate_ns']:.1f} ns in all; {md['replicas_intact']}/{md['n_replicas']}
replicas intact (every bond within 0.5 A of its mean). Reference: all 2500 mapped frames (5 ns).

| basin (phi/psi, degrees) | this model | all-atom reference |
| --- | --- | --- |
{rows}

- KL divergence of the phi/psi histogram (20-degree bins) from the reference: **{res['kl']:.3f}**. The
  reference's own two halves differ by {figures['kl_between_halves']:.3f}: that is the floor the 5-ns reference allows.{held_out_line}
- The same recipe over {len(seeds)} training seed(s): KL {kl_seeds} (this file is seed {seed}).{fm_line}

## Limits

- The reference never visits alpha_L/C7ax (phi > 0) in 5 ns, so the model has never seen it; whatever it
  says there is extrapolation (the wall and bonded priors keep it stable, not right).
- A CG force field is a potential of mean force of one state point (300 K, this solvent model).{torsion_limit}
{heating}
- The replicas start from frames spread over the training set, so a short run partly inherits their
  basin populations; the figures above come from {md['simulated_ps_per_replica']:.0f}-ps runs
  (`benchmarks/ala2/README.md`, "Coarse-grained").

`start.extxyz` is a held-out frame (six beads) to start MD from; `reference_phi_psi.npz` holds the
reference's phi/psi (degrees) for free-energy plots (`tutorials/10_ala2_cg.ipynb`).
"""
    register_model(models_dir, zoo_name, dest, card, command=cmd, temperature_K=physics.temperature_K,
                   fit_note=fit_systems.card_note(zoo_name),
                   noise_std=list(model.noise_levels),
                   summary=f"alanine dipeptide in implicit water at 300 K, 6 CG beads (backbone + CB, non-periodic), "
                           f"vector head, noise ladder {levels} A corrected to sigma -> 0, harmonic bond/angle priors"
                           + (", a wall and phi/psi torsion priors" if torsions else " and a wall")
                           + (", an iterative Boltzmann torsion correction" if iteration else "") + "; coordinates only")
    return dest


def main(argv=None) -> int:
    return STUDY.main(argv)


if __name__ == "__main__":
    sys.exit(main())
