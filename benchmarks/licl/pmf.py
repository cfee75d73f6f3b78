#!/usr/bin/env python
"""Li-Cl potential of mean force in the full CG box, from constrained MD, against -kT ln g(r).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/licl/pmf.py MODEL [--ps 3] [--distances ...] [--part K/N]
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/licl/pmf.py MODEL --report-only
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
parallel); results go to ``results/pmf/<model>/r<r>.json`` and are skipped when present. The
report (``--report-only`` or after a full run) writes ``pmf.png`` and ``pmf.md`` next to them, and
``results/pmf/pmf.png`` with every model's curve.
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
sys.path.insert(0, str(HERE))
import study  # noqa: E402  (data, reference RDF, temperature)

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
    """A zoo name, or the file's stem (``best.safetensors``: its run folder's name; ``last.safetensors``:
    the run folder's name with ``-last``)."""
    if not os.path.exists(model):
        return model
    path = Path(model)
    return {"best": path.parent.name, "last": f"{path.parent.name}-last"}.get(path.stem, path.stem)


def pmf_curve(out_dir: Path):
    """``(rows, r, dW/dr, its error, W, W's error, -kT ln g at r)`` of one model's windows, ``W``
    aligned with ``-kT ln g`` at the largest distance; None for fewer than two windows."""
    rows = sorted((json.loads(p.read_text()) for p in out_dir.glob("r*.json")), key=lambda d: d["r"])
    if len(rows) < 2:
        return None
    r = np.array([d["r"] for d in rows])
    dw = np.array([d["mean_force"] for d in rows])
    err = np.array([d["error"] for d in rows])
    # trapezoid integral from the first window; variance of each step (h/2)^2 (e_a^2 + e_b^2)
    steps = 0.5 * np.diff(r) * (dw[1:] + dw[:-1])
    w = np.concatenate([[0.0], np.cumsum(steps)])
    w_err = np.sqrt(np.concatenate([[0.0], np.cumsum((0.5 * np.diff(r)) ** 2 * (err[1:] ** 2 + err[:-1] ** 2))]))
    ref = np.load(study.REFERENCE)
    kT = study.TEMPERATURE_K * 8.617333262e-5
    g = np.interp(r, ref["r"], ref["Li-Cl"])
    ok = g > 1e-3
    w_ref = np.where(ok, -kT * np.log(np.where(ok, g, 1.0)), np.nan)
    # one constant: align the two curves at the largest distance (both ~0 there in a large box)
    w = w - w[-1] + w_ref[-1]
    return rows, r, dw, err, w, w_err, w_ref


def plot_pmfs(curves, path: Path) -> None:
    """The reference ``-kT ln g(r)`` and each ``(label, r, W, W's error)`` of ``curves`` on one plot."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ref = np.load(study.REFERENCE)
    kT = study.TEMPERATURE_K * 8.617333262e-5
    fig, ax = plt.subplots(figsize=(6, 4))
    fine = ref["r"] > 1.9
    with np.errstate(divide="ignore"):
        ax.plot(ref["r"][fine], -kT * np.log(ref["Li-Cl"][fine]), "k-", label="-kT ln g(r), all-atom reference")
    for label, r, w, w_err in curves:
        ax.errorbar(r, w, yerr=w_err, fmt="o-", ms=3, capsize=2, label=f"constrained MD, {label}")
    ax.set_xlim(2.0, 6.2)
    ax.set_ylim(-0.15, 0.17)
    ax.axhline(0, color="0.8", lw=0.5)
    ax.set_xlabel("Li-Cl distance r (A)")
    ax.set_ylabel("W(r) (eV)")
    ax.set_title("Li-Cl potential of mean force, CG LiCl(aq), 300 K")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def combined_plot(path: Path) -> None:
    """Every model's PMF under ``results/pmf/`` on one plot, with the reference."""
    curves = []
    for out_dir in sorted(p for p in path.parent.iterdir() if p.is_dir()):
        curve = pmf_curve(out_dir)
        if curve is not None:
            _, r, _, _, w, w_err, _ = curve
            curves.append((out_dir.name, r, w, w_err))
    plot_pmfs(curves, path)


#: the RMS is also given from here on. At 2.1 A W falls by about 1.6 eV/A, so g(r) changes by a factor of about
#: e^6 across one 0.1-A bin of the reference RDF and -kT ln g of the bin average lies about 1 kT below W at the
#: bin centre (kT ln(sinh(3)/3)); at 2.2 A the same estimate gives 0.25 kT
INNER_EDGE_R = 2.2
#: distances (A) of the features the summary reports: the contact minimum, the barrier, the solvent-separated minimum
CONTACT_R, BARRIER_R, SEPARATED_R = 2.3, 3.0, 4.6


def features(curve) -> dict:
    """RMS of ``W - (-kT ln g)`` over the windows and the errors (model minus reference) of the contact
    free energy ``W(2.3) - W(4.6)`` and of the barrier ``W(3.0) - W(2.3)``, all in kT."""
    _, r, _, _, w, _, w_ref = curve
    kT = study.TEMPERATURE_K * 8.617333262e-5
    at = {x: int(np.argmin(np.abs(r - x))) for x in (CONTACT_R, BARRIER_R, SEPARATED_R)}
    diff = (w - w_ref) / kT
    inner = r >= INNER_EDGE_R - 1e-9
    return dict(rms=float(np.sqrt(np.nanmean(diff**2))), rms_outer=float(np.sqrt(np.nanmean(diff[inner] ** 2))),
                contact=float(diff[at[CONTACT_R]] - diff[at[SEPARATED_R]]),
                barrier=float(diff[at[BARRIER_R]] - diff[at[CONTACT_R]]))


def _run_of(label: str) -> str:
    """The study run of a PMF label (:func:`model_label` adds ``-last`` for last-epoch weights)."""
    return label[: -len("-last")] if label.endswith("-last") else label


def recipe_of(label: str) -> str:
    """The recipe of a PMF label: the study run's base name, ``-last`` kept (``la-auto-wall-r2-last`` ->
    ``la-auto-wall-last``)."""
    run = _run_of(label)
    return study.recipe_of(run) + label[len(run):]


def seed_of(label: str) -> int:
    """The training seed of a PMF label (0 for a base run, k for ``-rk``)."""
    run = _run_of(label)
    base = study.recipe_of(run)
    return 0 if base == run else int(run[len(base) + 2:])


def summary(pmf_dir: Path) -> str:
    """``results/pmf/summary.md``: per model and per recipe over its training seeds (mean ± std),
    the :func:`features` of the PMF. A negative contact error means the model over-binds contact pairs."""
    per_model = {}
    for out_dir in sorted(p for p in pmf_dir.iterdir() if p.is_dir()):
        curve = pmf_curve(out_dir)
        if curve is not None and len(curve[0]) == len(DISTANCES):
            per_model[out_dir.name] = features(curve)
    recipes: dict = {}
    for name, f in per_model.items():
        recipes.setdefault(recipe_of(name), []).append((name, f))
    lines = ["# Li-Cl PMF, every model with all windows", "",
             "`benchmarks/licl/pmf.py MODEL` per model; errors are model minus reference (`-kT ln g` of the "
             f"all-atom data), in kT. Contact: `W({CONTACT_R}) - W({SEPARATED_R})` (negative: contact pairs "
             f"over-bound). Barrier: `W({BARRIER_R}) - W({CONTACT_R})`. Study runs are named as in "
             "`study.py` (`-r1`, `-r2`: training seeds 1 and 2).", "",
             f"RMS from {INNER_EDGE_R} A: without the innermost window, where `-kT ln g` of the reference's 0.1-A bins "
             "is biased about 1 kT low (g changes about e^6-fold across the bin there).", "",
             f"| recipe | seeds | RMS error, {DISTANCES[0]}-{DISTANCES[-1]} A (kT) | RMS error, {INNER_EDGE_R}-{DISTANCES[-1]} A (kT) "
             "| contact error (kT) | barrier error (kT) |", "| --- | --- | --- | --- | --- | --- |"]
    for recipe, members in recipes.items():
        members.sort(key=lambda m: seed_of(m[0]))
        cols = []
        for key in ("rms", "rms_outer", "contact", "barrier"):
            v = np.array([f[key] for _, f in members])
            sign = "" if key.startswith("rms") else "+"
            each = ", ".join(f"{x:{sign}.2f}" for x in v)
            cols.append(each + (f" (mean {v.mean():{sign}.2f} ± {v.std(ddof=1):.2f})" if len(v) > 1 else ""))
        lines.append(f"| {recipe} | {', '.join(n for n, _ in members)} | " + " | ".join(cols) + " |")
    text = "\n".join(lines) + "\n"
    (pmf_dir / "summary.md").write_text(text)
    return text


def report(label: str, out_dir: Path) -> str:
    curve = pmf_curve(out_dir)
    if curve is None:
        return "fewer than two windows"
    rows, r, dw, err, w, w_err, w_ref = curve
    kT = study.TEMPERATURE_K * 8.617333262e-5
    rms = float(np.sqrt(np.nanmean((w - w_ref) ** 2)))
    plot_pmfs([(label, r, w, w_err)], out_dir / "pmf.png")

    lines = [f"# Li-Cl potential of mean force: {label}", "",
             f"Command: `OMP_NUM_THREADS=1 .venv/bin/python benchmarks/licl/pmf.py {rows[0].get('model', label)}` "
             f"({rows[0]['ps']:g} ps of constrained MD per window after 1 ps of equilibration).", "",
             f"RMS difference from -kT ln g(r) over the windows: **{rms:.4f} eV** ({rms / kT:.2f} kT); "
             f"curves aligned at r = {r[-1]:g} A.", "",
             "| r (A) | dW/dr (eV/A) | W (eV) | -kT ln g (eV) |", "| --- | --- | --- | --- |"]
    lines += [f"| {a:.2f} | {b:.4f} ± {c:.4f} | {d:.4f} ± {e:.4f} | {f:.4f} |" for a, b, c, d, e, f in
              zip(r, dw, err, w, w_err, w_ref)]
    text = "\n".join(lines) + "\n"
    (out_dir / "pmf.md").write_text(text)
    combined_plot(out_dir.parent / "pmf.png")
    summary(out_dir.parent)
    return text


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("model", nargs="+", help="model file or zoo name; several: a committee (their mean forces; "
                                            "name it with --label, e.g. the study's committee run)")
    p.add_argument("--label", default=None, help="name of the results folder (default: from the model's path)")
    p.add_argument("--ps", type=float, default=3.0, help="production ps per window (default 3)")
    p.add_argument("--distances", type=float, nargs="*", default=list(DISTANCES))
    p.add_argument("--part", default="0/1", help="K/N: run windows K, K+N, ... (parallel processes)")
    p.add_argument("--report-only", action="store_true")
    args = p.parse_args(argv)
    if len(args.model) > 1 and not args.label:
        p.error("a committee of several models needs --label")
    label = args.label or model_label(args.model[0])
    out_dir = study.RESULTS / "pmf" / label
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
    print(report(label, out_dir))
    return 0


if __name__ == "__main__":
    sys.exit(main())
