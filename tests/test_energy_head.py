"""The free-energy head (``ModelConfig.head = "energy"``, docs/energy-head.md).

Untrained models check the mathematics in float32 and float64: forces are ``-dA/dx`` (central
differences, 1e-6 relative in float64), ``A`` is invariant and the forces equivariant, the
multi-level correction and the priors keep forces the gradient of the returned energy, files round
trip. A small trained model (Lennard-Jones argon, 20 s of training) then runs what the energy opens:
every ASE optimizer that needs energies, ``MDLogger``, ``ase.mep.NEB`` and an NVE run whose total
energy is conserved. The harmonic dimer checks that the learned ``A`` has the right curvature.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from ase import Atoms, units
from ase.build import bulk
from ase.calculators.calculator import PropertyNotImplementedError
from ase.md.langevin import Langevin
from ase.md.logger import MDLogger
from ase.md.velocitydistribution import thermalize_momenta
from ase.md.verlet import VelocityVerlet

from ase_denoise import DenoiseCalculator, TrainConfig, load_model, save_model, train
from ase_denoise.config import ModelConfig, PhysicsConfig
from ase_denoise.forces import extrapolation_weights
from ase_denoise.model import build_model
from ase_denoise.priors import RepulsiveWall
from ase_denoise.testing import (
    equivariance_errors,
    free_energy,
    free_energy_gradient_error,
    free_energy_invariance_errors,
    net_force,
)
from ase_denoise.forces import ForcesChoice

from _helpers import ARGON_TINY

ENERGY_TINY = dict(ARGON_TINY, head="energy", energy_mlp=8)
LEVELS = (0.02, 0.035, 0.05)
WALL = RepulsiveWall({(18, 18): 3.7}, epsilon=0.01, width=0.1)


def energy_model(dtype=torch.float64, levels=(0.05,), priors=(), seed=0):
    config = ModelConfig(atomic_numbers=[18], noise_embedding=2 if len(levels) > 1 else 0, **ENERGY_TINY)
    physics = PhysicsConfig(94.4, levels, (True, True, True), priors=[p.to_dict() for p in priors])
    return build_model(config, physics, dtype, seed=seed)


def cluster(seed=0) -> Atoms:
    """13 Ar atoms (icosahedron-like, non-periodic), rattled."""
    from ase.cluster import Icosahedron

    atoms = Icosahedron("Ar", 2, latticeconstant=5.3)
    atoms.rattle(0.1, seed=seed)
    return atoms


# ------------------------------------------------------------------------------------------------
# mathematics, untrained
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("levels,priors", [((0.05,), ()), (LEVELS, ()), (LEVELS, (WALL,))],
                         ids=["one-level", "ladder-corrected", "ladder+wall"])
def test_forces_are_minus_the_gradient_of_the_free_energy(levels, priors, argon):
    """Central differences of ``A`` (float64) give the returned forces to 1e-6 relative, including the
    sigma -> 0 correction (energy and forces extrapolated with the same weights) and the wall prior."""
    model = energy_model(levels=levels, priors=priors)
    argon.rattle(0.1, seed=4)
    if priors:  # the wall must act: some pair inside r_on = 3.7 A
        assert np.sort(argon.get_all_distances(mic=True).ravel())[len(argon)] < 3.7
    assert free_energy_gradient_error(model, argon, n_components=8) < 1e-6
    for level in levels[:1] if len(levels) > 1 else ():
        assert free_energy_gradient_error(model, argon, n_components=4, forces=ForcesChoice(noise_std=level)) < 1e-6


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-10), (torch.float32, 1e-3)], ids=["float64", "float32"])
def test_free_energy_is_invariant_and_forces_equivariant(dtype, tol, argon):
    model = energy_model(dtype=dtype, levels=LEVELS)
    for atoms in (cluster(), argon):
        model.physics.pbc = tuple(bool(x) for x in atoms.pbc)
        errors = free_energy_invariance_errors(model, atoms, seed=1, forces=ForcesChoice(noise_std=LEVELS[0]))
        assert max(errors.values()) < tol, errors
        out = equivariance_errors(model, atoms, seed=1, noise_std=LEVELS[0])
        scale = float(np.abs(free_energy(model, atoms, ForcesChoice(noise_std=LEVELS[0]))[1]).max()) * LEVELS[0] / model.kT
        assert max(out.values()) < 10 * tol * max(scale, 1.0), out
        # a translation-invariant A has zero net force (Newton's third law, up to rounding)
        assert net_force(model, atoms, noise_std=LEVELS[0]) < 10 * tol * max(scale, 1.0)


def test_corrected_free_energy_is_the_weighted_levels(argon):
    model = energy_model(levels=LEVELS)
    levels = [free_energy(model, argon, ForcesChoice(noise_std=s)) for s in LEVELS]
    energy, forces = free_energy(model, argon)
    w = extrapolation_weights(LEVELS)
    assert energy == pytest.approx(sum(wi * e for wi, (e, _) in zip(w, levels)), rel=1e-12, abs=1e-14)
    np.testing.assert_allclose(forces, sum(wi * f for wi, (_, f) in zip(w, levels)), rtol=1e-10, atol=1e-14)


def test_network_output_is_sigma_over_kT_times_the_forces(argon):
    """The training target's units: ``eps_hat = sigma * F / kT`` at every level."""
    from ase_denoise.testing import model_output

    model = energy_model(levels=LEVELS)
    for s in LEVELS:
        _, forces = free_energy(model, argon, ForcesChoice(noise_std=s))
        np.testing.assert_allclose(model_output(model, argon, s), forces * s / model.kT, rtol=1e-10, atol=1e-15)


def test_calculator_gives_energy_free_energy_and_forces_but_no_stress(argon, tmp_path):
    model = energy_model(levels=LEVELS, priors=(WALL,))
    calc = DenoiseCalculator(model)
    assert set(calc.implemented_properties) == {"energy", "free_energy", "forces"}
    argon.calc = calc
    energy, forces = free_energy(model, argon)
    assert argon.get_potential_energy() == pytest.approx(energy, rel=1e-12)
    assert argon.get_potential_energy(force_consistent=True) == argon.get_potential_energy()
    np.testing.assert_allclose(argon.get_forces(), forces, rtol=1e-12, atol=1e-15)
    with pytest.raises(PropertyNotImplementedError, match="free energy.*not the CG pressure"):
        argon.get_stress()
    # a file round trip keeps the head and gives the same energy
    path = tmp_path / "energy.safetensors"
    save_model(model, path)
    loaded = load_model(path)
    assert loaded.config.head == "energy" and loaded.config.energy_mlp == 8
    assert free_energy(loaded, argon)[0] == pytest.approx(energy, rel=1e-12)


def test_forces_only_heads_still_refuse_energies(argon, argon_model):
    argon.calc = DenoiseCalculator(argon_model)
    with pytest.raises(PropertyNotImplementedError, match="'vector' head learns forces.*--head energy"):
        argon.get_potential_energy()
    with pytest.raises(ValueError, match="head='energy'"):
        free_energy(argon_model, argon)


def test_training_reaches_the_readouts_through_the_double_backward(argon):
    """One training step of the energy head updates the readouts' weights: the loss, a function of
    ``dA/dx``, is differentiated again with respect to the parameters."""
    model = energy_model(levels=(0.05,))
    model.train()
    from ase_denoise.data import to_frame
    from ase_denoise.data.graphs import collate

    frame = to_frame(argon, [18])
    data = collate([frame.positions], [frame], 1, model.config.r_max, torch.float64, torch.device("cpu"))
    loss = (model(data) ** 2).sum()
    loss.backward()
    grads = {n: p.grad for n, p in model.named_parameters() if n.startswith("energy_readouts.")}
    assert grads and all(g is not None and float(g.abs().max()) > 0 for g in grads.values())


# ------------------------------------------------------------------------------------------------
# what the energy opens, on a trained model
# ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def trained(lj_argon_small, tmp_path_factory):
    """An energy-head model trained on 60 Lennard-Jones argon frames (sigma 0.04 A, 12 epochs, ~20 s;
    held-out force cosine ~0.99)."""
    frames, _ = lj_argon_small
    result = train(
        frames, str(tmp_path_factory.mktemp("energy_run")), noise_std=0.04, head="energy", r_max=5.0,
        num_channels=8, max_L=1, max_ell=1, num_interactions=2, correlation=2, radial_mlp=[16, 16],
        train_config=TrainConfig(n_duplicates=2, epochs=12, batch_size=4, lr=5e-3, seed=0, dtype="float32"),
    )
    return result.model


def crystal() -> Atoms:
    """32 Ar atoms on the fcc lattice at the liquid's density (cubic box 11.56 A)."""
    return bulk("Ar", "fcc", a=5.78, cubic=True).repeat(2)


def test_trained_model_forces_match_the_lennard_jones_forces(trained, lj_argon_small):
    from ase_denoise.analysis import force_metrics
    from ase_denoise.data import to_frame
    from ase_denoise.inference import evaluate_forces

    _, test = lj_argon_small
    pred, ref = evaluate_forces(trained, [to_frame(a, [18]) for a in test])
    assert force_metrics(pred, ref)["cosine"] > 0.97


# SciPyFmin and SciPyFminPowell (energies only) are left out: in ASE 3.29 their run() ends in a
# TypeError from its own convergence check (fmax is never set) with any calculator, ASE's LJ included.
OPTIMIZERS = ["BFGSLineSearch", "LBFGSLineSearch", "LBFGS-line-search", "FIRE-downhill", "GPMin",
              "GoodOldQuasiNewton", "PreconLBFGS", "PreconFIRE", "SciPyFminCG", "SciPyFminBFGS", "BFGS", "FIRE"]


def _optimizer(name, atoms):
    import ase.optimize as opt
    from ase.optimize.precon import Exp, PreconFIRE, PreconLBFGS
    from ase.optimize.sciopt import SciPyFminBFGS, SciPyFminCG

    if name == "LBFGS-line-search":
        return opt.LBFGS(atoms, use_line_search=True, logfile=None)
    if name == "FIRE-downhill":
        return opt.FIRE(atoms, downhill_check=True, logfile=None)
    if name in ("PreconLBFGS", "PreconFIRE"):
        cls = {"PreconLBFGS": PreconLBFGS, "PreconFIRE": PreconFIRE}[name]
        return cls(atoms, precon=Exp(), logfile=None)
    if name in ("SciPyFminCG", "SciPyFminBFGS"):
        return {"SciPyFminCG": SciPyFminCG, "SciPyFminBFGS": SciPyFminBFGS}[name](atoms, logfile=None)
    return getattr(opt, name)(atoms, logfile=None)


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_every_ase_optimizer_relaxes_on_the_learned_free_energy(name, trained):
    """Optimizers with line searches, trust radii and energy checks (md.py lists why they fail
    forces-only) run unchanged: a crystal rattled by 0.1 A returns to within 0.02 A of the lattice,
    a minimum of the learned A (measured 0.004-0.01 A), and A goes down to the lattice's value. LJ
    argon's forces are small (RMS 0.04 eV/A), so fmax is 2e-4 eV/A, and the calculator runs in
    float64: line searches compare energies that differ by ~1e-7 eV near the minimum."""
    lattice = crystal()
    lattice.calc = DenoiseCalculator(trained, dtype=torch.float64)
    assert np.abs(lattice.get_forces()).max() < 1e-6  # the lattice is a stationary point by symmetry
    atoms = lattice.copy()
    atoms.rattle(0.1, seed=1)
    atoms.calc = DenoiseCalculator(trained, dtype=torch.float64)
    start = atoms.get_potential_energy()
    assert _optimizer(name, atoms).run(fmax=2e-4, steps=500)
    assert np.abs(atoms.get_forces()).max() < 2e-4
    assert lattice.get_potential_energy() - 1e-6 < atoms.get_potential_energy() < start - 0.01
    d = atoms.positions - lattice.positions
    d -= d.mean(axis=0)
    assert np.sqrt((d**2).sum(axis=1).mean()) < 0.02


def test_basin_hopping_and_minima_hopping_run(trained, tmp_path, monkeypatch):
    from ase.optimize.basin import BasinHopping
    from ase.optimize.minimahopping import MinimaHopping

    monkeypatch.chdir(tmp_path)
    atoms = crystal()
    atoms.rattle(0.1, seed=2)
    atoms.calc = DenoiseCalculator(trained)
    start = atoms.get_potential_energy()
    bh = BasinHopping(atoms, temperature=94.4 * units.kB, dr=0.05, fmax=0.001, logfile=str(tmp_path / "bh.log"),
                      trajectory=str(tmp_path / "bh.traj"), optimizer_logfile=None)
    bh.run(3)
    best, _ = bh.get_minimum()
    assert best < start and len((tmp_path / "bh.log").read_text().splitlines()) >= 3

    atoms = crystal()
    atoms.rattle(0.05, seed=3)
    atoms.calc = DenoiseCalculator(trained)
    hop = MinimaHopping(atoms, T0=94.4, fmax=0.001, mdmin=2, timestep=5.0, minima_threshold=0.2,
                        rng=np.random.RandomState(0))
    hop(totalsteps=1)
    assert (tmp_path / "hop.log").exists() and "minimum" in (tmp_path / "hop.log").read_text().lower()


def test_md_logger_logs_the_free_energy(trained):
    atoms = crystal()
    atoms.rattle(0.05, seed=2)
    atoms.calc = DenoiseCalculator(trained)
    dyn = Langevin(atoms, 10 * units.fs, temperature_K=94.4, friction=0.01 / units.fs, fixcm=False,
                   rng=np.random.default_rng(0))
    buf = io.StringIO()
    logger = MDLogger(dyn, atoms, buf, header=True, peratom=False)
    dyn.attach(logger, interval=5)
    dyn.run(20)
    lines = buf.getvalue().splitlines()
    assert "Epot" in lines[0] and len(lines) == 1 + 5
    t, etot, epot, ekin, temp = map(float, lines[-1].split())
    assert epot == pytest.approx(atoms.get_potential_energy(), abs=1e-4)
    assert etot == pytest.approx(epot + ekin, abs=2e-4)


def test_neb_finds_a_symmetric_vacancy_hop(trained):
    """A vacancy hop in the fcc crystal: the two end states are equivalent, so the relaxed path has equal
    end energies and a maximum inside, above both."""
    from ase.mep import NEB
    from ase.optimize import BFGS, FIRE

    base = crystal()
    hopper = 1
    vacancy_site = base.positions[0].copy()
    del base[0]
    hopper -= 1  # atom 1 of the crystal is atom 0 of the vacancy structure (a nearest neighbour of site 0)
    assert np.linalg.norm(base.positions[hopper] - vacancy_site) == pytest.approx(5.78 / np.sqrt(2))
    initial, final = base.copy(), base.copy()
    final.positions[hopper] = vacancy_site
    for end in (initial, final):
        end.calc = DenoiseCalculator(trained)
        end.set_constraint()
        BFGS(end, logfile=None).run(fmax=0.005, steps=200)
    images = [initial] + [initial.copy() for _ in range(5)] + [final]
    for image in images[1:-1]:
        image.calc = DenoiseCalculator(trained)
    neb = NEB(images, climb=True, method="improvedtangent")
    neb.interpolate(mic=True)
    assert FIRE(neb, logfile=None).run(fmax=0.02, steps=400)
    energies = np.array([image.get_potential_energy() for image in images])
    print("NEB energies (eV, relative to the start):", np.round(energies - energies[0], 5))
    assert abs(energies[0] - energies[-1]) < 0.02 * (energies.max() - energies[0])
    assert 0 < np.argmax(energies) < len(images) - 1
    assert 0.005 < energies.max() - energies[0] < 1.0  # eV: a few epsilon of LJ argon


def test_nve_conserves_the_total_energy(trained):
    """Velocity Verlet with forces = -dA/dx: the total energy drifts far less than the kinetic energy
    fluctuates (a non-conservative force would heat the run)."""
    atoms = crystal()
    atoms.rattle(0.05, seed=5)
    atoms.calc = DenoiseCalculator(trained)
    thermalize_momenta(atoms, temperature_K=94.4, rng=np.random.default_rng(1))
    dyn = VelocityVerlet(atoms, 5 * units.fs)
    etot, ekin = [], []
    dyn.attach(lambda: (etot.append(atoms.get_total_energy()), ekin.append(atoms.get_kinetic_energy())), interval=5)
    dyn.run(400)
    etot, ekin = np.array(etot), np.array(ekin)
    assert np.abs(etot - etot[0]).max() < 0.05 * ekin.std()


# ------------------------------------------------------------------------------------------------
# the learned free energy's curvature on the exact harmonic dimer
# ------------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_harmonic_dimer_free_energy_curvature(tmp_path):
    """k = 2 eV/A^2 at 300 K, levels 0.025 / 0.04 / 0.055 A: the curvature of the learned A along the
    bond is within 5 % of the smoothed stiffness k/(1 + 2 k sigma^2/kT) at each level, and the
    corrected A's within 5 % of k (the smallest level alone is 8.8 % soft)."""
    from test_noise_ladder import KT, _train_dimer

    from ase_denoise.inference import predict_free_energy, structure_frame
    from ase_denoise.data.reference import sample_harmonic_dimer

    k, d0 = 2.0, 1.5
    model = _train_dimer(sample_harmonic_dimer(4000, k=k, d0=d0, temperature_K=300.0, seed=0), tmp_path,
                         "--head", "energy", "--lr", "3e-3")
    assert model.config.head == "energy"
    ds = np.linspace(d0 - 0.15, d0 + 0.15, 31)
    frames = [structure_frame(Atoms("HH", positions=[[0, 0, 0], [d, 0, 0]]), model) for d in ds]
    for s in list(model.noise_levels) + [None]:
        energy, forces = predict_free_energy(model, frames, forces=ForcesChoice(noise_std=s))
        curvature = 2 * np.polyfit(ds - d0, energy, 2)[0]
        expected = k if s is None else k / (1 + 2 * k * s**2 / KT)
        assert abs(curvature / expected - 1) < 0.05, (s, curvature, expected)
        stiffness = -np.polyfit(ds - d0, forces[1::2, 0], 1)[0]
        assert abs(stiffness / expected - 1) < 0.05, (s, stiffness, expected)


def test_inference_leaves_the_weights_trainable(argon):
    """Inference freezes the weights only for the duration of the call (no graph through them)."""
    model = energy_model(levels=(0.05,))
    free_energy(model, argon)
    assert all(p.requires_grad for p in model.parameters())
