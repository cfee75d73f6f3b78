"""Which ASE tools work with a forces-only calculator, and ase_denoise.md's replacements.

The survey of ASE's tools uses a stand-in for the denoiser calculator, ``ForcesOnlyLJ``:
Lennard-Jones forces (so that results can be compared with full LJ), ``implemented_properties =
["forces"]``, energy and stress raise ``PropertyNotImplementedError`` just as ``ase_denoise``'s
calculator does. ``relax``, ``ForcesOnlyMDLogger`` and ``run_langevin`` are then tested with the real
``DenoiseCalculator`` and a trained model (the zoo's ``lj-argon-94K``).
"""

from __future__ import annotations

import io
import os

import ase.io
import numpy as np
import pytest
from ase import Atoms, units
from ase.build import bulk
from ase.calculators.calculator import Calculator, PropertyNotImplementedError, all_changes
from ase.calculators.lj import LennardJones
from ase.cluster import Icosahedron
from ase.io import Trajectory
from ase.md.andersen import Andersen
from ase.md.bussi import Bussi
from ase.md.langevin import Langevin
from ase.md.logger import MDLogger
from ase.md.nose_hoover_chain import NoseHooverChainNVT
from ase.md.nvtberendsen import NVTBerendsen
from ase.md.verlet import VelocityVerlet
from ase.optimize import BFGS, FIRE

from ase_denoise import DenoiseCalculator
from ase_denoise.md import (
    FORCES_ONLY_OPTIMIZERS,
    ForcesOnlyFIRE,
    ForcesOnlyLBFGS,
    ForcesOnlyMDLogger,
    max_force,
    min_pair_distance,
    relax,
    run_langevin,
)

from _helpers import leftovers

# Argon-like LJ for MD (eV, Angstrom); a stiffer eps for relaxations so that
# fmax = 0.05 eV/A means "close to the minimum" (position error ~ fmax / k ~ 0.01 A).
AR = dict(sigma=3.405, epsilon=0.0104, rc=8.5, smooth=True)
STIFF = dict(sigma=3.405, epsilon=1.0, rc=8.5, smooth=True)
DT = 5.0 * units.fs
T_K = 60.0


class ForcesOnlyLJ(Calculator):
    """Lennard-Jones forces only (eV/Angstrom); energy and stress are not implemented."""

    implemented_properties = ["forces"]

    def __init__(self, **lj_params):
        super().__init__()
        self.lj_params = lj_params
        self._lj = LennardJones(**lj_params)

    def calculate(self, atoms=None, properties=("forces",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        work = self.atoms.copy()
        work.calc = self._lj
        self.results = {"forces": work.get_forces()}


def argon_box(seed: int = 0) -> Atoms:
    """32 Ar atoms, periodic fcc box (10.52 A), Maxwell-Boltzmann momenta at T_K."""
    atoms = bulk("Ar", "fcc", a=5.26, cubic=True) * (2, 2, 2)
    atoms.rattle(0.02, seed=seed)
    rng = np.random.default_rng(seed)
    masses = atoms.get_masses()[:, None]
    momenta = rng.normal(size=(len(atoms), 3)) * np.sqrt(masses * units.kB * T_K)
    atoms.set_momenta(momenta - masses * momenta.sum(axis=0) / masses.sum())  # no centre-of-mass drift
    atoms.calc = ForcesOnlyLJ(**AR)
    return atoms


def distorted_cluster(seed: int = 3) -> Atoms:
    """13-atom Ar icosahedron (LJ nearest-neighbour spacing), rattled by 0.15 A."""
    atoms = Icosahedron("Ar", noshells=2, latticeconstant=2 ** (1 / 6) * AR["sigma"] * np.sqrt(2))
    atoms.center(vacuum=6.0)
    atoms.rattle(0.15, seed=seed)
    return atoms


@pytest.fixture(scope="module")
def reference_minimum() -> Atoms:
    """The distorted cluster relaxed by ASE's BFGS with the full (energy + forces) LJ."""
    atoms = distorted_cluster()
    atoms.calc = LennardJones(**STIFF)
    assert BFGS(atoms, logfile=None).run(fmax=1e-4, steps=500)
    return atoms


def assert_same_structure(a: Atoms, b: Atoms, tol: float = 0.02) -> None:
    """Same configuration up to a rigid motion: all pair distances agree within tol (A)."""
    da, db = a.get_all_distances(), b.get_all_distances()
    assert np.max(np.abs(da - db)) < tol, np.max(np.abs(da - db))


def test_forces_only_calculator_contract():
    atoms = argon_box()
    f = atoms.get_forces()
    assert f.shape == (len(atoms), 3) and np.all(np.isfinite(f))
    with pytest.raises(PropertyNotImplementedError):
        atoms.get_potential_energy()
    with pytest.raises(PropertyNotImplementedError):
        atoms.get_stress()


INTEGRATORS = {
    "VelocityVerlet": lambda a: VelocityVerlet(a, DT),
    "Langevin": lambda a: Langevin(
        a, DT, temperature_K=T_K, friction=0.01 / units.fs, fixcm=False, rng=np.random.default_rng(1)
    ),
    "Bussi": lambda a: Bussi(a, DT, temperature_K=T_K, taut=100 * units.fs, rng=np.random.default_rng(1)),
    "Andersen": lambda a: Andersen(a, DT, temperature_K=T_K, andersen_prob=0.05, rng=np.random.default_rng(1)),
    "NoseHooverChainNVT": lambda a: NoseHooverChainNVT(a, DT, temperature_K=T_K, tdamp=100 * units.fs),
    "NVTBerendsen": lambda a: NVTBerendsen(a, DT, temperature_K=T_K, taut=100 * units.fs),
}


@pytest.mark.parametrize("name", sorted(INTEGRATORS))
def test_integrator_runs_forces_only(name):
    atoms = argon_box()
    start = atoms.get_positions()
    dyn = INTEGRATORS[name](atoms)
    dyn.run(20)
    assert dyn.nsteps == 20
    f = atoms.get_forces()
    assert np.all(np.isfinite(f)) and np.all(np.isfinite(atoms.get_positions()))
    assert np.all(np.isfinite(atoms.get_momenta()))
    assert np.abs(atoms.get_positions() - start).max() > 1e-3  # it moved
    assert 0.0 < atoms.get_temperature() < 10 * T_K


def test_velocity_verlet_matches_full_calculator():
    """Forces-only changes nothing about the dynamics: same trajectory as full LJ."""
    a, b = argon_box(), argon_box()
    b.calc = LennardJones(**AR)
    VelocityVerlet(a, DT).run(20)
    VelocityVerlet(b, DT).run(20)
    np.testing.assert_allclose(a.get_positions(), b.get_positions(), atol=1e-10)
    np.testing.assert_allclose(a.get_momenta(), b.get_momenta(), atol=1e-10)


def test_ase_mdlogger_fails_forces_only(tmp_path):
    """Why ForcesOnlyMDLogger exists: MD with logfile= (MDLogger) asks for Epot."""
    atoms = argon_box()
    dyn = VelocityVerlet(atoms, DT, logfile=str(tmp_path / "md.log"))
    with pytest.raises(PropertyNotImplementedError):
        dyn.run(1)
    dyn.close()
    with pytest.raises(PropertyNotImplementedError):
        MDLogger(None, atoms, io.StringIO())()


def test_forces_only_md_logger_rows(tmp_path):
    atoms = argon_box()
    dyn = Langevin(atoms, DT, temperature_K=T_K, friction=0.02 / units.fs, fixcm=False, rng=np.random.default_rng(2))
    expected = []

    def record():
        expected.append(
            (
                dyn.get_time() / (1000 * units.fs),
                atoms.get_kinetic_energy(),
                atoms.get_temperature(),
                max_force(atoms.get_forces()),
            )
        )

    path = tmp_path / "md.log"
    with ForcesOnlyMDLogger(dyn, atoms, str(path), mode="w") as logger:
        dyn.attach(logger, interval=5)
        dyn.attach(record, interval=5)
        dyn.run(20)

    lines = path.read_text().splitlines()
    assert lines[0].split() == ["Time[ps]", "Ekin[eV]", "T[K]", "Fmax[eV/A]"]
    rows = np.array([[float(x) for x in line.split()] for line in lines[1:]])
    assert rows.shape == (5, 4)  # steps 0, 5, 10, 15, 20
    exp = np.array(expected)
    np.testing.assert_allclose(rows[:, 0], np.arange(0, 21, 5) * DT / (1000 * units.fs), atol=1e-4)
    np.testing.assert_allclose(rows[:, 1], exp[:, 1], atol=1e-4)
    np.testing.assert_allclose(rows[:, 2], exp[:, 2], atol=0.01)  # T[K], 2 decimals
    np.testing.assert_allclose(rows[:, 3], exp[:, 3], atol=1e-5)
    assert rows[-1, 2] == pytest.approx(atoms.get_temperature(), abs=0.01)
    # Columns agree with each other: ASE counts 3N degrees of freedom here, Ekin = 3N/2 kB T.
    np.testing.assert_allclose(rows[:, 1], 1.5 * len(atoms) * units.kB * rows[:, 2], rtol=1e-3, atol=1e-4)


def test_forces_only_md_logger_variants():
    atoms = argon_box()
    buf = io.StringIO()
    logger = ForcesOnlyMDLogger(None, atoms, buf, header=False, peratom=True)
    logger()
    (line,) = buf.getvalue().splitlines()
    ekin_n, temp, fmax = map(float, line.split())
    assert ekin_n == pytest.approx(atoms.get_kinetic_energy() / len(atoms), abs=1e-4)
    assert temp == pytest.approx(atoms.get_temperature(), abs=0.01)
    assert fmax == pytest.approx(max_force(atoms.get_forces()), abs=1e-5)


def test_trajectory_during_md(tmp_path):
    """ase.io.Trajectory works forces-only: frames carry forces and momenta, no energy."""
    atoms = argon_box()
    dyn = VelocityVerlet(atoms, DT, trajectory=str(tmp_path / "all.traj"))
    with Trajectory(str(tmp_path / "every5.traj"), "w", atoms) as traj:
        dyn.attach(traj.write, interval=5)
        dyn.run(20)
    dyn.close()

    with Trajectory(str(tmp_path / "all.traj")) as frames:
        assert len(frames) == 21
        last = frames[-1]
    np.testing.assert_allclose(last.get_positions(), atoms.get_positions())
    np.testing.assert_allclose(last.get_momenta(), atoms.get_momenta())
    np.testing.assert_allclose(last.get_forces(), atoms.get_forces())
    with pytest.raises(PropertyNotImplementedError):
        last.get_potential_energy()

    with Trajectory(str(tmp_path / "every5.traj")) as frames:
        assert len(frames) == 5
        assert all(np.all(np.isfinite(fr.get_forces())) for fr in frames)


def test_plain_ase_optimizers_fail_forces_only():
    """Why the ForcesOnly* optimizers exist: Optimizer.log reads the energy at step 0."""
    for cls in (FIRE, BFGS):
        atoms = distorted_cluster()
        atoms.calc = ForcesOnlyLJ(**STIFF)
        with pytest.raises(PropertyNotImplementedError):
            cls(atoms, logfile=None).run(fmax=0.05, steps=5)


def test_relax_default_matches_full_lj_bfgs(reference_minimum, tmp_path):
    atoms = distorted_cluster()
    atoms.calc = ForcesOnlyLJ(**STIFF)
    log = tmp_path / "relax.log"
    traj = tmp_path / "relax.traj"
    assert relax(atoms, fmax=0.05, logfile=str(log), trajectory=str(traj)) is True
    assert max_force(atoms.get_forces()) < 0.05
    assert_same_structure(atoms, reference_minimum)

    text = log.read_text().splitlines()
    assert "fmax" in text[0] and "Energy" not in text[0]
    assert text[1].startswith("ForcesOnlyFIRE:") and len(text) >= 3
    with Trajectory(str(traj)) as frames:
        assert len(frames) == len(text) - 1  # one frame per logged step
        assert max_force(frames[-1].get_forces()) < 0.05


@pytest.mark.parametrize("name", sorted(FORCES_ONLY_OPTIMIZERS))
def test_every_forces_only_optimizer_converges(name, reference_minimum):
    atoms = distorted_cluster()
    atoms.calc = ForcesOnlyLJ(**STIFF)
    assert relax(atoms, fmax=0.05, steps=1000, optimizer=name)
    assert max_force(atoms.get_forces()) < 0.05
    assert_same_structure(atoms, reference_minimum)


def test_forces_only_optimizers_refuse_energy_options():
    atoms = distorted_cluster()
    atoms.calc = ForcesOnlyLJ(**STIFF)
    with pytest.raises(ValueError, match="energies"):
        ForcesOnlyFIRE(atoms, downhill_check=True)
    with pytest.raises(ValueError, match="energies"):
        ForcesOnlyLBFGS(atoms, use_line_search=True)
    with pytest.raises(ValueError, match="unknown optimizer"):
        relax(atoms, optimizer="BFGSLineSearch")
    with pytest.raises(TypeError):
        relax(atoms, optimizer=BFGS)
    bare = distorted_cluster()
    with pytest.raises(ValueError, match="calculator"):
        relax(bare)


def test_relax_reports_non_convergence():
    atoms = distorted_cluster()
    atoms.calc = ForcesOnlyLJ(**STIFF)
    assert relax(atoms, fmax=0.05, steps=2) is False


# --------------------------------------------------------------------------------------------------
# the same tools with the real DenoiseCalculator (a trained model: the zoo's lj-argon-94K)
# --------------------------------------------------------------------------------------------------
def argon_crystal() -> Atoms:
    """32 Ar atoms on the fcc lattice at the zoo model's liquid density (cubic box 11.56 A)."""
    return bulk("Ar", "fcc", a=5.78, cubic=True).repeat(2)


def rms_from_lattice(atoms: Atoms, lattice: Atoms) -> float:
    d = atoms.positions - lattice.positions
    d -= d.mean(axis=0)  # up to a rigid translation
    return float(np.sqrt((d**2).sum(axis=1).mean()))


def test_relax_with_the_denoiser_returns_a_rattled_crystal_to_its_lattice(zoo_argon, tmp_path):
    """The fcc lattice is a minimum of the learned (smoothed) free energy: relaxing a crystal rattled
    by 0.3 A RMS on the denoiser's forces alone brings it back to within 0.05 A of the lattice
    (measured 0.02 A, from max force 0.10 eV/A to < 0.002 eV/A in under 100 FIRE steps)."""
    lattice = argon_crystal()
    atoms = lattice.copy()
    atoms.rattle(0.2, seed=1)
    atoms.calc = DenoiseCalculator(zoo_argon)
    start = rms_from_lattice(atoms, lattice)
    assert start > 0.25 and max_force(atoms.get_forces()) > 0.05
    log, traj = tmp_path / "relax.log", tmp_path / "relax.traj"
    assert relax(atoms, fmax=0.002, steps=500, logfile=str(log), trajectory=str(traj)) is True
    assert max_force(atoms.get_forces()) < 0.002
    assert rms_from_lattice(atoms, lattice) < 0.05
    text = log.read_text().splitlines()
    assert "fmax" in text[0] and "Energy" not in text[0] and text[1].startswith("ForcesOnlyFIRE:")
    with Trajectory(str(traj)) as frames:
        assert len(frames) == len(text) - 1  # one frame per logged step
        np.testing.assert_allclose(frames[-1].get_forces(), atoms.get_forces(), atol=1e-12)
        with pytest.raises(PropertyNotImplementedError):
            frames[-1].get_potential_energy()


def test_forces_only_md_logger_with_the_denoiser(zoo_argon, tmp_path):
    atoms = argon_crystal()
    atoms.rattle(0.05, seed=2)
    atoms.calc = DenoiseCalculator(zoo_argon)
    dyn = Langevin(atoms, 10 * units.fs, temperature_K=94.4, friction=0.01 / units.fs, fixcm=False,
                   rng=np.random.default_rng(3))
    expected = []
    path = tmp_path / "md.log"
    with ForcesOnlyMDLogger(dyn, atoms, str(path), mode="w") as logger:
        dyn.attach(logger, interval=5)
        dyn.attach(lambda: expected.append((atoms.get_kinetic_energy(), atoms.get_temperature(),
                                            max_force(atoms.get_forces()))), interval=5)
        dyn.run(20)
    lines = path.read_text().splitlines()
    assert lines[0].split() == ["Time[ps]", "Ekin[eV]", "T[K]", "Fmax[eV/A]"]
    rows = np.array([[float(x) for x in line.split()] for line in lines[1:]])
    exp = np.array(expected)
    assert rows.shape == (5, 4) and exp[:, 2].min() > 1e-3  # the denoiser's forces are not zero
    np.testing.assert_allclose(rows[:, 0], np.arange(0, 21, 5) * 10 / 1000, atol=1e-4)
    np.testing.assert_allclose(rows[:, 1], exp[:, 0], atol=1e-4)  # Ekin, eV (4 decimals)
    np.testing.assert_allclose(rows[:, 2], exp[:, 1], atol=0.01)  # T, K (2 decimals)
    np.testing.assert_allclose(rows[:, 3], exp[:, 2], atol=1e-5)  # Fmax, eV/A (5 decimals)


# --------------------------------------------------------------------------------------------------
# run_langevin: observers, stop hooks, collapse detection, streamed trajectories
# --------------------------------------------------------------------------------------------------
@pytest.fixture
def crystal(zoo_argon):
    atoms = argon_crystal()
    atoms.rattle(0.05, seed=0)
    atoms.calc = DenoiseCalculator(zoo_argon)
    return atoms


def test_run_langevin_calls_observers_at_the_interval(crystal, tmp_path):
    seen = []

    def observer(atoms, step):
        assert atoms is crystal
        seen.append((step, atoms.positions.copy(), atoms.get_forces().copy()))

    traj = tmp_path / "md.traj"
    result = run_langevin(crystal, temperature_K=94.4, steps=20, interval=5, observers=[observer],
                          trajectory=str(traj), seed=1)
    assert [s for s, _, _ in seen] == [0, 5, 10, 15, 20]
    assert result["steps"] == 20 and result["stopped"] is None
    frames = ase.io.read(traj, index=":")
    assert len(frames) == 5
    for (_, positions, forces), frame in zip(seen, frames):  # the file holds what the observers saw
        np.testing.assert_allclose(frame.positions, positions, atol=1e-12)
        np.testing.assert_allclose(frame.get_forces(), forces, atol=1e-12)
    assert not np.allclose(seen[0][1], seen[-1][1])  # it moved
    assert 3.0 < result["min_distance"] < 4.0 and result["min_distance_step"] in (0, 5, 10, 15, 20)


def test_a_stop_hook_ends_the_run_cleanly(crystal, tmp_path):
    calls = []

    def stop(atoms, step):
        calls.append(step)
        return "enough" if step >= 10 else None

    traj = tmp_path / "md.extxyz"
    result = run_langevin(crystal, temperature_K=94.4, steps=50, interval=5, stop=stop, trajectory=str(traj))
    assert result["stopped"] == "enough" and result["steps"] == 10 < 50
    assert calls == [0, 5, 10]
    assert len(ase.io.read(traj, index=":")) == 3  # steps 0, 5, 10: a complete file
    assert leftovers(tmp_path, {"md.extxyz"}) == []


class HarmonicTrap(Calculator):
    """Forces only: every atom pulled to the centre of the box, ``F = -k (r - centre)``, eV/A."""

    implemented_properties = ["forces"]

    def __init__(self, k: float):
        super().__init__()
        self.k = k

    def calculate(self, atoms=None, properties=("forces",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        centre = self.atoms.cell.array.sum(axis=0) / 2
        self.results = {"forces": -self.k * (self.atoms.positions - centre)}


def test_min_distance_stop_ends_a_collapse():
    atoms = argon_crystal()
    atoms.calc = HarmonicTrap(k=0.05)  # the crystal collapses to the centre of the box
    assert min_pair_distance(atoms) == pytest.approx(5.78 / np.sqrt(2))
    result = run_langevin(atoms, temperature_K=10.0, steps=2000, interval=5, timestep_fs=5.0, min_distance_stop=2.0)
    assert result["stopped"] is not None and "< 2.0 A" in result["stopped"]
    assert 0 < result["steps"] < 2000 and result["steps"] % 5 == 0
    assert result["min_distance"] < 2.0 and result["min_distance_step"] == result["steps"]
    assert min_pair_distance(atoms) == pytest.approx(result["min_distance"])  # stopped right there


def test_the_trajectory_is_streamed_and_kept_up_to_a_failure(crystal, tmp_path):
    """Frames reach the file as the run goes: an observer can see the temporary file grow, and when
    the run dies (here: an exception in an observer at step 30) the frames written so far are kept."""
    traj = tmp_path / "md.traj"
    sizes = []

    def watch(atoms, step):
        (tmp,) = [p for p in tmp_path.iterdir() if p.name.startswith(".tmp-")]
        sizes.append(os.path.getsize(tmp))
        if step == 30:
            raise RuntimeError("observer failed at step 30")

    positions = []
    with pytest.raises(RuntimeError, match="step 30"):
        run_langevin(crystal, temperature_K=94.4, steps=100, interval=10, trajectory=str(traj),
                     observers=[lambda atoms, step: positions.append(atoms.positions.copy()), watch])
    assert sizes == sorted(sizes) and len(set(sizes)) == 4  # grew with every frame
    frames = ase.io.read(traj, index=":")
    assert len(frames) == 4  # steps 0, 10, 20, 30
    np.testing.assert_allclose(frames[-1].positions, positions[-1], atol=1e-12)
    assert leftovers(tmp_path, {"md.traj"}) == []


def test_single_frame_trajectory_formats_are_refused_before_the_run(crystal, tmp_path):
    start = crystal.positions.copy()
    with pytest.raises(ValueError, match=r"cannot write trajectory .*POSCAR.*single frame"):
        run_langevin(crystal, temperature_K=94.4, steps=5, trajectory=str(tmp_path / "POSCAR"))
    np.testing.assert_array_equal(crystal.positions, start)
    assert list(tmp_path.iterdir()) == []


def test_md_at_another_temperature_than_the_models_is_refused_unless_allowed(argon_model, argon):
    """A learned force field is its data's temperature's: run_langevin and ReplicaLangevin refuse 300 K
    with a 94.4 K model (API), name both temperatures, and run when told to; other calculators
    (which state no training temperature) are not checked."""
    from ase_denoise.md import ReplicaLangevin

    argon.calc = DenoiseCalculator(argon_model)
    for T in (300.0, 5000.0):
        with pytest.raises(ValueError, match=rf"MD at {T:g} K with a model trained at 94.4 K.*allow_other_temperature"):
            run_langevin(argon, temperature_K=T, steps=1)
        with pytest.raises(ValueError, match="allow_other_temperature"):
            ReplicaLangevin(argon_model, [argon], temperature_K=T)
    assert run_langevin(argon, temperature_K=300.0, steps=2, allow_other_temperature=True)["steps"] == 2
    assert ReplicaLangevin(argon_model, [argon], temperature_K=300.0, allow_other_temperature=True).run(2)["steps"] == 2
    assert run_langevin(argon, temperature_K=94.4, steps=2)["steps"] == 2
    other = argon_crystal()
    other.calc = LennardJones(sigma=3.4, epsilon=0.0104, rc=8.0)
    assert run_langevin(other, temperature_K=300.0, steps=2)["steps"] == 2
