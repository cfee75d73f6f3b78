"""Shared pytest setup and fixtures for ase_denoise.

* One thread everywhere: with both cores busy, torch's default of 2 threads ran
  12-25x slower (docs/design.md). ``OMP_NUM_THREADS`` must be set before torch
  is imported, so it is done here, at the very top.
* mace and e3nn are imported once, through ``ase_denoise._mace`` (the library's
  one import point, which leaves ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD`` as the
  host had it), with their import-time warnings silenced.
* ``@pytest.mark.slow`` marks the long runs (about 15 s or more each: trainings
  to a tolerance, benchmark pipelines, notebooks, MD engines against ASE). The
  default suite, ``make test``, leaves them out (``-m "not slow"``: about 5 min
  on 2 cores); ``make test-slow`` runs them, ``make test-all`` runs everything,
  and CI (``.ci/run``) runs ``test-slow`` and then ``test``. Plain ``pytest``
  runs everything.
* Fixtures shared by several files: ``argon`` (a fresh 32-atom periodic argon
  box), ``argon_model`` / ``argon_model_file`` (a tiny periodic argon model and
  its saved file; never modify them in place), ``dimers`` (16 harmonic H2
  frames at 300 K with force labels; ``shared_dimers`` is the same list, not
  copied, for module-scoped fixtures), ``lj_argon_small`` (Lennard-Jones argon
  training and test frames), ``zoo_argon`` (the shipped model
  ``lj-argon-94K``) and ``workdir``. Plain values and helpers are in
  ``tests/_helpers.py``.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import warnings  # noqa: E402
from pathlib import Path  # noqa: E402

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    import torch  # noqa: E402

    import ase_denoise._mace  # noqa: E402,F401  (mace, then e3nn; restores the host's environment)

import pytest  # noqa: E402
from ase.build import bulk  # noqa: E402

from _helpers import ARGON_TINY, make_model  # noqa: E402

torch.set_num_threads(1)

REPO = Path(__file__).resolve().parents[1]
ZOO_ARGON = "lj-argon-94K"


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """A fresh empty directory (``tmp_path``) that is also the current directory.

    Use it for code that writes relative paths (logs, trajectories, run folders);
    the previous working directory is restored after the test.
    """
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def argon():
    """32 Ar atoms, periodic fcc box of 10.52 A (taller than every test model's cutoff), rattled 0.05 A.
    A new object per test: tests may change it."""
    atoms = bulk("Ar", "fcc", a=5.26, cubic=True).repeat((2, 2, 2))
    atoms.rattle(0.05, seed=0)
    return atoms


@pytest.fixture(scope="session")
def argon_model():
    """A tiny periodic argon model: element table ['Ar'], r_max 4.5 A, vector head, sigma 0.05 A,
    94.4 K, float64, seeded weights. Shared by the whole session: do not change it in place (e.g. do
    not hand it to ``DenoiseCalculator(..., dtype=torch.float32)``, which converts the model)."""
    return make_model([18], noise_std=0.05, temperature_K=94.4, pbc=True, seed=0, **ARGON_TINY)


@pytest.fixture(scope="session")
def argon_model_file(argon_model, tmp_path_factory):
    """``argon_model`` saved as a model file (read only)."""
    from ase_denoise import save_model

    path = tmp_path_factory.mktemp("argon_model") / "argon.safetensors"
    save_model(argon_model, path)
    return path


@pytest.fixture(scope="session")
def shared_dimers():
    """The frames of ``dimers``, one list for the session (for module-scoped fixtures): read only."""
    from ase_denoise.data.reference import sample_harmonic_dimer

    return sample_harmonic_dimer(16, k=2.0, d0=1.5, temperature_K=300.0, seed=3)


@pytest.fixture
def dimers(shared_dimers):
    """16 non-periodic H2 frames at 300 K (``info['temperature_K']`` set) with force labels
    (``arrays['ref_forces']``); copies, so a test may change them."""
    return [a.copy() for a in shared_dimers]


@pytest.fixture(scope="session")
def lj_argon_small(tmp_path_factory):
    """``(train, test)``: 60 Lennard-Jones argon frames (seed 0) and 6 frames of an independent run
    (seed 1), short runs (5 ps equilibration, one frame every 0.4 ps) with the true forces as labels.
    Shared by the force-recovery tests; read only."""
    from ase_denoise.data.reference import lj_argon_frames

    kw = dict(cache_dir=tmp_path_factory.mktemp("lj_argon_small"), stride=40, equilibration_steps=500)
    return lj_argon_frames(60, seed=0, **kw), lj_argon_frames(6, seed=1, **kw)


@pytest.fixture(scope="session")
def zoo_argon():
    """The shipped zoo model lj-argon-94K (read from the repository's models/; do not change it)."""
    from ase_denoise.zoo import load_model

    return load_model(ZOO_ARGON, models_dir=REPO / "models")
