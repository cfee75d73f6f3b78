"""The tutorials: every ``tutorials/*.ipynb`` runs top to bottom in fast mode.

Each notebook is copied into a temporary directory and executed there with nbclient (so plots, model
files and trajectories never land in the repository), in a kernel whose environment has
``ASE_DENOISE_TUTORIAL_FAST=1`` (tiny settings) and ``OMP_NUM_THREADS=1``. Any cell error fails the test.
Notebooks are picked up by glob, so a new tutorial is tested as soon as it is added.

Also checked, without executing anything: committed notebooks carry no outputs or execution counts,
every notebook is listed in ``tutorials/README.md``, and a paired jupytext script (``NN_name.py``
next to ``NN_name.ipynb``) has the same cells as its notebook. A first test checks that the kernel
nbclient starts is this interpreter (the project's venv), not some other Python on the machine.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from pathlib import Path

import pytest

# hard imports: the dev extra installs them, and CI must fail (not skip) if the notebooks cannot run
import ipykernel  # noqa: E402,F401
import nbclient  # noqa: E402
import nbformat  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
TUTORIALS = REPO / "tutorials"
NOTEBOOKS = sorted(TUTORIALS.glob("*.ipynb"))
KERNEL = "python3"
CELL_TIMEOUT_S = 300  # per cell; in fast mode the slowest cell takes about 10 s on a 2-core machine
FAST_ENV = "ASE_DENOISE_TUTORIAL_FAST"

ids = [p.name for p in NOTEBOOKS]


@pytest.fixture
def kernel_env(monkeypatch):
    """The environment the kernel inherits: fast mode, one thread, matplotlib's inline backend."""
    monkeypatch.setenv(FAST_ENV, "1")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.delenv("MPLBACKEND", raising=False)  # e.g. Agg from CI would disable inline figures
    monkeypatch.setenv("PYDEVD_DISABLE_FILE_VALIDATION", "1")  # quiet debugpy warning at kernel start


def execute(nb, cwd: Path):
    client = nbclient.NotebookClient(
        nb, timeout=CELL_TIMEOUT_S, kernel_name=KERNEL, resources={"metadata": {"path": str(cwd)}},
    )
    return client.execute()


def stream_text(cell) -> str:
    return "".join(o.get("text", "") for o in cell.get("outputs", []) if o.get("output_type") == "stream" and o.get("name") == "stdout")


def test_there_are_tutorials():
    assert len(NOTEBOOKS) >= 6, f"expected the tutorials in {TUTORIALS}, found {ids}"


def test_kernel_is_this_python(tmp_path, kernel_env):
    """nbclient's "python3" kernel must be this venv's interpreter with this checkout's package."""
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell("import sys; print(sys.executable); print(sys.prefix)"),
        nbformat.v4.new_code_cell("import ase_denoise, os; print(os.path.realpath(ase_denoise.__file__))"),
        nbformat.v4.new_code_cell(f"import os; print(os.environ.get({FAST_ENV!r}), os.environ.get('OMP_NUM_THREADS'), os.getcwd())"),
    ]
    execute(nb, tmp_path)
    executable, prefix = stream_text(nb.cells[0]).split("\n")[:2]
    # compare unresolved paths: a venv's python is a symlink to the base interpreter
    assert (executable, prefix) == (sys.executable, sys.prefix)
    assert stream_text(nb.cells[1]).strip() == os.path.realpath(REPO / "ase_denoise" / "__init__.py")
    fast, threads, cwd = stream_text(nb.cells[2]).split()
    assert (fast, threads) == ("1", "1")
    assert os.path.realpath(cwd) == os.path.realpath(tmp_path)


def test_every_notebook_is_listed_in_the_readme():
    readme = (TUTORIALS / "README.md").read_text()
    missing = [p.name for p in NOTEBOOKS if p.name not in readme]
    assert not missing, f"tutorials/README.md does not list {missing}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=ids)
def test_notebook_is_committed_without_outputs(path):
    nb = nbformat.read(path, as_version=4)
    dirty = [
        i for i, cell in enumerate(nb.cells)
        if cell.cell_type == "code" and (cell.get("outputs") or cell.get("execution_count") is not None)
    ]
    assert not dirty, (
        f"{path.name}: code cells {dirty} have outputs or execution counts; strip them "
        f"(jupyter nbconvert --clear-output --inplace {path.relative_to(REPO)})"
    )


@pytest.mark.parametrize("path", NOTEBOOKS, ids=ids)
def test_paired_script_matches_notebook(path):
    script = path.with_suffix(".py")
    if not script.exists():
        pytest.skip(f"{path.name} has no paired jupytext script")
    import jupytext
    nb, paired = nbformat.read(path, as_version=4), jupytext.read(script)
    cells = [(c.cell_type, c.source.strip()) for c in nb.cells]
    paired_cells = [(c.cell_type, c.source.strip()) for c in paired.cells]
    assert cells == paired_cells, (
        f"{path.name} and {script.name} differ; sync them with jupytext --sync {path.relative_to(REPO)}"
    )


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=ids)
def test_notebook_runs_in_fast_mode(path, tmp_path, kernel_env):
    before = sorted(p.name for p in TUTORIALS.iterdir())
    work = tmp_path / "run"
    work.mkdir()
    copy = work / path.name
    shutil.copy(path, copy)
    nb = nbformat.read(copy, as_version=4)
    start = time.perf_counter()
    execute(nb, work)  # raises CellExecutionError (with the cell and traceback) on any cell error
    wall = time.perf_counter() - start
    print(f"{path.name}: executed in {wall:.1f} s")
    errors = [o for c in nb.cells for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors, [f"{e.get('ename')}: {e.get('evalue')}" for e in errors]
    assert sorted(p.name for p in TUTORIALS.iterdir()) == before, "the notebook wrote into tutorials/"
