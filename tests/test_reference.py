"""Reference systems: exact dimer sampling, LJ argon potential, Langevin sampling, caching, extxyz I/O.

Statistical checks use a tolerance of several standard errors estimated from the samples, and every
sampler is seeded, so the tests are deterministic; each check would fail for the plausible bug it
names (missing Jacobian d^2, wrong kT, wrong force sign/scale, frames not thermalised, ...).
"""

from __future__ import annotations

import time

import ase.io
import numpy as np
import pytest
from ase import Atoms, units
from ase.calculators.lj import LennardJones
from matscipy.calculators.pair_potential import LennardJonesCut
from matscipy.neighbours import neighbour_list

from ase_denoise.data import DataError, read_frames
from ase_denoise.data.reference import (
    ARGON_CUTOFF_A,
    ARGON_EPSILON_EV,
    ARGON_SIGMA_A,
    harmonic_dimer_forces,
    lj_argon_calculator,
    lj_argon_forces,
    lj_argon_frames,
    rms_force,
    sample_harmonic_dimer,
)

# A soft bond, so the d^2 Jacobian shifts <d> by ~2 kT/(k d0) = 0.05 A, ~50 standard errors.
K, D0, T = 1.0, 1.0, 300.0
KT = units.kB * T
N_DIMER = 20000


@pytest.fixture(scope="module")
def dimer_frames():
    return sample_harmonic_dimer(N_DIMER, k=K, d0=D0, temperature_K=T, seed=3, box=10.0)


def _bonds(frames):
    pos = np.stack([a.positions for a in frames])
    return pos[:, 1] - pos[:, 0]


# ---------------------------------------------------------------------------------------------- dimer
def test_dimer_bond_moments_match_exact_density(dimer_frames):
    d = np.linalg.norm(_bonds(dimer_frames), axis=1)
    grid = np.linspace(1e-6, D0 + 12 * np.sqrt(KT / K), 200001)
    w = grid**2 * np.exp(-K * (grid - D0) ** 2 / (2 * KT))
    z = np.trapezoid(w, grid)
    mean = np.trapezoid(grid * w, grid) / z
    var = np.trapezoid((grid - mean) ** 2 * w, grid) / z
    se_mean = np.sqrt(var / d.size)
    se_var = var * np.sqrt(2.0 / d.size)
    assert abs(d.mean() - mean) < 4 * se_mean
    assert abs(d.var() - var) < 4 * se_var
    # power check: the Jacobian-free 1D Gaussian (mean d0) is rejected by far
    assert abs(d.mean() - D0) > 20 * se_mean


def test_dimer_directions_uniform_and_com_in_box(dimer_frames):
    b = _bonds(dimer_frames)
    u = b / np.linalg.norm(b, axis=1, keepdims=True)
    assert np.all(np.abs(u.mean(axis=0)) < 4 / np.sqrt(3 * N_DIMER))
    # <u u^T> = I/3; each entry has std <= ~0.3/sqrt(n)
    assert np.allclose(u.T @ u / N_DIMER, np.eye(3) / 3, atol=4 * 0.3 / np.sqrt(N_DIMER))
    com = np.stack([a.positions.mean(axis=0) for a in dimer_frames])
    assert com.min() >= 0.0 and com.max() < 10.0
    assert abs(com.mean() - 5.0) < 0.1


def test_dimer_forces_along_bond_and_newton(dimer_frames):
    for atoms in dimer_frames[:50]:
        f = atoms.arrays["ref_forces"]
        assert f.dtype == np.float64 and f.shape == (2, 3)
        np.testing.assert_allclose(f, harmonic_dimer_forces(atoms.positions, K, D0))
        np.testing.assert_allclose(f.sum(axis=0), 0.0, atol=1e-14)
        b = atoms.positions[1] - atoms.positions[0]
        d = np.linalg.norm(b)
        np.testing.assert_allclose(f[1], -K * (d - D0) * b / d, rtol=1e-12, atol=1e-15)
    # explicit values: stretched bond along x pulls atom 1 back with k (d - d0)
    f = harmonic_dimer_forces(np.array([[0.0, 0, 0], [1.5, 0, 0]]), k=2.0, d0=1.0)
    np.testing.assert_allclose(f, [[1.0, 0, 0], [-1.0, 0, 0]])
    with pytest.raises(ValueError):
        harmonic_dimer_forces(np.zeros((2, 3)), 1.0, 1.0)


def test_dimer_forces_equal_kT_grad_log_rho_virial(dimer_frames):
    """Stein identity E[F (x) b] = -kT I for the bond vector b (Cartesian virial theorem).

    It holds iff the samples follow exp(-U/kT) with F = -grad U: a missing Jacobian, a wrong kT or
    a wrong force scale all break it. Its trace gives <F_bond d> = -3 kT; the often quoted
    <F_bond (d - d0)> = -kT is only approximate (off by O(kT/(k d0^2))), checked loosely.
    """
    b = _bonds(dimer_frames)
    f1 = np.stack([a.arrays["ref_forces"][1] for a in dimer_frames])
    prod = f1[:, :, None] * b[:, None, :]  # (n, 3, 3)
    mean = prod.mean(axis=0)
    se = prod.std(axis=0) / np.sqrt(N_DIMER)
    assert np.all(np.abs(mean + KT * np.eye(3)) < 4 * se + 1e-12)
    d = np.linalg.norm(b, axis=1)
    f_bond = np.sum(f1 * b, axis=1) / d
    virial = f_bond * d
    assert abs(virial.mean() + 3 * KT) < 4 * virial.std() / np.sqrt(N_DIMER)
    assert np.mean(f_bond * (d - D0)) == pytest.approx(-KT, rel=0.1)


def test_dimer_seeded_and_extxyz_round_trip(dimer_frames, tmp_path):
    a = sample_harmonic_dimer(5, temperature_K=250, seed=7)
    b = sample_harmonic_dimer(5, temperature_K=250, seed=7)
    c = sample_harmonic_dimer(5, temperature_K=250, seed=8)
    np.testing.assert_array_equal(a[2].positions, b[2].positions)
    assert not np.allclose(a[2].positions, c[2].positions)
    np.testing.assert_allclose(a[0].positions.mean(axis=0), 0.0, atol=1e-12)  # no box: COM at origin
    assert not a[0].pbc.any() and a[0].cell.rank == 0

    path = tmp_path / "dimer.extxyz"
    ase.io.write(path, dimer_frames[:10], format="extxyz")
    back = read_frames(path)
    assert len(back) == 10
    for orig, new in zip(dimer_frames[:10], back):
        assert not new.pbc.any() and new.cell.rank == 0
        assert new.get_chemical_symbols() == ["H", "H"]
        np.testing.assert_allclose(new.positions, orig.positions, atol=1e-8)
        np.testing.assert_allclose(new.arrays["ref_forces"], orig.arrays["ref_forces"], atol=1e-8)
        assert new.arrays["ref_forces"].dtype == np.float64
        assert isinstance(new.info["temperature_K"], float) and new.info["temperature_K"] == T


def test_read_frames_errors_name_the_path(tmp_path):
    empty = tmp_path / "empty.extxyz"
    empty.write_text("")
    with pytest.raises(DataError, match=r"empty.extxyz' is empty"):
        read_frames(empty)
    junk = tmp_path / "junk.extxyz"
    junk.write_text("this is not\nan extxyz file\n")
    with pytest.raises(DataError, match=r"could not read frames from .*junk.extxyz"):
        read_frames(junk)
    with pytest.raises(DataError, match=r"missing.extxyz' does not exist"):
        read_frames(tmp_path / "missing.extxyz")


# ------------------------------------------------------------------------------------------ LJ argon
def _ar_pair(r: float) -> Atoms:
    return Atoms("Ar2", positions=[[0, 0, 0], [r, 0, 0]], cell=[30.0, 30.0, 30.0], pbc=True)


def test_lj_pair_energy_shifted_and_minimum():
    calc = lj_argon_calculator()
    x6 = (ARGON_SIGMA_A / ARGON_CUTOFF_A) ** 6
    shift = 4 * ARGON_EPSILON_EV * (x6 * x6 - x6)
    atoms = _ar_pair(2 ** (1 / 6) * ARGON_SIGMA_A)
    atoms.calc = calc
    assert atoms.get_potential_energy() == pytest.approx(-ARGON_EPSILON_EV - shift, rel=1e-10)
    np.testing.assert_allclose(atoms.get_forces(), 0.0, atol=1e-12)  # force zero at the minimum
    for r in (ARGON_CUTOFF_A - 1e-7, ARGON_CUTOFF_A + 1e-7):
        atoms = _ar_pair(r)
        atoms.calc = lj_argon_calculator()
        assert abs(atoms.get_potential_energy()) < 1e-10  # continuous energy, zero at the cutoff


@pytest.fixture(scope="module")
def lj_cache(tmp_path_factory):
    """60 short-stride frames (about 1 s), written to a cache directory; returns (frames, dir, seconds)."""
    cache = tmp_path_factory.mktemp("lj_cache")
    start = time.perf_counter()
    frames = lj_argon_frames(60, seed=1, cache_dir=cache, stride=10, melt_steps=300, equilibration_steps=300)
    return frames, cache, time.perf_counter() - start


def test_lj_forces_are_minus_energy_gradient(lj_cache):
    atoms = lj_cache[0][5].copy()
    atoms.calc = lj_argon_calculator()
    forces = atoms.get_forces()
    h = 1e-4
    rng = np.random.default_rng(0)
    for i in rng.choice(len(atoms), size=6, replace=False):
        for c in range(3):
            energies = []
            for sign in (1, -1):
                shifted = atoms.copy()
                shifted.positions[i, c] += sign * h
                shifted.calc = lj_argon_calculator()
                energies.append(shifted.get_potential_energy())
            numeric = -(energies[0] - energies[1]) / (2 * h)
            assert numeric == pytest.approx(forces[i, c], abs=1e-7, rel=1e-5)


def test_lj_matches_ase_lennard_jones(lj_cache):
    atoms = lj_cache[0][0].copy()
    ours = lj_argon_forces(atoms)
    atoms.calc = LennardJones(sigma=ARGON_SIGMA_A, epsilon=ARGON_EPSILON_EV, rc=ARGON_CUTOFF_A, smooth=False)
    np.testing.assert_allclose(ours, atoms.get_forces(), atol=1e-12)
    assert atoms.get_potential_energy() == pytest.approx(lj_cache[0][0].info["ref_energy"], abs=1e-6)


def test_lj_frames_state_and_ref_forces(lj_cache):
    frames = lj_cache[0]
    assert len(frames) == 60
    for atoms in frames[::10]:
        assert len(atoms) == 108 and atoms.pbc.all()
        assert atoms.info["temperature_K"] == pytest.approx(94.4)
        np.testing.assert_allclose(np.diag(atoms.cell.array), 17.34, atol=0.01)
        assert len(atoms) / atoms.get_volume() == pytest.approx(0.0207, rel=0.005)
        scaled = atoms.get_scaled_positions(wrap=False)
        assert scaled.min() >= 0.0 and scaled.max() < 1.0
        ref = atoms.arrays["ref_forces"]
        assert ref.dtype == np.float64 and ref.shape == (108, 3)
        np.testing.assert_allclose(ref, lj_argon_forces(atoms), atol=1e-6)
        np.testing.assert_allclose(ref.sum(axis=0), 0.0, atol=1e-6)
    assert 0.02 < rms_force(frames) < 0.07  # liquid argon near the triple point: ~0.043 eV/A


def test_lj_sampling_temperature_and_liquid(lj_cache):
    frames = lj_cache[0]
    # kinetic temperature: per frame std is T sqrt(2/(3N)) = 7%, 60 frames -> ~1.5 K
    t_kin = np.mean([a.get_temperature() for a in frames])
    assert t_kin == pytest.approx(94.4, rel=0.05)
    # configurational temperature kT = <|grad U|^2> / <Lap U> probes the positions alone
    lj = LennardJonesCut(ARGON_EPSILON_EV, ARGON_SIGMA_A, ARGON_CUTOFF_A)
    num = den = 0.0
    for atoms in frames:
        d = neighbour_list("d", atoms, ARGON_CUTOFF_A)
        den += np.sum(lj.second_derivative(d) + 2 * lj.first_derivative(d) / d)  # sum over ordered pairs
        num += np.sum(atoms.arrays["ref_forces"] ** 2)
    assert num / den / units.kB == pytest.approx(94.4, rel=0.06)
    # melted: fcc order parameter |<exp(i k.r)>|^2 at k = (4 pi / a, 0, 0) is ~1 in the crystal
    # (0.6 at 94 K) and ~S(k)/N ~ 0.02 in the liquid
    a = frames[0].cell[0, 0] / 3
    k = np.array([4 * np.pi / a, 0.0, 0.0])
    order = np.mean([abs(np.exp(1j * atoms.positions @ k).mean()) ** 2 for atoms in frames])
    assert order < 0.1


def test_lj_cache_reuses_file(lj_cache):
    frames, cache, first_seconds = lj_cache
    files = list(cache.iterdir())
    assert len(files) == 1 and files[0].suffix == ".extxyz"
    assert all(s in files[0].name for s in ("n60", "T94.4", "seed1", "stride10", "eq300", "melt300"))
    start = time.perf_counter()
    again = lj_argon_frames(60, seed=1, cache_dir=cache, stride=10, melt_steps=300, equilibration_steps=300)
    assert time.perf_counter() - start < 0.3 * first_seconds
    assert len(again) == len(frames)
    for x, y in zip(frames, again):
        np.testing.assert_array_equal(x.positions, y.positions)
        np.testing.assert_array_equal(x.arrays["ref_forces"], y.arrays["ref_forces"])
        assert y.info["temperature_K"] == x.info["temperature_K"]
        np.testing.assert_array_equal(x.cell.array, y.cell.array)
    assert list(cache.iterdir()) == files  # nothing new written, no temporary files left


def test_lj_refuses_small_box():
    with pytest.raises(ValueError, match="half the shortest box"):
        lj_argon_frames(1, n_cells=2, melt_steps=0, equilibration_steps=0, stride=1)
