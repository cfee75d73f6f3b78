"""All-atom LiCl in TIP3P water with OpenMM; keep the ions only.

This makes the coarse-grained data set of the LiCl study (``benchmarks/licl/README.md``):

1. 24 Li+ and 24 Cl- in a cubic box of TIP3P water (2.5 M as built, 2.7 M after NPT), Joung-Cheatham ion parameters
   for TIP3P as shipped with OpenMM (``amber14/tip3p.xml``), PME, rigid water.
2. Minimise, equilibrate at 300 K and 1 bar (Monte Carlo barostat), then fix the box at the mean
   equilibrated volume and run NVT production (Langevin middle integrator).
3. Every ``--frame-interval-ps`` keep the ion positions (A), the box (A) and the instantaneous total
   force on each ion from every atom of the system (eV/A) -- the labels a force-matching CG model
   trains on. Water is discarded.

Hydrogen mass repartitioning (1.5 amu) lets the integrator take 4 fs steps. It changes dynamics only:
the configurational Boltzmann distribution, and so the ion structure and the forces, do not depend
on masses.

The output ``licl_cg_300K.npz`` holds float32 ``positions`` (n, 48, 3) A, ``forces`` (n, 48, 3) eV/A,
``cell`` (3, 3) A, ``numbers`` (48,), ``temperature_K`` and a JSON ``metadata`` string. The run can be
interrupted: it writes ``<output>.partial.npz`` and an OpenMM state every ``--checkpoint-every`` frames
and ``--resume`` continues from there. Needs the optional ``openmm`` package
(``pip install "ase_denoise[licl]"``).

Run (2-core VM, 1 thread, see README.md for the measured time)::

    python benchmarks/licl/make_data.py --threads 1
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
KJ_PER_MOL_NM_TO_EV_PER_A = 0.0103642688 / 10.0  # 1 kJ/mol = 0.0103642688 eV; 1 nm = 10 A
WATER_MOLARITY = 55.4  # OpenMM's Modeller uses this to turn ionic strength into an ion count


def build_system(n_pairs: int, box_nm: float, seed: int):
    """Solvate ``n_pairs`` LiCl in a cubic TIP3P box of edge ``box_nm``; return (modeller, forcefield)."""
    import openmm
    import openmm.app as app
    import openmm.unit as u

    forcefield = app.ForceField("amber14/tip3p.xml")
    modeller = app.Modeller(app.Topology(), [])
    # Count the waters of the empty box first, then ask for the ionic strength that gives n_pairs.
    probe = app.Modeller(app.Topology(), [])
    probe.addSolvent(forcefield, model="tip3p", boxSize=openmm.Vec3(box_nm, box_nm, box_nm) * u.nanometer)
    n_water = probe.topology.getNumResidues()
    ionic_strength = (n_pairs - 0.25) * WATER_MOLARITY / (n_water - 2 * n_pairs)
    for strength in (ionic_strength, (n_pairs + 0.25) * WATER_MOLARITY / n_water):
        modeller = app.Modeller(app.Topology(), [])
        modeller.addSolvent(
            forcefield,
            model="tip3p",
            boxSize=openmm.Vec3(box_nm, box_nm, box_nm) * u.nanometer,
            positiveIon="Li+",
            negativeIon="Cl-",
            ionicStrength=strength * u.molar,
        )
        names = [r.name for r in modeller.topology.residues()]
        if names.count("LI") == n_pairs and names.count("CL") == n_pairs:
            return modeller, forcefield
    raise RuntimeError(f"could not place exactly {n_pairs} ion pairs (got {names.count('LI')} Li, {names.count('CL')} Cl)")


def ion_indices(topology):
    li = [a.index for a in topology.atoms() if a.residue.name == "LI"]
    cl = [a.index for a in topology.atoms() if a.residue.name == "CL"]
    return np.array(li + cl)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--output", default=str(HERE / "licl_cg_300K.npz"))
    parser.add_argument("--n-pairs", type=int, default=24)
    parser.add_argument("--box-nm", type=float, default=2.526, help="initial box edge (nm) before NPT")
    parser.add_argument("--temperature-K", type=float, default=300.0)
    parser.add_argument("--pressure-bar", type=float, default=1.0)
    parser.add_argument("--timestep-fs", type=float, default=4.0)
    parser.add_argument("--friction-per-ps", type=float, default=1.0)
    parser.add_argument("--cutoff-nm", type=float, default=0.9)
    parser.add_argument("--npt-ps", type=float, default=200.0)
    parser.add_argument("--nvt-equil-ps", type=float, default=50.0)
    parser.add_argument("--n-frames", type=int, default=2000)
    parser.add_argument("--frame-interval-ps", type=float, default=1.0)
    parser.add_argument("--checkpoint-every", type=int, default=100, help="frames between checkpoints")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--resume", action="store_true")
    args = parser.parse_args(argv)

    import openmm
    import openmm.app as app
    import openmm.unit as u
    from tqdm import tqdm

    output = Path(args.output)
    partial = output.with_suffix(".partial.npz")
    state_file = output.with_suffix(".state.xml")
    if output.exists():
        print(f"{output} exists; delete it first to regenerate", file=sys.stderr)
        return 2
    t_start = time.perf_counter()
    modeller, forcefield = build_system(args.n_pairs, args.box_nm, args.seed)
    topology = modeller.topology
    ions = ion_indices(topology)
    n_water = sum(1 for r in topology.residues() if r.name == "HOH")
    system = forcefield.createSystem(
        topology,
        nonbondedMethod=app.PME,
        nonbondedCutoff=args.cutoff_nm * u.nanometer,
        constraints=app.HBonds,
        rigidWater=True,
        hydrogenMass=1.5 * u.amu,
    )
    dt = args.timestep_fs * u.femtosecond
    integrator = openmm.LangevinMiddleIntegrator(args.temperature_K * u.kelvin, args.friction_per_ps / u.picosecond, dt)
    integrator.setRandomNumberSeed(args.seed)
    barostat = openmm.MonteCarloBarostat(args.pressure_bar * u.bar, args.temperature_K * u.kelvin, 25)
    barostat.setRandomNumberSeed(args.seed + 1)
    system.addForce(barostat)
    platform = openmm.Platform.getPlatformByName("CPU")
    simulation = app.Simulation(topology, system, integrator, platform, {"Threads": str(args.threads)})
    steps_per_ps = int(round(1000.0 / args.timestep_fs))
    steps_per_frame = int(round(args.frame_interval_ps * steps_per_ps))

    positions, forces = [], []
    meta_equil = {}
    if args.resume and partial.exists() and state_file.exists():
        done = np.load(partial)
        positions, forces = list(done["positions"]), list(done["forces"])
        meta_equil = json.loads(str(done["metadata"]))
        barostat.setFrequency(0)
        simulation.context.reinitialize()
        simulation.loadState(str(state_file))
        print(f"resuming after {len(positions)} frames")
    else:
        simulation.context.setPositions(modeller.positions)
        simulation.minimizeEnergy(maxIterations=1000)
        simulation.context.setVelocitiesToTemperature(args.temperature_K * u.kelvin, args.seed)
        n_npt = int(args.npt_ps * steps_per_ps)
        volumes = []
        for _ in tqdm(range(100), desc="NPT equilibration", unit="%"):
            simulation.step(n_npt // 100)
            box = simulation.context.getState().getPeriodicBoxVectors(asNumpy=True).value_in_unit(u.nanometer)
            volumes.append(float(np.linalg.det(box)))
        # Fix the box at the mean volume of the second half of NPT, rescaling positions by molecule.
        edge_nm = float(np.mean(volumes[50:])) ** (1.0 / 3.0)
        state = simulation.context.getState(getPositions=True, enforcePeriodicBox=True)
        old_edge = state.getPeriodicBoxVectors(asNumpy=True).value_in_unit(u.nanometer)[0, 0]
        pos = state.getPositions(asNumpy=True).value_in_unit(u.nanometer)
        scaled = pos.copy()
        for residue in topology.residues():
            idx = [a.index for a in residue.atoms()]
            centre = pos[idx].mean(axis=0)
            scaled[idx] = pos[idx] + centre * (edge_nm / old_edge - 1.0)
        barostat.setFrequency(0)
        simulation.context.reinitialize()
        simulation.context.setPeriodicBoxVectors(*(np.eye(3) * edge_nm))
        simulation.context.setPositions(scaled)
        simulation.context.setVelocitiesToTemperature(args.temperature_K * u.kelvin, args.seed + 2)
        simulation.step(int(args.nvt_equil_ps * steps_per_ps))
        meta_equil = {
            "npt_mean_box_nm": edge_nm,
            "npt_volume_std_nm3": float(np.std(volumes[50:])),
            "equilibration_wall_s": time.perf_counter() - t_start,
        }

    t_prod = time.perf_counter()
    bar = tqdm(total=args.n_frames, initial=len(positions), desc="NVT production", unit="frame")
    while len(positions) < args.n_frames:
        simulation.step(steps_per_frame)
        state = simulation.context.getState(getPositions=True, getForces=True, enforcePeriodicBox=False)
        pos = state.getPositions(asNumpy=True).value_in_unit(u.angstrom)[ions]
        frc = state.getForces(asNumpy=True).value_in_unit(u.kilojoule_per_mole / u.nanometer)[ions]
        positions.append(pos.astype(np.float32))
        forces.append((frc * KJ_PER_MOL_NM_TO_EV_PER_A).astype(np.float32))
        bar.update(1)
        if len(positions) % args.checkpoint_every == 0 and len(positions) < args.n_frames:
            simulation.saveState(str(state_file) + ".tmp")
            os.replace(str(state_file) + ".tmp", state_file)
            _save(partial, positions, forces, topology, ions, args, meta_equil, n_water)
    bar.close()
    meta_equil["production_wall_s_this_run"] = time.perf_counter() - t_prod
    meta_equil["total_wall_s_this_run"] = time.perf_counter() - t_start
    _save(output, positions, forces, topology, ions, args, meta_equil, n_water)
    for path in (partial, state_file):
        if path.exists():
            path.unlink()
    print(f"wrote {output}: {len(positions)} frames, {len(ions)} ions, {n_water} waters, "
          f"box {meta_equil['npt_mean_box_nm'] * 10:.3f} A, {meta_equil['total_wall_s_this_run']:.0f} s")
    return 0


def _save(path: Path, positions, forces, topology, ions, args, meta_equil, n_water) -> None:
    import openmm

    numbers = np.array([list(topology.atoms())[i].element.atomic_number for i in ions], dtype=np.int64)
    edge_A = meta_equil["npt_mean_box_nm"] * 10.0
    metadata = dict(
        meta_equil,
        description="ions of all-atom LiCl/TIP3P (Joung-Cheatham) at 300 K; instantaneous total forces on ions",
        openmm_version=openmm.__version__,
        n_water=n_water,
        frames_saved=len(positions),
        units={"positions": "A", "forces": "eV/A", "cell": "A"},
        **{k: v for k, v in vars(args).items() if k not in ("output", "resume", "n_frames")},
    )
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez_compressed(
        tmp,
        positions=np.asarray(positions, dtype=np.float32),
        forces=np.asarray(forces, dtype=np.float32),
        cell=np.eye(3) * edge_A,
        numbers=numbers,
        temperature_K=np.float64(args.temperature_K),
        metadata=json.dumps(metadata),
    )
    os.replace(tmp, path)


if __name__ == "__main__":
    sys.exit(main())
