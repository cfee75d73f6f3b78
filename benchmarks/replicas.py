#!/usr/bin/env python
"""Throughput: ASE, OpenMM, LAMMPS, torch-sim and batched Langevin replicas, aggregate steps/s, one thread.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/replicas.py            # writes benchmarks/replicas.md
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/replicas.py --quick

For each zoo model (``licl-cg-300K``: 48 ions, noise ladder (its default forces: the smallest level), wall and Ewald priors;
``lj-argon-94K``: 108 atoms, and 2916 atoms for the single-box engines) it times ASE's ``Langevin`` with ``DenoiseCalculator`` on one box
(what 32 separate runs on this one thread would get in aggregate: the same steps/s), then
:class:`ase_denoise.md.replicas.ReplicaLangevin` with N boxes in one batched forward per step; the
aggregate is N x its steps/s. The same for OpenMM (``LangevinMiddleIntegrator`` on the CPU platform,
the model as a ``PythonForce``, one box), LAMMPS (``fix langevin`` + ``fix nve``, the model through
``fix external``, one box) and torch-sim (``nvt_langevin``, N boxes in one state). Start
frames are data frames (LiCl) or true-LJ frames, one per replica.
Rounds alternate (ASE, then each N) ``--rounds`` times and the best round of each is kept, so load
from other processes hits all alike.
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
import common  # noqa: E402


def systems(n_max: int):
    from ase_denoise.data.reference import lj_argon_frames

    from licl import study

    licl = study.load_frames()[: 2 * n_max : 2]
    lj = lj_argon_frames(20, 94.4, cache_dir=HERE.parent / "runs" / "lj_ladder" / "data", seed=1)
    lj = (lj * (n_max // len(lj) + 1))[:n_max]
    return {"licl-cg-300K": (licl, 300.0, 1.0), "lj-argon-94K": (lj, 94.4, 10.0)}


def large_lj():
    """A 2916-atom LJ argon box: a held-out 108-atom frame repeated 3 x 3 x 3 (for the single-box engines)."""
    from ase_denoise.data.reference import lj_argon_frames

    return lj_argon_frames(20, 94.4, cache_dir=HERE.parent / "runs" / "lj_ladder" / "data", seed=1)[0].repeat(3)


def lj_box(n_cells: int):
    """An fcc LJ argon box of ``4 n_cells^3`` atoms (n_cells = 10: 4000) at the density of the held-out
    108-atom liquid frame, rattled by 0.1 A: the size of a larger run, for timing only."""
    from ase.build import bulk

    from ase_denoise.data.reference import lj_argon_frames

    small = lj_argon_frames(20, 94.4, cache_dir=HERE.parent / "runs" / "lj_ladder" / "data", seed=1)[0]
    a = (small.get_volume() / len(small) * 4) ** (1 / 3)
    box = bulk("Ar", "fcc", a=a, cubic=True).repeat(n_cells)
    box.rattle(0.1, seed=0)
    return box


def ase_steps_per_s(model, atoms, temperature_K: float, timestep_fs: float, steps: int, noise_std=None,
                    device: str = "cpu") -> float:
    """ASE ``Langevin`` + ``DenoiseCalculator`` (forward on ``device``; the forces come back to numpy
    every step, which synchronises a GPU)."""
    from ase import units
    from ase.md.langevin import Langevin

    from ase_denoise import DenoiseCalculator, ForcesChoice

    atoms = atoms.copy()
    atoms.calc = DenoiseCalculator(model, forces=ForcesChoice(noise_std=noise_std), device=device)
    dyn = Langevin(atoms, timestep_fs * units.fs, temperature_K=temperature_K, friction=0.01 / units.fs,
                   fixcm=False, rng=np.random.default_rng(0))
    dyn.run(2)  # warm-up
    t = time.perf_counter()
    dyn.run(steps)
    return steps / (time.perf_counter() - t)


def batched_steps_per_s(model, starts, temperature_K: float, timestep_fs: float, steps: int, noise_std=None) -> float:
    from ase_denoise import ForcesChoice
    from ase_denoise.md import ReplicaLangevin

    batch = ReplicaLangevin(model, starts, temperature_K=temperature_K, timestep_fs=timestep_fs,
                            forces=ForcesChoice(noise_std=noise_std))
    batch.run(2, interval=1000)  # warm-up
    return batch.run(steps, interval=1000)["steps_per_s"]


def openmm_steps_per_s(model, atoms, temperature_K: float, timestep_fs: float, steps: int) -> float:
    import openmm
    from openmm import unit

    from ase_denoise.integrations.openmm import denoiser_force, system_from_atoms

    atoms = atoms.copy()
    atoms.wrap()
    system = system_from_atoms(atoms)
    system.addForce(denoiser_force(model, atoms.numbers, periodic=True))
    integrator = openmm.LangevinMiddleIntegrator(temperature_K * unit.kelvin, 10.0 / unit.picosecond,
                                                 timestep_fs * unit.femtosecond)
    context = openmm.Context(system, integrator, openmm.Platform.getPlatformByName("CPU"),
                             {"Threads": "1"})
    context.setPositions(atoms.positions * 0.1)
    context.setVelocitiesToTemperature(temperature_K * unit.kelvin, 1)
    integrator.step(2)
    t = time.perf_counter()
    integrator.step(steps)
    return steps / (time.perf_counter() - t)


def lammps_steps_per_s(model, atoms, temperature_K: float, timestep_fs: float, steps: int) -> float:
    from ase_denoise.integrations.lammps import attach_denoiser, lammps_from_atoms

    atoms = atoms.copy()
    atoms.wrap()
    lmp, type_to_element = lammps_from_atoms(atoms)
    lmp.commands_string(f"""
pair_style zero {model.config.r_max}
pair_coeff * *
timestep {timestep_fs / 1000}
velocity all create {temperature_K} 4928 dist gaussian
fix thermostat all langevin {temperature_K} {temperature_K} 0.1 699483
fix integrate all nve
""")
    attach_denoiser(lmp, model, type_to_element)
    lmp.command("run 2")
    t = time.perf_counter()
    lmp.command(f"run {steps}")
    out = steps / (time.perf_counter() - t)
    lmp.close()
    return out


def torchsim_steps_per_s(model, starts, temperature_K: float, timestep_fs: float, steps: int) -> float:
    import torch
    import torch_sim as ts
    from ase import units

    from ase_denoise.integrations.torchsim import DenoiserTorchSimModel

    wrapped = DenoiserTorchSimModel(model)
    kw = dict(dtype=wrapped.dtype)
    init, update = ts.integrators.nvt_langevin(model=wrapped, dt=torch.tensor(timestep_fs * units.fs, **kw),
                                               kT=torch.tensor(temperature_K * units.kB, **kw),
                                               gamma=torch.tensor(0.01 / units.fs, **kw), seed=0)
    state = init(ts.io.atoms_to_state(list(starts), device=wrapped.device, dtype=wrapped.dtype))
    for _ in range(2):
        state = update(state)
    _synchronize(state.positions)
    t = time.perf_counter()
    for _ in range(steps):
        state = update(state)
    _synchronize(state.positions)
    return steps / (time.perf_counter() - t)


def _synchronize(tensor) -> None:
    """Wait for a GPU's queued work before reading the clock (torch-sim's steps stay on the device)."""
    import torch

    if tensor.is_cuda:
        torch.cuda.synchronize(tensor.device)


#: the single-box engines: (key, name in the tables, steps/s function)
SINGLE_BOX_ENGINES = (("ase", "ASE Langevin + DenoiseCalculator", ase_steps_per_s),
                      ("openmm", "OpenMM LangevinMiddle (CPU platform) + PythonForce", openmm_steps_per_s),
                      ("lammps", "LAMMPS fix langevin + nve, fix external", lammps_steps_per_s))


def large_box_rates(box) -> dict:
    """Steps/s of each single-box engine on one large LJ argon box (10 steps each, after 2 of warm-up)."""
    from ase_denoise import load_model

    model = load_model("lj-argon-94K")
    return {"atoms": len(box), **{key: rate(model, box, 94.4, 10.0, 10) for key, _, rate in SINGLE_BOX_ENGINES}}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--replicas", type=int, nargs="+", default=[8, 32])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--one-level", action="store_true",
                   help="only LiCl, ASE against ReplicaLangevin, both at the model's smallest trained level (one graph "
                        "per box instead of the corrected call's three) -> replicas_one_level.md")
    p.add_argument("--large-cells", type=int, default=None, metavar="N",
                   help="only the single-box engines on an fcc LJ box of 4 N^3 atoms (N = 10: 4000) -> replicas_large.md")
    args = p.parse_args(argv)
    common.single_thread()
    from ase_denoise import load_model

    if args.one_level:
        return one_level(args)
    if args.large_cells:
        return large_box(args.large_cells)

    sizes = [4] if args.quick else args.replicas
    ase_steps, batch_steps = (20, 5) if args.quick else (200, 20)
    results = {}
    for name, (frames, temperature_K, dt) in systems(max(sizes)).items():
        model = load_model(name)
        best = {"ase": 0.0, "openmm": 0.0, "lammps": 0.0, **{n: 0.0 for n in sizes}, **{f"ts{n}": 0.0 for n in sizes}}
        for _ in range(1 if args.quick else args.rounds):
            best["ase"] = max(best["ase"], ase_steps_per_s(model, frames[0], temperature_K, dt, ase_steps))
            best["openmm"] = max(best["openmm"], openmm_steps_per_s(model, frames[0], temperature_K, dt, ase_steps))
            best["lammps"] = max(best["lammps"], lammps_steps_per_s(model, frames[0], temperature_K, dt, ase_steps))
            for n in sizes:
                best[n] = max(best[n], batched_steps_per_s(model, frames[:n], temperature_K, dt, batch_steps))
                best[f"ts{n}"] = max(best[f"ts{n}"], torchsim_steps_per_s(model, frames[:n], temperature_K, dt, batch_steps))
        results[name] = {"atoms": len(frames[0]), "ase_steps_per_s": best["ase"], "openmm_steps_per_s": best["openmm"],
                         "lammps_steps_per_s": best["lammps"],
                         "batched": {str(n): {"steps_per_s": best[n], "aggregate": n * best[n],
                                              "ratio_to_ase": n * best[n] / best["ase"]} for n in sizes},
                         "torchsim": {str(n): {"steps_per_s": best[f"ts{n}"], "aggregate": n * best[f"ts{n}"],
                                               "ratio_to_ase": n * best[f"ts{n}"] / best["ase"]} for n in sizes}}
    large = {}
    if not args.quick:
        large = large_box_rates(large_lj())
        results["lj-argon-94K-large"] = large
    lines = ["# Batched replicas vs separate ASE runs", "",
             f"Command: `OMP_NUM_THREADS=1 .venv/bin/python benchmarks/replicas.py{' --quick' if args.quick else ''}` "
             f"({common.machine()}).", "",
             "| model | atoms per box | engine | boxes | steps/s | aggregate box-steps/s | aggregate / ASE |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for name, r in results.items():
        if name.endswith("-large"):
            continue
        ase = r["ase_steps_per_s"]
        lines.append(f"| {name} | {r['atoms']} | ASE Langevin + DenoiseCalculator | 1 | {ase:.0f} | {ase:.0f} | 1.00 |")
        lines.append(f"| {name} | {r['atoms']} | OpenMM LangevinMiddle (CPU platform) + PythonForce | 1 | "
                     f"{r['openmm_steps_per_s']:.0f} | {r['openmm_steps_per_s']:.0f} | {r['openmm_steps_per_s'] / ase:.2f} |")
        lines.append(f"| {name} | {r['atoms']} | LAMMPS fix langevin + nve, fix external | 1 | "
                     f"{r['lammps_steps_per_s']:.0f} | {r['lammps_steps_per_s']:.0f} | {r['lammps_steps_per_s'] / ase:.2f} |")
        for engine, key in (("ase_denoise.md.replicas.ReplicaLangevin", "batched"), ("torch-sim nvt_langevin", "torchsim")):
            for n, b in r[key].items():
                lines.append(f"| {name} | {r['atoms']} | {engine} | {n} | {b['steps_per_s']:.1f} | "
                             f"{b['aggregate']:.0f} | {b['ratio_to_ase']:.2f} |")
    if large:
        for key, engine, _ in SINGLE_BOX_ENGINES:
            lines.append(f"| lj-argon-94K | {large['atoms']} | {engine} | 1 | {large[key]:.2f} | {large[key]:.2f} | "
                         f"{large[key] / large['ase']:.2f} |")
    text = "\n".join(lines) + "\n"
    if not args.quick:
        (HERE / "replicas.md").write_text(text)
        (HERE / "replicas.json").write_text(json.dumps(results, indent=1) + "\n")
    print(text)
    return 0


def large_box(n_cells: int) -> int:
    """ASE, OpenMM and LAMMPS on one fcc LJ box of ``4 n_cells^3`` atoms -> ``replicas_large.md``."""
    box = lj_box(n_cells)
    rates = large_box_rates(box)
    lines = ["# One large LJ box in each engine", "",
             f"Command: `OMP_NUM_THREADS=1 .venv/bin/python benchmarks/replicas.py --large-cells {n_cells}` "
             f"({common.machine()}). `lj-argon-94K` on an fcc box of {len(box)} atoms at the liquid's density, "
             "rattled by 0.1 A; 10 steps per engine.", "",
             "| model | atoms | engine | steps/s | ratio to ASE |", "| --- | --- | --- | --- | --- |"]
    lines += [f"| lj-argon-94K | {len(box)} | {engine} | {rates[key]:.2f} | {rates[key] / rates['ase']:.2f} |"
              for key, engine, _ in SINGLE_BOX_ENGINES]
    text = "\n".join(lines) + "\n"
    (HERE / "replicas_large.md").write_text(text)
    print(text)
    return 0


def one_level(args) -> int:
    """ASE vs batched replicas for the LiCl model evaluated at one trained level: the cost of a
    single-level model, whose one-box forward is small enough for per-call overhead to matter. Once
    with all the model's priors, once without its Ewald Coulomb prior (as when an MD engine computes
    that term itself): the prior is evaluated per box in numpy, which batching does not amortise."""
    import copy

    from ase_denoise import load_model

    sizes = [4] if args.quick else args.replicas
    ase_steps, batch_steps = (20, 5) if args.quick else (200, 20)
    frames, temperature_K, dt = systems(max(sizes))["licl-cg-300K"]
    model = load_model("licl-cg-300K")
    variants = {"all priors": model}
    if any(p.kind == "coulomb_ewald" for p in model.priors):
        without = copy.deepcopy(model)
        without.priors = [p for p in without.priors if p.kind != "coulomb_ewald"]
        variants["without the Ewald prior"] = without
    level = model.noise_levels[0]
    best = {(v, k): 0.0 for v in variants for k in ["ase", *sizes]}
    for _ in range(1 if args.quick else args.rounds):
        for v, m in variants.items():
            best[v, "ase"] = max(best[v, "ase"], ase_steps_per_s(m, frames[0], temperature_K, dt, ase_steps, level))
            for n in sizes:
                best[v, n] = max(best[v, n], batched_steps_per_s(m, frames[:n], temperature_K, dt, batch_steps, level))
    priors = ", ".join(p.kind for p in model.priors) or "none"
    lines = ["# Batched replicas vs separate ASE runs, one trained level", "",
             f"Command: `OMP_NUM_THREADS=1 .venv/bin/python benchmarks/replicas.py --one-level` ({common.machine()}). "
             f"`licl-cg-300K` (priors: {priors}) evaluated at its level {level:g} A only (`noise_std=` in both), i.e. one "
             "graph per box as a single-level model has; interleaved rounds, best of each.", "",
             "| model's priors | engine | boxes | steps/s | aggregate box-steps/s | aggregate / ASE |",
             "| --- | --- | --- | --- | --- | --- |"]
    for v in variants:
        lines.append(f"| {v} | ASE Langevin + DenoiseCalculator | 1 | {best[v, 'ase']:.0f} | {best[v, 'ase']:.0f} | 1.00 |")
        lines += [f"| {v} | ase_denoise.md.replicas.ReplicaLangevin | {n} | {best[v, n]:.1f} | {n * best[v, n]:.0f} | "
                  f"{n * best[v, n] / best[v, 'ase']:.2f} |" for n in sizes]
    text = "\n".join(lines) + "\n"
    if not args.quick:
        (HERE / "replicas_one_level.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
