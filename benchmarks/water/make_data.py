"""One-bead water: TIP3P at 300 K with OpenMM, each molecule mapped to one bead at its centre of mass.

The data set of the one-bead water study (the DeePCG benchmark):

1. ``--n-waters`` TIP3P molecules (``amber14/tip3p.xml`` as shipped with OpenMM) in a cubic box, PME,
   rigid water (SETTLE), 2 fs Langevin middle integrator, friction 1/ps.
2. Minimise, equilibrate at 300 K and 1 bar (Monte Carlo barostat), then fix the box at the mean
   equilibrated volume (molecules moved as wholes) and run NVT production.
3. Every ``--frame-interval-ps`` keep each molecule's centre of mass (A) and the total force on the
   molecule (eV/A). That total force is the mapped force consistent with the centre-of-mass map for a
   rigid molecule: the constraint forces are internal and cancel in the sum, so OpenMM's forces (which
   leave constraint forces out) sum to the same total.

The output ``water_1bead_300K.npz`` holds float32 ``positions`` (n, n_waters, 3) A, ``forces`` (same)
eV/A, ``cell`` (3, 3) A, ``temperature_K`` and a JSON ``metadata`` string. ``--resume`` continues an
interrupted run from ``<output>.partial.npz`` and the saved OpenMM state. Needs the optional
``openmm`` package.

    python benchmarks/water/make_data.py --threads 1
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
sys.path.insert(0, str(HERE.parent))
from openmm_frames import run_production  # noqa: E402
KJ_PER_MOL_NM_TO_EV_PER_A = 0.0103642688 / 10.0


def build_system(n_waters: int, seed: int):
    """(modeller, forcefield): ``n_waters`` TIP3P molecules in a cubic box at about 1 g/cm^3."""
    import openmm
    import openmm.app as app
    import openmm.unit as u

    forcefield = app.ForceField("amber14/tip3p.xml")
    # a box 20% larger than 1 g/cm^3 needs (29.9 A^3 per molecule), filled, then the surplus deleted;
    # the NPT equilibration brings the density back
    edge_nm = (n_waters * 0.0299 * 1.2) ** (1.0 / 3.0)
    modeller = app.Modeller(app.Topology(), [])
    modeller.addSolvent(forcefield, model="tip3p", boxSize=openmm.Vec3(edge_nm, edge_nm, edge_nm) * u.nanometer)
    waters = list(modeller.topology.residues())
    if len(waters) < n_waters:  # pragma: no cover - the box above holds more
        raise RuntimeError(f"the box holds {len(waters)} waters, fewer than {n_waters}")
    modeller.delete(waters[n_waters:])
    return modeller, forcefield


def molecules(topology):
    """Atom indices of each water molecule [n_waters, 3]."""
    return np.array([[a.index for a in r.atoms()] for r in topology.residues()], dtype=np.int64)


def map_to_beads(positions: np.ndarray, forces: np.ndarray, masses: np.ndarray, groups: np.ndarray):
    """Centre of mass of each group (positions unwrapped within a molecule, as OpenMM keeps them) and
    the total force on it: ([n_groups, 3], [n_groups, 3])."""
    m = masses[groups]  # [n_groups, 3]
    com = (positions[groups] * m[..., None]).sum(axis=1) / m.sum(axis=1)[:, None]
    return com, forces[groups].sum(axis=1)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--output", default=str(HERE / "water_1bead_300K.npz"))
    parser.add_argument("--n-waters", type=int, default=256)
    parser.add_argument("--temperature-K", type=float, default=300.0)
    parser.add_argument("--pressure-bar", type=float, default=1.0)
    parser.add_argument("--timestep-fs", type=float, default=2.0)
    parser.add_argument("--cutoff-nm", type=float, default=0.9)
    parser.add_argument("--npt-ps", type=float, default=100.0)
    parser.add_argument("--nvt-equil-ps", type=float, default=20.0)
    parser.add_argument("--n-frames", type=int, default=1000)
    parser.add_argument("--frame-interval-ps", type=float, default=1.0)
    parser.add_argument("--checkpoint-every", type=int, default=100)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--resume", action="store_true")
    args = parser.parse_args(argv)

    import openmm
    import openmm.app as app
    import openmm.unit as u
    from tqdm import tqdm

    output = Path(args.output)
    partial, state_file = output.with_suffix(".partial.npz"), output.with_suffix(".state.xml")
    if output.exists():
        print(f"{output} exists; delete it first to regenerate", file=sys.stderr)
        return 2
    t_start = time.perf_counter()
    modeller, forcefield = build_system(args.n_waters, args.seed)
    topology = modeller.topology
    groups = molecules(topology)
    system = forcefield.createSystem(topology, nonbondedMethod=app.PME, nonbondedCutoff=args.cutoff_nm * u.nanometer,
                                     constraints=app.HBonds, rigidWater=True)
    masses = np.array([system.getParticleMass(i).value_in_unit(u.dalton) for i in range(system.getNumParticles())])
    integrator = openmm.LangevinMiddleIntegrator(args.temperature_K * u.kelvin, 1.0 / u.picosecond,
                                                 args.timestep_fs * u.femtosecond)
    integrator.setRandomNumberSeed(args.seed)
    barostat = openmm.MonteCarloBarostat(args.pressure_bar * u.bar, args.temperature_K * u.kelvin, 25)
    barostat.setRandomNumberSeed(args.seed + 1)
    system.addForce(barostat)
    simulation = app.Simulation(topology, system, integrator, openmm.Platform.getPlatformByName("CPU"),
                                {"Threads": str(args.threads)})
    steps_per_ps = int(round(1000.0 / args.timestep_fs))
    positions, forces, meta = [], [], {}
    if args.resume and partial.exists() and state_file.exists():
        done = np.load(partial)
        positions, forces = list(done["positions"]), list(done["forces"])
        meta = json.loads(str(done["metadata"]))
        barostat.setFrequency(0)
        simulation.context.reinitialize()
        simulation.loadState(str(state_file))
        print(f"resuming after {len(positions)} frames")
    else:
        simulation.context.setPositions(modeller.positions)
        simulation.minimizeEnergy(maxIterations=500)
        simulation.context.setVelocitiesToTemperature(args.temperature_K * u.kelvin, args.seed)
        volumes = []
        n_npt = max(100, int(args.npt_ps * steps_per_ps))
        for _ in tqdm(range(100), desc="NPT equilibration", unit="%"):
            simulation.step(n_npt // 100)
            box = simulation.context.getState().getPeriodicBoxVectors(asNumpy=True).value_in_unit(u.nanometer)
            volumes.append(float(np.linalg.det(box)))
        edge_nm = float(np.mean(volumes[50:])) ** (1.0 / 3.0)
        state = simulation.context.getState(getPositions=True)
        old_edge = state.getPeriodicBoxVectors(asNumpy=True).value_in_unit(u.nanometer)[0, 0]
        pos = state.getPositions(asNumpy=True).value_in_unit(u.nanometer)
        for g in groups:  # move molecules as wholes to the new box
            pos[g] += pos[g].mean(axis=0) * (edge_nm / old_edge - 1.0)
        barostat.setFrequency(0)
        simulation.context.reinitialize()
        simulation.context.setPeriodicBoxVectors(*(np.eye(3) * edge_nm))
        simulation.context.setPositions(pos)
        simulation.context.setVelocitiesToTemperature(args.temperature_K * u.kelvin, args.seed + 2)
        simulation.step(int(args.nvt_equil_ps * steps_per_ps))
        meta = {"npt_mean_box_nm": edge_nm, "n_waters": len(groups),
                "density_g_cm3": float(len(groups) * 18.015 / 6.02214076e23 / (edge_nm * 1e-7) ** 3)}

    def save(path: Path) -> None:
        metadata = dict(meta, description="one bead per TIP3P molecule at its centre of mass, 300 K; total force "
                        "on each molecule", openmm_version=openmm.__version__, frames_saved=len(positions),
                        units={"positions": "A", "forces": "eV/A", "cell": "A"},
                        **{k: v for k, v in vars(args).items() if k not in ("output", "resume", "n_frames")})
        tmp = path.with_name(path.name + ".tmp.npz")
        np.savez_compressed(tmp, positions=np.asarray(positions, dtype=np.float32),
                            forces=np.asarray(forces, dtype=np.float32), cell=np.eye(3) * meta["npt_mean_box_nm"] * 10,
                            temperature_K=np.float64(args.temperature_K), metadata=json.dumps(metadata))
        os.replace(tmp, path)

    edge = meta["npt_mean_box_nm"] * 10.0

    def take(state):
        com, total = map_to_beads(state.getPositions(asNumpy=True).value_in_unit(u.angstrom),
                                  state.getForces(asNumpy=True).value_in_unit(u.kilojoule_per_mole / u.nanometer)
                                  * KJ_PER_MOL_NM_TO_EV_PER_A, masses, groups)
        return com % edge, total

    run_production(simulation, args.n_frames, int(round(args.frame_interval_ps * steps_per_ps)), take, save,
                   positions, forces, output, partial, state_file, args.checkpoint_every, desc="NVT production")
    print(f"wrote {output}: {len(positions)} frames of {len(groups)} beads, box {meta['npt_mean_box_nm'] * 10:.3f} A, "
          f"{time.perf_counter() - t_start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
