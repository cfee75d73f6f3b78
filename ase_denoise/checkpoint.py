"""Model files: one self-describing safetensors file, weights plus JSON metadata (DESIGN.md s7).

Layout: the tensors are the model's ``state_dict``; the safetensors header metadata holds

* ``format`` = ``"ase_denoise.model"`` and ``format_version`` (an integer, :data:`FORMAT_VERSION`),
* ``model_config``: JSON of :class:`~ase_denoise.config.ModelConfig` (architecture, element table,
  ``r_max``, ``noise_std``, ``temperature_K``, ``pbc``),
* ``library_version``, and JSON ``training`` (data summary, training settings) and ``metrics``.

Loading parses JSON and reads raw tensors only: nothing from the file is ever unpickled or executed.
Older format versions are brought up to date by the small functions in :data:`UPGRADES`.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from typing import Any, Callable, Dict, Optional, Union

import torch

from . import __version__
from .config import ModelConfig
from .model import DenoiserMACE, build_model

logger = logging.getLogger(__name__)

FORMAT_NAME = "ase_denoise.model"
FORMAT_VERSION = 1

PathLike = Union[str, os.PathLike]

# version -> function(metadata) returning the metadata of version + 1
UPGRADES: Dict[int, Callable[[Dict[str, str]], Dict[str, str]]] = {}


class CheckpointError(ValueError):
    """A model file that cannot be loaded: corrupt, foreign, pickled, from a newer version, or mismatched."""


_PICKLE_MAGIC = (b"\x80",)  # pickle protocol 2+
_ZIP_MAGIC = b"PK\x03\x04"  # torch.save's zip container (holds a pickle)


def atomic_write(path: PathLike, write: Callable[[str], None], overwrite: bool) -> str:
    """Call ``write(tmp_path)`` then move the result to ``path`` in one rename.

    An interruption leaves ``path`` as it was. Raises ``FileExistsError`` if ``path`` exists and
    ``overwrite`` is false, and ``FileNotFoundError``/``PermissionError`` naming the directory if it
    is missing or not writable.
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        why = "is a file, not a directory" if os.path.exists(directory) else "does not exist"
        raise FileNotFoundError(f"cannot write {path!r}: directory {directory!r} {why}")
    if not os.access(directory, os.W_OK):
        raise PermissionError(f"cannot write {path!r}: directory {directory!r} is not writable")
    if os.path.exists(path) and not overwrite:
        raise FileExistsError(f"{path!r} already exists; refusing to overwrite it (pass overwrite=True)")
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=os.path.basename(path), dir=directory)
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb+") as fh:  # on disk before the rename: a power cut cannot leave an empty file
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def save_model(
    model: DenoiserMACE,
    path: PathLike,
    *,
    training: Optional[Dict[str, Any]] = None,
    metrics: Optional[Dict[str, Any]] = None,
    overwrite: bool = False,
) -> str:
    """Write ``model`` to ``path`` (safetensors + JSON metadata), atomically. Returns the path."""
    from safetensors.torch import save_file

    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}
    metadata = {
        "format": FORMAT_NAME,
        "format_version": str(FORMAT_VERSION),
        "library_version": __version__,
        "model_config": json.dumps(model.config.to_dict(), sort_keys=True),
        "training": json.dumps(training or {}, sort_keys=True, default=_json_default),
        "metrics": json.dumps(metrics or {}, sort_keys=True, default=_json_default),
    }
    return atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=metadata), overwrite)


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if hasattr(obj, "to_dict"):
        return obj.to_dict()
    return str(obj)


def read_metadata(path: PathLike) -> Dict[str, Any]:
    """Parsed, upgraded metadata of a model file (``model_config``, ``training``, ``metrics``...)."""
    meta, _ = _open(path, read_tensors=False)
    return meta


def _looks_like_safetensors(head: bytes, size: int) -> bool:
    """safetensors layout: u64 little-endian header length N, then N bytes of JSON starting with '{'.

    Checked before the pickle magic: a header length whose low byte is 0x80 (a pickle's first
    byte) is legitimate, and such a file must not be mistaken for a pickle."""
    if len(head) < 9:
        return False
    n = int.from_bytes(head[:8], "little")
    return head[8:9] == b"{" and 8 + n <= size


def _open(path: PathLike, read_tensors: bool):
    from safetensors import safe_open

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"model file {path!r} does not exist")
    with open(path, "rb") as fh:
        head = fh.read(9)
    if not _looks_like_safetensors(head, os.path.getsize(path)) and (
        head.startswith(_ZIP_MAGIC) or head[:1] in _PICKLE_MAGIC
    ):
        raise CheckpointError(
            f"{path!r} is a pickle (torch.save) file, not an ase_denoise model; refusing to load it because "
            "unpickling can execute arbitrary code from the file"
        )
    try:
        with safe_open(path, framework="pt") as fh:
            raw = fh.metadata() or {}
            tensors = {k: fh.get_tensor(k) for k in fh.keys()} if read_tensors else {}
    except Exception as exc:
        raise CheckpointError(
            f"{path!r} is not a readable safetensors model file (truncated, corrupt or foreign): {exc}"
        ) from exc
    if raw.get("format") != FORMAT_NAME:
        raise CheckpointError(
            f"{path!r} is a safetensors file but not an ase_denoise model (metadata format="
            f"{raw.get('format')!r}, expected {FORMAT_NAME!r})"
        )
    try:
        version = int(raw["format_version"])
    except (KeyError, ValueError) as exc:
        raise CheckpointError(f"{path!r} has no valid format_version in its metadata") from exc
    if version > FORMAT_VERSION:
        raise CheckpointError(
            f"{path!r} has model format version {version}, newer than this ase_denoise "
            f"{__version__} understands (<= {FORMAT_VERSION}); upgrade ase_denoise"
        )
    while version < FORMAT_VERSION:
        raw = UPGRADES[version](dict(raw))
        version += 1
        raw["format_version"] = str(version)
    try:
        meta: Dict[str, Any] = {
            "format_version": version,
            "library_version": raw.get("library_version"),
            "model_config": json.loads(raw["model_config"]),
            "training": json.loads(raw.get("training", "{}")),
            "metrics": json.loads(raw.get("metrics", "{}")),
        }
    except (KeyError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path!r} has missing or malformed JSON metadata: {exc}") from exc
    return meta, tensors


def load_model(
    name_or_path: PathLike,
    *,
    dtype: Optional[torch.dtype] = None,
    device: Union[str, torch.device] = "cpu",
    models_dir: Optional[PathLike] = None,
) -> DenoiserMACE:
    """Load a model file written by :func:`save_model`, or a zoo model by name.

    ``name_or_path``: an existing file is loaded as given; otherwise a name from the model zoo
    (:func:`ase_denoise.zoo.list_models`, looked up in ``models_dir`` or the shipped zoo), whose size
    and sha256 are checked against the registry first (:class:`ase_denoise.zoo.ChecksumError` on a
    mismatch, :class:`ase_denoise.zoo.ZooError` listing the available names for an unknown one).
    ``dtype``: convert to this dtype (default: the dtype it was saved in). The returned model is in
    eval mode and carries the file's metadata as ``model.metadata``. Raises :class:`CheckpointError`
    for pickled, corrupt, foreign, newer-format or mismatched files.
    """
    from .zoo import resolve

    path = resolve(name_or_path, models_dir)
    meta, tensors = _open(path, read_tensors=True)
    try:
        config = ModelConfig.from_dict(meta["model_config"])
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{os.fspath(path)!r} has an invalid model_config: {exc}") from exc
    saved_dtype = next((t.dtype for t in tensors.values() if t.is_floating_point()), torch.float32)
    model = build_model(config, dtype=saved_dtype)
    try:
        model.load_state_dict(tensors, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(
            f"{os.fspath(path)!r}: weights do not match the architecture in its own config: {exc}"
        ) from exc
    model.metadata = meta  # type: ignore[attr-defined]
    model.to(device=device, dtype=dtype or saved_dtype)
    return model.eval()
