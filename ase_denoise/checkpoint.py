"""Model files: one self-describing safetensors file, weights plus JSON metadata.

Layout (docs/checkpoint.md): the tensors are the model's ``state_dict``; the safetensors header
metadata holds

* ``format`` = ``"ase_denoise.model"`` and ``format_version`` (an integer, :data:`FORMAT_VERSION`),
* ``model_config``: JSON of :class:`~ase_denoise.config.ModelConfig` (the architecture: element
  table, ``r_max``, MACE hyperparameters, head),
* ``physics``: JSON of :class:`~ase_denoise.config.PhysicsConfig` (``temperature_K``,
  ``noise_std`` levels, ``pbc``),
* ``library_version``, and JSON ``training`` (data summary, training settings) and ``metrics``.

Loading parses JSON and reads raw tensors only: nothing from the file is ever unpickled or executed.
Older format versions are brought up to date by the small functions in :data:`UPGRADES` (one per
version step); frozen files of every old version are test fixtures (``tests/fixtures/``).

This module reads and writes files by path; names from the model zoo are resolved by
:func:`ase_denoise.zoo.load_model`.
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any, Callable, Dict, Optional, Union

import torch
import safetensors.torch
from safetensors import safe_open

from . import __version__
from .config import ModelConfig, PhysicsConfig
from .errors import CheckpointError
from .files import PathLike, atomic_write
from .model import DenoiserMACE, build_model
from .priors import prior_from_dict

logger = logging.getLogger(__name__)

FORMAT_NAME = "ase_denoise.model"
FORMAT_VERSION = 2


def _upgrade_1_to_2(raw: Dict[str, str]) -> Dict[str, str]:
    """Format 1 kept the physics (``noise_std``, ``temperature_K``, ``pbc``) inside ``model_config``;
    format 2 moves it to ``physics``, with ``noise_std`` a list of levels. Weights are unchanged."""
    config = json.loads(raw["model_config"])
    physics = {
        "temperature_K": config.pop("temperature_K"),
        "noise_std": [config.pop("noise_std")],
        "pbc": config.pop("pbc", [False, False, False]),
    }
    raw["model_config"] = json.dumps(config, sort_keys=True)
    raw["physics"] = json.dumps(physics, sort_keys=True)
    return raw


# version -> function(raw metadata) returning the raw metadata of version + 1
UPGRADES: Dict[int, Callable[[Dict[str, str]], Dict[str, str]]] = {1: _upgrade_1_to_2}


_PICKLE_MAGIC = (b"\x80",)  # pickle protocol 2+
_ZIP_MAGIC = b"PK\x03\x04"  # torch.save's zip container (holds a pickle)


def save_model(
    model: DenoiserMACE,
    path: PathLike,
    *,
    training: Optional[Dict[str, Any]] = None,
    metrics: Optional[Dict[str, Any]] = None,
    overwrite: bool = False,
    card: Optional[str] = None,
) -> str:
    """Write ``model`` to ``path`` (safetensors + JSON metadata), atomically. Returns the path.
    ``card``: a Markdown summary kept in the file (``ase-denoise models show FILE`` prints it; default:
    the card the model was loaded with, if any)."""
    card = model.metadata.get("card", "") if card is None else card
    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}
    metadata = {
        "format": FORMAT_NAME,
        "format_version": str(FORMAT_VERSION),
        "library_version": __version__,
        "model_config": json.dumps(model.config.to_dict(), sort_keys=True),
        "physics": json.dumps(model.physics.to_dict(), sort_keys=True),
        "training": json.dumps(training or {}, sort_keys=True, default=_json_default),
        "metrics": json.dumps(metrics or {}, sort_keys=True, default=_json_default),
        **({"card": str(card)} if card else {}),
    }
    return atomic_write(path, lambda tmp: safetensors.torch.save_file(tensors, tmp, metadata=metadata), overwrite)


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
    byte) is legitimate, and such a file must not be mistaken for a pickle, also when it is
    truncated (``8 + N > size``: safetensors itself then says what is wrong). Nothing is unpickled
    either way."""
    if len(head) < 9:
        return False
    n = int.from_bytes(head[:8], "little")
    return head[8:9] == b"{" and n < 2**32


def _open(path: PathLike, read_tensors: bool):
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
    try:
        while version < FORMAT_VERSION:
            raw = UPGRADES[version](dict(raw))
            version += 1
            raw["format_version"] = str(version)
        meta: Dict[str, Any] = {
            "format_version": version,
            "library_version": raw.get("library_version"),
            "model_config": json.loads(raw["model_config"]),
            "physics": json.loads(raw["physics"]),
            "training": json.loads(raw.get("training", "{}")),
            "metrics": json.loads(raw.get("metrics", "{}")),
            "card": str(raw.get("card", "")),
        }
    except (KeyError, TypeError, AttributeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path!r} has missing or malformed JSON metadata: {exc!r}") from exc
    return meta, tensors


def load_model_file(
    path: PathLike,
    *,
    dtype: Optional[torch.dtype] = None,
    device: Union[str, torch.device] = "cpu",
) -> DenoiserMACE:
    """Load a model file written by :func:`save_model` (any older format version is upgraded).

    ``dtype``: convert to this dtype (default: the dtype it was saved in). The returned model is in
    eval mode and carries the file's metadata as ``model.metadata``. Raises :class:`CheckpointError`
    for pickled, corrupt, foreign, newer-format or mismatched files and ``FileNotFoundError`` for a
    missing one. To load a zoo model by name use :func:`ase_denoise.zoo.load_model`.
    """
    meta, tensors = _open(path, read_tensors=True)
    try:
        config = ModelConfig.from_dict(meta["model_config"])
        physics = PhysicsConfig.from_dict(meta["physics"])
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{os.fspath(path)!r} has an invalid configuration: {exc}") from exc
    saved_dtype = next((t.dtype for t in tensors.values() if t.is_floating_point()), torch.float32)
    model = build_model(config, physics, dtype=saved_dtype)
    try:
        model.load_state_dict(tensors, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(
            f"{os.fspath(path)!r}: weights do not match the architecture in its own config: {exc}"
        ) from exc
    model.metadata = meta
    model.to(device=device, dtype=dtype or saved_dtype)
    return model.eval()


def describe_metadata(meta: Dict[str, Any], name: str = "model") -> str:
    """A model file's card (Markdown): the card stored in it, if any, then what its metadata says
    (architecture, physics, priors, training, best-epoch figures), so any file can be shown."""
    config, physics = ModelConfig.from_dict(meta["model_config"]), PhysicsConfig.from_dict(meta["physics"])
    training, metrics = meta.get("training") or {}, meta.get("metrics") or {}
    names = config.bead_names or None
    lines = [f"# {name}", ""]
    if meta.get("card"):
        lines += [meta["card"].rstrip(), "", "## From the file's metadata", ""]
    lines += [
        f"- species: {', '.join(config.symbols)}; periodic: {list(physics.pbc)}",
        f"- {config.head} head; cutoff {config.r_max:g} A; MACE {config.num_channels} channels, max_L {config.max_L}, "
        f"max_ell {config.max_ell}, {config.num_interactions} interactions, correlation {config.correlation}",
        f"- trained at {physics.temperature_K:g} K on noise level(s) {', '.join(f'{s:g}' for s in physics.noise_std)} A; "
        f"default forces: {physics.describe_default_forces()}",
    ]
    lines += [f"- prior: {prior_from_dict(d).describe(names)}" for d in physics.priors]
    if training:
        cfg = training.get("train_config", {})
        lines.append(f"- training: {training.get('n_frames', '?')} frames ({training.get('n_train_frames', '?')} "
                     f"train, {training.get('n_valid_frames', '?')} validation), {training.get('epochs_completed', '?')} "
                     f"epochs, {training.get('steps', '?')} steps, loss {cfg.get('loss', '?')}, seed {cfg.get('seed', '?')}")
    shown = {k: v for k, v in metrics.items() if isinstance(v, (int, float)) and k != "lr"}
    if shown:
        lines.append("- best epoch: " + ", ".join(f"{k} {v:.4g}" for k, v in shown.items()))
    lines.append(f"- written by ase_denoise {meta.get('library_version')}, file format {meta.get('format_version')}")
    return "\n".join(lines) + "\n"
