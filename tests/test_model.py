"""Model symmetry and unit checks, in float64 and float32, for both heads.

Building one of these models (max_ell 3, correlation 3) takes about 1.5 s, most of it e3nn's code
generation, so each (head, periodicity) is built once per module; float32 variants are copies.
"""

import copy

import numpy as np
import pytest
import torch
from ase.build import bulk
from ase.units import kB

from ase_denoise.config import ModelConfig, PhysicsConfig
from ase_denoise.data import to_frame
from ase_denoise.data.graphs import collate
from ase_denoise.training.losses import denoising_target
from ase_denoise.model import build_model, forces_from_output
from ase_denoise.testing import default_dtype, equivariance_errors, model_output, net_force

from _helpers import TINY

TOL = {torch.float64: 1e-8, torch.float32: 2e-4}


def small_config(head: str) -> ModelConfig:
    return ModelConfig(atomic_numbers=[18, 36], head=head, r_max=4.5, num_channels=8, max_ell=3, max_L=2,
                       correlation=3)


def physics(pbc=True, noise_std=0.1) -> PhysicsConfig:
    return PhysicsConfig(temperature_K=94.4, noise_std=noise_std, pbc=(pbc, pbc, pbc))


@pytest.fixture(scope="module")
def small_model():
    """``small_model(head, pbc=True, dtype=float64)``: a seeded model of ``small_config(head)``, built once
    per (head, pbc); every call returns a fresh copy in ``dtype`` (tests may change it)."""
    built = {}

    def get(head: str, pbc: bool = True, dtype=torch.float64):
        if (head, pbc) not in built:
            built[head, pbc] = build_model(small_config(head), physics(pbc), torch.float64, seed=0)
        return copy.deepcopy(built[head, pbc]).to(dtype)

    return get


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
def test_equivariance(small_model, head, dtype, pbc):
    model = small_model(head, pbc, dtype)
    assert next(model.parameters()).dtype == dtype and model.physics.pbc == (pbc,) * 3
    # scale the output up so that the relative tolerance is meaningful
    atoms = binary_liquid(pbc)
    out = model_output(model, atoms)
    assert np.abs(out).max() > 1e-4, "model output is ~0: the symmetry check would be vacuous"
    errors = equivariance_errors(model, atoms, seed=1)
    scale = np.abs(out).max()
    for name, err in errors.items():
        assert err <= TOL[dtype] * max(1.0, scale), f"{head}/{dtype}/{name}: {err:.2e}"


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_correlation_one_vector_model_runs_and_is_equivariant(dtype):
    """mace 0.3.16's Contraction.forward ends in a ``.view`` that fails at correlation 1 for L > 0
    targets; the model's own instances end in ``reshape`` instead (``_mace.ContiguousContraction``),
    and mace's class is left as it was (no global patch)."""
    from mace.modules.symmetric_contraction import Contraction

    from ase_denoise._mace import ContiguousContraction

    config = ModelConfig(atomic_numbers=[18, 36], head="vector", r_max=4.5, num_channels=8, max_ell=2, max_L=1,
                         correlation=1, num_interactions=2)
    model = build_model(config, physics(), dtype, seed=0)
    kinds = [type(m) for m in model.modules() if isinstance(m, Contraction)]
    assert kinds and set(kinds) == {ContiguousContraction}
    assert Contraction.forward is not ContiguousContraction.forward
    atoms = binary_liquid()
    out = model_output(model, atoms)
    scale = np.abs(out).max()
    assert np.isfinite(out).all() and scale > 1e-6
    for name, err in equivariance_errors(model, atoms, seed=1).items():
        assert err <= TOL[dtype] * max(1.0, scale), f"{dtype}/{name}: {err:.2e}"
    # higher correlation keeps mace's own class
    deeper = build_model(ModelConfig.from_dict(dict(config.to_dict(), correlation=2)), physics(), dtype, seed=0)
    assert {type(m) for m in deeper.modules() if isinstance(m, Contraction)} == {Contraction}


def test_equivariance_check_detects_a_broken_model(small_model):
    """The check itself can fail: a model that adds a fixed vector is not rotation-equivariant."""
    model = small_model("edge")
    atoms = binary_liquid()

    class Broken(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def __getattr__(self, name):  # config, physics, noise_levels...: the inner model's
            try:
                return super().__getattr__(name)
            except AttributeError:
                return getattr(self.inner, name)

        def forward(self, data):
            return self.inner(data) + torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64)

    assert equivariance_errors(Broken(model), atoms)["rotation"] > 0.1


def test_edge_head_obeys_newtons_third_law_and_vector_head_does_not(small_model):
    atoms = binary_liquid()
    edge, vector = small_model("edge"), small_model("vector")
    assert net_force(edge, atoms) < 1e-12
    assert net_force(vector, atoms) > 1e-6


def test_forces_are_kT_times_output_over_sigma(small_model):
    """F = kT * eps_hat / sigma = kT * (sigma * eps_hat) / sigma^2, eV/A."""
    cfg, model = small_config("edge"), small_model("edge")
    assert model.noise_levels == (0.1,) and model.temperature_K == 94.4 and model.kT == pytest.approx(kB * 94.4)
    atoms = binary_liquid()
    frame = to_frame(atoms, cfg.atomic_numbers)
    data = collate([frame.positions], [frame], 2, cfg.r_max, torch.float64)
    eps = model(data)
    expected = (kB * 94.4) * (0.1 * eps) / 0.1**2
    assert torch.allclose(model.forces(data), expected, rtol=1e-12, atol=0)
    assert torch.allclose(forces_from_output(eps, 0.2, 0.05), eps * 0.25)
    noise = torch.randn(5, 3, dtype=torch.float64)
    assert torch.allclose(denoising_target(noise, 0.2), -noise / 0.2)


def test_forces_scale_each_graph_by_its_own_sigma(small_model):
    """With ``data['noise_std']`` (one sigma per graph, from collate) the forces of each graph are
    kT * eps_hat / (its sigma)."""
    cfg, model = small_config("edge"), small_model("edge")
    frame = to_frame(binary_liquid(), cfg.atomic_numbers)
    data = collate([frame.positions] * 2, [frame] * 2, 2, cfg.r_max, torch.float64, noise_std=[0.05, 0.2])
    torch.testing.assert_close(data["noise_std"], torch.tensor([0.05, 0.2], dtype=torch.float64))
    forces, eps = model.forces(data), model(data)
    n = frame.n_atoms
    assert eps[:n].abs().max() > 1e-6
    torch.testing.assert_close(forces[:n], model.kT * eps[:n] / 0.05, rtol=1e-12, atol=0)
    torch.testing.assert_close(forces[n:], model.kT * eps[n:] / 0.2, rtol=1e-12, atol=0)


def test_build_does_not_change_global_dtype():
    """Nor e3nn's code-generation setting, which the build switches off while it runs
    (``eager_e3nn_codegen``): modules built outside keep whichever the user chose."""
    import e3nn

    before = torch.get_default_dtype()
    codegen = e3nn.get_optimization_defaults()
    model = build_model(ModelConfig(atomic_numbers=[18], **TINY), physics(), torch.float64)
    assert torch.get_default_dtype() == before and e3nn.get_optimization_defaults() == codegen
    assert not any(isinstance(m, torch.jit.ScriptModule) for m in model.modules())  # e3nn's kernels stay fx
    e3nn.set_optimization_defaults(jit_script_fx=False)
    try:
        build_model(ModelConfig(atomic_numbers=[18], **TINY), physics(), torch.float64)
        assert e3nn.get_optimization_defaults()["jit_script_fx"] is False
    finally:
        e3nn.set_optimization_defaults(**codegen)
    with pytest.raises(RuntimeError), default_dtype(torch.float64):  # restored also when the block raises
        assert torch.get_default_dtype() == torch.float64
        raise RuntimeError
    assert torch.get_default_dtype() == before


def test_seeded_build_is_reproducible_and_leaves_the_global_generator_alone():
    cfg = ModelConfig(atomic_numbers=[18], **TINY)
    torch.manual_seed(123)
    expected_next = torch.rand(3)
    torch.manual_seed(123)
    a = build_model(cfg, physics(), torch.float64, seed=5)
    assert torch.equal(torch.rand(3), expected_next)  # the global stream did not move
    b = build_model(cfg, physics(), torch.float64, seed=5)
    c = build_model(cfg, physics(), torch.float64, seed=6)
    assert all(torch.equal(v, b.state_dict()[k]) for k, v in a.state_dict().items())
    assert any(not torch.equal(v, c.state_dict()[k]) for k, v in a.state_dict().items())


def test_cutoff_is_smooth_extra_edges_change_nothing(small_model):
    """docs/design.md: edges beyond r_max contribute exactly nothing (envelope is zero there)."""
    cfg, model = small_config("edge"), small_model("edge")
    atoms = binary_liquid()
    frame = to_frame(atoms, cfg.atomic_numbers)
    a = model(collate([frame.positions], [frame], 2, cfg.r_max, torch.float64))
    b = model(collate([frame.positions], [frame], 2, cfg.r_max + 1.0, torch.float64))
    assert torch.allclose(a, b, atol=1e-12, rtol=0)
