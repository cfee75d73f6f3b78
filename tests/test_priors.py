"""Priors (ase_denoise/priors.py): the DSF Coulomb term and the repulsive wall are exact pair forces,
are stored with the model, are added by the calculator, can be left out for an MD engine that
computes them itself, and a residual prior is subtracted from the training target at the noisy input."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import bulk

from ase_denoise import DenoiseCalculator, ModelConfig, PhysicsConfig, load_model, save_model
from ase_denoise.model import build_model
from ase_denoise.data import to_frame
from ase_denoise.inference import predict, structure_frame
from ase_denoise.training.losses import LabelMixing, denoising_target, force_target, loss_inputs
from ase_denoise.priors import (
    COULOMB_EV_A,
    DSFCoulomb,
    EwaldCoulomb,
    RepulsiveWall,
    fit_repulsive_wall,
    prior_from_dict,
    total_energy_and_forces,
)
from ase_denoise.training.sampler import NoisyBatch


@pytest.fixture(scope="module")
def salt():
    rng = np.random.default_rng(0)
    return Atoms("Li4Cl4", positions=rng.uniform(0, 8.0, (8, 3)), cell=[8.0, 8.0, 8.0], pbc=True)


def _finite_difference(prior, atoms, h=1e-5):
    out = np.zeros((len(atoms), 3))
    for i in range(len(atoms)):
        for k in range(3):
            energies = []
            for sign in (1, -1):
                p = atoms.positions.copy()
                p[i, k] += sign * h
                energies.append(prior.energy_and_forces(atoms.numbers, p, atoms.cell.array, atoms.pbc)[0])
            out[i, k] = -(energies[0] - energies[1]) / (2 * h)
    return out


def test_dsf_coulomb_forces_are_minus_the_energy_gradient_and_vanish_at_the_cutoff(salt):
    prior = DSFCoulomb({3: 1.0, 17: -1.0}, relative_permittivity=78.0, alpha=0.2, r_cut=3.9)
    energy, forces = prior.energy_and_forces(salt.numbers, salt.positions, salt.cell.array, salt.pbc)
    assert np.abs(forces).max() > 1e-3
    np.testing.assert_allclose(forces, _finite_difference(prior, salt), atol=1e-8)
    np.testing.assert_allclose(forces.sum(axis=0), 0.0, atol=1e-12)  # a pair force: Newton's third law
    u, f = prior.pair_terms(np.array([3]), np.array([17]), np.array([3.9 - 1e-9]))
    assert abs(u[0]) < 1e-9 and abs(f[0]) < 1e-9  # energy and force go to zero at the cutoff (shifted force)
    # alpha = 0: shifted-force Coulomb over eps_r, -C q q / eps (1/r^2 - 1/rc^2) (attractive: < 0 along +r)
    plain = DSFCoulomb({3: 1.0, 17: -1.0}, relative_permittivity=2.0, alpha=0.0, r_cut=30.0)
    _, f = plain.pair_terms(np.array([3]), np.array([17]), np.array([2.0]))
    assert abs(f[0] - (-COULOMB_EV_A / 2.0 * (1 / 2.0**2 - 1 / 30.0**2))) < 1e-9


def test_ewald_coulomb_gives_the_madelung_constant_of_rock_salt():
    """NaCl rock salt (nearest neighbours r0 = 2.82 A, eps_r 1): E per ion pair = -M C / r0 with
    M = 1.747565 (the Madelung constant), whatever the splitting parameter alpha."""
    atoms = bulk("NaCl", "rocksalt", a=5.64, cubic=True).repeat(2)
    for alpha in (0.6, 0.8):
        prior = EwaldCoulomb({11: 1.0, 17: -1.0}, 1.0, alpha=alpha, r_cut=5.6, accuracy=1e-8)
        energy, forces = prior.energy_and_forces(atoms.numbers, atoms.positions, atoms.cell.array, atoms.pbc)
        madelung = energy / (len(atoms) / 2) / (-COULOMB_EV_A / 2.82)
        assert abs(madelung - 1.747565) < 2e-4, (alpha, madelung)
        np.testing.assert_allclose(forces, 0.0, atol=1e-10)  # every ion at a centre of symmetry


def test_ewald_coulomb_forces_are_the_energy_gradient_and_do_not_depend_on_alpha():
    atoms = bulk("NaCl", "rocksalt", a=5.64, cubic=True).repeat(2)
    atoms.positions += np.random.default_rng(0).normal(0, 0.2, atoms.positions.shape)
    prior = EwaldCoulomb({11: 1.0, 17: -1.0}, 2.0, alpha=0.7, r_cut=5.6, accuracy=1e-10)
    energy, forces = prior.energy_and_forces(atoms.numbers, atoms.positions, atoms.cell.array, atoms.pbc)
    assert np.abs(forces).max() > 0.1
    fd = _finite_difference(prior, atoms)
    np.testing.assert_allclose(forces, fd, atol=1e-7)
    np.testing.assert_allclose(forces.sum(axis=0), 0.0, atol=1e-10)
    # a different real/reciprocal split of the same sum: same energy and forces (to erfc(a r_cut) ~ 5e-8)
    other = EwaldCoulomb({11: 1.0, 17: -1.0}, 2.0, alpha=0.9, r_cut=5.6, accuracy=1e-10)
    e2, f2 = other.energy_and_forces(atoms.numbers, atoms.positions, atoms.cell.array, atoms.pbc)
    assert abs(e2 - energy) < 1e-5 and np.abs(f2 - forces).max() < 1e-5
    # the far field differs from a cut-off sum: DSF at the same cutoff gives other forces
    dsf = DSFCoulomb({11: 1.0, 17: -1.0}, 2.0, alpha=0.2, r_cut=5.6).forces(atoms)
    assert np.abs(dsf - forces).max() > 1e-3
    with pytest.raises(ValueError, match="periodic in all three directions"):
        prior.energy_and_forces(atoms.numbers, atoms.positions, atoms.cell.array, (True, True, False))
    with pytest.raises(ValueError, match="accuracy"):
        EwaldCoulomb({11: 1.0}, 2.0, accuracy=2.0)


def test_the_ewald_prior_in_torch_pme_is_the_numpy_sum_and_pme_approaches_it():
    """``coulomb_torch.ewald_energy_and_forces`` (torch-pme's Ewald with the prior's own k-vectors) gives
    the numpy prior's energy and forces to rounding in float64, for one system and for copies of it
    (batched replicas), in a box small enough that atoms see their own images; in float32 to its
    precision; particle-mesh Ewald approaches the sum as the mesh is refined."""
    from ase_denoise.priors.coulomb_torch import ewald_energy_and_forces

    atoms = bulk("NaCl", "rocksalt", a=5.64, cubic=True)  # 8 ions; r_cut 6 A > the 5.64-A box
    atoms.positions += np.random.default_rng(1).normal(0, 0.2, atoms.positions.shape)
    prior = EwaldCoulomb({11: 1.0, 17: -1.0}, 2.0, alpha=0.6, r_cut=6.0, accuracy=1e-10)
    copies = np.stack([atoms.positions, atoms.positions + np.random.default_rng(2).normal(0, 0.1, (8, 3))])
    e_np, f_np = prior.replicas_energy_and_forces(atoms.numbers, copies, atoms.cell.array, atoms.pbc)
    assert np.abs(f_np).max() > 0.1  # something to get wrong
    e_t, f_t = ewald_energy_and_forces(prior, atoms.numbers, torch.tensor(copies), atoms.cell.array)
    assert e_t.shape == (2,) and f_t.shape == (2, 8, 3) and f_t.dtype == torch.float64
    assert abs(float(e_t.sum()) - e_np) < 1e-10 * abs(e_np)
    np.testing.assert_allclose(f_t.numpy(), f_np, atol=1e-10 * np.abs(f_np).max())
    e1, f1 = ewald_energy_and_forces(prior, atoms.numbers, torch.tensor(copies[1]), atoms.cell)
    assert e1.dim() == 0 and torch.allclose(f1, f_t[1], atol=1e-12)
    e32, f32 = ewald_energy_and_forces(prior, atoms.numbers, torch.tensor(copies, dtype=torch.float32), atoms.cell.array)
    assert f32.dtype == torch.float32
    np.testing.assert_allclose(f32.double().numpy(), f_np, atol=1e-5 * np.abs(f_np).max())
    errors = []
    for spacing in (0.8, 0.4, 0.2):
        _, f_pme = ewald_energy_and_forces(prior, atoms.numbers, torch.tensor(copies), atoms.cell.array, method="pme",
                                           mesh_spacing=spacing)
        errors.append(np.abs(f_pme.numpy() - f_np).max() / np.abs(f_np).max())
    assert errors[0] > errors[1] > errors[2] and errors[2] < 1e-3, errors  # measured 1e-2, 1.5e-3, 2e-4
    with pytest.raises(ValueError, match="method 'p3m'"):
        ewald_energy_and_forces(prior, atoms.numbers, torch.tensor(copies), atoms.cell.array, method="p3m")


def test_a_large_cell_sums_the_same_ewald_energy_split_more_cheaply():
    """``EwaldCoulomb.split_for``: the 48-ion LiCl box keeps the prior's own split (alpha 0.3 /A, 10 A);
    the box repeated to 576 ions is summed with a smaller alpha and a longer real-space cutoff (alpha x
    cutoff and the accuracy unchanged), and gives the energy and forces of the prior's own split
    (computed here by torch-pme's Ewald with the prior's own k-vectors) to the sum's truncation errors."""
    from ase_denoise.priors.coulomb_torch import ewald_energy_and_forces

    d = np.load(Path(__file__).resolve().parents[1] / "benchmarks" / "licl" / "licl_cg_300K.npz")
    box = Atoms(numbers=d["numbers"], positions=d["positions"][0], cell=d["cell"], pbc=True)
    prior = EwaldCoulomb({3: 1.0, 17: -1.0}, relative_permittivity=94.0, alpha=0.3, r_cut=10.0, accuracy=1e-6)
    assert prior.split_for(box.cell.array, len(box)) is prior
    large = box.repeat((2, 2, 3))
    split = prior.split_for(large.cell.array, len(large))
    assert split.alpha < prior.alpha and split.r_cut > prior.r_cut and split.accuracy == prior.accuracy
    assert split.alpha * split.r_cut == pytest.approx(prior.alpha * prior.r_cut, rel=1e-12)
    energy, forces = prior.energy_and_forces(large.numbers, large.positions, large.cell.array, large.pbc)
    e_own, f_own = ewald_energy_and_forces(prior, large.numbers, torch.tensor(large.positions), large.cell.array)
    assert np.abs(f_own.numpy()).max() > 0.01  # something to get wrong
    np.testing.assert_allclose(forces, f_own.numpy(), atol=2e-4 * np.abs(f_own.numpy()).max())
    assert abs(energy - float(e_own)) < 1e-5 * abs(float(e_own))


def test_repulsive_wall_is_zero_where_data_are_and_steep_below(salt):
    wall = fit_repulsive_wall([salt], kT=0.02585)
    np.testing.assert_array_equal(wall.forces(salt), 0.0)  # the closest approach itself: zero force
    pair = (3, 17)
    r_on = wall.r_on[pair]
    u, f = wall.pair_terms(np.array([3, 3, 3]), np.array([17, 17, 17]), np.array([r_on + 0.1, r_on - 0.1, r_on - 0.2]))
    assert u[0] == 0 and f[0] == 0
    assert np.isclose(u[1], wall.epsilon) and np.isclose(u[2], 16 * wall.epsilon) and f[2] > f[1] > 0
    squeezed = salt.copy()
    i, j = 0, 4  # a Li and a Cl pushed inside the wall
    squeezed.positions[j] = squeezed.positions[i] + [r_on - 0.15, 0, 0]
    forces = wall.forces(squeezed)
    assert forces[j, 0] > 0 and forces[i, 0] < 0  # pushes them apart
    np.testing.assert_allclose(forces, _finite_difference(wall, squeezed), atol=1e-7)


def test_priors_round_trip_and_unknown_kinds_are_refused():
    wall = RepulsiveWall({(17, 3): 2.0}, epsilon=0.03, width=0.1)
    coulomb = DSFCoulomb({3: 1.0, 17: -1.0}, 78.0)
    ewald = EwaldCoulomb({3: 1.0, 17: -1.0}, 94.0, alpha=0.35, r_cut=9.0, accuracy=1e-7)
    for prior in (wall, coulomb, ewald):
        assert prior_from_dict(prior.to_dict()) == prior
    with pytest.raises(ValueError, match="unknown prior kind 'lennard_jones'"):
        prior_from_dict({"kind": "lennard_jones"})
    with pytest.raises(ValueError, match="unknown prior kind"):
        PhysicsConfig(300.0, 0.05, priors=[{"kind": "lennard_jones"}])


@pytest.fixture(scope="module")
def salt_model():
    physics = PhysicsConfig(
        300.0, 0.05, (True, True, True),
        priors=[RepulsiveWall({(3, 17): 2.0, (3, 3): 2.5, (17, 17): 3.0}, epsilon=0.03).to_dict(),
                DSFCoulomb({3: 1.0, 17: -1.0}, 78.0, r_cut=4.0).to_dict()],
    )
    return build_model(ModelConfig([3, 17], r_max=4.0, num_channels=4, avg_num_neighbors=8.0), physics, torch.float64, seed=0)


def test_calculator_adds_the_priors_and_can_leave_one_out(salt_model, salt, tmp_path, monkeypatch):
    path = tmp_path / "salt.safetensors"
    save_model(salt_model, path)
    model = load_model(path)
    assert [p.kind for p in model.priors] == ["repulsive_wall", "coulomb_dsf"]
    atoms = salt.copy()
    atoms.positions[4] = atoms.positions[0] + [1.8, 0, 0]  # inside the Li-Cl wall
    frame = [structure_frame(atoms, model)]
    network = predict(model, frame, priors=False)
    wall, coulomb = model.priors
    full = DenoiseCalculator(model).get_forces(atoms)
    np.testing.assert_allclose(full, network + wall.forces(atoms) + coulomb.forces(atoms), atol=1e-12)
    no_coulomb = DenoiseCalculator(model, exclude_priors=["coulomb_dsf"]).get_forces(atoms)
    np.testing.assert_allclose(no_coulomb, network + wall.forces(atoms), atol=1e-12)
    # the calculator takes the priors' pairs from its Verlet list (both cutoffs <= r_max): no second search
    from ase_denoise import priors as priors_module

    def no_search(*args, **kwargs):
        raise AssertionError("the priors searched for neighbours again")

    monkeypatch.setattr(priors_module.PairGeometry, "of", classmethod(no_search))
    np.testing.assert_allclose(DenoiseCalculator(model).get_forces(atoms), full, atol=1e-12)
    with pytest.raises(ValueError, match="no such prior"):
        DenoiseCalculator(model, exclude_priors=["zbl"])


def test_residual_priors_are_subtracted_from_the_target_at_the_noisy_input(salt):
    frame = to_frame(salt, [3, 17])
    frame.ref_forces = np.random.default_rng(1).normal(size=(8, 3))
    coulomb = DSFCoulomb({3: 1.0, 17: -1.0}, 78.0, r_cut=4.0)
    numbers = np.array([3, 17])

    def residual(f, positions, noise_std=0.0):
        return coulomb.energy_and_forces(numbers[f.species], positions, f.cell, f.pbc)[1]

    sigma, kT = 0.05, 0.02585
    noise = np.random.default_rng(2).normal(0, sigma, (8, 3))
    batch = NoisyBatch([0], [noise], [frame.positions + noise], [sigma])
    inputs = loss_inputs("denoising", batch, [frame], kT, residual=residual)
    expected = denoising_target(noise, sigma) - sigma * residual(frame, frame.positions + noise) / kT
    np.testing.assert_allclose(inputs.targets["denoising"][1], expected, atol=1e-12)
    # the mixed target: a * sigma f/kT + (1 - a) * (-N/sigma), both lowered by the residual
    mixing = LabelMixing({0: 0.5, 1: 2.0}, kT)
    inputs = loss_inputs("mixed", batch, [frame], kT, residual=residual, mixing=mixing)
    a = mixing.weight(frame.species, sigma)
    mixed = a * force_target(frame.ref_forces, sigma, kT) + (1 - a) * denoising_target(noise, sigma)
    np.testing.assert_allclose(inputs.targets["denoising"][1], mixed - sigma * residual(frame, frame.positions + noise) / kT, atol=1e-12)
    np.testing.assert_allclose(a[:, 0], 1 / (1 + sigma**2 * np.array([0.5, 2.0])[frame.species] / kT**2))


def test_bonded_priors_are_exact_forces_and_their_fit_recovers_a_known_stiffness():
    """Harmonic bonds and angles (ase_denoise/priors.py): forces are minus the energy gradient, sum
    to zero, vanish at the fitted minimum; Boltzmann inversion of exact samples of a harmonic dimer
    (k = 2 eV/A^2, 300 K) recovers k within 5% and d0 within 0.005 A once the r^2 Jacobian is divided out."""
    from ase.build import molecule

    from ase_denoise.priors import HarmonicAngles, HarmonicBonds, fit_bonded_priors, molecule_topology
    from ase_denoise.data.reference import sample_harmonic_dimer

    ethanol = molecule("CH3CH2OH")
    bonds, angles = molecule_topology(ethanol)
    assert len(bonds) == 8 and len(angles) == 13  # C-C, C-O, O-H, 5 C-H; 6 + 6 + 1 angles at C, C, O
    bond_prior, angle_prior = (
        HarmonicBonds(bonds, [1.0] * len(bonds), list(np.linspace(5, 20, len(bonds)))),
        HarmonicAngles(angles, [1.8] * len(angles), list(np.linspace(1, 4, len(angles)))),
    )
    rattled = ethanol.copy()
    rattled.positions += np.random.default_rng(3).normal(0, 0.05, rattled.positions.shape)
    for prior in (bond_prior, angle_prior):
        energy, forces = prior.energy_and_forces(rattled.numbers, rattled.positions, rattled.cell.array, rattled.pbc)
        assert energy > 0 and np.abs(forces).max() > 0.1
        np.testing.assert_allclose(forces, _finite_difference(prior, rattled), atol=1e-6)
        np.testing.assert_allclose(forces.sum(axis=0), 0.0, atol=1e-10)
        assert prior_from_dict(prior.to_dict()) == prior
    # Boltzmann inversion of exact samples: the fitted minimum is the mean, k = kT / var
    dimers = sample_harmonic_dimer(8000, k=2.0, d0=1.5, temperature_K=300.0, seed=5)
    kT = 300.0 * 8.617333262e-5
    (fitted,) = fit_bonded_priors(dimers, kT, bonds=[(0, 1)], angles=[])
    assert fitted.bonds == [(0, 1)]
    assert abs(fitted.k[0] / 2.0 - 1.0) < 0.05, fitted.k
    assert abs(fitted.r0[0] - 1.5) < 0.005  # unweighted, the mean is 1.519: the r^2 Jacobian
    at_minimum = dimers[0].copy()
    at_minimum.positions[1] = at_minimum.positions[0] + [fitted.r0[0], 0, 0]
    np.testing.assert_allclose(fitted.forces(at_minimum), 0.0, atol=1e-12)
    with pytest.raises(ValueError, match="has 2 atoms"):
        bond_prior.forces(dimers[0])
    with pytest.raises(ValueError, match="same molecule"):
        fit_bonded_priors([ethanol, dimers[0]], kT)


def test_a_molecule_model_adds_its_bonded_priors_and_refuses_another_molecule(tmp_path):
    from ase.build import molecule

    from ase_denoise.priors import fit_bonded_priors

    frames = []
    rng = np.random.default_rng(4)
    for _ in range(20):
        a = molecule("CH3CH2OH")
        a.positions += rng.normal(0, 0.03, a.positions.shape)
        frames.append(a)
    priors = fit_bonded_priors(frames, kT=0.02585)
    assert [p.kind for p in priors] == ["harmonic_bonds", "harmonic_angles"]
    physics = PhysicsConfig(300.0, 0.02, (False, False, False), priors=[p.to_dict() for p in priors])
    model = build_model(ModelConfig([1, 6, 8], r_max=3.0, num_channels=4, avg_num_neighbors=4.0), physics, torch.float64, seed=0)
    save_model(model, tmp_path / "ethanol.safetensors")
    model = load_model(tmp_path / "ethanol.safetensors")
    atoms = frames[0]
    network = predict(model, [structure_frame(atoms, model)], priors=False)
    expected = network + sum(p.forces(atoms) for p in priors)
    np.testing.assert_allclose(DenoiseCalculator(model).get_forces(atoms), expected, atol=1e-12)
    with pytest.raises(ValueError, match="bonded priors belong to one molecule"):
        DenoiseCalculator(model).get_forces(molecule("CH4"))


def test_a_prior_reaching_beyond_the_model_keeps_its_own_verlet_list(salt, monkeypatch):
    """An Ewald prior with a 6 A real-space cutoff on a model with r_max 3 A: the calculator's
    forces equal a fresh evaluation at every step of a small walk, and the prior's pairs are not
    searched afresh each call (a wider Verlet list kept with the model's)."""
    from ase_denoise.data import neighbours as neighbours_module

    prior = EwaldCoulomb({3: 1.0, 17: -1.0}, 78.0, alpha=0.6, r_cut=6.0, accuracy=1e-6)
    physics = PhysicsConfig(300.0, 0.05, (True, True, True), priors=[prior.to_dict()])
    model = build_model(ModelConfig([3, 17], r_max=3.0, num_channels=4, avg_num_neighbors=4.0), physics, torch.float64, seed=0)
    calc = DenoiseCalculator(model)
    searches = {"n": 0}
    real = neighbours_module.neighbour_graph

    def counting(*args, **kwargs):
        searches["n"] += 1
        return real(*args, **kwargs)

    monkeypatch.setattr(neighbours_module, "neighbour_graph", counting)
    atoms = salt.copy()
    rng = np.random.default_rng(7)
    for _ in range(5):
        atoms.positions += rng.normal(0, 0.01, atoms.positions.shape)
        forces = calc.get_forces(atoms)
        network = predict(model, [structure_frame(atoms, model)], priors=False)
        np.testing.assert_allclose(forces, network + prior.forces(atoms), atol=1e-12)
    # the calculator's lists (the model's at r_max, the prior's at 6 A) were each built once for the walk
    # (the fresh evaluations above search through their own imports, not counted here)
    assert searches["n"] == 2, searches
    assert calc.neighbours.n_builds == 1 and calc.neighbours.wider(6.0).n_builds == 1


def test_replicas_of_one_system_get_the_per_copy_prior_forces_in_one_call(salt):
    """Batched replicas (ReplicaLangevin): every prior evaluated once for R copies of one system
    (Ewald's reciprocal sum vectorised over copies, bonded terms on [R, n, 3], pair terms on the
    copies' union) equals the per-copy evaluation, with and without the replicas' Verlet lists."""
    from ase.build import molecule

    from ase_denoise.inference import prior_forces
    from ase_denoise.data.neighbours import SkinNeighbourList
    from ase_denoise.priors import (
        HarmonicAngles,
        HarmonicBonds,
        molecule_topology,
        replicas_total_energy_and_forces,
    )

    rng = np.random.default_rng(11)
    ewald = EwaldCoulomb({3: 1.0, 17: -1.0}, 78.0, alpha=0.6, r_cut=4.0, accuracy=1e-6)
    wall = RepulsiveWall({(3, 3): 2.5, (3, 17): 2.0, (17, 17): 3.0}, epsilon=0.03, width=0.1)
    copies = [salt.positions + rng.normal(0, 0.3, salt.positions.shape) for _ in range(5)]
    energy, forces = replicas_total_energy_and_forces([ewald, wall], salt.numbers, np.stack(copies), salt.cell.array, salt.pbc)
    per_copy = [total_energy_and_forces([ewald, wall], salt.numbers, x, salt.cell.array, salt.pbc) for x in copies]
    assert energy == pytest.approx(sum(e for e, _ in per_copy), rel=1e-12)
    np.testing.assert_allclose(forces, np.stack([f for _, f in per_copy]), rtol=0, atol=1e-12)
    assert np.abs(forces).max() > 0.1  # something to compare

    ethanol = molecule("CH3CH2OH")
    bonds, angles = molecule_topology(ethanol)
    bonded = [HarmonicBonds(bonds, [1.1] * len(bonds), [10.0] * len(bonds)), HarmonicAngles(angles, [1.9] * len(angles), [3.0] * len(angles))]
    copies = np.stack([ethanol.positions + rng.normal(0, 0.05, ethanol.positions.shape) for _ in range(4)])
    _, forces = replicas_total_energy_and_forces(bonded, ethanol.numbers, copies, ethanol.cell.array, ethanol.pbc)
    np.testing.assert_allclose(forces, [total_energy_and_forces(bonded, ethanol.numbers, x, ethanol.cell.array,
                                                                 ethanol.pbc)[1] for x in copies], atol=1e-12)
    # through the model: the replica path (frames of one system) against frames one at a time
    physics = PhysicsConfig(300.0, 0.05, (True, True, True), priors=[ewald.to_dict(), wall.to_dict()])
    model = build_model(ModelConfig([3, 17], r_max=3.0, num_channels=4, avg_num_neighbors=4.0), physics, torch.float64, seed=0)
    frames = [to_frame(salt, model.config.atomic_numbers) for _ in range(3)]
    for f in frames:
        f.positions = f.positions + rng.normal(0, 0.2, f.positions.shape)
    one_by_one = np.concatenate([prior_forces(model, [f]) for f in frames])
    lists = [SkinNeighbourList(3.0, 1.0) for _ in frames]
    np.testing.assert_allclose(prior_forces(model, frames), one_by_one, atol=1e-12)
    np.testing.assert_allclose(prior_forces(model, frames, neighbour_lists=lists), one_by_one, atol=1e-12)


def test_smoothed_bonded_prior_is_the_bonds_part_of_the_smoothed_score():
    """TrainConfig.smoothed_priors: a harmonic bond seen through noise sigma on both atoms has the
    stiffness k / (1 + 2 k sigma^2 / kT), so the denoising target minus that prior's score at the
    noisy input no longer depends on the bond stretch (the residual holds no smoothed stiff mode),
    while minus the raw prior it does, strongly, at a sigma twice the bond's thermal width.
    Exact harmonic dimers (k = 2 eV/A^2, 300 K), 40000 noisy copies."""
    from ase_denoise.priors import HarmonicAngles, HarmonicBonds
    from ase_denoise.data.reference import sample_harmonic_dimer

    kT, k, d0 = 300.0 * 8.617333262e-5, 2.0, 1.5
    width = np.sqrt(kT / k)  # 0.114 A
    sigma = 2.0 * width
    prior = HarmonicBonds([(0, 1)], [d0], [k])
    rng = np.random.default_rng(0)
    dimers = sample_harmonic_dimer(40000, k=k, d0=d0, temperature_K=300.0, seed=1)
    slopes = {}
    for smoothed in (False, True):
        stretch, along = [], []
        for atoms in dimers:
            noise = rng.normal(0, sigma, (2, 3))
            y = atoms.positions + noise
            f = (prior.smoothed_forces(atoms.numbers, y, atoms.cell.array, atoms.pbc, sigma, kT) if smoothed
                 else prior.forces(Atoms(atoms.numbers, y)))
            residual = -noise / sigma - sigma * f / kT  # [2, 3]
            u = (y[1] - y[0]) / np.linalg.norm(y[1] - y[0])
            stretch.append(np.linalg.norm(y[1] - y[0]) - d0)
            along.append(residual[1] @ u - residual[0] @ u)
        slopes[smoothed] = np.polyfit(stretch, along, 1)[0]
    # raw prior: the residual keeps -sigma (1/(w^2 + 2 sigma^2) - 1/w^2) * 2 per unit stretch (about +31/A here)
    assert slopes[False] > 20.0, slopes
    assert abs(slopes[True]) < 1.0, slopes
    # angles: no noise gives the raw forces; noise softens them
    water = Atoms("OH2", positions=[[0, 0, 0], [0.96, 0, 0], [-0.3, 0.9, 0]])
    angles = HarmonicAngles([(1, 0, 2)], [1.8], [4.0])
    raw = angles.forces(water)
    np.testing.assert_allclose(angles.smoothed_forces(water.numbers, water.positions, water.cell.array, water.pbc, 1e-9, kT),
                               raw, atol=1e-12)
    soft = angles.smoothed_forces(water.numbers, water.positions, water.cell.array, water.pbc, 0.05, kT)
    ratio = np.linalg.norm(soft) / np.linalg.norm(raw)
    variance = 2 * 0.05**2 * (1 / 0.96**2 + 1 / np.linalg.norm(water.positions[2]) ** 2
                              - np.cos(np.arccos(-0.3 * 0.96 / (0.96 * np.linalg.norm(water.positions[2])))) /
                              (0.96 * np.linalg.norm(water.positions[2])))
    assert ratio == pytest.approx(1 / (1 + 4.0 * variance / kT), rel=1e-9)


# --- the tabulated pair correction (structure refinement) -------------------------------------------

def _pair_table():
    from ase_denoise.priors import PairTable

    r = np.arange(0.05, 7.0, 0.1)
    bump = 0.02 * np.exp(-((r - 3.0) / 0.4) ** 2) - 0.01 * np.exp(-((r - 4.5) / 0.5) ** 2)
    bump[-1] = 0.0
    return PairTable(list(r), {(18, 18): list(bump)}, source="test")


def test_pair_table_forces_are_minus_the_gradient_of_its_energy():
    """Forces of the spline table against central differences of its energy on a random Ar box;
    nothing beyond the table's end; constant (no force) below its first grid point."""
    table = _pair_table()
    atoms = bulk("Ar", "fcc", a=5.3, cubic=True).repeat(2)
    atoms.rattle(0.3, seed=1)
    e0, forces = table.energy_and_forces(atoms.numbers, atoms.positions, atoms.cell.array, atoms.pbc)
    assert np.abs(forces).max() > 1e-4
    h = 1e-5
    for i, k in [(0, 0), (3, 1), (17, 2)]:
        plus, minus = atoms.positions.copy(), atoms.positions.copy()
        plus[i, k] += h
        minus[i, k] -= h
        ep = table.energy_and_forces(atoms.numbers, plus, atoms.cell.array, atoms.pbc)[0]
        em = table.energy_and_forces(atoms.numbers, minus, atoms.cell.array, atoms.pbc)[0]
        assert abs(-(ep - em) / (2 * h) - forces[i, k]) < 1e-6
    zi = np.full(3, 18)
    energy, minus_du = table.pair_terms(zi, zi, np.array([0.01, 7.5, 8.0]))
    assert energy[1] == energy[2] == 0.0 and minus_du[0] == 0.0 and np.all(minus_du[1:] == 0.0)
    assert energy[0] == pytest.approx(table.u[(18, 18)][0])


def test_pair_table_round_trips_and_refuses_broken_tables():
    from ase_denoise.priors import PairTable, prior_from_dict

    table = _pair_table()
    again = prior_from_dict(json.loads(json.dumps(table.to_dict())))
    d = np.linspace(0.5, 7.5, 50)
    z = np.full_like(d, 18, dtype=int)
    assert np.array_equal(again.pair_terms(z, z, d)[1], table.pair_terms(z, z, d)[1])
    assert "tabulated pair correction" in table.describe() and "test" in table.describe()
    with pytest.raises(ValueError, match="values for"):
        PairTable([0.1, 0.2, 0.3, 0.4], {(18, 18): [0.0, 0.0, 0.0]})
    with pytest.raises(ValueError, match="finite"):
        PairTable([0.1, 0.2, 0.3, 0.4], {(18, 18): [0.0, float("nan"), 0.0, 0.0]})
    with pytest.raises(ValueError, match="increasing"):
        PairTable([0.1, 0.3, 0.2, 0.4], {(18, 18): [0.0] * 4})


@pytest.fixture(scope="module")
def ethanols():
    from ase.build import molecule

    rng = np.random.default_rng(21)
    frames = []
    for _ in range(20):
        a = molecule("CH3CH2OH")
        a.positions += rng.normal(0, 0.03, a.positions.shape)
        frames.append(a)
    return frames


def test_nonbonded_wall_leaves_out_the_pairs_bonded_priors_hold(ethanols):
    """The non-bonded wall (all-atom molecules): a C...H pair is walled at its non-bonded closest
    approach, not at a C-H bond's length; a squeezed bond (a held pair) feels nothing from it, a
    squeezed non-bonded pair is pushed apart by minus the energy gradient; copies of the molecule
    (batched replicas) get the per-copy forces; it round-trips and refuses another molecule."""
    from ase.build import molecule

    from ase_denoise.priors import NonBondedWall, replicas_total_energy_and_forces
    from ase_denoise.priors import pairs_held_by_priors

    kT = 0.02585
    held = pairs_held_by_priors(["bonded"], ethanols)
    assert len(held) == 8 + 13  # ethanol's bonds and angle ends (test_bonded_priors_... counts them)
    wall = fit_repulsive_wall(ethanols, kT, exclude=held)
    plain = fit_repulsive_wall(ethanols, kT)
    assert isinstance(wall, NonBondedWall) and not isinstance(plain, NonBondedWall) and wall.n_atoms == 9
    assert plain.r_on[(1, 6)] < 1.2 < 2.0 < wall.r_on[(1, 6)]  # C-H: a bond's length vs the closest 1-4 contact
    assert all(wall.forces(a).max() == 0 for a in ethanols)  # zero wherever the data are
    i, j = next((a, b) for a, b in held if {ethanols[0].numbers[a], ethanols[0].numbers[b]} == {1, 6})
    squeezed = ethanols[0].copy()
    squeezed.positions[j] = squeezed.positions[i] + 0.7 * (squeezed.positions[j] - squeezed.positions[i])
    assert plain.energy_and_forces(squeezed.numbers, squeezed.positions, squeezed.cell.array, squeezed.pbc)[0] > 0
    assert wall.energy_and_forces(squeezed.numbers, squeezed.positions, squeezed.cell.array, squeezed.pbc)[0] == 0
    a, b = next((a, b) for a in range(9) for b in range(a + 1, 9)
                if (a, b) not in held and {ethanols[0].numbers[a], ethanols[0].numbers[b]} == {1, 6})
    close = ethanols[0].copy()
    direction = close.positions[b] - close.positions[a]
    close.positions[b] = close.positions[a] + (wall.r_on[(1, 6)] - 0.2) * direction / np.linalg.norm(direction)
    energy, forces = wall.energy_and_forces(close.numbers, close.positions, close.cell.array, close.pbc)
    assert energy > 10 * kT and np.dot(forces[b], direction) > 0  # pushed apart
    np.testing.assert_allclose(forces, _finite_difference(wall, close), atol=1e-7)
    np.testing.assert_allclose(forces.sum(axis=0), 0.0, atol=1e-12)
    copies = np.stack([close.positions, ethanols[1].positions, close.positions + 0.01])
    e3, f3 = replicas_total_energy_and_forces([wall], close.numbers, copies, close.cell.array, close.pbc)
    per_copy = [wall.energy_and_forces(close.numbers, x, close.cell.array, close.pbc) for x in copies]
    assert e3 == pytest.approx(sum(e for e, _ in per_copy), rel=1e-12)
    np.testing.assert_allclose(f3, np.stack([f for _, f in per_copy]), atol=1e-12)
    assert prior_from_dict(wall.to_dict()) == wall and prior_from_dict(plain.to_dict()) == plain
    broken = {k: v for k, v in wall.to_dict().items() if k != "exclude"}
    with pytest.raises(ValueError, match="'nonbonded_wall' without its 'exclude' entry"):
        PhysicsConfig(300.0, 0.02, priors=[broken])
    assert "non-bonded repulsive wall" in wall.describe() and "21 bonded and angle-end pairs excluded" in wall.describe()
    with pytest.raises(ValueError, match="molecule of 9 atoms"):
        wall.forces(molecule("CH4"))
    with pytest.raises(ValueError, match="n_atoms"):
        NonBondedWall({(1, 6): 2.0}, 0.03, exclude=[(0, 9)], n_atoms=9)
    with pytest.raises(ValueError, match="same molecule"):
        fit_repulsive_wall([ethanols[0], molecule("CH4")], kT, exclude=held)


def test_training_data_fit_the_nonbonded_wall_with_the_bonded_priors(ethanols):
    """``priors=["bonded", "nonbonded_wall"]``: the wall excludes exactly the fitted bonded priors'
    pairs; ``"repulsive_wall"`` stays the plain wall on every pair; the non-bonded wall alone is refused."""
    from ase_denoise.training import prepare_data
    from ase_denoise.priors import molecule_topology

    _, physics, _ = prepare_data(ethanols, noise_std=0.02, temperature_K=300.0, priors=["bonded", "nonbonded_wall"],
                                 r_max=3.0, num_channels=4)
    assert [d["kind"] for d in physics.priors] == ["harmonic_bonds", "harmonic_angles", "nonbonded_wall"]
    bonds, angles = molecule_topology(ethanols[0])
    expected = sorted(set(bonds) | {(i, k) for i, _, k in angles})
    assert [tuple(p) for p in physics.priors[2]["exclude"]] == expected
    _, physics, _ = prepare_data(ethanols, noise_std=0.02, temperature_K=300.0, priors=["bonded", "repulsive_wall"],
                                 r_max=3.0, num_channels=4)
    assert physics.priors[2]["kind"] == "repulsive_wall"
    with pytest.raises(ValueError, match="give it with them"):
        prepare_data(ethanols, noise_std=0.02, temperature_K=300.0, priors=["nonbonded_wall"], r_max=3.0, num_channels=4)


def test_with_prior_adds_an_inference_prior_to_a_trained_model(ethanols, tmp_path):
    """``with_prior``: a copy carrying the wall (the given model unchanged), saved and loaded with it,
    whose calculator adds it; a residual prior is refused (the network would have to be retrained)."""
    from ase_denoise.model import with_prior
    from ase_denoise.priors import fit_bonded_priors
    from ase_denoise.priors import pairs_held_by_priors

    kT = 0.02585
    bonded = fit_bonded_priors(ethanols, kT)
    physics = PhysicsConfig(300.0, 0.02, (False, False, False), priors=[p.to_dict() for p in bonded])
    model = build_model(ModelConfig([1, 6, 8], r_max=3.0, num_channels=4, avg_num_neighbors=4.0), physics, torch.float64, seed=0)
    wall = fit_repulsive_wall(ethanols, kT, exclude=pairs_held_by_priors(bonded, ethanols))
    walled = with_prior(model, wall)
    assert [p.kind for p in model.priors] == ["harmonic_bonds", "harmonic_angles"]
    assert [p.kind for p in walled.priors] == ["harmonic_bonds", "harmonic_angles", "nonbonded_wall"]
    assert [p.kind for p in with_prior(walled, wall).priors] == [p.kind for p in walled.priors]  # replaced, not doubled
    save_model(walled, tmp_path / "walled.safetensors")
    loaded = load_model(tmp_path / "walled.safetensors")
    assert loaded.priors[-1] == wall
    atoms = ethanols[0].copy()
    held = pairs_held_by_priors(bonded, ethanols)
    a, b = next((a, b) for a in range(9) for b in range(a + 1, 9)  # a C...H 1-4 pair, squeezed inside the wall
                if (a, b) not in held and sorted(atoms.numbers[[a, b]]) == [1, 6])
    atoms.positions[b] = atoms.positions[a] + [wall.r_on[(1, 6)] - 0.2, 0, 0]
    difference = DenoiseCalculator(loaded).get_forces(atoms) - DenoiseCalculator(model).get_forces(atoms)
    np.testing.assert_allclose(difference, wall.forces(atoms), atol=1e-10)
    assert np.abs(difference).max() > 0.1
    with pytest.raises(ValueError, match="learned as a residual"):
        with_prior(model, bonded[0])


def test_training_with_the_nonbonded_wall_gives_the_same_network(ethanols, tmp_path):
    """The wall is not in the training target, so training with ``priors=["bonded",
    "nonbonded_wall"]`` gives the network ``priors=["bonded"]`` gives, weight for weight: adding it to
    a trained model afterwards (``with_prior``, ``benchmarks/ala2/aa_replicas.py --wall``) is the same."""
    from ase_denoise import TrainConfig, train

    cfg = TrainConfig(n_duplicates=2, epochs=1, batch_size=8, seed=3, dtype="float64")
    runs = {name: train(ethanols, str(tmp_path / name), noise_std=0.03, temperature_K=300.0, train_config=cfg,
                        priors=priors, r_max=3.0, num_channels=4).model
            for name, priors in (("bonded", ["bonded"]), ("walled", ["bonded", "nonbonded_wall"]))}
    assert [p.kind for p in runs["walled"].priors][-1] == "nonbonded_wall"
    reference = runs["bonded"].state_dict()
    assert all(torch.equal(v, reference[k]) for k, v in runs["walled"].state_dict().items())


def _butane_like(phi: np.ndarray) -> list:
    """Four atoms i-j-k-l (1.5 A bonds, 110-degree angles) with the dihedral ``phi`` (radians) each,
    plus a fifth atom off to the side: frames whose one torsion is exactly ``phi``."""
    frames = []
    theta = np.radians(110.0)
    for p in np.atleast_1d(phi):
        j, k = np.zeros(3), np.array([1.5, 0.0, 0.0])
        i = j + 1.5 * np.array([np.cos(theta), np.sin(theta), 0.0])  # angle i-j-k = theta
        l = k + 1.5 * np.array([-np.cos(theta), np.sin(theta) * np.cos(p), np.sin(theta) * np.sin(p)])  # noqa: E741
        frames.append(Atoms("C4H", positions=[i, j, k, l, [0.7, -3.0, 1.0]]))
    return frames


def test_dihedral_prior_forces_are_minus_its_energy_gradient():
    """Torsion terms (``Dihedrals``): the angle is ASE's IUPAC dihedral, forces are minus the energy's
    gradient (finite differences, 1e-7 eV/A), sum to zero with zero torque (a function of one internal
    coordinate), copies get the per-copy forces, and the JSON form round trips."""
    from ase.geometry import get_dihedrals

    from ase_denoise.priors import Dihedrals

    rng = np.random.default_rng(8)
    atoms = Atoms("C6", positions=rng.normal(0, 1.5, (6, 3)))
    quads = [(0, 1, 2, 3), (1, 2, 3, 4), (5, 0, 2, 4)]
    prior = Dihedrals(quads, rng.normal(0, 0.1, (3, 4)).tolist(), rng.normal(0, 0.1, (3, 4)).tolist())
    p = atoms.positions
    index = np.array(quads)
    b1, b2, b3 = (p[index[:, a + 1]] - p[index[:, a]] for a in range(3))
    measured = np.degrees(prior.angles(p, atoms.cell.array, atoms.pbc))
    np.testing.assert_allclose(measured % 360, get_dihedrals(b1, b2, b3) % 360, atol=1e-9)
    energy, forces = prior.energy_and_forces(atoms.numbers, p, atoms.cell.array, atoms.pbc)
    assert np.abs(forces).max() > 0.05
    np.testing.assert_allclose(forces, _finite_difference(prior, atoms), atol=1e-7)
    np.testing.assert_allclose(forces.sum(axis=0), 0.0, atol=1e-12)
    np.testing.assert_allclose(np.cross(p, forces).sum(axis=0), 0.0, atol=1e-12)
    moved = p + rng.normal(0, 0.2, p.shape)
    e2, f2 = prior.replicas_energy_and_forces(atoms.numbers, np.stack([p, moved]), atoms.cell.array, atoms.pbc)
    np.testing.assert_allclose(f2[0], forces, atol=1e-12)
    np.testing.assert_allclose(f2[1], prior.energy_and_forces(atoms.numbers, moved, atoms.cell.array, atoms.pbc)[1],
                               atol=1e-12)
    assert abs(e2 - energy - prior.energy_and_forces(atoms.numbers, moved, atoms.cell.array, atoms.pbc)[0]) < 1e-12
    assert prior_from_dict(prior.to_dict()) == prior and prior.in_residual
    with pytest.raises(ValueError, match="four distinct atoms"):
        Dihedrals([(0, 1, 1, 2)], [[0.1]], [[0.0]])
    with pytest.raises(ValueError, match="has 6 atoms"):
        Dihedrals([(0, 1, 2, 9)], [[0.1]], [[0.0]]).forces(atoms)


def test_dihedral_fit_recovers_a_known_torsion_free_energy_and_stays_bounded_without_data():
    """``fit_dihedral_priors``: angles drawn from ``exp(-U/kT)`` for a known two-order ``U`` give back
    ``U`` within 0.2 kT where it is less than 2 kT above its minimum and 0.5 kT everywhere (4 kT up,
    where few of the 4000 samples are; the fit has six orders); angles only in half
    the circle give a finite plateau a few kT up on the empty half (``floor``), not a runaway."""
    from ase_denoise.priors import fit_dihedral_priors

    kT = 0.025852
    grid = np.linspace(-np.pi, np.pi, 3600, endpoint=False)
    true = kT * (1.5 * np.cos(grid) - 0.8 * np.cos(2 * grid) + 0.6 * np.sin(grid))
    cdf = np.cumsum(np.exp(-true / kT))
    rng = np.random.default_rng(0)
    phi = np.interp(rng.uniform(0, cdf[-1], 4000), cdf, grid)
    frames = _butane_like(phi)
    prior = fit_dihedral_priors(frames, kT, [(0, 1, 2, 3)], floor=1e-4)
    measured = prior.angles(np.stack([a.positions for a in frames]), np.zeros((3, 3)), [False] * 3)[:, 0]
    np.testing.assert_allclose(np.angle(np.exp(1j * (measured - phi))), 0.0, atol=1e-9)  # the frames carry phi
    fitted = prior.profile(grid[:, None])[:, 0]
    low = np.argmin(true)
    error = np.abs((fitted - fitted[low]) - (true - true[low])) / kT
    assert error[true - true[low] < 2 * kT].max() < 0.2 and error.max() < 0.5, error.max()
    half = fit_dihedral_priors(_butane_like(rng.uniform(-np.pi, 0, 2000)), kT, [(0, 1, 2, 3)], floor=0.01)
    u = half.profile(grid[:, None])[:, 0] / kT
    empty, full = u[(grid > 0.5) & (grid < np.pi - 0.5)], u[(grid < -0.5) & (grid > -np.pi + 0.5)]
    assert 3.0 < empty.min() - full.max() and u.max() - u.min() < 10.0, (empty.min() - full.max(), u.max() - u.min())
    with pytest.raises(ValueError, match="same molecule"):
        fit_dihedral_priors(frames[:2] + [Atoms("C4", positions=frames[0].positions[:4])], kT, [(0, 1, 2, 3)])
    with pytest.raises(ValueError, match="0 < floor < 1"):
        fit_dihedral_priors(frames, kT, [(0, 1, 2, 3)], floor=0.0)


def test_dihedral_priors_from_the_training_data_are_learned_as_a_residual(tmp_path):
    """``priors=["dihedrals:0-1-2-3"]`` fits the torsion to the frames and the model carries it as a
    residual prior: the residual target at a noisy input is lowered by ``sigma F_prior / kT``, and the
    calculator adds the prior's forces to the network's. Malformed specs are refused by name."""
    from ase_denoise.training import prepare_data
    from ase_denoise.priors import Dihedrals, parse_dihedrals

    rng = np.random.default_rng(5)
    frames = _butane_like(rng.normal(-1.0, 0.4, 40))
    config, physics, converted = prepare_data(frames, noise_std=0.02, temperature_K=300.0,
                                              priors=["dihedrals:0-1-2-3"], r_max=3.0, num_channels=4)
    assert [d["kind"] for d in physics.priors] == ["dihedrals"]
    prior = prior_from_dict(physics.priors[0])
    assert isinstance(prior, Dihedrals) and prior.dihedrals == [(0, 1, 2, 3)]
    model = build_model(config, physics, torch.float64, seed=0)
    save_model(model, tmp_path / "torsion.safetensors")
    model = load_model(tmp_path / "torsion.safetensors")
    atoms = _butane_like(np.array([1.2]))[0]  # phi > 0: where the data never were
    assert np.abs(prior.forces(atoms)).max() > 0.01
    expected = predict(model, [structure_frame(atoms, model)], priors=False) + prior.forces(atoms)
    np.testing.assert_allclose(DenoiseCalculator(model).get_forces(atoms), expected, atol=1e-12)
    assert parse_dihedrals("4-6-8-14,6-8-14-16") == [(4, 6, 8, 14), (6, 8, 14, 16)]
    for bad in ("4-6-8", "a-b-c-d", "", "1-2-3--4"):
        with pytest.raises(ValueError, match="quadruples"):
            parse_dihedrals(bad)
    with pytest.raises(ValueError, match="quadruples"):
        prepare_data(frames, noise_std=0.02, temperature_K=300.0, priors=["dihedrals:0-1-2"], r_max=3.0, num_channels=4)


def _torsion_samples(u_over_kT, n: int, rng) -> np.ndarray:
    """``n`` angles (radians) drawn from ``exp(-u(phi))`` by inverting its tabulated CDF."""
    grid = np.linspace(-np.pi, np.pi, 3600, endpoint=False)
    cdf = np.cumsum(np.exp(-u_over_kT(grid)))
    return np.interp(rng.uniform(0, cdf[-1], n), cdf, grid)


def test_dihedral_correction_is_the_free_energy_difference_between_sampled_and_target_torsions(tmp_path):
    """``fit_dihedral_correction`` (one iterative Boltzmann step): a model whose MD samples its torsion
    from ``exp(-U_m/kT)`` while the data follow ``exp(-U_t/kT)`` gets ``U_t - U_m`` (within 0.3 kT
    everywhere, both densities covering the circle; 0.16-0.25 kT over sample seeds 3-7); a model already sampling the data gets nothing
    more than its previous correction; ``damping`` scales the step. Added with ``with_prior`` it acts
    at inference only, beside the residual torsion prior, and round-trips through a checkpoint."""
    from ase_denoise.model import with_prior
    from ase_denoise.priors import DihedralCorrection, fit_dihedral_correction

    kT = 0.025852
    u_model = lambda p: 1.2 * np.cos(p) + 0.5 * np.sin(2 * p)  # noqa: E731  (in kT)
    u_data = lambda p: -0.8 * np.cos(p - 0.4) + 0.7 * np.cos(3 * p)  # noqa: E731
    rng = np.random.default_rng(3)
    sampled, target = _torsion_samples(u_model, 6000, rng), _torsion_samples(u_data, 6000, rng)
    quad = [(0, 1, 2, 3)]
    step = fit_dihedral_correction(sampled[:, None], target[:, None], kT, quad, floor=1e-4)
    assert isinstance(step, DihedralCorrection) and step.kind == "dihedral_correction" and not step.in_residual
    grid = np.linspace(-np.pi, np.pi, 360, endpoint=False)
    fitted = step.profile(grid[:, None])[:, 0] / kT
    true = u_data(grid) - u_model(grid)
    error = fitted - true - np.mean(fitted - true)  # up to a constant
    assert np.abs(error).max() < 0.3, np.abs(error).max()
    # the model now samples the data: the next step adds nothing to the correction it ran with
    again = fit_dihedral_correction(target[:, None], target[:, None], kT, quad, previous=step, floor=1e-4)
    np.testing.assert_allclose(again.cos, step.cos, atol=1e-12)
    np.testing.assert_allclose(again.sin, step.sin, atol=1e-12)
    half = fit_dihedral_correction(sampled[:, None], target[:, None], kT, quad, damping=0.5, floor=1e-4)
    np.testing.assert_allclose(half.cos, 0.5 * np.asarray(step.cos), atol=1e-12)
    for bad, match in ((dict(damping=0.0), "damping"), (dict(previous=DihedralCorrection(quad, [[0.0]], [[0.0]])), "same dihedrals"),
                       (dict(sampled=np.full((10, 1), np.nan)), "finite")):
        args = dict(sampled=sampled[:, None], target=target[:, None], kT=kT, dihedrals=quad)
        with pytest.raises(ValueError, match=match):
            fit_dihedral_correction(**{**args, **bad})

    # on a trained-style model with a residual torsion prior: added beside it, at inference only
    from ase_denoise.training import prepare_data

    frames = _butane_like(target[:40])
    config, physics, _ = prepare_data(frames, noise_std=0.02, temperature_K=300.0, priors=["dihedrals:0-1-2-3"],
                                      r_max=3.0, num_channels=4)
    model = build_model(config, physics, torch.float64, seed=0)
    corrected = with_prior(model, step)
    assert [p.kind for p in corrected.priors] == ["dihedrals", "dihedral_correction"]
    assert "iterative Boltzmann correction" in corrected.priors[-1].describe()
    save_model(corrected, tmp_path / "corrected.safetensors")
    loaded = load_model(tmp_path / "corrected.safetensors")
    assert loaded.priors[-1] == step
    atoms = _butane_like(np.array([2.0]))[0]
    difference = DenoiseCalculator(loaded).get_forces(atoms) - DenoiseCalculator(model).get_forces(atoms)
    np.testing.assert_allclose(difference, step.forces(atoms), atol=1e-10)
    assert np.abs(difference).max() > 0.01


def _torus_samples(u_over_kT, n: int, rng, points: int = 360) -> np.ndarray:
    """``n`` angle pairs [n, 2] (radians) drawn from ``exp(-u(phi, psi))``: a grid cell by its weight,
    then uniformly within it."""
    axis = np.linspace(-np.pi, np.pi, points, endpoint=False)
    phi, psi = np.meshgrid(axis, axis, indexing="ij")
    w = np.exp(-u_over_kT(phi, psi)).ravel()
    cell = rng.choice(w.size, size=n, p=w / w.sum())
    step = 2 * np.pi / points
    return np.stack([phi.ravel()[cell], psi.ravel()[cell]], axis=1) + rng.uniform(0, step, (n, 2))


def test_dihedral_pair_correction_is_the_joint_free_energy_difference_and_acts_on_both_angles(tmp_path):
    """``fit_dihedral_pair_correction`` (one iterative Boltzmann step on the joint phi/psi
    distribution): a model sampling ``exp(-U_m/kT)`` with *independent* angles while the data couple
    them (``cos(phi - psi)``) gets ``U_t - U_m`` within 0.3 kT over the torus, coupling included,
    which no one-dimensional correction can hold; the data already sampled give no step; ``damping``
    scales it. Its forces are minus its energy's gradient (finite differences) with zero net force and
    torque, the JSON form round trips, and ``with_prior`` keeps it beside a one-dimensional correction."""
    from ase_denoise.model import with_prior
    from ase_denoise.priors import DihedralCorrection, DihedralPairCorrection, fit_dihedral_pair_correction
    from ase_denoise.priors.torsions import _pair_frequencies

    kT = 0.025852
    u_model = lambda a, b: 0.9 * np.cos(a) - 0.6 * np.cos(b - 0.5)  # noqa: E731  (in kT)
    u_data = lambda a, b: -1.2 * np.cos(a - b) + 0.5 * np.sin(a) + 0.4 * np.cos(2 * b)  # noqa: E731
    rng = np.random.default_rng(4)
    sampled, target = _torus_samples(u_model, 20000, rng), _torus_samples(u_data, 20000, rng)
    pair = [((0, 1, 2, 3), (1, 2, 3, 4))]
    step = fit_dihedral_pair_correction(sampled, target, kT, pair, orders=2, floor=1e-4)
    assert isinstance(step, DihedralPairCorrection) and not step.in_residual and step.orders == 2
    assert len(step.cos[0]) == len(_pair_frequencies(2)) == 12
    axis = np.linspace(-np.pi, np.pi, 60, endpoint=False)
    a, b = np.meshgrid(axis, axis, indexing="ij")
    fitted = step.profile(np.stack([a, b], axis=-1)[..., None, :])[..., 0] / kT
    true = u_data(a, b) - u_model(a, b)
    error = fitted - true - np.mean(fitted - true)
    assert np.abs(error).max() < 0.3, np.abs(error).max()
    coupling = fitted - fitted.mean(axis=0, keepdims=True) - fitted.mean(axis=1, keepdims=True) + fitted.mean()
    assert np.abs(coupling).max() > 1.0  # the step is not a sum of two one-dimensional terms
    again = fit_dihedral_pair_correction(target, target, kT, pair, previous=step, orders=2, floor=1e-4)
    np.testing.assert_allclose(again.cos, step.cos, atol=1e-12)
    half = fit_dihedral_pair_correction(sampled, target, kT, pair, damping=0.5, orders=2, floor=1e-4)
    np.testing.assert_allclose(half.sin, 0.5 * np.asarray(step.sin), atol=1e-10)
    for bad, match in ((dict(damping=1.5), "damping"), (dict(sampled=np.full((10, 2), np.inf)), "finite"),
                       (dict(previous=fit_dihedral_pair_correction(target, target, kT, pair, orders=3)), "same dihedral pairs")):
        args = dict(sampled=sampled, target=target, kT=kT, pairs=pair, orders=2)
        with pytest.raises(ValueError, match=match):
            fit_dihedral_pair_correction(**{**args, **bad})
    with pytest.raises(ValueError, match="2 M \\(M \\+ 1\\)"):
        DihedralPairCorrection(pair, [[0.0] * 5], [[0.0] * 5])
    with pytest.raises(ValueError, match="four distinct atoms"):
        DihedralPairCorrection([((0, 1, 2, 3), (1, 2, 2, 4))], step.cos, step.sin)

    # forces: minus the gradient, no net force or torque; copies; JSON
    atoms = Atoms("C6", positions=rng.normal(0, 1.5, (6, 3)))
    term = DihedralPairCorrection([((0, 1, 2, 3), (1, 2, 3, 4)), ((5, 0, 2, 4), (0, 1, 2, 3))],
                                  rng.normal(0, 0.05, (2, 12)).tolist(), rng.normal(0, 0.05, (2, 12)).tolist())
    energy, forces = term.energy_and_forces(atoms.numbers, atoms.positions, atoms.cell.array, atoms.pbc)
    assert np.abs(forces).max() > 0.02
    np.testing.assert_allclose(forces, _finite_difference(term, atoms), atol=1e-7)
    np.testing.assert_allclose(forces.sum(axis=0), 0.0, atol=1e-12)
    np.testing.assert_allclose(np.cross(atoms.positions, forces).sum(axis=0), 0.0, atol=1e-12)
    moved = atoms.positions + rng.normal(0, 0.2, (6, 3))
    _, f2 = term.replicas_energy_and_forces(atoms.numbers, np.stack([atoms.positions, moved]), atoms.cell.array, atoms.pbc)
    np.testing.assert_allclose(f2[0], forces, atol=1e-12)
    assert prior_from_dict(json.loads(json.dumps(term.to_dict()))) == term

    # beside a one-dimensional correction on a model, at inference only, through a checkpoint
    from ase_denoise.training import prepare_data

    frames = [Atoms("C5", positions=rng.normal(0, 1.2, (5, 3))) for _ in range(6)]
    config, physics, _ = prepare_data(frames, noise_std=0.02, temperature_K=300.0, r_max=3.0, num_channels=4)
    model = build_model(config, physics, torch.float64, seed=0)
    one_d = DihedralCorrection([(0, 1, 2, 3)], [[0.01]], [[0.0]])
    corrected = with_prior(with_prior(model, one_d), step)
    assert [p.kind for p in corrected.priors] == ["dihedral_correction", "dihedral_pair_correction"]
    assert "joint iterative Boltzmann correction" in corrected.priors[-1].describe()
    save_model(corrected, tmp_path / "joint.safetensors")
    loaded = load_model(tmp_path / "joint.safetensors")
    assert loaded.priors[-1] == step
    difference = DenoiseCalculator(loaded).get_forces(frames[0]) - DenoiseCalculator(model).get_forces(frames[0])
    np.testing.assert_allclose(difference, one_d.forces(frames[0]) + step.forces(frames[0]), atol=1e-10)
