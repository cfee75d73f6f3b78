#!/usr/bin/env python
"""How much of a LiCl model's force error changes from one training run to the next (label-free).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/licl/committee.py denoise-ladder-wall-ewald-antithetic force-match-wall-ewald-1800 [--frames 100]

For each recipe, the weights of every trained seed in ``runs/licl`` (``<recipe>``, ``<recipe>-seed1``,
...) are evaluated on held-out frames (the study's test frames). Per force
component the members' variance ``v`` (over seeds, ddof 1) is the model variance: the part of the
error a committee of K members divides by K. Two views of it:

* all components: ``v`` against the squared force labels, and the paired check that averaging works as
  the variance says: the MSE against the labels of one member minus that of the K-member mean is
  ``(1 - 1/K) v`` in expectation (label noise cancels in the difference);
* the Li-Cl pair coordinate: for every Li-Cl pair closer than 4.6 A, the mean force along the pair,
  ``(F_Li - F_Cl) . u / 2`` (eV/A, attraction > 0, as in ``pmf.py``), its spread over the seeds, by
  distance bin. This is the quantity whose integral is the contact free energy.

Writes one ``committee`` record per recipe into ``results/summary.jsonl`` (tables: ``study.py --tables``).
"""

from __future__ import annotations

import os

if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
from licl import study  # noqa: E402

BINS = (2.0, 2.6, 3.5, 4.6)  # Angstrom: contact, barrier region (rare in the data), solvent-separated pairs


def members_of(recipe: str):
    """Trained seeds of ``recipe`` in ``runs/licl`` (seed 0 first) as ``(name, model)``."""
    from ase_denoise.checkpoint import load_model_file

    r = study.BOOK.recipe(recipe)
    out = []
    for name in r.runs():
        path = study.weights_file(r, study.STUDY.work_dir(name))
        if path.exists():
            out.append((name, study.with_defaults(load_model_file(path), r)))
    return out


def li_cl_pairs(frames) -> tuple:
    """Li-Cl pairs closer than the last bin edge, once for all force arrays: distances [n_pairs], the
    rows of the Li and Cl atoms in the concatenated frames [n_pairs] and unit vectors Li -> Cl [n_pairs, 3]."""
    d_all, li_all, cl_all, u_all, start = [], [], [], [], 0
    for atoms in frames:
        z = atoms.numbers
        li, cl = np.where(z == 3)[0], np.where(z == 17)[0]
        vec = atoms.get_all_distances(mic=True, vector=True)[np.ix_(li, cl)]  # [n_li, n_cl, 3], r_Cl - r_Li
        d = np.linalg.norm(vec, axis=-1)
        i, j = np.nonzero(d < BINS[-1])
        d_all.append(d[i, j])
        u_all.append(vec[i, j] / d[i, j, None])
        li_all.append(start + li[i])
        cl_all.append(start + cl[j])
        start += len(atoms)
    return np.concatenate(d_all), np.concatenate(li_all), np.concatenate(cl_all), np.concatenate(u_all)


def along_pairs(pairs: tuple, forces: np.ndarray) -> np.ndarray:
    """Mean force along each pair of :func:`li_cl_pairs`, ``(F_Li - F_Cl) . u / 2`` [n_pairs] (eV/A),
    from per-atom ``forces`` [n_atoms_total, 3]."""
    _, li, cl, u = pairs
    return 0.5 * np.einsum("pk,pk->p", forces[li] - forces[cl], u)


def analyse(recipe: str, frames) -> dict:
    from ase_denoise.data import to_frame
    from ase_denoise.inference import predict

    members = members_of(recipe)
    if len(members) < 2:
        raise SystemExit(f"{recipe}: {len(members)} trained seed(s) in {study.STUDY.runs_dir}; need at least 2")
    numbers = members[0][1].config.atomic_numbers
    fr = [to_frame(a, numbers) for a in frames]
    labels = np.concatenate([f.ref_forces for f in fr])
    pred = np.stack([predict(m, fr) for _, m in members])  # [K, n_atoms_total, 3], eV/A
    K = len(members)
    v = pred.var(axis=0, ddof=1).mean()  # model variance per component, (eV/A)^2
    mse_single = ((pred - labels) ** 2).mean(axis=(1, 2))  # [K]
    mse_mean = ((pred.mean(axis=0) - labels) ** 2).mean()
    pairs = li_cl_pairs(frames)
    d = pairs[0]
    along = np.stack([along_pairs(pairs, p) for p in pred])  # [K, n_pairs]
    along_labels = along_pairs(pairs, labels)
    rows = []
    for lo, hi in zip(BINS[:-1], BINS[1:]):
        sel = (d >= lo) & (d < hi)
        if sel.sum() == 0:
            continue
        per_member_mean = along[:, sel].mean(axis=1)  # each seed's mean pair force in the bin
        rows.append(dict(bin=f"{lo:.1f}-{hi:.1f}", pairs=int(sel.sum()),
                         spread_per_pair=float(np.sqrt(along[:, sel].var(axis=0, ddof=1).mean())),
                         bin_mean_per_seed=per_member_mean.tolist(), bin_mean_spread=float(per_member_mean.std(ddof=1)),
                         label_mean=float(along_labels[sel].mean()),
                         label_sem=float(along_labels[sel].std(ddof=1) / np.sqrt(sel.sum())) if sel.sum() > 1 else float("nan")))
    return dict(kind="committee", run=recipe, members=[n for n, _ in members], K=K, model_variance=float(v),
                label_ms=float((labels ** 2).mean()), mse_single_mean=float(mse_single.mean()), mse_mean=float(mse_mean),
                gain_measured=float(mse_single.mean() - mse_mean), gain_expected=float((1 - 1 / K) * v), bins=rows,
                n_frames=len(frames), date=time.strftime("%Y-%m-%d"))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("recipes", nargs="+", help="study recipes with several trained seeds in runs/licl")
    p.add_argument("--frames", type=int, default=200, help="held-out frames (the study's test frames), default all 200")
    args = p.parse_args(argv)
    frames = study.load_frames()[-study.N_TEST:][: args.frames]
    from licl import tables

    for r in args.recipes:
        study.STUDY.summary().put(analyse(r, frames))
    print(tables.committee_variance(study.STUDY.summary().records("committee")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
