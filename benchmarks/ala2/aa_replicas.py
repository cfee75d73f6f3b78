#!/usr/bin/env python
"""All-atom alanine dipeptide: how often does a learned model keep the molecule intact in MD, over many
replicas instead of one run, and where do its intact runs go on the phi/psi plane?

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/ala2/aa_replicas.py denoise-smoothed-2000 denoise-smoothed-2000-seed1 force-match-2000
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/ala2/aa_replicas.py denoise-smoothed-energy-head-2000 --wall
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/ala2/aa_replicas.py --reference
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/ala2/aa_replicas.py denoise-smoothed-2000 --friction 0.01   # variant friction-0.01
    .venv/bin/python benchmarks/ala2/aa_replicas.py --report --plot
    .venv/bin/python benchmarks/ala2/aa_replicas.py denoise-smoothed-500 --quick --out-dir /tmp/q --runs-dir /tmp/q/runs

``study.py`` runs each trained model once (10 ps from the first held-out frame), so "2 of 3 seeds
intact" mixes the model's stability with one trajectory's luck. Here each model (trained by
``study.py``'s recipe into ``runs/ala2/<name>``, or trained now if it is not there) runs
:data:`MD`'s ``n_replicas`` Langevin replicas in one batched forward per step
(:class:`ase_denoise.md.replicas.ReplicaLangevin`; 300 K, 0.5 fs, friction 0.05/fs: at 0.01/fs the vector
head's work heated the denoiser's replicas to 440 K; those records carry ``variant="friction-0.01"``),
started from held-out frames spread over the held-out set. Per
replica: the time at which a bond first went 1 A off its mean length in the data (broken: the
molecule came apart), or whether it stayed within 0.5 A throughout (intact, ``study.py``'s rule),
and what went wrong first (``first_distortion``: the first sample, every 0.1 ps, with a bond 0.5 A
off or a non-bonded pair closer than 0.8 times its closest approach in the held-out data). Over the
intact replicas' production frames: the bond-length and bond-angle spreads against the held-out
data's, and the Ramachandran basin populations (the molecule's own phi/psi from the all-atom
coordinates) against the 5-ns reference: one ``aa-replicas`` record per run in ``results/summary.jsonl``.
Those frames' bond lengths, angles and phi/psi go to ``results/raw/aa-replicas-<run>.geometry.npz`` (not
committed); ``--plot`` draws their distributions against the data's (``results/aa_geometry.png``).

``--wall``: the same trained model with the non-bonded repulsive wall fitted to its training frames
(:class:`ase_denoise.priors.NonBondedWall`, added at inference: the weights are unchanged), results
as ``<run>+wall``. ``--reference``: the same protocol (starts, thermostat, lengths, sampling) with the
exact force field (OpenMM), results as ``exact-force-field``: what these replicas give when the forces are right.
"""

from __future__ import annotations

import os

if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse  # noqa: E402
import logging  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from types import SimpleNamespace  # noqa: E402
from typing import Any, Dict, List  # noqa: E402

import numpy as np  # noqa: E402

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from ala2 import make_data, study  # noqa: E402

MD = dict(n_replicas=8, timestep_fs=0.5, friction_per_fs=0.05, equilibration_ps=1.0, production_ps=10.0,
          sample_every_ps=0.1)
QUICK = dict(n_replicas=2, equilibration_ps=0.01, production_ps=0.05, sample_every_ps=0.005)
BROKEN_A, INTACT_A = 1.0, 0.5  # A off the data's mean bond length: broken / still intact (study.py's rules)
CONTACT_RATIO = 0.8  # a non-bonded pair closer than this times its closest approach in the held-out data
REFERENCE_LABEL = "exact-force-field"  # the record of the replicas with the exact force field (reference_run)
logger = logging.getLogger("ala2.aa_replicas")


def phi_psi(positions: np.ndarray, data: Path = None) -> np.ndarray:
    """phi, psi (degrees, in [-180, 180)) of all-atom positions [n, atoms, 3] (``make_data.dihedrals``
    with the atom names of ``data``)."""
    names = [str(x) for x in np.load(data or study.STUDY.data)["names"]]
    return make_data.dihedrals(np.asarray(positions, dtype=np.float64), {n: i for i, n in enumerate(names)})


def bond_angles(positions: np.ndarray, angles) -> np.ndarray:
    """Angles i-j-k (degrees) of positions [n, atoms, 3] for the triples ``angles`` [n_angles, 3]:
    [n, n_angles]."""
    index = np.asarray(angles)
    a = positions[:, index[:, 0]] - positions[:, index[:, 1]]
    b = positions[:, index[:, 2]] - positions[:, index[:, 1]]
    cos = (a * b).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))
    return np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))


def non_bonded_pairs(n_atoms: int, bonds, angles) -> np.ndarray:
    """Atom pairs [p, 2] (i < j) that are neither bonded nor the ends of an angle (1-2 and 1-3 excluded)."""
    excluded = {tuple(sorted(map(int, b))) for b in bonds} | {tuple(sorted((int(a[0]), int(a[2])))) for a in angles}
    return np.array([(i, j) for i in range(n_atoms) for j in range(i + 1, n_atoms) if (i, j) not in excluded])


def atom_pair_name(symbols: List[str], i: int, j: int) -> str:
    """``"H12-H17"``: the two atoms as symbol + index."""
    return f"{symbols[i]}{i}-{symbols[j]}{j}"


def worst_bond_and_contact(positions: np.ndarray, bonds: np.ndarray, mean_lengths: np.ndarray, pairs: np.ndarray,
                           closest: np.ndarray):
    """Per replica of positions [replicas, atoms, 3]: the bond furthest from its mean length in the data
    (index into ``bonds`` [r], signed offset [r], A) and the non-bonded pair (``pairs``) closest relative
    to its closest approach in the data (index into ``pairs`` [r], distance / ``closest`` [r])."""
    stretch = np.linalg.norm(positions[:, bonds[:, 1]] - positions[:, bonds[:, 0]], axis=-1) - mean_lengths
    ratio = np.linalg.norm(positions[:, pairs[:, 1]] - positions[:, pairs[:, 0]], axis=-1) / closest
    rows = np.arange(len(positions))
    b, p = np.abs(stretch).argmax(axis=1), ratio.argmin(axis=1)
    return b, stretch[rows, b], p, ratio[rows, p]


def describe_distortion(worst, bonds: np.ndarray, pairs: np.ndarray, closest: np.ndarray,
                        symbols: List[str]) -> List[Any]:
    """Per replica, from :func:`worst_bond_and_contact`'s ``worst``: what is off, or None: a bond more
    than ``INTACT_A`` off its mean length, or a non-bonded pair closer than ``CONTACT_RATIO`` times its
    closest approach in the data."""
    out: List[Any] = []
    for b, off, p, ratio in zip(*worst):
        if abs(off) <= INTACT_A and ratio >= CONTACT_RATIO:
            out.append(None)
            continue
        out.append(dict(bond=atom_pair_name(symbols, *bonds[b]), bond_off_A=float(off),
                        contact=atom_pair_name(symbols, *pairs[p]), contact_A=float(ratio * closest[p]),
                        contact_data_min_A=float(closest[p])))
    return out


def first_distortion(positions: np.ndarray, bonds: np.ndarray, mean_lengths: np.ndarray, pairs: np.ndarray,
                     closest: np.ndarray, symbols: List[str]) -> List[Any]:
    """Per replica of positions [replicas, atoms, 3]: a description of what is off, or None
    (:func:`describe_distortion` of :func:`worst_bond_and_contact`). Atoms are named symbol + index."""
    return describe_distortion(worst_bond_and_contact(positions, bonds, mean_lengths, pairs, closest), bonds, pairs,
                               closest, symbols)


def replica_setup(model, test: List[Any], md: Dict[str, Any]) -> SimpleNamespace:
    """What :func:`run` (and ``aa_trace.py``, to replay it) sets up for a model: ``md["n_replicas"]``
    starts spread over the held-out frames ``test``, the molecule's bonds and angles, the data's bond
    lengths [frames, bonds] and their means, the non-bonded pairs and their closest approach in the
    data (A), the atoms' symbols, and the :class:`~ase_denoise.md.replicas.ReplicaLangevin` runner (its
    thermostat seeds fixed: 5000 + replica; None without a ``model``)."""
    from ase_denoise.priors import molecule_topology

    picks = np.linspace(0, len(test) - 1, md["n_replicas"]).round().astype(int)
    starts = [test[i] for i in picks]
    bonds, angles = molecule_topology(starts[0])
    bonds = np.asarray(bonds)
    ref_lengths = study.bond_lengths(test, bonds)
    pairs = non_bonded_pairs(len(starts[0]), bonds, angles)
    closest = np.linalg.norm(np.stack([a.positions[pairs[:, 1]] - a.positions[pairs[:, 0]] for a in test]),
                             axis=-1).min(axis=0)  # [pairs] A, the held-out data's closest approach
    runner = None
    if model is not None:
        from ase_denoise.md import ReplicaLangevin

        runner = ReplicaLangevin(model, starts, temperature_K=study.TEMPERATURE_K, timestep_fs=md["timestep_fs"],
                                 friction_per_fs=md["friction_per_fs"], seeds=[5000 + i for i in range(len(picks))])
    return SimpleNamespace(starts=starts, bonds=bonds, angles=angles, ref_lengths=ref_lengths,
                           mean_lengths=ref_lengths.mean(axis=0), pairs=pairs, closest=closest,
                           symbols=starts[0].get_chemical_symbols(), runner=runner)


def with_nonbonded_wall(model, data: List[Any]):
    """``model`` with the library's non-bonded repulsive wall fitted to its training frames ``data``
    (:class:`ase_denoise.priors.NonBondedWall`: the pairs its bonded priors hold excluded, as
    ``train(..., priors=["bonded", "nonbonded_wall"])`` fits it). The weights are the model's own: the
    wall is not part of the training target, so training with it gives the same network."""
    from ase_denoise.model import with_prior
    from ase_denoise.priors import fit_repulsive_wall
    from ase_denoise.priors import pairs_held_by_priors

    return with_prior(model, fit_repulsive_wall(data, model.kT, exclude=pairs_held_by_priors(model.priors, data)))


def run_label(name: str, wall: bool = False) -> str:
    """The name a run's results go under: ``name``, ``+wall`` appended for the model with the wall."""
    return name + ("+wall" if wall else "")


def load_run(name: str, quick: bool = False, wall: bool = False):
    """The trained model of ``study.py``'s run ``name`` (trained now if missing), with the non-bonded
    wall if ``wall``; its label (:func:`run_label`) and the held-out frames."""
    pool, test = study.split(study.load_frames())
    model, n_frames, _, _ = study.train_run(name, pool, quick)
    if wall:
        model = with_nonbonded_wall(model, pool[:n_frames])
    return model, run_label(name, wall), test


def run(name: str, quick: bool = False, wall: bool = False) -> Dict[str, Any]:
    """``MD``'s replicas of run ``name`` (with the non-bonded wall if ``wall``); results under its label."""
    recipe, seed = study.RUNS[name]
    model, label, test = load_run(name, quick, wall)
    md = dict(MD, **(QUICK if quick else {}))
    setup = replica_setup(model, test, md)
    return simulate(label, dict(recipe=recipe.name, seed=seed, head=recipe.head, wall=wall,
                                noise_levels=list(model.noise_levels)), setup, test, md, progress=not quick, quick=quick)


class OpenMMReplicas:
    """The exact force field (``make_data.py``'s amber14 + GBn2 system) on ``starts``, one OpenMM
    context per replica: ``LangevinMiddleIntegrator`` at :data:`MD`'s temperature, friction and time
    step, seeds ``5000 + replica``, velocities drawn at the temperature. ``run`` has the interface of
    :meth:`ase_denoise.md.replicas.ReplicaLangevin.run` (positions in A; temperatures from the
    system's degrees of freedom, 3N - 3: OpenMM removes the centre-of-mass motion), so
    :func:`simulate` treats both alike."""

    def __init__(self, starts: List[Any], md: Dict[str, Any]):
        import openmm
        import openmm.unit as u

        topology, _, forcefield = make_data.build_system()
        system = make_data.create_system(topology, forcefield)
        # degrees of freedom: 3N, less 3 where the system removes the centre-of-mass motion (OpenMM's default)
        self.dof = 3 * len(starts[0]) - 3 * any(isinstance(f, openmm.CMMotionRemover) for f in system.getForces())
        self.contexts = []
        for i, atoms in enumerate(starts):
            integrator = openmm.LangevinMiddleIntegrator(study.TEMPERATURE_K * u.kelvin,
                                                         md["friction_per_fs"] * 1000 / u.picosecond,
                                                         md["timestep_fs"] * u.femtosecond)
            integrator.setRandomNumberSeed(5000 + i)
            context = openmm.Context(system, integrator, openmm.Platform.getPlatformByName("CPU"), {"Threads": "1"})
            context.setPositions(atoms.positions / 10.0 * u.nanometer)
            context.setVelocitiesToTemperature(study.TEMPERATURE_K * u.kelvin, 5000 + i)
            self.contexts.append((context, integrator))

    def _state(self):
        import openmm.unit as u
        from ase import units

        from ase_denoise.integrations.openmm import EV_IN_KJ_PER_MOL

        positions, temperatures = [], []
        for context, _ in self.contexts:
            state = context.getState(getPositions=True, getEnergy=True)
            positions.append(state.getPositions(asNumpy=True).value_in_unit(u.angstrom))
            kinetic_eV = state.getKineticEnergy().value_in_unit(u.kilojoule_per_mole) / EV_IN_KJ_PER_MOL
            temperatures.append(2.0 * kinetic_eV / (self.dof * units.kB))
        return np.asarray(positions), np.asarray(temperatures)

    def run(self, steps: int, interval: int = 10, observers=()) -> Dict[str, Any]:
        temps, t0, done = [], time.perf_counter(), 0
        while True:
            positions, temperatures = self._state()
            temps.append(temperatures)
            for observer in observers:
                observer(done, positions, None)
            if done >= steps:
                break
            chunk = min(interval, steps - done)
            for _, integrator in self.contexts:
                integrator.step(chunk)
            done += chunk
        wall = time.perf_counter() - t0
        return {"steps": done, "wall_s": wall, "steps_per_s": done / max(wall, 1e-12),
                "temperatures_K": np.array(temps), "stopped": None}


def reference_run(quick: bool = False) -> Dict[str, Any]:
    """:func:`run`'s protocol (starts, temperature, friction, time step, lengths, sampling) with the
    exact force field instead of a learned model (:class:`OpenMMReplicas`): what 8 replicas of 11 ps
    from these starts give when the forces are right. Results as ``aa-replicas-openmm.json``."""
    _, test = study.split(study.load_frames())
    md = dict(MD, **(QUICK if quick else {}))
    setup = replica_setup(None, test, md)
    setup.runner = OpenMMReplicas(setup.starts, md)
    return simulate(REFERENCE_LABEL, dict(recipe=None, wall=False, noise_levels=[]), setup, test, md, progress=not quick,
                    quick=quick)



def variant(md: Dict[str, Any]) -> Any:
    """The record variant of an MD protocol: None at :data:`MD`'s friction, ``friction-<f>`` otherwise."""
    return None if md["friction_per_fs"] == MD["friction_per_fs"] else f"friction-{md['friction_per_fs']:g}"


def simulate(label: str, about: Dict[str, Any], setup: SimpleNamespace, test: List[Any], md: Dict[str, Any],
             progress: bool = True, quick: bool = False) -> Dict[str, Any]:
    """Run ``setup.runner`` with ``md``'s lengths, watch every replica (broken, first distortion,
    production samples), write the ``aa-replicas`` record of ``label`` (``about`` merged in) and the
    intact replicas' geometry (``results/raw/``); returns the record."""
    from tqdm import tqdm

    starts, bonds, angles = setup.starts, setup.bonds, setup.angles
    ref_angles = bond_angles(np.stack([a.positions for a in test]), angles)
    interval = max(1, int(round(md["sample_every_ps"] * 1000 / md["timestep_fs"])))
    n_equil = int(round(md["equilibration_ps"] * 1000 / md["timestep_fs"]))
    n_total = n_equil + int(round(md["production_ps"] * 1000 / md["timestep_fs"]))
    n = len(starts)
    broken_at = [None] * n  # ps at which a bond first went BROKEN_A off its mean
    distorted: List[Any] = [None] * n  # the first sample with a bond or a contact off (first_distortion)
    max_stretch = np.zeros(n)  # during production
    samples: List[np.ndarray] = []
    bar = tqdm(total=n_total, desc=f"{label}: {n} replicas", unit="step", disable=not progress, mininterval=10.0)

    def observe(step: int, positions: np.ndarray, velocities: np.ndarray) -> None:
        bar.update(step - bar.n)
        worst = worst_bond_and_contact(positions, bonds, setup.mean_lengths, setup.pairs, setup.closest)
        stretch = np.abs(worst[1])  # [replicas] A, the largest bond offset of each
        for i in range(n):
            if broken_at[i] is None and stretch[i] > BROKEN_A:
                broken_at[i] = step * md["timestep_fs"] / 1000
        for i, what in enumerate(describe_distortion(worst, bonds, setup.pairs, setup.closest, setup.symbols)):
            if distorted[i] is None and what is not None:
                distorted[i] = dict(what, ps=step * md["timestep_fs"] / 1000)
        if step > n_equil:
            np.maximum(max_stretch, stretch, out=max_stretch)
            samples.append(positions.copy())

    t0 = time.perf_counter()
    res = setup.runner.run(n_total, interval=interval, observers=[observe])
    bar.close()
    x = np.stack(samples, axis=1) if samples else np.zeros((n, 0, len(starts[0]), 3))  # [replicas, t, atoms, 3]
    intact = np.array([broken_at[i] is None and max_stretch[i] <= INTACT_A for i in range(n)])
    second_half = np.asarray(res["temperatures_K"])[len(res["temperatures_K"]) // 2:]  # [samples, replicas], K
    result: Dict[str, Any] = dict(
        kind="aa-replicas", run=label, variant=variant(md), **about, settings=md, n_replicas=n,
        simulated_ps_per_replica=res["steps"] * md["timestep_fs"] / 1000, stopped=res["stopped"],
        wall_s=time.perf_counter() - t0, replica_steps_per_s=res["steps_per_s"] * n,
        replicas_intact=int(intact.sum()), broken_at_ps=broken_at, max_stretch_A=max_stretch.tolist(),
        first_distortion=distorted,
        mean_temperature_K=float(second_half.mean()), replica_temperatures_K=second_half.mean(axis=0).tolist())
    if intact.any() and x.shape[1] > 1:
        kept = x[intact].reshape(-1, x.shape[2], 3)
        lengths = np.linalg.norm(kept[:, bonds[:, 1]] - kept[:, bonds[:, 0]], axis=-1)
        bend = bond_angles(kept, angles)
        result["bond_std_ratio"] = float(np.mean(lengths.std(axis=0) / setup.ref_lengths.std(axis=0)))
        result["angle_std_ratio"] = float(np.mean(bend.std(axis=0) / ref_angles.std(axis=0)))
        dihedrals = phi_psi(kept)
        # blocks = intact replicas (independent starts): their spread is the populations' error
        pops = make_data.basin_populations(dihedrals, n_blocks=max(2, int(intact.sum())))
        result["populations"] = {k.split(" ")[0]: list(map(float, v)) for k, v in pops.items()}
        regions = make_data.basin_populations(dihedrals, n_blocks=max(2, int(intact.sum())), basins=make_data.REGIONS)
        result["regions"] = {k.split(" ")[0]: list(map(float, v)) for k, v in regions.items()}
        result["intact_aggregate_ps"] = float(intact.sum() * md["production_ps"])
    result["date"] = time.strftime("%Y-%m-%d")
    result = study.STUDY.summary(quick).put(result)
    if "bond_std_ratio" in result:  # the intact frames' geometry, for --plot (float32, ~0.2 MB)
        study.STUDY.raw.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(geometry_path(label, quick), bonds=bonds, angles=np.asarray(angles),
                            bond_lengths_A=lengths.astype(np.float32), angles_deg=bend.astype(np.float32),
                            phi_psi_deg=dihedrals.astype(np.float32))
    logger.info("%s: %d/%d replicas intact (%.0f replica-steps/s); broken at %s ps; populations %s", label,
                result["replicas_intact"], n, result["replica_steps_per_s"],
                [b for b in broken_at if b is not None], result.get("populations"))
    return result


def geometry_path(label: str, quick: bool = False) -> Path:
    return study.STUDY.raw / f"aa-replicas-{label}{'-quick' if quick else ''}.geometry.npz"


def report(quick: bool = False) -> str:
    """The study's table of these records (``study.py --tables`` writes it into the README)."""
    from ala2 import cg, tables

    cg.ensure_reference(study.STUDY.summary(quick), study.STUDY.data)
    return tables.aa_replicas_table(tables.Records(study.STUDY.summary(quick)))


def plot(path: Path = None) -> Path:
    """Distributions of bond lengths and angles (deviation from the held-out data's mean per bond or
    angle, pooled; bonds to hydrogen apart) of every run's intact replicas (``results/raw/``) against the
    held-out data's: ``results/aa_geometry.png``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ase_denoise.priors import molecule_topology

    from study_kit import save_figure

    _, test = study.split(study.load_frames())
    bonds, angles = molecule_topology(test[0])
    bonds = np.asarray(bonds)
    hydrogen = (test[0].numbers[bonds] == 1).any(axis=1)
    ref = dict(bond_lengths_A=study.bond_lengths(test, bonds),
               angles_deg=bond_angles(np.stack([a.positions for a in test]), angles))
    mean = {k: v.mean(axis=0) for k, v in ref.items()}
    curves = [("held-out data", ref)] + [(f.name[len("aa-replicas-"):-len(".geometry.npz")], dict(np.load(f)))
                                         for f in sorted(study.STUDY.raw.glob("aa-replicas-*.geometry.npz"))
                                         if "-friction-" not in f.name and "-quick" not in f.name]
    panels = [("bond length - data mean (A), heavy atoms", "bond_lengths_A", ~hydrogen, np.linspace(-0.15, 0.15, 61)),
              ("bond length - data mean (A), X-H", "bond_lengths_A", hydrogen, np.linspace(-0.15, 0.15, 61)),
              ("angle - data mean (degrees)", "angles_deg", slice(None), np.linspace(-30, 30, 61))]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    for ax, (title, key, columns, bins) in zip(axes, panels):
        for label, geometry in curves:
            x = (geometry[key] - mean[key])[:, columns].ravel()
            ax.hist(x, bins=bins, density=True, histtype="step", lw=2.0 if label == "held-out data" else 1.2,
                    color="k" if label == "held-out data" else None, label=label)
        ax.set_xlabel(title)
    axes[0].set_ylabel("density")
    axes[-1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0), frameon=False)
    fig.suptitle("All-atom alanine dipeptide, intact replicas' production frames against the held-out data")
    fig.tight_layout()
    return save_figure(fig, path or study.STUDY.results / "aa_geometry.png")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="runs of study.py")
    parser.add_argument("--quick", action="store_true", help="tiny settings: a smoke test of the pipeline")
    parser.add_argument("--reference", action="store_true", help="the same protocol with the exact force field "
                        f"(OpenMM): record '{REFERENCE_LABEL}'")
    parser.add_argument("--wall", action="store_true", help="add the non-bonded repulsive wall fitted to the "
                        "run's training frames (same weights; record <run>+wall)")
    parser.add_argument("--friction", type=float, default=MD["friction_per_fs"], help="per fs (records of another "
                        "friction than 0.05 carry variant friction-<f>)")
    parser.add_argument("--report", action="store_true", help="print the table of the records")
    parser.add_argument("--plot", action="store_true", help="bond-length and angle distributions of the runs "
                        "against the data: results/aa_geometry.png")
    parser.add_argument("--out-dir", default=None, help="results go to <out-dir>/results")
    parser.add_argument("--runs-dir", default=None, help="trained models (study.py's)")
    args = parser.parse_args(argv)
    study.STUDY.configure(args.out_dir, args.runs_dir)
    MD["friction_per_fs"] = args.friction
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    unknown = [n for n in args.names if n not in study.RUNS]
    if unknown:
        parser.error(f"unknown runs {unknown}; study.py --list shows them")
    store = study.STUDY.summary(args.quick)
    for name in args.names:
        if not args.quick and store.get("aa-replicas", run_label(name, args.wall), variant=variant(MD)):
            continue
        run(name, quick=args.quick, wall=args.wall)
    if args.reference and (args.quick or not store.get("aa-replicas", REFERENCE_LABEL, variant=variant(MD))):
        reference_run(quick=args.quick)
    if args.report:
        print(report(args.quick))
    if args.plot:
        print(plot())
    return 0


if __name__ == "__main__":
    sys.exit(main())
