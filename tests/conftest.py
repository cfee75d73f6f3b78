"""Shared pytest setup for ase_denoise.

* One thread everywhere: with both cores busy, torch's default of 2 threads ran
  12-25x slower (DESIGN.md section 9). ``OMP_NUM_THREADS`` must be set before
  torch is imported, so it is done here, at the very top.
* ``import mace`` before anything imports e3nn: e3nn 0.4.4 only imports on
  torch >= 2.6 after mace has set ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD``; e3nn is
  then imported here once with its import-time UserWarning silenced.
* ``@pytest.mark.slow`` tests are skipped unless ``--runslow`` is given or the
  environment has ``ASE_DENOISE_SLOW=1``.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import warnings  # noqa: E402

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    import mace  # noqa: E402,F401  (must precede any e3nn import)
    import torch  # noqa: E402

    # e3nn torch.load()s its constants at import and warns about the variable mace
    # set; importing it once here, silenced, keeps that warning out of every test.
    from e3nn import o3  # noqa: E402,F401

import pytest  # noqa: E402

torch.set_num_threads(1)

SLOW_ENV = "ASE_DENOISE_SLOW"


def _slow_enabled(config: pytest.Config) -> bool:
    return bool(config.getoption("--runslow")) or os.environ.get(SLOW_ENV, "") == "1"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--runslow",
        action="store_true",
        default=False,
        help=f"run tests marked @pytest.mark.slow (same as {SLOW_ENV}=1)",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if _slow_enabled(config):
        return
    skip_slow = pytest.mark.skip(reason=f"slow test: use --runslow or {SLOW_ENV}=1")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip_slow)


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """A fresh empty directory (``tmp_path``) that is also the current directory.

    Use it for code that writes relative paths (logs, trajectories, run folders);
    the previous working directory is restored after the test.
    """
    monkeypatch.chdir(tmp_path)
    return tmp_path
