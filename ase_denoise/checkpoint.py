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
import math
import os
from typing import Any, Callable, Dict, Optional, Tuple, Union

import torch
import safetensors.torch

from . import __version__
from .config import ModelConfig, PhysicsConfig
from .errors import CheckpointError
from .files import PathLike, atomic_write
from .forces import is_expansion_term
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
    meta, _, _ = _open(path, read_tensors=False)
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


#: the largest model file read (bytes): 256 channels at L 3 in float64 is about 0.5 GB
MAX_MODEL_BYTES = 2**30
#: the largest safetensors header (bytes) read as JSON
MAX_HEADER_BYTES = 2**24
#: safetensors dtype names -> (torch dtype, bytes per element): what a header may say (each tensor's dtype
#: is then held against the model's own, :func:`_check_tensors`)
_DTYPES = {"F64": (torch.float64, 8), "F32": (torch.float32, 4), "F16": (torch.float16, 2), "BF16": (torch.bfloat16, 2),
           "I64": (torch.int64, 8), "I32": (torch.int32, 4), "I16": (torch.int16, 2), "I8": (torch.int8, 1),
           "U8": (torch.uint8, 1), "BOOL": (torch.bool, 1)}


def read_model_bytes(path: PathLike) -> bytes:
    """A model file's bytes, read once (check and load use the same buffer, so the file cannot change
    between them). Refuses a missing, non-regular or oversized file before reading it."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"model file {path!r} does not exist")
    with open(path, "rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        if size > MAX_MODEL_BYTES:
            raise CheckpointError(f"{path!r} is {size / 2**20:.0f} MiB, larger than any model this library writes "
                                  f"({MAX_MODEL_BYTES / 2**20:.0f} MiB at most); refusing to read it")
        data = fh.read(size + 1)  # read(n) reserves n bytes first: ask for the file's size, not the cap
    if len(data) != size:
        raise CheckpointError(f"{path!r} changed size while it was read ({size} bytes, then {len(data)}+); "
                              "load it again once it is written")
    return data


def _header(path: str, data: bytes) -> Dict[str, Any]:
    """The safetensors header of ``data``: {"__metadata__": {...}, name: {dtype, shape, data_offsets}},
    each tensor's dtype, shape and byte range checked against each other and the buffer."""
    n = int.from_bytes(data[:8], "little")
    if n > MAX_HEADER_BYTES or 8 + n > len(data):
        raise CheckpointError(f"{path!r} is not a readable safetensors model file (truncated, corrupt or foreign): "
                              f"its header claims {n} bytes of a {len(data)}-byte file")
    try:
        header = json.loads(data[8 : 8 + n])
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{path!r} is not a readable safetensors model file: its header is not JSON ({exc})") from exc
    if not isinstance(header, dict):
        raise CheckpointError(f"{path!r} is not a readable safetensors model file: its header is not a JSON object")
    body = len(data) - 8 - n
    for name, info in header.items():
        if name == "__metadata__":
            continue
        dtype, shape, offsets = (info or {}).get("dtype"), (info or {}).get("shape"), (info or {}).get("data_offsets")
        if dtype not in _DTYPES:
            raise CheckpointError(f"{path!r}: tensor {name!r} has dtype {dtype!r}; a model's tensors are "
                                  f"{', '.join(_DTYPES)}")
        if not (isinstance(shape, list) and all(isinstance(d, int) and not isinstance(d, bool) and 0 <= d for d in shape)
                and isinstance(offsets, list) and len(offsets) == 2 and all(isinstance(o, int) for o in offsets)):
            raise CheckpointError(f"{path!r}: tensor {name!r} has a malformed shape {shape!r} or byte range {offsets!r}")
        if not 0 <= offsets[0] <= offsets[1] <= body or offsets[1] - offsets[0] != math.prod(shape) * _DTYPES[dtype][1]:
            raise CheckpointError(f"{path!r}: tensor {name!r} ({dtype}, shape {shape}) does not match its {offsets[1] - offsets[0]} "
                                  f"bytes at {offsets} of a {body}-byte body")
    return header


def _open(path: PathLike, read_tensors: bool, data: Optional[bytes] = None):
    """(metadata, tensors, shapes): the parsed and upgraded metadata, the tensors (``read_tensors``) and
    the header's {name: (dtype name, shape)}. ``data``: the file's bytes, when already read."""
    path = os.fspath(path)
    data = read_model_bytes(path) if data is None else data
    head = data[:9]
    if not _looks_like_safetensors(head, len(data)) and (head.startswith(_ZIP_MAGIC) or head[:1] in _PICKLE_MAGIC):
        raise CheckpointError(
            f"{path!r} is a pickle (torch.save) file, not an ase_denoise model; refusing to load it because "
            "unpickling can execute arbitrary code from the file"
        )
    if len(data) < 9:
        raise CheckpointError(f"{path!r} is not a readable safetensors model file (truncated, corrupt or foreign): "
                              f"{len(data)} bytes")
    header = _header(path, data)
    raw = header.get("__metadata__") or {}
    if not isinstance(raw, dict) or not all(isinstance(v, str) for v in raw.values()):
        raise CheckpointError(f"{path!r} has malformed metadata (safetensors metadata maps names to strings)")
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
    for key in ("model_config", "physics", "training", "metrics"):
        if not isinstance(meta[key], dict):
            raise CheckpointError(f"{path!r} has malformed metadata: {key} must be a JSON object, not {meta[key]!r}")
    shapes = {k: (v["dtype"], tuple(v["shape"])) for k, v in header.items() if k != "__metadata__"}
    tensors = {}
    if read_tensors:
        try:
            tensors = safetensors.torch.load(data)
        except Exception as exc:
            raise CheckpointError(f"{path!r} is not a readable safetensors model file (truncated, corrupt or foreign): "
                                  f"{exc}") from exc
    return meta, tensors, shapes


def _check_sizes(path: str, config: ModelConfig, shapes: Dict[str, Tuple[str, tuple]]) -> None:
    """Compare the header's tensor shapes with what the config's size fields imply, before the model is
    built: a header that asks for a network its own tensors do not hold is refused in microseconds,
    not after building it (which a large enough claim turns into minutes and gigabytes)."""

    def shape(name: str) -> tuple:
        if name not in shapes:
            raise CheckpointError(f"{path!r}: its config needs the tensor {name!r}, which the file lacks; weights do "
                                  "not match the architecture in its own config")
        return shapes[name][1]

    def expect(name: str, got: Any, wanted: Any, field_name: str) -> None:
        if got != wanted:
            raise CheckpointError(f"{path!r}: weights do not match the architecture in its own config: {name} is "
                                  f"{got}, its {field_name}={getattr(config, field_name)!r} needs {wanted}")

    interactions = {int(k.split(".")[1]) for k in shapes if k.startswith("interactions.") and k.split(".")[1].isdigit()}
    expect("the interaction blocks", sorted(interactions), list(range(config.num_interactions)), "num_interactions")
    n_inputs = len(config.atomic_numbers) * (config.noise_embedding + 1)
    expect("node_embedding.linear.output_mask", shape("node_embedding.linear.output_mask"), (config.num_channels,),
           "num_channels")
    expect("node_embedding.linear.weight", shape("node_embedding.linear.weight"), (n_inputs * config.num_channels,),
           "noise_embedding")
    sizes = [config.num_bessel, *config.radial_mlp]
    for i in range(config.num_interactions):
        layers = sorted(k for k in shapes if k.startswith(f"interactions.{i}.conv_tp_weights.layer"))
        expect(f"the layer count of interactions.{i}'s radial MLP", len(layers), len(config.radial_mlp) + 1, "radial_mlp")
        for j, (n_in, n_out) in enumerate(zip(sizes, sizes[1:])):
            expect(f"interactions.{i}.conv_tp_weights.layer{j}.weight",
                   shape(f"interactions.{i}.conv_tp_weights.layer{j}.weight"), (n_in, n_out), "radial_mlp")
    weights = {k for k in shapes if k.startswith("products.0.symmetric_contractions.contractions.0.weights.")}
    expect("the count of products.0's symmetric contraction weights", len(weights), config.correlation - 1, "correlation")
    if config.head == "edge":
        layers = [k for k in shapes if k.startswith("edge_head.mlp.") and k.endswith(".weight")]
        expect("the layer count of edge_head's MLP", len(layers), len(config.edge_mlp) + 1, "edge_mlp")


def _check_tensors(path: str, model: DenoiserMACE, tensors: Dict[str, torch.Tensor]) -> torch.dtype:
    """The file's tensors against the built model: the same names and shapes, one floating dtype where the
    model has floats (an integer label on float bytes would load as garbage), the element table of the config
    (a tensor copy that differs is replaced, with a warning),
    and every weight finite (one NaN makes every force NaN). Returns the file's floating dtype."""
    expected = model.state_dict()
    missing, extra = sorted(set(expected) - set(tensors)), sorted(set(tensors) - set(expected))
    if missing or extra:
        raise CheckpointError(f"{path!r}: weights do not match the architecture in its own config: missing "
                              f"{missing[:5]}, unexpected {extra[:5]}")
    for name, want in expected.items():
        got = tensors[name]
        if tuple(got.shape) != tuple(want.shape):
            raise CheckpointError(f"{path!r}: weights do not match the architecture in its own config: {name} has "
                                  f"shape {tuple(got.shape)}, the config needs {tuple(want.shape)}")
        if got.is_floating_point() != want.is_floating_point() or (not want.is_floating_point() and got.dtype != want.dtype):
            raise CheckpointError(f"{path!r}: tensor {name!r} is stored as {got.dtype}, the model keeps it as {want.dtype}")
    floating = {t.dtype for t in tensors.values() if t.is_floating_point()}
    if len(floating) > 1:
        raise CheckpointError(f"{path!r}: its weights mix {sorted(str(d) for d in floating)}; a model file holds one "
                              "floating dtype")
    if not torch.equal(tensors["atomic_numbers"].cpu(), expected["atomic_numbers"].cpu()):
        # the config's table is the model's (it sets the one-hot inputs); the tensor is a copy that earlier
        # releases' weight averaging could truncate (ema_decay=0.9 turned 18 into 17: training/ema.py)
        logger.warning("%r: its tensor atomic_numbers %s differs from its config's element table %s; the config's "
                       "is used", path, tensors["atomic_numbers"].tolist(), expected["atomic_numbers"].tolist())
        tensors["atomic_numbers"] = expected["atomic_numbers"].clone()
    bad = next((k for k, t in tensors.items() if t.is_floating_point() and not bool(torch.isfinite(t).all())), None)
    if bad is not None:
        n = int((~torch.isfinite(tensors[bad])).sum())
        raise CheckpointError(f"{path!r}: tensor {bad!r} holds {n} non-finite value(s) (NaN or inf); such a model "
                              "returns NaN forces")
    return next(iter(floating), torch.float32)


def load_model_file(
    path: PathLike,
    *,
    dtype: Optional[torch.dtype] = None,
    device: Union[str, torch.device] = "cpu",
    data: Optional[bytes] = None,
) -> DenoiserMACE:
    """Load a model file written by :func:`save_model` (any older format version is upgraded).

    ``dtype``: convert to this dtype (default: the dtype it was saved in). The returned model is in
    eval mode and carries the file's metadata as ``model.metadata``. ``data``: the file's bytes, when
    the caller has read (and checked) them already; the file is then not read again. Raises
    :class:`CheckpointError` for pickled, corrupt, foreign, newer-format or mismatched files, for
    settings outside their documented ranges (docs/checkpoint.md, "Limits") and for non-finite weights,
    and ``FileNotFoundError`` for a missing one. To load a zoo model by name use
    :func:`ase_denoise.zoo.load_model`.
    """
    path = os.fspath(path)
    meta, tensors, shapes = _open(path, read_tensors=True, data=data)
    try:
        config = ModelConfig.from_dict(meta["model_config"])
        physics = PhysicsConfig.from_dict(meta["physics"])
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{path!r} has an invalid configuration: {exc}") from exc
    _check_sizes(path, config, shapes)
    saved_dtype = next((t.dtype for t in tensors.values() if t.is_floating_point()), torch.float32)
    try:  # a config and physics that do not fit together (several levels and no way to take sigma, ...)
        model = build_model(config, physics, dtype=saved_dtype, seed=0)  # the host's RNG is left alone
    except ValueError as exc:
        raise CheckpointError(f"{path!r} has an invalid configuration: {exc}") from exc
    saved_dtype = _check_tensors(path, model, tensors)
    model.load_state_dict(tensors, strict=True)
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
        f"default forces: {physics.describe_default_forces()}"
        + (f" (the sigma -> 0 term of the head's expansion of degree {config.noise_expansion} in sigma^2: one pass)"
           if is_expansion_term(config.noise_expansion, physics.default_forces) else ""),
    ]
    lines += [f"- prior: {prior_from_dict(d).describe(names)}" for d in physics.priors]
    if training:
        cfg = training.get("train_config", {})
        lines.append(f"- training: {training.get('n_frames', '?')} frames ({training.get('n_train_frames', '?')} "
                     f"train, {training.get('n_valid_frames', '?')} validation), {training.get('epochs_completed', '?')} "
                     f"epochs, {training.get('steps', '?')} steps, loss {cfg.get('loss', '?')}, seed {cfg.get('seed', '?')}")
    shown = {k: v for k, v in metrics.items() if isinstance(v, (int, float)) and k != "lr"}
    if shown:
        lines.append("- validation at the saved epoch: " + ", ".join(f"{k} {v:.4g}" for k, v in shown.items()))
    lines.append(f"- written by ase_denoise {meta.get('library_version')}, file format {meta.get('format_version')}")
    return "\n".join(lines) + "\n"
