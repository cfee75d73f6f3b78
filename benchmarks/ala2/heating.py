#!/usr/bin/env python
"""Why the CG MD of ``cg.py`` runs hot: the integrator or the learned forces?

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/ala2/heating.py priors mixed-smoothed-2000    # priors alone, 2/1/0.5 fs
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/ala2/heating.py model mixed-smoothed-2000 mixed-smoothed-500-seed2
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/ala2/heating.py zoo                          # ala2-cg-300K, friction 0.05/fs

``priors RUN``: the bonded priors and wall of the run ``RUN`` (``cg.py``'s work folder ``runs/ala2-cg/RUN``)
alone, in ASE's ``Langevin`` (300 K, friction 0.01/fs, 4 runs of 10 ps from training frames 0, 100, 200, 300), at 2, 1 and 0.5 fs: the
mean kinetic temperature after the first half. ``model RUN...``: the trained models in
``ReplicaLangevin`` (8 replicas from frames spread over the 2000 training frames, 10 ps) at 2 fs and
0.5 fs with friction 0.01/fs and at 2 fs with 0.05/fs. ``zoo``: ``cg.py``'s MD protocol (32 replicas x
30 ps) for the zoo model with friction 0.05/fs instead of 0.01/fs: temperature, KL and populations.
Prints its figures (measured 2026-12-01 on the 2-core AMD EPYC VM; quoted in ``README.md``, "The MD
runs hot").
"""

from __future__ import annotations

import os

if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")

import json  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from ala2 import cg  # noqa: E402


def priors_only(name: str) -> None:
    from ase import units
    from ase.calculators.calculator import Calculator, all_changes
    from ase.md.langevin import Langevin
    from ase.md.velocitydistribution import MaxwellBoltzmannDistribution

    from ase_denoise.checkpoint import load_model_file

    priors = load_model_file(cg.STUDY.work_dir(name) / "best.safetensors").priors

    class PriorCalculator(Calculator):
        implemented_properties = ["energy", "forces"]

        def calculate(self, atoms=None, properties=("forces",), system_changes=all_changes):
            super().calculate(atoms, properties, system_changes)
            energy, forces = 0.0, np.zeros((len(atoms), 3))
            for p in priors:
                e, f = p.energy_and_forces(atoms.numbers, atoms.positions, atoms.cell.array, atoms.pbc)
                energy, forces = energy + float(e), forces + f
            self.results = {"energy": energy, "forces": forces}

    frames = cg.map_frames()
    for dt in (2.0, 1.0, 0.5):
        temps = []
        for rep in range(4):
            atoms = frames[100 * rep].copy()
            atoms.calc = PriorCalculator()
            MaxwellBoltzmannDistribution(atoms, temperature_K=300, rng=np.random.default_rng(rep))
            dyn = Langevin(atoms, dt * units.fs, temperature_K=300, friction=0.01 / units.fs, fixcm=False,
                           rng=np.random.default_rng(rep))
            n = int(10000 / dt)
            for i in range(n // 10):
                dyn.run(10)
                if i > n // 20:
                    temps.append(atoms.get_temperature())
        print(f"{name} priors only, {dt} fs: mean T {np.mean(temps):.1f} K", flush=True)


def model_runs(names) -> None:
    from ase_denoise.checkpoint import load_model_file
    from ase_denoise.md import ReplicaLangevin

    frames = cg.map_frames()
    for name in names:
        model = load_model_file(cg.STUDY.work_dir(name) / "best.safetensors")
        for dt, friction in ((2.0, 0.01), (0.5, 0.01), (2.0, 0.05)):
            starts = [frames[i] for i in np.linspace(0, 1999, 8).round().astype(int)]
            rep = ReplicaLangevin(model, starts, temperature_K=300, timestep_fs=dt, friction_per_fs=friction,
                                  seeds=range(8))
            t = rep.run(int(10000 / dt), interval=int(100 / dt))["temperatures_K"]
            print(f"{name}, {dt} fs, friction {friction}/fs: mean T {np.mean(t[len(t) // 2:]):.1f} K", flush=True)


def zoo(friction: float = 0.05) -> None:
    from ase_denoise import load_model

    frames = cg.map_frames()
    pool, _ = cg.split(frames)
    cg.MD["friction_per_fs"] = friction
    md, phi_psi = cg.run_md(load_model("ala2-cg-300K"), pool[:2000], frames, quick=False, seed=0)
    print(json.dumps(dict(friction_per_fs=friction, md=md, kl=cg.kl_divergence(cg.reference_phi_psi(frames), phi_psi),
                          populations=cg.basin_populations(phi_psi)), indent=1))


if __name__ == "__main__":
    what, *names = sys.argv[1:] or ["zoo"]
    if what not in ("priors", "model", "zoo") or (what != "zoo" and not names):
        sys.exit(__doc__.split("\n\n")[1])  # the usage lines
    {"priors": lambda: priors_only(names[0]), "model": lambda: model_runs(names), "zoo": zoo}[what]()
