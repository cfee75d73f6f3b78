"""Model symmetry and unit checks, in float64 and float32, for both heads."""

import numpy as np
import pytest
import torch
from ase.build import bulk
from ase.units import kB

from ase_denoise.config import ModelConfig
from ase_denoise.data import collate, to_frame
from ase_denoise.model import build_model, denoising_target, forces_from_output
from ase_denoise.testing import equivariance_errors, model_output, net_force

TOL = {torch.float64: 1e-8, torch.float32: 2e-4}


def small_config(head: str, pbc=True) -> ModelConfig:
    return ModelConfig(
        atomic_numbers=[18, 36], noise_std=0.1, temperature_K=94.4, head=head, r_max=4.5,
        num_channels=8, max_ell=3, max_L=2, correlation=3, pbc=(pbc, pbc, pbc),
    )


def binary_liquid(pbc=True):
    atoms = bulk("Ar", "fcc", a=5.3, cubic=True).repeat((2, 2, 2))
    atoms.rattle(0.25, seed=3)
    atoms.numbers[::3] = 36
    if not pbc:
        atoms.pbc = False
        atoms.cell = None
    return atoms


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("head", ["edge", "vector"])
@pytest.mark.parametrize("pbc", [True, False])
def test_equivariance(head, dtype, pbc):
    torch.manual_seed(0)
    model = build_model(small_config(head, pbc), dtype)
    # scale the output up so that the relative tolerance is meaningful
    atoms = binary_liquid(pbc)
    out = model_output(model, atoms)
    assert np.abs(out).max() > 1e-4, "model output is ~0: the symmetry check would be vacuous"
    errors = equivariance_errors(model, atoms, seed=1)
    scale = np.abs(out).max()
    for name, err in errors.items():
        assert err <= TOL[dtype] * max(1.0, scale), f"{head}/{dtype}/{name}: {err:.2e}"


def test_equivariance_check_detects_a_broken_model():
    """The check itself can fail: a model that adds a fixed vector is not rotation-equivariant."""
    model = build_model(small_config("edge"), torch.float64)
    atoms = binary_liquid()

    class Broken(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner, self.config = inner, inner.config

        def forward(self, data):
            return self.inner(data) + torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64)

    assert equivariance_errors(Broken(model), atoms)["rotation"] > 0.1


def test_edge_head_obeys_newtons_third_law_and_vector_head_does_not():
    atoms = binary_liquid()
    torch.manual_seed(0)
    edge = build_model(small_config("edge"), torch.float64)
    vector = build_model(small_config("vector"), torch.float64)
    assert net_force(edge, atoms) < 1e-12
    assert net_force(vector, atoms) > 1e-6


def test_forces_are_kT_times_output_over_sigma():
    """F = kT * eps_hat / sigma = kT * (sigma * eps_hat) / sigma^2, eV/A."""
    cfg = small_config("edge")
    model = build_model(cfg, torch.float64)
    atoms = binary_liquid()
    frame = to_frame(atoms, cfg.atomic_numbers)
    data = collate([frame.positions], [frame], 2, cfg.r_max, torch.float64)
    eps = model(data)
    expected = (kB * 94.4) * (cfg.noise_std * eps) / cfg.noise_std**2
    assert torch.allclose(model.forces(data), expected, rtol=1e-12, atol=0)
    assert torch.allclose(forces_from_output(eps, 0.2, 0.05), eps * 0.25)
    noise = torch.randn(5, 3, dtype=torch.float64)
    assert torch.allclose(denoising_target(noise, 0.2), -noise / 0.2)


def test_build_does_not_change_global_dtype():
    before = torch.get_default_dtype()
    build_model(small_config("vector"), torch.float64)
    assert torch.get_default_dtype() == before


def test_cutoff_is_smooth_extra_edges_change_nothing():
    """DESIGN s4: edges beyond r_max contribute exactly nothing (envelope is zero there)."""
    cfg = small_config("edge")
    model = build_model(cfg, torch.float64)
    atoms = binary_liquid()
    frame = to_frame(atoms, cfg.atomic_numbers)
    a = model(collate([frame.positions], [frame], 2, cfg.r_max, torch.float64))
    b = model(collate([frame.positions], [frame], 2, cfg.r_max + 1.0, torch.float64))
    assert torch.allclose(a, b, atol=1e-12, rtol=0)
