"""Property-based tests of the calculator, with hypothesis.

Random valid structures -- elements drawn from the model's table, 2 to 12 atoms at least
``MIN_SEPARATION`` apart (periodic images included) in a random, possibly sheared, box; periodic or
not, as the model was trained -- give finite float64 forces of shape (n, 3), and rotating the input
rotates the forces: ``F(R x) = R F(x)`` in float64 to 1e-8 relative to the largest force (measured:
at worst 2.4e-9 for the vector head -- MACE's float64 path is not exact to rounding -- and 3e-11 for the
edge head, over 1,800 random structures; `derandomize=True` keeps CI's 15 examples fixed).

Two tiny models, built once per module: a periodic one with the ``vector`` head and a non-periodic
one with the ``edge`` head.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.geometry import get_distances
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ase_denoise import DenoiseCalculator
from ase_denoise.data.neighbours import cell_heights

from _helpers import make_model

ELEMENTS = [1, 6, 8, 18]  # H, C, O, Ar
R_MAX = 3.5  # Angstrom
MIN_SEPARATION = 0.9  # Angstrom
RTOL = 1e-8
FORCE_FLOOR = 1e-6  # eV/Angstrom; the models' forces are of order 0.01-0.1 eV/Angstrom

SETTINGS = settings(
    max_examples=15, deadline=None, derandomize=True, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def _model(head: str, pbc: bool) -> torch.nn.Module:
    model = make_model(
        ELEMENTS, noise_std=0.05, temperature_K=300.0, pbc=pbc, seed=3, r_max=R_MAX, num_channels=8, max_ell=2,
        max_L=1, correlation=2, num_interactions=2, radial_mlp=[16], edge_mlp=[16], head=head, avg_num_neighbors=4.0,
    )
    generator = torch.Generator().manual_seed(4)
    with torch.no_grad():  # make the random head non-trivial: forces of order one, not 1e-6
        for p in model.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=generator, dtype=p.dtype))
    return model


@pytest.fixture(scope="module")
def periodic_model():
    return _model("vector", True)


@pytest.fixture(scope="module")
def open_model():
    return _model("edge", False)


def random_rotation(rng: np.random.Generator) -> np.ndarray:
    """A uniformly random proper rotation (det +1)."""
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return q


def random_structure(seed: int, n: int, box: float, shear: float, periodic: bool) -> Atoms:
    """``n`` atoms, elements from ELEMENTS, uniformly placed in a (sheared) box with rejection of
    any placement closer than MIN_SEPARATION to an atom already placed (periodic images included)."""
    rng = np.random.default_rng(seed)
    cell = box * (np.eye(3) + shear * rng.uniform(-1.0, 1.0, size=(3, 3)) * (1 - np.eye(3)))
    if periodic and cell_heights(cell).min() < R_MAX + 0.1:  # keep the cell valid for the model
        cell = np.eye(3) * box
    pbc = periodic
    positions = []
    for _ in range(200 * n):
        if len(positions) == n:
            break
        candidate = rng.uniform(0.0, 1.0, size=3) @ cell
        if positions:
            _, d = get_distances(candidate[None], np.array(positions), cell=cell, pbc=pbc)
            if d.min() < MIN_SEPARATION:
                continue
        positions.append(candidate)
    assert len(positions) >= 2, "could not place two atoms"  # never happens: boxes are > 4 A wide
    positions = np.array(positions)
    numbers = rng.choice(ELEMENTS, size=len(positions))
    return Atoms(numbers=numbers, positions=positions, cell=cell if periodic else None, pbc=periodic)


def rotated(atoms: Atoms, rotation: np.ndarray) -> Atoms:
    out = atoms.copy()
    out.positions = atoms.positions @ rotation.T
    if atoms.pbc.any():
        out.set_cell(atoms.cell.array @ rotation.T, scale_atoms=False)
    return out


def forces(model, atoms: Atoms) -> np.ndarray:
    return DenoiseCalculator(model).get_forces(atoms)


structures = dict(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(2, 12),
    box=st.floats(R_MAX + 0.5, 9.0),
    shear=st.floats(0.0, 0.3),
)


def check_finite_and_rotating(model, atoms: Atoms, seed: int) -> None:
    f = forces(model, atoms)
    assert f.shape == (len(atoms), 3) and f.dtype == np.float64
    assert np.all(np.isfinite(f))
    rotation = random_rotation(np.random.default_rng(seed + 1))
    f_rot = forces(model, rotated(atoms, rotation))
    # relative to the largest force; forces below FORCE_FLOOR (atoms all near or beyond the cutoff,
    # where the envelope makes them vanish) count as zero: there only rounding is left to compare
    scale = max(np.abs(f).max(), FORCE_FLOOR)
    err = np.abs(f_rot - f @ rotation.T).max() / scale
    assert err <= RTOL, f"rotation error {err:.2e} (relative to max force {np.abs(f).max():.3e} eV/A)"


@SETTINGS
@given(**structures)
def test_periodic_structures_give_finite_rotating_forces(periodic_model, seed, n, box, shear):
    atoms = random_structure(seed, n, box, shear, periodic=True)
    check_finite_and_rotating(periodic_model, atoms, seed)


@SETTINGS
@given(**structures)
def test_open_structures_give_finite_rotating_forces(open_model, seed, n, box, shear):
    atoms = random_structure(seed, n, box, shear, periodic=False)
    check_finite_and_rotating(open_model, atoms, seed)


@SETTINGS
@given(**structures, shifts=st.lists(st.integers(-6, 6), min_size=36, max_size=36))
def test_lattice_translations_of_single_atoms_change_no_force(periodic_model, seed, n, box, shear, shifts):
    """Atoms outside the periodic cell, as MD produces them (ASE never wraps), give the same forces."""
    atoms = random_structure(seed, n, box, shear, periodic=True)
    f = forces(periodic_model, atoms)
    moved = atoms.copy()
    moved.positions += np.array(shifts[: 3 * len(atoms)]).reshape(-1, 3) @ atoms.cell.array
    err = np.abs(forces(periodic_model, moved) - f).max() / max(np.abs(f).max(), FORCE_FLOOR)
    assert err <= RTOL, f"lattice translation changed the forces by {err:.2e} (relative)"


def test_the_generated_structures_are_valid_and_varied():
    """Guard against a generator that silently produces trivial structures."""
    rng = np.random.default_rng(0)
    sizes, kinds = set(), set()
    for seed in range(20):
        n = int(rng.integers(2, 13))
        atoms = random_structure(seed, n, 6.0, 0.2, periodic=bool(seed % 2))
        _, d = get_distances(atoms.positions, cell=atoms.cell, pbc=atoms.pbc)
        d = d[np.triu_indices(len(atoms), 1)]
        assert d.min() >= MIN_SEPARATION - 1e-12
        sizes.add(len(atoms))
        kinds.update(atoms.get_chemical_symbols())
    assert len(sizes) > 5 and kinds == {"H", "C", "O", "Ar"}
