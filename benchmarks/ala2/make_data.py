"""Alanine dipeptide (ACE-ALA-NME), all atoms, Amber ff14SB with GBn2 implicit solvent, 300 K, OpenMM.

The data set of the alanine-dipeptide study (``benchmarks/ala2/README.md``):

1. The molecule is built here from standard internal coordinates (heavy atoms by NeRF, the L
   configuration at CA checked by the sign of ``(N - CA) . ((C - CA) x (CB - CA))``, which is positive
   for (S)-alanine), hydrogens added by OpenMM's ``Modeller.addHydrogens`` from the force field's
   templates: no structure file is downloaded or copied.
2. ``amber14-all.xml`` + ``implicit/gbn2.xml`` (GBn2, Nguyen et al. 2013) as shipped with OpenMM, no
   cutoff, **no constraints** (``constraints=None``): with constrained bonds the Cartesian density is
   singular and OpenMM's forces leave out the constraint forces, so the labels would not be the score.
   Langevin middle integrator, 1 fs (the fastest hydrogen stretch has a period of about 11 fs), friction
   1/ps.
3. Minimise, equilibrate ``--equil-ps``, then keep positions (A) and the instantaneous forces (eV/A) of
   all 22 atoms every ``--frame-interval-ps``. The run can be interrupted: it writes
   ``<output>.partial.npz`` and an OpenMM state every ``--checkpoint-every`` frames and ``--resume``
   continues from there.

The output ``ala2_aa_300K.npz`` holds float32 ``positions`` (n, 22, 3), ``forces`` (n, 22, 3),
``numbers`` (22,), ``names`` (22, residue.atom), ``temperature_K`` and a JSON ``metadata`` string
(vacuum box: no cell). Needs the optional ``openmm`` package.

Run (2-core VM, 1 thread)::

    python benchmarks/ala2/make_data.py --threads 1
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
from openmm_frames import run_production  # noqa: E402
KJ_PER_MOL_NM_TO_EV_PER_A = 0.0103642688 / 10.0  # 1 kJ/mol = 0.0103642688 eV; 1 nm = 10 A

#: the heavy atoms of ACE-ALA-NME with their residues (OpenMM's amber14 names; hydrogens are added)
HEAVY_ATOMS = (("ACE", ("CH3", "C", "O")), ("ALA", ("N", "CA", "CB", "C", "O")), ("NME", ("N", "C")))
HEAVY_BONDS = (("ACE.CH3", "ACE.C"), ("ACE.C", "ACE.O"), ("ACE.C", "ALA.N"), ("ALA.N", "ALA.CA"),
               ("ALA.CA", "ALA.CB"), ("ALA.CA", "ALA.C"), ("ALA.C", "ALA.O"), ("ALA.C", "NME.N"),
               ("NME.N", "NME.C"))
#: the backbone dihedrals (atoms as residue.name)
PHI = ("ACE.C", "ALA.N", "ALA.CA", "ALA.C")
PSI = ("ALA.N", "ALA.CA", "ALA.C", "NME.N")


def _place(a: np.ndarray, b: np.ndarray, c: np.ndarray, bond: float, angle: float, torsion: float) -> np.ndarray:
    """Natural extension reference frame: the atom d with |cd| = bond (A), angle bcd and dihedral
    abcd (degrees)."""
    angle, torsion = math.radians(angle), math.radians(torsion)
    bc = (c - b) / np.linalg.norm(c - b)
    n = np.cross(b - a, bc)
    n /= np.linalg.norm(n)
    m = np.cross(n, bc)
    return c + bond * (-math.cos(angle) * bc + math.sin(angle) * math.cos(torsion) * m
                       + math.sin(angle) * math.sin(torsion) * n)


def heavy_atom_positions(phi: float = -70.0, psi: float = 140.0) -> dict:
    """Heavy-atom positions (A) of L-alanine dipeptide at backbone dihedrals ``phi``, ``psi`` (degrees),
    standard bond lengths and angles, trans peptide bonds."""
    x = {"ACE.CH3": np.zeros(3), "ACE.C": np.array([1.52, 0.0, 0.0])}
    ref = np.array([0.0, 1.0, 0.0])
    x["ALA.N"] = _place(ref, x["ACE.CH3"], x["ACE.C"], 1.33, 116.0, 180.0)
    x["ACE.O"] = _place(x["ALA.N"], x["ACE.CH3"], x["ACE.C"], 1.23, 121.0, 180.0)
    x["ALA.CA"] = _place(x["ACE.CH3"], x["ACE.C"], x["ALA.N"], 1.46, 122.0, 180.0)  # omega = 180
    x["ALA.C"] = _place(x["ACE.C"], x["ALA.N"], x["ALA.CA"], 1.52, 111.0, phi)
    x["ALA.CB"] = _place(x["ACE.C"], x["ALA.N"], x["ALA.CA"], 1.53, 110.0, phi - 120.0)  # L: see chirality()
    x["NME.N"] = _place(x["ALA.N"], x["ALA.CA"], x["ALA.C"], 1.33, 116.0, psi)
    x["ALA.O"] = _place(x["NME.N"], x["ALA.CA"], x["ALA.C"], 1.23, 121.0, 180.0)
    x["NME.C"] = _place(x["ALA.CA"], x["ALA.C"], x["NME.N"], 1.46, 122.0, 180.0)
    return x


def chirality(x: dict) -> float:
    """``(N - CA) . ((C - CA) x (CB - CA))``: positive for (S)-, i.e. L-alanine (CIP priorities
    N > C > CB > H, counter-clockwise seen with H pointing away)."""
    ca = x["ALA.CA"]
    return float(np.dot(x["ALA.N"] - ca, np.cross(x["ALA.C"] - ca, x["ALA.CB"] - ca)))


def build_system():
    """(topology, positions (nm), forcefield) of L-alanine dipeptide with hydrogens."""
    import openmm.app as app
    import openmm.unit as u

    x = heavy_atom_positions()
    if chirality(x) <= 0:  # pragma: no cover - a guard on the construction above
        raise RuntimeError("built D-alanine instead of L-alanine")
    topology = app.Topology()
    chain = topology.addChain()
    atoms = {}
    for residue_name, names in HEAVY_ATOMS:
        residue = topology.addResidue(residue_name, chain)
        for name in names:
            atoms[f"{residue_name}.{name}"] = topology.addAtom(name, app.element.Element.getBySymbol(name[0]), residue)
    for a, b in HEAVY_BONDS:
        topology.addBond(atoms[a], atoms[b])
    positions = [x[f"{a.residue.name}.{a.name}"] / 10.0 for a in topology.atoms()]
    forcefield = app.ForceField("amber14-all.xml", "implicit/gbn2.xml")
    modeller = app.Modeller(topology, positions * u.nanometer)
    modeller.addHydrogens(forcefield)
    return modeller.topology, modeller.positions, forcefield


def create_system(topology, forcefield):
    """The OpenMM system the data are generated with: no cutoff, no constraints, flexible water."""
    import openmm.app as app

    return forcefield.createSystem(topology, nonbondedMethod=app.NoCutoff, constraints=None, rigidWater=False)


def dihedrals(positions: np.ndarray, index: dict) -> np.ndarray:
    """phi, psi (degrees, in [-180, 180)) of each frame of ``positions`` [n, atoms, 3]."""
    from ase.geometry import get_dihedrals

    out = []
    for quad in (PHI, PSI):
        i, j, k, l = (index[a] for a in quad)
        out.append(get_dihedrals(positions[:, j] - positions[:, i], positions[:, k] - positions[:, j],
                                 positions[:, l] - positions[:, k]))
    return (np.stack(out, axis=1) + 180.0) % 360.0 - 180.0


#: basins on the Ramachandran plane (degrees), the usual rectangles for alanine dipeptide
BASINS = {
    "beta/C7eq/PII (phi < 0, psi > 50 or psi < -150)": lambda phi, psi: (phi < 0) & ((psi > 50) | (psi < -150)),
    "alpha_R (phi < 0, -150 < psi < 50)": lambda phi, psi: (phi < 0) & (psi > -150) & (psi < 50),
    "alpha_L/C7ax (phi > 0)": lambda phi, psi: phi > 0,
}
# BASINS with beta split at psi = 120 into C7eq (the internally H-bonded ring) and PII (extended)
REGIONS = {
    "C7eq (phi < 0, 50 < psi < 120)": lambda phi, psi: (phi < 0) & (psi > 50) & (psi < 120),
    "PII (phi < 0, psi > 120 or psi < -150)": lambda phi, psi: (phi < 0) & ((psi >= 120) | (psi < -150)),
    "alpha_R (phi < 0, -150 < psi < 50)": BASINS["alpha_R (phi < 0, -150 < psi < 50)"],
    "alpha_L/C7ax (phi > 0)": BASINS["alpha_L/C7ax (phi > 0)"],
}


def basin_populations(phi_psi: np.ndarray, n_blocks: int = 10, basins=None):
    """Per basin of ``basins`` (default :data:`BASINS`; :data:`REGIONS` splits beta): fraction of
    frames and its block standard error (``n_blocks`` blocks in time order)."""
    out = {}
    n_blocks = max(2, min(n_blocks, len(phi_psi)))
    blocks = np.array_split(np.arange(len(phi_psi)), n_blocks)
    for name, inside in (BASINS if basins is None else basins).items():
        hits = inside(phi_psi[:, 0], phi_psi[:, 1])
        per_block = np.array([hits[b].mean() for b in blocks])
        out[name] = (float(hits.mean()), float(per_block.std(ddof=1) / math.sqrt(n_blocks)))
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--output", default=str(HERE / "ala2_aa_300K.npz"))
    parser.add_argument("--temperature-K", type=float, default=300.0)
    parser.add_argument("--timestep-fs", type=float, default=1.0)
    parser.add_argument("--friction-per-ps", type=float, default=1.0)
    parser.add_argument("--equil-ps", type=float, default=100.0)
    parser.add_argument("--n-frames", type=int, default=5000)
    parser.add_argument("--frame-interval-ps", type=float, default=2.0)
    parser.add_argument("--checkpoint-every", type=int, default=250, help="frames between checkpoints")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--resume", action="store_true")
    args = parser.parse_args(argv)

    import openmm
    import openmm.app as app
    import openmm.unit as u

    output = Path(args.output)
    partial = output.with_suffix(".partial.npz")
    state_file = output.with_suffix(".state.xml")
    if output.exists():
        print(f"{output} exists; delete it first to regenerate", file=sys.stderr)
        return 2
    topology, positions0, forcefield = build_system()
    system = create_system(topology, forcefield)
    integrator = openmm.LangevinMiddleIntegrator(args.temperature_K * u.kelvin, args.friction_per_ps / u.picosecond,
                                                 args.timestep_fs * u.femtosecond)
    integrator.setRandomNumberSeed(args.seed)
    platform = openmm.Platform.getPlatformByName("CPU")
    simulation = app.Simulation(topology, system, integrator, platform, {"Threads": str(args.threads)})
    steps_per_frame = int(round(args.frame_interval_ps * 1000.0 / args.timestep_fs))
    names = [f"{a.residue.name}.{a.name}" for a in topology.atoms()]
    numbers = np.array([a.element.atomic_number for a in topology.atoms()], dtype=np.int64)

    positions, forces = [], []
    if args.resume and partial.exists() and state_file.exists():
        done = np.load(partial)
        positions, forces = list(done["positions"]), list(done["forces"])
        simulation.loadState(str(state_file))
        print(f"resuming after {len(positions)} frames")
    else:
        simulation.context.setPositions(positions0)
        simulation.minimizeEnergy(maxIterations=1000)
        simulation.context.setVelocitiesToTemperature(args.temperature_K * u.kelvin, args.seed)
        simulation.step(int(round(args.equil_ps * 1000.0 / args.timestep_fs)))

    def save(path: Path) -> None:
        metadata = dict(
            description="L-alanine dipeptide (ACE-ALA-NME), all atoms, amber14-all + implicit/gbn2, no constraints, "
                        "300 K; instantaneous forces",
            openmm_version=openmm.__version__, frames_saved=len(positions),
            units={"positions": "A", "forces": "eV/A"},
            **{k: v for k, v in vars(args).items() if k not in ("output", "resume", "n_frames")},
        )
        tmp = path.with_name(path.name + ".tmp.npz")
        np.savez_compressed(tmp, positions=np.asarray(positions, dtype=np.float32),
                            forces=np.asarray(forces, dtype=np.float32), numbers=numbers, names=np.array(names),
                            temperature_K=np.float64(args.temperature_K), metadata=json.dumps(metadata))
        os.replace(tmp, path)

    def take(state):
        return (state.getPositions(asNumpy=True).value_in_unit(u.angstrom),
                state.getForces(asNumpy=True).value_in_unit(u.kilojoule_per_mole / u.nanometer) * KJ_PER_MOL_NM_TO_EV_PER_A)

    t_prod = time.perf_counter()
    run_production(simulation, args.n_frames, steps_per_frame, take, save, positions, forces, output, partial,
                   state_file, args.checkpoint_every)
    index = {n: i for i, n in enumerate(names)}
    populations = basin_populations(dihedrals(np.asarray(positions, dtype=np.float64), index))
    print(f"wrote {output}: {len(positions)} frames of {len(names)} atoms, "
          f"{len(positions) * args.frame_interval_ps / 1000:.1f} ns, production {time.perf_counter() - t_prod:.0f} s")
    for name, (p, err) in populations.items():
        print(f"  {name}: {p:.3f} +- {err:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
