"""Small shared pieces of the test suite (imported as ``from _helpers import ...``; pytest puts
``tests/`` on ``sys.path``). Fixtures live in ``conftest.py``; this module holds plain values and
functions that several test files need."""

from __future__ import annotations

import contextlib
import io
import pickle
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

from ase_denoise.config import ModelConfig, cli_fields

# The smallest model that still exercises every block: fast enough for tests that train.
TINY = dict(head="edge", r_max=3.0, num_channels=4, max_L=0, max_ell=1, num_interactions=1, correlation=1,
            radial_mlp=[8], edge_mlp=[8])

# A tiny periodic argon model (vector head, r_max 4.5 A): the calculator, checkpoint and file tests.
ARGON_TINY = dict(r_max=4.5, num_channels=4, max_ell=1, max_L=1, correlation=1, num_interactions=1,
                  radial_mlp=[8], avg_num_neighbors=12.0)


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
