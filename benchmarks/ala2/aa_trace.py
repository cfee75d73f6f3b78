#!/usr/bin/env python
"""Replay ``aa_replicas.py``'s MD of one trained all-atom model (the same starts, thermostat seeds and
batch, so the same trajectories on the same CPU build) and trace one replica every 10 steps: its worst
bond (A off the data's mean) and its closest non-bonded pair (against that pair's closest approach in
the held-out data), printed for the 300 steps before the replica first went 0.5 A off. It shows how a
replica that ``aa_replicas.py`` counts as broken came apart. For an energy-head model each printed row
also has the model's free energy ``A`` and the force field's energy ``U`` (OpenMM, as ``aa_energy.py``),
both in kT from the first printed row: a model with a hole goes down where ``U`` climbs.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/ala2/aa_trace.py denoise-smoothed-energy-head-2000 --replica 4 --steps 3100
"""

from __future__ import annotations

import os

if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any, List  # noqa: E402

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from ala2 import aa_replicas as aa  # noqa: E402
study = aa.study


def trace(name: str, replica: int, steps: int, every: int = 10, quick: bool = False):
    """[(step, worst bond, its offset (A), closest contact, distance (A), the data's closest (A),
    positions [atoms, 3] (A))] of ``replica`` every ``every`` steps, and the model (``quick``: the quick run's)."""
    from ase_denoise.checkpoint import load_model_file

    model = load_model_file(study.STUDY.work_dir(name, quick) / "best.safetensors")
    _, test = study.split(study.load_frames())
    setup = aa.replica_setup(model, test, aa.MD)  # the starts, seeds and batch of aa_replicas.run
    bonds, pairs, closest, symbols = setup.bonds, setup.pairs, setup.closest, setup.symbols
    rows = []

    def observe(step, positions, velocities):
        x = positions[replica: replica + 1]
        (b,), (off,), (p,), (ratio,) = aa.worst_bond_and_contact(x, bonds, setup.mean_lengths, pairs, closest)
        rows.append((step, aa.atom_pair_name(symbols, *bonds[b]), float(off), aa.atom_pair_name(symbols, *pairs[p]),
                     float(ratio * closest[p]), float(closest[p]), x[0].copy()))

    setup.runner.run(steps, interval=every, observers=[observe])
    return rows, model


def energies_kT(model, rows) -> List[Any]:
    """(A, U) in kT from the first row's, for the rows' positions (energy-head models; else [])."""
    if model.config.head != "energy":
        return []
    from ase import Atoms

    from ase_denoise.inference import predict_free_energy, structure_frame

    from ala2 import aa_energy as energy
    numbers = study.load_frames()[0].numbers
    frames = [Atoms(numbers=numbers, positions=r[-1]) for r in rows]
    energy_U, _ = energy.openmm_energies_and_forces(frames)
    energy_A, _ = predict_free_energy(model, [structure_frame(a, model) for a in frames])
    return list(zip((energy_A - energy_A[0]) / model.kT, (energy_U - energy_U[0]) / model.kT))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("name", help="a trained run of study.py (runs/ala2/<name>)")
    parser.add_argument("--replica", type=int, required=True)
    parser.add_argument("--steps", type=int, required=True)
    parser.add_argument("--runs-dir", default=None)
    args = parser.parse_args(argv)
    study.STUDY.configure(runs_dir=args.runs_dir)
    rows, model = trace(args.name, args.replica, args.steps)
    off = next((k for k, r in enumerate(rows) if abs(r[2]) > aa.INTACT_A), len(rows) - 1)
    print(f"replica {args.replica}: " + (f"first 0.5 A off at step {rows[off][0]}" if abs(rows[off][2]) > aa.INTACT_A
                                        else f"intact through step {rows[-1][0]}"))
    window = rows[max(0, off - 30): off + 1]
    energies = energies_kT(model, window) or [None] * len(window)
    for (step, bond, d, contact, r, rmin, _), e in zip(window, energies):
        print(f"  step {step:6d}: worst bond {bond} {d:+.3f} A; closest non-bonded {contact} {r:.2f} A (data min {rmin:.2f})"
              + (f"; A {e[0]:+.1f} kT, U {e[1]:+.1f} kT" if e else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
