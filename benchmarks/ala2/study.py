"""Alanine dipeptide, all atoms: denoising on coordinates alone vs force matching vs mixed labels.

Data: ``ala2_aa_300K.npz`` (``make_data.py``: amber14 + GBn2, no constraints, 300 K, a frame every
2 ps). The last 20% of the trajectory is held out (a later time block, not a random split). Every run
trains the same MACE architecture (vector head unless said otherwise, r_max 5 A, non-periodic) with
the harmonic bond and angle priors fitted to its training frames (``--prior bonded``: the stiff modes
are given, the network learns the rest), and the same number of optimiser steps. The recipes are data
(:data:`RECIPES`, ``--list``; the words are shared with the CG study ``cg.py``):

* ``denoise-<N>``: coordinates only, the noise ladder ``auto`` derives from the data (the C=O / C-N
  bond widths set it), antithetic pairs, 4 copies per frame;
* ``denoise-smoothed-<N>``: with ``TrainConfig.smoothed_priors`` (the residual taken against the bonded
  priors as the noise smooths them), so ``auto`` leaves out the pairs the priors hold: a wider ladder;
* ``denoise-smoothed-torsions-<N>``: and torsion priors on phi and psi (each backbone dihedral's free
  energy fitted to the training frames, :func:`ase_denoise.priors.fit_dihedral_priors`, learned as a
  residual like the bonded priors); ``...-energy-head`` variants with the energy head (conservative);
* ``mixed-<N>``: the ``auto`` ladder with the variance-reduced mixture of force and noise labels;
* ``force-match-<N>``: force matching on the instantaneous forces (exact here: without constraints the
  all-atom forces are the score); ``force-match-energy-head-<N>``: with the energy head.

``N`` training frames from the start of the trajectory (500 or 2000); ``-seed1``/``-seed2``: training
seeds 1 and 2. Per run one ``aa-run`` record in ``results/summary.jsonl`` (``benchmarks/study_kit.py``'s
runner): held-out force errors against the true forces, per element and overall (RMSE, relative RMSE,
slope); and a short Langevin MD (ASE, 300 K, 0.5 fs, friction 0.01/fs) from a held-out frame: whether it
stays intact (every bond within 0.5 A of its reference mean) and its bond-length RMS spread against the
reference's. A bond 1 A off its mean ends the run (``stopped`` says when).

    python benchmarks/ala2/study.py --only denoise-500 force-match-500 mixed-500    # trains, evaluates
    python benchmarks/ala2/study.py --tables        # every table of README.md, from the summary
    python benchmarks/ala2/study.py --plot-torsions # results/torsion_priors.png
"""
from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any, Dict, List, Optional, Sequence  # noqa: E402

import numpy as np  # noqa: E402
from ase import Atoms  # noqa: E402

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
from study_kit import Recipe, RecipeBook, Study, fmt, short_metrics  # noqa: E402

DATA = HERE / "ala2_aa_300K.npz"
TEMPERATURE_K = 300.0
MODEL = dict(r_max=5.0, num_channels=16, max_ell=2, correlation=2, head="vector")
STEPS = 30 * 500 * 4 // 8  # optimiser steps of every run (batch 8): 30 epochs x 500 frames x 4 copies
MD = dict(timestep_fs=0.5, friction_per_fs=0.01, equilibration_ps=1.0, production_ps=10.0, interval=20)
BROKEN_A = 1.0  # A: a bond this far off its mean length ends the MD (a broken molecule)
QUICK = dict(frames_cap=40, steps=20, equilibration_ps=0.01, production_ps=0.05)
FRAME_COUNTS = (500, 2000)
SEEDS = (0, 1, 2)


#: the recipe words of both ala2 studies: word -> (what it is, loss, copies per frame, smoothed priors, head,
#: torsion priors); the all-atom study runs those whose entry in ALL_ATOM is True
WORDS = {
    "denoise": ("denoising, coordinates only (auto ladder)", "denoising", 4, False, "vector", False),
    "denoise-smoothed": ("denoising, coordinates only, smoothed priors + soft ladder", "denoising", 4, True, "vector", False),
    "denoise-smoothed-energy-head": ("denoising as denoise-smoothed, energy head (conservative)", "denoising", 4, True, "energy", False),
    "denoise-smoothed-torsions": ("denoising as denoise-smoothed, torsion priors on phi and psi", "denoising", 4, True, "vector", True),
    "denoise-smoothed-torsions-energy-head": ("denoising as denoise-smoothed-torsions, energy head", "denoising", 4, True, "energy", True),
    "mixed": ("mixed labels", "mixed", 4, False, "vector", False),
    "mixed-smoothed": ("mixed labels, smoothed priors + soft ladder", "mixed", 4, True, "vector", False),
    "force-match": ("force matching", "force_matching", 1, False, "vector", False),
    "force-match-energy-head": ("force matching, energy head (conservative)", "force_matching", 1, False, "energy", False),
    "force-match-torsions": ("force matching, torsion priors on phi and psi", "force_matching", 1, False, "vector", True),
}
ALL_ATOM = ("denoise", "denoise-smoothed", "denoise-smoothed-energy-head", "denoise-smoothed-torsions",
            "denoise-smoothed-torsions-energy-head", "mixed", "force-match", "force-match-energy-head")


def recipes(words: Sequence[str], frame_counts=FRAME_COUNTS, fm_noise_std: float = 0.01) -> List[Recipe]:
    """The recipes ``<word>-<N>`` of ``words`` at each frame count, seeds 0-2."""
    out = []
    for n in frame_counts:
        for word in words:
            what, loss, copies, smoothed, head, torsions = WORDS[word]
            out.append(Recipe(f"{word}-{n}", f"{what}, {n} frames", loss=loss, frames=n, n_duplicates=copies,
                              antithetic=copies > 1, noise_std="auto" if loss != "force_matching" else fm_noise_std,
                              head=head, seeds=SEEDS, priors=("bonded",) + (("dihedrals",) if torsions else ()),
                              options=dict(smoothed=smoothed, torsions=torsions, word=word)))
    return out


BOOK = RecipeBook(recipes(ALL_ATOM))
RUNS = BOOK.runs
def backbone_dihedrals(path: Path = DATA) -> str:
    """The ``priors`` entry of torsion priors on phi and psi (``make_data.PHI``/``PSI``, atom indices
    from the data's atom names): ``"dihedrals:4-6-8-14,6-8-14-16"``."""
    sys.path.insert(0, str(HERE))
    import make_data

    index = {str(n): i for i, n in enumerate(np.load(path)["names"])}
    return "dihedrals:" + ",".join("-".join(str(index[a]) for a in quad) for quad in (make_data.PHI, make_data.PSI))


def load_frames(path: Path = None) -> List[Atoms]:
    d = np.load(STUDY.data if path is None else path)
    frames = []
    for pos, frc in zip(d["positions"], d["forces"]):
        atoms = Atoms(numbers=d["numbers"], positions=pos.astype(np.float64))
        atoms.arrays["ref_forces"] = frc.astype(np.float64)
        atoms.info["temperature_K"] = float(d["temperature_K"])
        frames.append(atoms)
    return frames


def split(frames: List[Atoms]):
    """(training pool: the first 80% in time order, held-out test: the last 20%)."""
    cut = int(0.8 * len(frames))
    return frames[:cut], frames[cut:]


def train_run(name: str, pool: List[Atoms], quick: bool):
    """Train run ``name`` (or resume, or reuse its finished training) on its recipe's first frames of
    ``pool`` -> ``(model, n_frames, epochs, seconds)``."""
    from ase_denoise import TrainConfig, train
    from ase_denoise.checkpoint import load_model_file

    recipe, seed = RUNS[name]
    data = pool[: recipe.frames]
    steps = STEPS
    if quick:
        data, steps = data[: QUICK["frames_cap"]], QUICK["steps"]
    samples_per_epoch = len(data) * recipe.n_duplicates
    epochs = max(1, round(steps * 8 / samples_per_epoch))
    work = STUDY.work_dir(name, quick)
    cfg = TrainConfig(loss=recipe.loss, n_duplicates=recipe.n_duplicates, epochs=epochs, batch_size=8, lr=5e-3,
                      seed=seed, valid_fraction=0.1, antithetic_noise=recipe.antithetic,
                      smoothed_priors=recipe.get("smoothed", False))
    t0 = time.perf_counter()
    train(data, str(work), noise_std=recipe.noise_std, temperature_K=TEMPERATURE_K, train_config=cfg,
          resume=(work / "training_state.pt").exists(), progress=True,
          priors=["bonded"] + ([backbone_dihedrals()] if recipe.get("torsions") else []),
          **dict(MODEL, head=recipe.head))
    return load_model_file(work / "best.safetensors"), len(data), epochs, time.perf_counter() - t0


def force_errors(model, test: List[Atoms]) -> Dict[str, Any]:
    from ase_denoise.analysis import force_metrics
    from ase_denoise.data import to_frame
    from ase_denoise.inference import evaluate_forces

    frames = [to_frame(a, model.config.atomic_numbers) for a in test]
    pred, ref = evaluate_forces(model, frames)
    numbers = np.concatenate([a.numbers for a in test])
    out = {"all": force_metrics(pred, ref)}
    from ase.data import chemical_symbols

    for z in sorted(set(numbers.tolist())):
        out[chemical_symbols[z]] = force_metrics(pred[numbers == z], ref[numbers == z])
    return out


def bond_lengths(frames: List[Atoms], bonds) -> np.ndarray:
    index = np.asarray(bonds)
    return np.array([np.linalg.norm(a.positions[index[:, 1]] - a.positions[index[:, 0]], axis=1) for a in frames])


def run_md(model, start: Atoms, reference: List[Atoms], quick: bool, seed: int = 0) -> Dict[str, Any]:
    from ase_denoise import DenoiseCalculator
    from ase_denoise.md import run_langevin
    from ase_denoise.priors import molecule_topology

    md = dict(MD)
    if quick:
        md.update(equilibration_ps=QUICK["equilibration_ps"], production_ps=QUICK["production_ps"])
    atoms = start.copy()
    atoms.calc = DenoiseCalculator(model)
    bonds, _ = molecule_topology(start)
    ref_lengths = bond_lengths(reference, bonds)
    n_equil = int(round(md["equilibration_ps"] * 1000 / md["timestep_fs"]))
    n_prod = int(round(md["production_ps"] * 1000 / md["timestep_fs"]))
    sampled: List[Atoms] = []

    def sample(a: Atoms, step: int) -> None:
        if step > n_equil:
            sampled.append(a.copy())

    mean_lengths = ref_lengths.mean(axis=0)

    def bond_broken(a: Atoms, step: int) -> Optional[str]:
        """End the run once a bond is 1 A off its mean length: the molecule has come apart, and the
        atoms flying off only make every later step slower (the neighbour list rebuilds each step)."""
        stretch = np.abs(bond_lengths([a], bonds)[0] - mean_lengths)
        k = int(np.argmax(stretch))
        return f"bond {tuple(bonds[k])} {stretch[k]:.2f} A off its mean at step {step}" if stretch[k] > BROKEN_A else None

    res = run_langevin(atoms, temperature_K=TEMPERATURE_K, steps=n_equil + n_prod, timestep_fs=md["timestep_fs"],
                       friction_per_fs=md["friction_per_fs"], interval=md["interval"], seed=seed, observers=[sample],
                       stop=bond_broken)
    lengths = bond_lengths(sampled, bonds) if sampled else np.zeros((0, len(bonds)))
    broken = res["stopped"] is not None or bool(len(lengths) and np.abs(lengths - mean_lengths).max() > 0.5)
    return dict(
        simulated_ps=res["steps"] * md["timestep_fs"] / 1000, steps_per_s=res["steps"] / max(res["wall_s"], 1e-9),
        intact=not broken, stopped=res["stopped"],
        bond_std_ratio=float(np.mean(lengths.std(axis=0) / ref_lengths.std(axis=0))) if len(lengths) > 1 else float("nan"),
        bond_mean_shift_A=float(np.abs(lengths.mean(axis=0) - ref_lengths.mean(axis=0)).max()) if len(lengths) else float("nan"),
    )


def plot_torsion_priors(path: Optional[Path] = None, n_frames: int = 2000) -> Path:
    """The torsion priors of the ``denoise-smoothed-torsions`` runs (fitted to the first ``n_frames`` training frames)
    against ``-kT ln p`` of the data's phi and psi (all frames, 10-degree bins), both in kT and zero
    at their minimum: ``results/torsion_priors.png``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ase_denoise.priors import fit_dihedral_priors, parse_dihedrals

    frames = load_frames()
    kT = 8.617333262e-5 * TEMPERATURE_K
    prior = fit_dihedral_priors(split(frames)[0][:n_frames], kT, parse_dihedrals(backbone_dihedrals().partition(":")[2]))
    angles = np.degrees(prior.angles(np.stack([a.positions for a in frames]), np.zeros((3, 3)), [False] * 3))
    grid = np.linspace(-180.0, 180.0, 361)
    u = prior.profile(np.radians(np.stack([grid, grid], axis=1))) / kT
    edges = np.arange(-180.0, 181.0, 10.0)
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5), sharey=True)
    for k, (ax, name) in enumerate(zip(axes, ("phi", "psi"))):
        counts, _ = np.histogram(angles[:, k], bins=edges)
        seen = counts > 0
        pmf = -np.log(counts[seen] / counts.max())
        ax.plot(0.5 * (edges[1:] + edges[:-1])[seen], pmf, "o", ms=4, label="data, -ln p (all 2500 frames)")
        ax.plot(grid, u[:, k] - u[:, k].min(), "-", label=f"torsion prior (first {n_frames} frames)")
        ax.set_xlabel(f"{name} (degrees)")
        ax.set_xlim(-180, 180)
    axes[0].set_ylabel("free energy (kT)")
    axes[0].legend(fontsize=8)
    fig.tight_layout()

    from study_kit import save_figure

    return save_figure(fig, path or STUDY.results / "torsion_priors.png")


class AllAtomStudy(Study):
    """Alanine dipeptide, all atoms: denoising vs force matching vs mixed labels."""

    name = "ala2"
    here = HERE
    data_file = "ala2_aa_300K.npz"
    kind = "aa-run"
    description = "alanine dipeptide, all atoms: denoising vs force matching (benchmarks/ala2/README.md)"
    record_keys = {"aa-run": ("variant",), "cg-run": ("variant",), "aa-replicas": ("variant",)}

    def load_frames(self, path):
        return load_frames(path)

    def split(self, frames, recipe):
        return split(frames)

    def train(self, recipe, seed, frames, work, quick):
        model, n_frames, epochs, elapsed = train_run(recipe.run_name(seed), frames, quick)
        return model, dict(n_frames=n_frames, epochs=epochs, train_s=elapsed)

    def force_errors(self, model, test, quick):
        return {"forces": {k: short_metrics(v, ("rmse", "relative_rmse", "slope"))
                           for k, v in force_errors(model, test[: 20 if quick else len(test)]).items()}}

    def measure(self, model, recipe, seed, run, train, test, frames, quick):
        md = run_md(model, test[0], test, quick, seed=seed)
        return {"md": {k: md[k] for k in ("simulated_ps", "steps_per_s", "intact", "stopped", "bond_std_ratio")}}

    def one_line(self, record):
        return (f"relative RMSE {fmt(record['forces']['all']['relative_rmse'])}, slope "
                f"{fmt(record['forces']['all']['slope'])}, MD intact {record['md']['intact']}")

    def add_arguments(self, parser):
        parser.add_argument("--plot-torsions", action="store_true", help="the torsion-prior runs' priors against "
                            "the data's phi/psi free energies: results/torsion_priors.png")

    def handle(self, args):
        if args.plot_torsions:
            print(plot_torsion_priors())

    def documents(self, quick: bool = False):
        from ala2 import tables

        return tables.documents(self, quick)

    def tables(self, quick: bool = False):
        return self.documents(quick)[self.readme]


STUDY = AllAtomStudy(BOOK)


def main(argv=None) -> int:
    return STUDY.main(argv)


if __name__ == "__main__":
    sys.exit(main())
