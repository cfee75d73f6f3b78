"""Which ASE tools work with a forces-only calculator, and ase_denoise.md's replacements.

The stand-in for the denoiser calculator is ``ForcesOnlyLJ``: Lennard-Jones forces,
``implemented_properties = ["forces"]``, energy and stress raise
``PropertyNotImplementedError`` just as ``ase_denoise``'s calculator does.
"""

from __future__ import annotations

import io

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

from ase_denoise.md import (
    FORCES_ONLY_OPTIMIZERS,
    ForcesOnlyFIRE,
    ForcesOnlyLBFGS,
    ForcesOnlyMDLogger,
    max_force,
    relax,
)

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
