#!/usr/bin/env python
"""Li-Cl potential of mean force in the full CG box, from constrained MD, against -kT ln g(r).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/licl/pmf.py MODEL [--ps 3] [--distances ...] [--part K/N]
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/licl/pmf.py MODEL --report-only
    .venv/bin/python benchmarks/licl/pmf.py --plot                          # results/pmf.png, from the summary
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/licl/pmf.py MODEL_A MODEL_B MODEL_C --label NAME  # a committee

``MODEL``: a model file or zoo name. For each distance ``r`` one Li-Cl pair of the 48-ion box (the
pair of a data frame closest to ``r``) is held at ``r`` by ASE's ``FixBondLength`` (RATTLE) while
everything else runs Langevin MD at 300 K (1 fs, friction 0.01/fs, 1 ps equilibration). The mean
force along the constraint, ``dW/dr = <(F_Li - F_Cl) . u> / 2`` with ``u`` the unit vector from Li to
Cl and ``F`` the unconstrained forces, integrates (trapezoid) to the potential of mean force
``W(r)``. For a distance between two particles the blue-moon metric factor is constant and the
Jacobian ``2 kT / r`` belongs to ``-kT ln P(r)``, not to ``W``: so ``W(r) = -kT ln g(r)`` up to a
constant (and the finite box), which the reference RDF of the all-atom data gives. Error bars: the
standard error of the mean force from 5 blocks per window, propagated through the trapezoid sum.

Windows are independent: ``--part K/N`` runs every N-th window starting at K (run N processes in
parallel); each goes to ``results/raw/pmf/<model>/r<r>.json`` (not committed) and is skipped when
present. Once all windows of a model are there, its record (kind ``pmf``: the windows' mean forces) goes
into ``results/summary.jsonl``; the study's tables (``study.py --tables``) compute the PMF features
from it, ``--report-only`` prints its windows, ``--plot`` draws ``results/pmf.png``.
"""

from __future__ import annotations

import os

if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
from licl import study  # noqa: E402  (data, reference RDF, temperature)

# Angstrom: dense over the contact minimum (2.3 A), the barrier (~3 A) and the solvent-separated minimum (4.65 A)
DISTANCES = (2.1, 2.2, 2.3, 2.4, 2.5, 2.6, 2.8, 3.0, 3.2, 3.4, 3.6, 3.9, 4.2, 4.6, 5.0, 5.5, 6.0)
N_BLOCKS = 5


def start_frame(r: float):
    """A data frame and the Li-Cl pair (i, j) whose distance is closest to ``r``."""
    frames = study.load_frames()
    best = None
    for k in range(0, 400, 20):
        atoms = frames[k]
        li = [i for i, s in enumerate(atoms.get_chemical_symbols()) if s == "Li"]
        cl = [i for i, s in enumerate(atoms.get_chemical_symbols()) if s == "Cl"]
        d = atoms.get_all_distances(mic=True)[np.ix_(li, cl)]
        a, b = np.unravel_index(np.argmin(np.abs(d - r)), d.shape)
        if best is None or abs(d[a, b] - r) < best[0]:
            best = (abs(d[a, b] - r), k, li[a], cl[b])
    _, k, i, j = best
    return frames[k].copy(), int(i), int(j)


def window(model, r: float, ps: float, seed: int) -> dict:
    """Constrained MD at Li-Cl distance ``r``: mean force along the pair and its block errors."""
    from ase import units
    from ase.constraints import FixBondLength
    from ase.md.langevin import Langevin

    from ase_denoise import DenoiseCalculator

    atoms, i, j = start_frame(r)
    # move Cl along the pair axis to distance r (minimum image), then fix the bond
    v = atoms.get_distance(i, j, mic=True, vector=True)
    atoms.positions[j] = atoms.positions[i] + v * (r / np.linalg.norm(v))
    atoms.set_constraint(FixBondLength(i, j))
    atoms.calc = DenoiseCalculator(model)
    rng = np.random.default_rng(seed)
    from ase.md.velocitydistribution import thermalize_momenta

    thermalize_momenta(atoms, temperature_K=study.TEMPERATURE_K, rng=rng)
    atoms.set_momenta(atoms.get_momenta())  # constraint-adjusted
    dyn = Langevin(atoms, 1.0 * units.fs, temperature_K=study.TEMPERATURE_K, friction=0.01 / units.fs,
                   fixcm=False, rng=rng)
    n_eq, n_prod = 1000, int(round(ps * 1000))
    samples = []

    def sample():
        f = atoms.get_forces(apply_constraint=False)
        u = atoms.get_distance(i, j, mic=True, vector=True)
        u /= np.linalg.norm(u)
        samples.append(0.5 * float((f[i] - f[j]) @ u))  # dW/dr, eV/A (attraction > 0)

    t0 = time.perf_counter()
    dyn.run(n_eq)
    dyn.attach(sample, interval=5)
    dyn.run(n_prod)
    samples = np.array(samples)
    blocks = np.array([b.mean() for b in np.array_split(samples, N_BLOCKS)])
    return dict(r=r, mean_force=float(samples.mean()), error=float(blocks.std(ddof=1) / np.sqrt(N_BLOCKS)),
                n_samples=len(samples), ps=ps, distance_end=float(atoms.get_distance(i, j, mic=True)),
                wall_s=round(time.perf_counter() - t0, 1), pair=[i, j])


def model_label(model: str) -> str:
    """A zoo name, or the study run of a model file (``runs/licl/RUN/best.safetensors``: ``RUN``;
    ``last.safetensors``: ``RUN+last-epoch``), or the file's stem."""
    if not os.path.exists(model):
        return model
    path = Path(model)
    return {"best": path.parent.name, "last": f"{path.parent.name}+last-epoch"}.get(path.stem, path.stem)


def windows_of(out_dir: Path) -> list:
    """The finished windows of one model (``results/raw/pmf/<label>/r*.json``), by distance."""
    return sorted((json.loads(p.read_text()) for p in out_dir.glob("r*.json")), key=lambda d: d["r"])


def record(label: str, rows: list) -> dict:
    """The summary record of a model whose windows are all done: the windows' mean forces (kind ``pmf``)."""
    return dict(kind="pmf", run=label, ps=rows[0]["ps"],
                windows=[[d["r"], d["mean_force"], d["error"]] for d in rows],
                wall_s=float(sum(d["wall_s"] for d in rows)), date=time.strftime("%Y-%m-%d"))


def report(label: str) -> str:
    """One model's windows (from its summary record) as a table: ``dW/dr``, ``W`` and ``-kT ln g``."""
    from licl import tables

    rec = study.STUDY.summary().get("pmf", label)
    if rec is None:
        return f"{label}: no pmf record yet (all {len(DISTANCES)} windows must be done)"
    r, dw, err, w, w_err, w_ref = tables.pmf_curve(rec)
    kT = study.TEMPERATURE_K * 8.617333262e-5
    rms = float(np.sqrt(np.nanmean((w - w_ref) ** 2)))
    lines = [f"Li-Cl potential of mean force: {label} ({rec['ps']:g} ps of constrained MD per window after 1 ps "
             f"of equilibration). RMS difference from -kT ln g(r) over the windows: {rms:.4f} eV ({rms / kT:.2f} kT); "
             f"curves aligned at r = {r[-1]:g} A.", "",
             "| r (A) | dW/dr (eV/A) | W (eV) | -kT ln g (eV) |", "| --- | --- | --- | --- |"]
    lines += [f"| {a:.2f} | {b:.4f} ± {c:.4f} | {d:.4f} ± {e:.4f} | {f:.4f} |" for a, b, c, d, e, f in
              zip(r, dw, err, w, w_err, w_ref)]
    return "\n".join(lines)


#: the models of the README's PMF table, the default of ``--plot``
PLOTTED = ("denoise-ladder-wall", "denoise-ladder-wall-seed1", "denoise-ladder-wall-seed2", "denoise-ladder-wall-energy-head")


def plot(path: Path = None, labels=PLOTTED) -> Path:
    """The PMFs of the models ``labels`` (their summary records; None: every model) with the reference
    ``-kT ln g(r)`` -> ``results/pmf.png``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from licl import tables
    from study_kit import save_figure

    ref = np.load(study.STUDY.reference)
    kT = study.TEMPERATURE_K * 8.617333262e-5
    fig, ax = plt.subplots(figsize=(6, 4))
    fine = ref["r"] > 1.9
    with np.errstate(divide="ignore"):
        ax.plot(ref["r"][fine], -kT * np.log(ref["Li-Cl"][fine]), "k-", label="-kT ln g(r), all-atom reference")
    for rec in study.STUDY.summary().records("pmf"):
        if labels is None or rec["run"] in labels:
            r, _, _, w, w_err, _ = tables.pmf_curve(rec)
            ax.errorbar(r, w, yerr=w_err, fmt="o-", ms=3, capsize=2, label=f"constrained MD, {rec['run']}")
    ax.set_xlim(2.0, 6.2)
    ax.set_ylim(-0.15, 0.17)
    ax.axhline(0, color="0.8", lw=0.5)
    ax.set_xlabel("Li-Cl distance r (A)")
    ax.set_ylabel("W(r) (eV)")
    ax.set_title("Li-Cl potential of mean force, CG LiCl(aq), 300 K")
    ax.legend(fontsize=7)
    return save_figure(fig, path or study.STUDY.results / "pmf.png", dpi=90)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("model", nargs="*", help="model file or zoo name; several: a committee (their mean forces; "
                                            "name it with --label, e.g. the study's committee run)")
    p.add_argument("--label", default=None, help="name of the results folder (default: from the model's path)")
    p.add_argument("--ps", type=float, default=3.0, help="production ps per window (default 3)")
    p.add_argument("--distances", type=float, nargs="*", default=list(DISTANCES))
    p.add_argument("--part", default="0/1", help="K/N: run windows K, K+N, ... (parallel processes)")
    p.add_argument("--report-only", action="store_true", help="print the model's table from its summary record")
    p.add_argument("--plot", nargs="*", default=None, metavar="LABEL", help="draw results/pmf.png (these models; "
                   "default: those of the README's PMF table)")
    args = p.parse_args(argv)
    if not args.model:
        if args.plot is None:
            p.error("give a MODEL, or --plot alone")
        print("wrote", plot(labels=args.plot or PLOTTED))
        return 0
    if len(args.model) > 1 and not args.label:
        p.error("a committee of several models needs --label")
    label = args.label or model_label(args.model[0])
    out_dir = study.STUDY.raw / "pmf" / label
    out_dir.mkdir(parents=True, exist_ok=True)
    if not args.report_only:
        from ase_denoise import load_model

        model = [load_model(m) for m in args.model] if len(args.model) > 1 else load_model(args.model[0])
        k, n = map(int, args.part.split("/"))
        for idx, r in enumerate(args.distances):
            path = out_dir / f"r{r:.2f}.json"
            if idx % n != k or path.exists():
                continue
            res = dict(window(model, float(r), args.ps, seed=idx), model=args.model if len(args.model) > 1 else args.model[0])
            path.write_text(json.dumps(res) + "\n")
            print(json.dumps(res), flush=True)
    rows = windows_of(out_dir)
    if len(rows) == len(DISTANCES) and not args.report_only:
        study.STUDY.summary().put(record(label, rows))
    print(report(label))
    if args.plot is not None:
        print("wrote", plot(labels=args.plot or PLOTTED))
    return 0


if __name__ == "__main__":
    sys.exit(main())
