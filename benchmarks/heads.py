#!/usr/bin/env python
"""Energy head vs vector head vs MACE energy+forces: speed in one process, NVE drift of trained models,
held-out accuracy from the LJ ladder study.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/heads.py            # writes benchmarks/heads.md
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/heads.py --quick    # 64/256 atoms, short NVE

1. **Speed** (same process, same hyperparameters as ``speed.py``: untrained models on the periodic
   argon liquid of ``common.argon``): one force call through each ASE calculator (positions perturbed
   before every round) and one training step on 4 frames, medians of interleaved repeats. The energy
   head and MACE both take forces by autograd (the energy head's training step is a double backward,
   as MACE's is with ``create_graph=True``); the vector head needs neither.
2. **NVE** (trained models from ``benchmarks/lj_ladder.py``: ``runs/lj_ladder/energy_s0`` for the
   energy head, the zoo's ``lj-argon-94K`` for the vector head, both the same ladder recipe): velocity
   Verlet at 5 fs on a held-out 108-atom LJ argon frame, momenta drawn at 94.4 K. For the energy head
   the drift of ``A + E_kin`` (a linear fit, meV/atom/ps) and its fluctuation; for both heads the
   temperature's drift (K/ps) over the run. A non-conservative force field has no conserved energy:
   its temperature wanders.
3. **RDF** (the same two trained models): Langevin MD as the zoo recipe runs it (10 fs, friction
   0.01/fs, 94.4 K, 3000 steps, a frame every 10 steps after the first 500) from the held-out frame;
   RMS difference of g(r) from the RDF of the 300 true-LJ training frames, with the RMS difference
   between that reference's two halves as the sampling floor.
4. **Accuracy**: the held-out force tables of ``lj_ladder.md`` and ``lj_ladder_energy.md`` (3
   training seeds each) are quoted, not recomputed.

``--sections speed nve rdf`` runs some of them; results are merged into ``heads.json`` and
``heads.md`` is written from it.
"""

from __future__ import annotations

import os

if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse  # noqa: E402
import copy  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import common  # noqa: E402

REPO = HERE.parent
ENERGY_RUN = REPO / "runs" / "lj_ladder" / "energy_s0" / "best.safetensors"
BATCH_FRAMES = 4
NOISE_STD = 0.04


TRAIN_MAX_ATOMS = 512  # training steps are timed up to this size (4 frames each)


def speed(sizes, repeats: int, dtype=torch.float32) -> dict:
    from ase_denoise.calculator import DenoiseCalculator

    avg_nn = 12.0
    models = common.benchmark_models(avg_nn, dtype, heads=("energy", "vector"), seed=0)
    calcs = {h: DenoiseCalculator(copy.deepcopy(models[h])) for h in ("energy", "vector")}
    calcs["mace"] = common.mace_calculator(copy.deepcopy(models["mace"]), dtype)
    out = {}
    for n in sizes:
        systems = {k: common.argon(n, seed=1) for k in calcs}
        for k, atoms in systems.items():
            atoms.calc = calcs[k]
        rng = np.random.default_rng(0)

        def perturb():
            delta = rng.normal(0, 0.01, (n, 3))
            for atoms in systems.values():
                atoms.positions += delta

        fns = {k: (lambda a=a: a.get_forces()) for k, a in systems.items()}
        calls = common.interleaved(fns, repeats, warmup=1, before_round=perturb)

        out[n] = {"call": calls}
        if n > TRAIN_MAX_ATOMS:
            continue
        frames = [common.argon(n, seed=10 + i) for i in range(BATCH_FRAMES)]
        steps = {}
        for head in ("energy", "vector"):
            model = copy.deepcopy(models[head]).train()
            steps[head] = common.denoiser_train_step(model, frames, dtype, NOISE_STD, rng)[0]
        mace = copy.deepcopy(models["mace"]).train()
        for p in mace.parameters():
            p.requires_grad_(True)
        batch = common.mace_batch(frames, float(mace.r_max), dtype)
        f_ref = torch.as_tensor(rng.normal(0, 0.1, (n * BATCH_FRAMES, 3)), dtype=dtype)
        opt = torch.optim.AdamW(mace.parameters(), lr=1e-3)

        def mace_step():
            b = dict(batch)
            b["positions"] = batch["positions"].clone()
            res = mace(b, training=True, compute_force=True)
            loss = torch.mean(res["energy"] ** 2) + 10.0 * torch.mean((res["forces"] - f_ref) ** 2)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

        steps["mace"] = mace_step
        out[n]["train_step"] = common.interleaved(steps, max(3, repeats // 3), warmup=1)
    return out


def nve(model, frame, steps: int, seed: int = 0) -> dict:
    from ase import units
    from ase.md.velocitydistribution import thermalize_momenta
    from ase.md.verlet import VelocityVerlet

    from ase_denoise import DenoiseCalculator

    atoms = frame.copy()
    atoms.calc = DenoiseCalculator(model, dtype=torch.float64)
    thermalize_momenta(atoms, temperature_K=94.4, rng=np.random.default_rng(seed))
    has_energy = "energy" in atoms.calc.implemented_properties
    dyn = VelocityVerlet(atoms, 5.0 * units.fs)
    t, temp, etot = [], [], []

    def observe():
        t.append(dyn.get_time() / (1000 * units.fs))
        temp.append(atoms.get_temperature())
        if has_energy:
            etot.append(atoms.get_potential_energy() + atoms.get_kinetic_energy())

    dyn.attach(observe, interval=10)
    t0 = time.perf_counter()
    dyn.run(steps)
    wall = time.perf_counter() - t0
    t, temp = np.array(t), np.array(temp)
    out = {"ps": float(t[-1]), "steps_per_s": steps / wall,
           "temperature_drift_K_per_ps": float(np.polyfit(t, temp, 1)[0]),
           "temperature_first_last_K": [float(temp[: len(temp) // 5].mean()), float(temp[-len(temp) // 5:].mean())]}
    if has_energy:
        e = np.array(etot) / len(atoms)
        out["energy_drift_meV_per_atom_per_ps"] = float(np.polyfit(t, e, 1)[0] * 1000)
        out["energy_fluctuation_meV_per_atom"] = float(e.std() * 1000)
        out["kinetic_fluctuation_meV_per_atom"] = float(
            np.std(1.5 * units.kB * temp) * 1000)  # E_kin per atom = 3/2 kB T
    return out


def rdf_run(model, frame, steps: int = 3000, skip: int = 500) -> dict:
    from ase_denoise import DenoiseCalculator
    from ase_denoise.analysis import rdf, rdf_difference
    from ase_denoise.md import run_langevin
    from ase_denoise.data.reference import lj_argon_frames

    reference = lj_argon_frames(300, 94.4, cache_dir=REPO / "runs" / "lj_ladder" / "data", seed=0)
    r_max = 0.5 * float(frame.cell.lengths().min()) - 0.01
    _, g_ref = rdf(reference, r_max)
    _, g_half1 = rdf(reference[::2], r_max)
    _, g_half2 = rdf(reference[1::2], r_max)
    atoms = frame.copy()
    atoms.calc = DenoiseCalculator(model)
    sampled = []
    res = run_langevin(atoms, temperature_K=94.4, steps=steps, timestep_fs=10.0, friction_per_fs=0.01,
                       interval=10, seed=0, observers=[lambda a, step: sampled.append(a.copy()) if step >= skip else None])
    _, g = rdf(sampled, r_max)
    return {"rdf_rms": rdf_difference(g, g_ref)["rms"], "floor_rms": rdf_difference(g_half1, g_half2)["rms"],
            "frames": len(sampled), "steps_per_s": res["steps"] / res["wall_s"], "stopped": res["stopped"]}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--nve-steps", type=int, default=4000, help="velocity Verlet steps of 5 fs (default 20 ps)")
    p.add_argument("--sections", nargs="+", choices=("speed", "nve", "rdf"), default=["speed", "nve", "rdf"])
    args = p.parse_args(argv)
    common.single_thread()
    sizes = (64, 256) if args.quick else (64, 512, 2048)
    repeats = 5 if args.quick else 11
    nve_steps = 400 if args.quick else args.nve_steps

    from ase_denoise import load_model
    from ase_denoise.data.reference import lj_argon_frames

    saved = HERE / "heads.json"
    results = json.loads(saved.read_text()) if saved.exists() and not args.quick else {}
    if "speed" in args.sections:
        results["speed"] = {str(k): v for k, v in speed(sizes, repeats).items()}
    frame = lj_argon_frames(20, 94.4, cache_dir=REPO / "runs" / "lj_ladder" / "data", seed=1)[0]
    models = {"vector (zoo lj-argon-94K)": "lj-argon-94K"}
    if ENERGY_RUN.exists():
        models["energy (lj_ladder.py --head energy, seed 0)"] = ENERGY_RUN
    if "nve" in args.sections:
        results["nve"] = {name: nve(load_model(m), frame, nve_steps) for name, m in models.items()}
    if "rdf" in args.sections:
        results["rdf"] = {name: rdf_run(load_model(m), frame, steps=300 if args.quick else 3000,
                                        skip=50 if args.quick else 500) for name, m in models.items()}
    print(json.dumps(results, indent=1))

    lines = ["# Heads side by side: energy vs vector vs MACE", "",
             "Command: `OMP_NUM_THREADS=1 .venv/bin/python benchmarks/heads.py`" + (" --quick" if args.quick else ""),
             f"({common.machine()}; one torch thread; float32 for speed).", ""]
    if "speed" in results:
        lines += ["## Speed of untrained models with speed.py's hyperparameters (median seconds; ratio to MACE "
                  "energy+forces in the same process)", "",
                  "| atoms | energy head call | vector head call | MACE call | energy / MACE | vector / MACE | "
                  "energy train step | vector train step | MACE train step | energy / MACE (train) |",
                  "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
        for n, r in results["speed"].items():
            c = r["call"]
            line = (f"| {n} | {c['energy'] * 1e3:.1f} ms | {c['vector'] * 1e3:.1f} ms | {c['mace'] * 1e3:.1f} ms | "
                    f"{c['energy'] / c['mace']:.2f} | {c['vector'] / c['mace']:.2f} |")
            if "train_step" in r:
                s = r["train_step"]
                line += (f" {s['energy'] * 1e3:.0f} ms | {s['vector'] * 1e3:.0f} ms | {s['mace'] * 1e3:.0f} ms | "
                         f"{s['energy'] / s['mace']:.2f} |")
            else:
                line += " - | - | - | - |"
            lines.append(line)
    if "nve" in results:
        ps = max(r["ps"] for r in results["nve"].values())
        lines += ["", f"## NVE, 108-atom LJ argon, velocity Verlet 5 fs, {ps:.0f} ps, calculators in float64", "",
                  "| model | temperature first/last fifth (K) | T drift (K/ps) | A + E_kin drift (meV/atom/ps) | "
                  "A + E_kin fluctuation (meV/atom) | E_kin fluctuation (meV/atom) | steps/s |",
                  "| --- | --- | --- | --- | --- | --- | --- |"]
        for name, r in results["nve"].items():
            tf = r["temperature_first_last_K"]
            lines.append(f"| {name} | {tf[0]:.1f} / {tf[1]:.1f} | {r['temperature_drift_K_per_ps']:+.2f} | "
                         f"{r.get('energy_drift_meV_per_atom_per_ps', float('nan')):+.4f} | "
                         f"{r.get('energy_fluctuation_meV_per_atom', float('nan')):.4f} | "
                         f"{r.get('kinetic_fluctuation_meV_per_atom', float('nan')):.3f} | {r['steps_per_s']:.0f} |")
    if "rdf" in results:
        lines += ["", "## RDF from Langevin MD (10 fs, 94.4 K, 25 ps after 5 ps), 108-atom LJ argon", "",
                  "| model | RDF RMS vs true-LJ reference | reference halves (floor) | steps/s |", "| --- | --- | --- | --- |"]
        for name, r in results["rdf"].items():
            lines.append(f"| {name} | {r['rdf_rms']:.4f} | {r['floor_rms']:.4f} | {r['steps_per_s']:.0f} |")
    text = "\n".join(lines) + "\n"
    if not args.quick:
        (HERE / "heads.md").write_text(text)
        (HERE / "heads.json").write_text(json.dumps(results, indent=1) + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
