"""``import mace`` switches off torch's safe loading for the whole process; ase_denoise must not.

mace sets ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1`` in ``os.environ`` when it is imported: from then on a
plain ``torch.load(path)`` anywhere in the host program unpickles, and so runs, whatever code the file
holds. ase_denoise imports mace and e3nn in one place (``ase_denoise/_mace.py``) and puts the host's
value of the variable back afterwards.

The checks run in a fresh Python process with a clean environment (this test process has imported
mace already, through conftest.py): a user's script imports ase_denoise, computes forces with a zoo
model, imports the MACE adapter, and then loads a hostile pickle with a *plain* ``torch.load``. The
load must be refused, the payload must not run, and the variable must be as the host left it. A
control at the end of the script sets the variable by hand and shows that the payload does run
then, so the checks can fail. A text scan makes sure no other module imports mace or e3nn.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "ase_denoise"
VARIABLE = "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"
# modules allowed to import mace/e3nn, and only inside ``with host_environment_kept()``
IMPORT_POINTS = {"_mace.py", "integrations/mace.py"}
MACE_IMPORT = re.compile(
    r"^[ \t]*(?:import[ \t]+(?:mace|e3nn)\b|from[ \t]+(?:mace|e3nn)\b[\w.]*[ \t]+import\b)"
    r"|import_module\([\"'](?:mace|e3nn)\b|__import__\([\"'](?:mace|e3nn)\b",
    flags=re.MULTILINE,
)

SCRIPT = r"""
import json, os, pickle, sys

VARIABLE = "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"
marker, evil, control_marker = sys.argv[1:4]
result = {"before": os.environ.get(VARIABLE)}

import numpy as np
from ase.build import bulk
from ase_denoise import DenoiseCalculator

atoms = bulk("Ar", "fcc", a=5.78, cubic=True).repeat(2)
atoms.rattle(0.05, seed=0)
atoms.calc = DenoiseCalculator.from_zoo("lj-argon-94K")
forces = atoms.get_forces()
result["forces"] = [list(forces.shape), bool(np.isfinite(forces).all()), float(np.abs(forces).max())]
result["after_forces"] = os.environ.get(VARIABLE)

import ase_denoise.integrations.mace
result["mace_loaded"] = "mace" in sys.modules and "e3nn" in sys.modules
result["after_imports"] = os.environ.get(VARIABLE)
result["inductor_cache"] = os.environ.get("TORCHINDUCTOR_CACHE_DIR")  # torch sets it when mace imports

import torch

class Payload:
    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))  # unpickling creates the file

torch.save({"weights": Payload(marker)}, evil)
try:
    torch.load(evil)  # plain: no weights_only argument, as a host program would write it
    result["load"] = "loaded"
except Exception as exc:
    result["load"] = f"{type(exc).__module__}.{type(exc).__name__}: {str(exc)[:300]}"
    result["unpickling_error"] = isinstance(exc, pickle.UnpicklingError)
result["marker_exists"] = os.path.exists(marker)
result["after_load"] = os.environ.get(VARIABLE)

# control: with the variable set (what a bare "import mace" does) the same plain load runs the payload
torch.save({"weights": Payload(control_marker)}, evil)
os.environ[VARIABLE] = "1"
try:
    torch.load(evil)
except Exception as exc:
    result["control_error"] = repr(exc)[:300]
result["control_marker_exists"] = os.path.exists(control_marker)
print("RESULT " + json.dumps(result))
"""


def start_host_script(directory: Path, variable=None) -> subprocess.Popen:
    """Start SCRIPT in a fresh interpreter whose environment has ``VARIABLE`` unset (``variable=None``)
    or set to ``variable``."""
    env = {k: v for k, v in os.environ.items() if k not in (VARIABLE, "ASE_DENOISE_MODELS_DIR", "TORCHINDUCTOR_CACHE_DIR")}
    env["OMP_NUM_THREADS"] = "1"
    if variable is not None:
        env[VARIABLE] = variable
    (directory / "host.py").write_text(SCRIPT)
    args = [str(directory / name) for name in ("PWNED", "evil.pt", "CONTROL")]
    return subprocess.Popen([sys.executable, str(directory / "host.py"), *args], cwd=directory, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def host_result(proc: subprocess.Popen) -> dict:
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stdout[-2000:] + stderr[-3000:]
    (line,) = [line for line in stdout.splitlines() if line.startswith("RESULT ")]
    return json.loads(line[len("RESULT "):])


@pytest.fixture(scope="module")
def hosts(tmp_path_factory):
    """Both host processes, started together (each spends most of its time importing torch and mace)."""
    dirs = {case: tmp_path_factory.mktemp(f"host_{case}") for case in ("unset", "zero")}
    procs = {"unset": start_host_script(dirs["unset"]), "zero": start_host_script(dirs["zero"], variable="0")}
    try:
        yield {case: (dirs[case], proc) for case, proc in procs.items()}
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.communicate()


def check_protected(result: dict, host_value) -> None:
    assert result["forces"][0] == [32, 3] and result["forces"][1] and result["forces"][2] > 0
    assert result["mace_loaded"]  # the adapter's import really loaded mace and e3nn
    for stage in ("before", "after_forces", "after_imports", "after_load"):
        assert result[stage] == host_value, (stage, result)
    assert result["inductor_cache"] is None, result  # no variable the host did not set
    assert result["load"] != "loaded" and result.get("unpickling_error"), result["load"]
    assert "Weights only load failed" in result["load"], result["load"]
    assert not result["marker_exists"], "the pickle's payload ran"
    # the control shows the checks can fail: with the variable set, the payload runs
    assert result["control_marker_exists"], result


@pytest.mark.slow  # ~9 s: a fresh interpreter imports torch and mace
def test_a_plain_torch_load_stays_safe_after_using_ase_denoise(hosts):
    directory, proc = hosts["unset"]
    check_protected(host_result(proc), host_value=None)
    assert not (directory / "PWNED").exists()


@pytest.mark.slow
def test_the_hosts_own_setting_of_the_variable_is_kept(hosts):
    """A host that set the variable to "0" (do not force unsafe loading) before importing keeps "0"."""
    directory, proc = hosts["zero"]
    check_protected(host_result(proc), host_value="0")
    assert not (directory / "PWNED").exists()


def _imports_outside_the_guard(path: Path) -> list:
    """Lines of ``path`` that import mace/e3nn not inside a ``with host_environment_kept(...)`` block."""
    text = path.read_text()
    lines = text.splitlines()
    bad = []
    for match in MACE_IMPORT.finditer(text):
        number = text.count("\n", 0, match.start())
        line = lines[number]
        indent = len(line) - len(line.lstrip())
        for previous in reversed(lines[:number]):  # the enclosing block: the nearest line indented less
            if previous.strip() and len(previous) - len(previous.lstrip()) < indent:
                if not (previous.lstrip().startswith("with ") and "host_environment_kept(" in previous):
                    bad.append(f"{path.name}:{number + 1}: {line.strip()}")
                break
        else:
            bad.append(f"{path.name}:{number + 1}: {line.strip()} (at module level)")
    return bad


def test_only_the_import_points_import_mace_or_e3nn():
    """No module but _mace.py and integrations/mace.py may import mace or e3nn (a new ``import mace``
    elsewhere would switch the host's protection off again), and those two only inside
    ``with host_environment_kept()``."""
    modules = sorted(PACKAGE.rglob("*.py"))
    assert len(modules) > 15
    offenders = [f"{p.relative_to(PACKAGE)}: {m.group(0).strip()}" for p in modules
                 if p.relative_to(PACKAGE).as_posix() not in IMPORT_POINTS
                 for m in MACE_IMPORT.finditer(p.read_text())]
    assert offenders == [], "import mace/e3nn names from ase_denoise._mace instead"
    for name in sorted(IMPORT_POINTS):
        assert _imports_outside_the_guard(PACKAGE / name) == [], name
    # the scan finds what it looks for: the import point itself imports both
    found = {m.group(0).split()[1].split(".")[0] for m in MACE_IMPORT.finditer((PACKAGE / "_mace.py").read_text())}
    assert found == {"mace", "e3nn"}


@pytest.mark.parametrize("source, allowed", [
    ("import mace\n", False),
    ("    from mace.modules import MACE\n", False),
    ("from e3nn import o3\n", False),
    ("x = importlib.import_module('mace.calculators')\n", False),
    ("from ._mace import o3\n", True),
    ("import macerate\n", True),
    ("# we never import mace here\n", True),
])
def test_the_scan_pattern(source, allowed):
    assert (MACE_IMPORT.search(source) is None) == allowed
