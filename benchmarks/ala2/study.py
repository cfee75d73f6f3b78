"""Alanine dipeptide, all atoms: denoising on coordinates alone vs force matching vs mixed labels.

Data: ``ala2_aa_300K.npz`` (``make_data.py``: amber14 + GBn2, no constraints, 300 K, a frame every
2 ps). The last 20% of the trajectory is held out (a later time block, not a random split). Every run
trains the same MACE architecture (vector head unless said otherwise, r_max 5 A, non-periodic) with
the harmonic bond and angle priors fitted to its training frames (``--prior bonded``: the stiff modes
are given, the network learns the rest), and the same number of optimiser steps:

* ``dn-<N>``: denoising, coordinates only, the noise ladder ``auto`` derives from the data (the
  C=O / C-N bond widths set it), antithetic pairs, 4 copies per frame;
* ``dns-<N>``: as ``dn`` with ``TrainConfig.smoothed_priors`` (the residual taken against the bonded
  priors as the noise smooths them), so ``auto`` leaves out the pairs the priors hold: a C=O ... 1-4
  peak (0.077 A wide) sets the ladder, 0.0134 / 0.0208 / 0.0297 A, twice ``dn``'s;
* ``dnst-<N>``: as ``dns`` with torsion priors on phi and psi as well (``dihedrals:...``: each
  backbone dihedral's free energy fitted to the training frames' distribution, learned as a residual
  like the bonded priors; :func:`ase_denoise.priors.fit_dihedral_priors`), ``dnste-<N>`` the same with
  the energy head;
* ``dnse-<N>``: as ``dns`` with the energy head (forces = -grad of a learned free energy: conservative,
  so its MD cannot be heated by the network's work; about twice the vector head's cost);
* ``mixed-<N>``: the same ladder with the variance-reduced mixture of the force and noise labels;
* ``fm-<N>``: force matching on the instantaneous forces (exact here: without constraints the
  all-atom forces are the score, no mean-force ambiguity);
* ``fme-<N>``: as ``fm`` with the energy head (the labels' own energy surface: ``aa_energy.py``
  compares both energy-head recipes' ``A`` with the force field's ``U``).

``N`` frames from the start of the trajectory; ``-r1``/``-r2``: training seeds 1 and 2.

Figures per run (``results/<run>.json``): held-out force errors against the true forces, per element
and overall (RMSE, relative RMSE, slope); and a short Langevin MD (ASE, 300 K, 0.5 fs, friction
0.01/fs) from a held-out frame: whether it stays intact (every bond of the molecule within 0.5 A
of its reference mean) and its bond-length RMS spread against the reference's. A bond 1 A off its
mean ends the run (``stopped`` says when; runs before this rule went the full 11 ps).

    python benchmarks/ala2/study.py --only dn-500 fm-500 mixed-500      # trains, evaluates
    python benchmarks/ala2/study.py --report                            # the table in README.md
"""
from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any, Dict, List, Optional  # noqa: E402

import numpy as np  # noqa: E402
from ase import Atoms  # noqa: E402

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
DATA = HERE / "ala2_aa_300K.npz"
RESULTS = HERE / "results"
RUNS_DIR = REPO / "runs" / "ala2"
TEMPERATURE_K = 300.0
MODEL = dict(r_max=5.0, num_channels=16, max_ell=2, correlation=2, head="vector")
STEPS = 30 * 500 * 4 // 8  # optimiser steps of every run (batch 8): 30 epochs x 500 frames x 4 copies
MD = dict(timestep_fs=0.5, friction_per_fs=0.01, equilibration_ps=1.0, production_ps=10.0, interval=20)
BROKEN_A = 1.0  # A: a bond this far off its mean length ends the MD (a broken molecule)
QUICK = dict(frames_cap=40, steps=20, equilibration_ps=0.01, production_ps=0.05)
FRAME_COUNTS = (500, 2000)
SEEDS = (0, 1, 2)


def _runs() -> Dict[str, Dict[str, Any]]:
    runs = {}
    for n in FRAME_COUNTS:
        for loss, prefix, copies in (("denoising", "dn", 4), ("denoising", "dns", 4), ("denoising", "dnse", 4),
                                     ("denoising", "dnst", 4), ("denoising", "dnste", 4),
                                     ("mixed", "mixed", 4), ("force_matching", "fm", 1), ("force_matching", "fme", 1)):
            for seed in SEEDS:
                name = f"{prefix}-{n}" + (f"-r{seed}" if seed else "")
                runs[name] = dict(loss=loss, frames=n, n_duplicates=copies, seed=seed,
                                  smoothed=prefix.startswith("dns"), antithetic=copies > 1,
                                  noise_std="auto" if loss != "force_matching" else 0.01,
                                  head="energy" if prefix in ("dnse", "dnste", "fme") else MODEL["head"],
                                  torsions=prefix.startswith("dnst"))
    return runs


RUNS = _runs()
logger = logging.getLogger("ala2")


def backbone_dihedrals(path: Path = DATA) -> str:
    """The ``priors`` entry of torsion priors on phi and psi (``make_data.PHI``/``PSI``, atom indices
    from the data's atom names): ``"dihedrals:4-6-8-14,6-8-14-16"``."""
    sys.path.insert(0, str(HERE))
    import make_data

    index = {str(n): i for i, n in enumerate(np.load(path)["names"])}
    return "dihedrals:" + ",".join("-".join(str(index[a]) for a in quad) for quad in (make_data.PHI, make_data.PSI))


def load_frames(path: Path = DATA) -> List[Atoms]:
    d = np.load(path)
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


def train_run(name: str, spec: Dict[str, Any], pool: List[Atoms], quick: bool):
    from ase_denoise import TrainConfig, train
    from ase_denoise.checkpoint import load_model_file

    data = pool[: spec["frames"]]
    steps = STEPS
    if quick:
        data, steps = data[: QUICK["frames_cap"]], QUICK["steps"]
    samples_per_epoch = len(data) * spec["n_duplicates"]
    epochs = max(1, round(steps * 8 / samples_per_epoch))
    work = RUNS_DIR / name
    cfg = TrainConfig(loss=spec["loss"], n_duplicates=spec["n_duplicates"], epochs=epochs, batch_size=8, lr=5e-3,
                      seed=spec["seed"], valid_fraction=0.1, antithetic_noise=spec["antithetic"],
                      smoothed_priors=spec.get("smoothed", False))
    t0 = time.perf_counter()
    train(data, str(work), noise_std=spec["noise_std"], temperature_K=TEMPERATURE_K, train_config=cfg,
          resume=(work / "training_state.pt").exists(), progress=True,
          priors=["bonded"] + ([backbone_dihedrals()] if spec.get("torsions") else []),
          **dict(MODEL, head=spec.get("head", MODEL["head"])))
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


def do_run(name: str, quick: bool = False, data: Path = DATA) -> Dict[str, Any]:
    spec = RUNS[name]
    pool, test = split(load_frames(data))
    model, n_frames, epochs, elapsed = train_run(name, spec, pool, quick)
    errors = force_errors(model, test[: 20 if quick else len(test)])
    md = run_md(model, test[0], test, quick, seed=spec["seed"])
    result = dict(name=name, spec=spec, n_frames=n_frames, epochs=epochs, train_s=elapsed,
                  noise_levels=list(model.noise_levels), forces=errors, md=md)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(result, indent=1))
    logger.info("%s: relative RMSE %.3f, slope %.3f, MD intact %s", name, errors["all"]["relative_rmse"],
                errors["all"]["slope"], md["intact"])
    return result


def report() -> str:
    """Mean ± std over seeds per recipe and frame count (markdown)."""
    rows = ["| recipe | frames | seeds | relative RMSE (all atoms) | slope | RMSE H / C / N / O (eV/A) | MD intact "
            "| bond spread / reference (intact runs) |",
            "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for n in FRAME_COUNTS:
        for prefix, label in (("dn", "denoising, coordinates only"), ("dns", "denoising, smoothed priors"),
                              ("mixed", "mixed labels"), ("fm", "force matching")):
            names = [f"{prefix}-{n}" + (f"-r{s}" if s else "") for s in SEEDS]
            res = [json.loads((RESULTS / f"{x}.json").read_text()) for x in names if (RESULTS / f"{x}.json").exists()]
            if not res:
                continue

            def ms(values):
                v = np.asarray(values, dtype=float)
                if v.size == 0:
                    return "-"
                return f"{v.mean():.3f}" + (f" ± {v.std(ddof=1):.3f}" if len(v) > 1 else "")

            per = " / ".join(ms([r["forces"][e]["rmse"] for r in res]) for e in ("H", "C", "N", "O"))
            rows.append(f"| {label} | {n} | {len(res)} | {ms([r['forces']['all']['relative_rmse'] for r in res])} "
                        f"| {ms([r['forces']['all']['slope'] for r in res])} | {per} "
                        f"| {sum(r['md']['intact'] for r in res)}/{len(res)} "
                        f"| {ms([r['md']['bond_std_ratio'] for r in res if r['md']['intact']])} |")
    return "\n".join(rows)


def plot_torsion_priors(path: Optional[Path] = None, n_frames: int = 2000) -> Path:
    """The torsion priors of the ``dnst`` runs (fitted to the first ``n_frames`` training frames)
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
    path = path or RESULTS / "torsion_priors.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main(argv=None) -> int:
    global RESULTS, RUNS_DIR
    parser = argparse.ArgumentParser(description="alanine dipeptide (all atoms): denoising vs force matching")
    parser.add_argument("--only", nargs="*", default=[], help="runs to train and evaluate")
    parser.add_argument("--report", action="store_true", help="print the table of the finished runs")
    parser.add_argument("--quick", action="store_true", help="tiny settings: a smoke test of the pipeline")
    parser.add_argument("--plot-torsions", action="store_true", help="the dnst runs' torsion priors against the "
                        "data's phi/psi free energies: results/torsion_priors.png")
    parser.add_argument("--data", default=str(DATA))
    parser.add_argument("--out-dir", default=str(HERE), help="results go to <out-dir>/results")
    parser.add_argument("--runs-dir", default=str(RUNS_DIR))
    args = parser.parse_args(argv)
    RESULTS, RUNS_DIR = Path(args.out_dir) / "results", Path(args.runs_dir)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    unknown = [n for n in args.only if n not in RUNS]
    if unknown:
        parser.error(f"unknown runs {unknown}; known: {sorted(RUNS)}")
    for name in args.only:
        do_run(name, quick=args.quick, data=Path(args.data))
    if args.report:
        print(report())
    if args.plot_torsions:
        print(plot_torsion_priors())
    return 0


if __name__ == "__main__":
    sys.exit(main())
