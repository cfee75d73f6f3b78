"""Small shared pieces of the test suite (imported as ``from _helpers import ...``; pytest puts
``tests/`` on ``sys.path``). Fixtures live in ``conftest.py``; this module holds plain values and
functions that several test files need."""

from __future__ import annotations

import contextlib
import importlib.util
import io
import pickle
import sys
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

import numpy as np

from ase_denoise.config import ModelConfig, cli_fields

# The smallest model that still exercises every block: fast enough for tests that train.
TINY = dict(head="edge", r_max=3.0, num_channels=4, max_L=0, max_ell=1, num_interactions=1, correlation=1,
            radial_mlp=[8], edge_mlp=[8])

# A tiny periodic argon model (vector head, r_max 4.5 A): the calculator, checkpoint and file tests.
ARGON_TINY = dict(r_max=4.5, num_channels=4, max_ell=1, max_L=1, correlation=1, num_interactions=1,
                  radial_mlp=[8], avg_num_neighbors=12.0)


BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


def benchmark_module(path: str):
    """Import the benchmark script ``benchmarks/<path>`` (e.g. ``"water/study.py"``) as a module named
    after its path (``water_study``), registered in ``sys.modules`` (its dataclasses need that)."""
    name = path.removesuffix(".py").replace("/", "_")
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def benchmark_package(name: str):
    """Import ``name`` (``"licl.tables"``, ``"study_kit"``) from ``benchmarks/``, the way the study scripts
    import each other (``benchmarks/`` on ``sys.path``; one module instance per process)."""
    if str(BENCHMARKS) not in sys.path:
        sys.path.insert(0, str(BENCHMARKS))
    return importlib.import_module(name)


def cli_flags(options: Dict) -> List[str]:
    """``ase-denoise train`` options for the ModelConfig fields in ``options`` (flags from the dataclass)."""
    flags = []
    for f in cli_fields(ModelConfig):
        if f.name in options:
            value = options[f.name]
            flags += [f.metadata["cli"], *(map(str, value) if isinstance(value, (list, tuple)) else [str(value)])]
    return flags


TINY_CLI = cli_flags(TINY)


def make_model(atomic_numbers: Sequence[int], *, noise_std=0.05, temperature_K: float = 94.4, pbc: bool = False,
               dtype=None, seed: int = 0, **options):
    """A freshly initialised denoiser (float64 unless ``dtype``), weights seeded by ``seed``."""
    import torch

    from ase_denoise.config import PhysicsConfig
    from ase_denoise.model import build_model

    config = ModelConfig(atomic_numbers=list(atomic_numbers), **options)
    physics = PhysicsConfig(temperature_K=temperature_K, noise_std=noise_std, pbc=(pbc,) * 3)
    return build_model(config, physics, dtype or torch.float64, seed=seed)


#: relative tolerance for the same quantity computed along two code paths (other batching, another
#: neighbour-list order): a few units in the last place of the dtype, never exact equality in float32
SAME_RTOL = {"float32": 1e-5, "float64": 1e-12}


def assert_same(actual, expected, dtype) -> None:
    """``actual`` equals ``expected`` to the rounding of ``dtype`` (a torch dtype or its name), relative
    to the largest magnitude of ``expected``: float32 paths that batch or order sums differently
    differ by a few ulps (3e-11 eV/A on a 1e-4 eV/A force), float64 ones by 1e-15."""
    name = str(dtype).replace("torch.", "")
    scale = float(np.abs(np.asarray(expected)).max()) if np.size(expected) else 0.0
    np.testing.assert_allclose(actual, expected, rtol=0, atol=SAME_RTOL[name] * max(scale, 1e-30))


def run_cli(argv) -> Tuple[int, str, str]:
    """``ase_denoise.cli.main(argv)`` with stdout/stderr captured; returns (exit code, stdout, stderr)."""
    from ase_denoise.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in argv])
    return code, out.getvalue(), err.getvalue()


def rewrite_metadata(src, dst, **changes):
    """Copy the safetensors model file ``src`` to ``dst`` with metadata entries replaced by ``changes``."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(src), "pt") as fh:
        meta = dict(fh.metadata())
        tensors = {k: fh.get_tensor(k) for k in fh.keys()}
    meta.update(changes)
    save_file(tensors, str(dst), metadata=meta)


class Payload:
    """Unpickling this calls ``open(marker, "w")``: the marker file appears if the pickle ever runs."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


# the ways a pickle reaches disk: plain pickle (protocols 0 and 5), torch.save zip, legacy torch.save
WRITERS = ["pickle-p0", "pickle-p5", "torch.save", "torch.save-legacy"]


def write_evil(path: Path, marker: Path, writer: str = "torch.save") -> Path:
    """A pickle at ``path`` whose unpickling creates ``marker``."""
    import torch

    obj = {"model": Payload(str(marker))}
    if writer == "pickle-p0":
        path.write_bytes(pickle.dumps(obj, protocol=0))
    elif writer == "pickle-p5":
        path.write_bytes(pickle.dumps(obj, protocol=5))
    elif writer == "torch.save":
        torch.save(obj, path)
    else:
        torch.save(obj, path, _use_new_zipfile_serialization=False)
    assert path.stat().st_size > 0 and not marker.exists()
    return path


def leftovers(directory: Path, keep) -> list:
    """Names in ``directory`` other than ``keep`` (temporary files left behind)."""
    return sorted(p.name for p in Path(directory).iterdir() if p.name not in keep)


# The engine tests (test_openmm.py, test_lammps.py): one ASE reference run and one comparison.
ENGINE_RUN = dict(n_equil=200, n_prod=800, every=20)  # 10-fs steps: 2 ps, then 8 ps sampled every 0.2 ps


def ase_langevin_frames(model, start, temperature_K: float = 94.4):
    """Frames of ASE's Langevin (10 fs, friction 0.01/fs, seed 1) with ``model`` from ``start``,
    sampled as ``ENGINE_RUN`` says: the reference an MD engine's run is compared with."""
    from ase_denoise import DenoiseCalculator
    from ase_denoise.md import run_langevin

    n_equil, n_prod, every = ENGINE_RUN["n_equil"], ENGINE_RUN["n_prod"], ENGINE_RUN["every"]
    frames = []
    atoms = start.copy()
    atoms.calc = DenoiseCalculator(model)
    run_langevin(atoms, temperature_K=temperature_K, steps=n_equil + n_prod, timestep_fs=10.0, friction_per_fs=0.01,
                 interval=every, seed=1, observers=[lambda a, s: frames.append(a.copy()) if s > n_equil else None])
    return frames


def assert_samples_like_ase(engine_frames, engine_temperatures, ase_frames, temperature_K: float = 94.4,
                            tolerance_K: float = 8.0):
    """The engine run's mean temperature is within ``tolerance_K`` of the target (one sample of 108
    atoms spreads by about 7 K at 94.4 K), and its RDF differs from the ASE run's by less than twice
    the difference between the ASE run's two halves (the statistical scale of one run)."""
    import numpy as np

    from ase_denoise.analysis import rdf, rdf_difference

    assert abs(np.mean(engine_temperatures) - temperature_K) < tolerance_K, np.mean(engine_temperatures)
    r_max = 0.5 * float(ase_frames[0].cell.lengths().min()) - 0.01
    _, g_ase = rdf(ase_frames, r_max)
    _, g_engine = rdf(engine_frames, r_max)
    half = len(ase_frames) // 2
    scale = rdf_difference(rdf(ase_frames[:half], r_max)[1], rdf(ase_frames[half:], r_max)[1])["rms"]
    difference = rdf_difference(g_engine, g_ase)["rms"]
    assert difference < 2.0 * scale, (difference, scale)
