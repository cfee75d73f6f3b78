"""The model zoo: small denoisers trained by the project's own scripts, loaded by name.

Layout of a zoo directory (the repository's ``models/``, shipped inside the wheel as
``ase_denoise/_models``)::

    registry.json             {"format": "ase_denoise.zoo", "format_version": 1, "models": [ENTRY, ...]}
    <name>/<name>.safetensors the weights (an ordinary ase_denoise model file)
    <name>/README.md          the model card: data, settings, measured figures, command, sha256

An ENTRY has ``name``, ``file`` and ``card`` (paths relative to the zoo directory), ``sha256``,
``size_bytes``, ``summary`` and, for information, ``temperature_K`` (K), ``noise_std`` (Angstrom; a list for a ladder)
and the ``command`` that reproduces the model.

Which zoo directory is used, first match wins:

1. the ``models_dir`` argument of the functions below;
2. the environment variable ``ASE_DENOISE_MODELS_DIR``;
3. ``_models`` inside the installed package (a built wheel);
4. ``models/`` next to the package directory (a source checkout or an editable install).

Nothing here touches the network. A file is loaded only after its size and sha256 match the
registry; a mismatch raises :class:`ChecksumError` naming the file, the expected and the actual
value. Loading itself goes through :func:`ase_denoise.checkpoint.load_model_file` (safetensors
only, never unpickled). :func:`load_model` is the one entry point that takes either a file path or
a zoo name.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Tuple, Union

from .errors import CheckpointError, ChecksumError, ZooError
from .files import PathLike, atomic_write

if TYPE_CHECKING:  # torch and mace load lazily: listing the zoo stays cheap
    import torch

    from .model import DenoiserMACE

logger = logging.getLogger(__name__)

REGISTRY_FILE = "registry.json"
REGISTRY_FORMAT = "ase_denoise.zoo"
REGISTRY_VERSION = 1
#: environment variable naming a zoo directory to use instead of the shipped one
ENV_MODELS_DIR = "ASE_DENOISE_MODELS_DIR"

_PACKAGE_DIR = Path(__file__).resolve().parent


@dataclass
class ModelEntry:
    """One registry entry. Paths are relative to the zoo directory; sizes in bytes."""

    name: str
    file: str
    sha256: str
    size_bytes: int
    summary: str
    card: str
    temperature_K: Optional[float] = None
    noise_std: Optional[Any] = None  # Angstrom: one level, or the list of a ladder
    command: Optional[str] = None

    def to_dict(self) -> Dict[str, Any]:
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> "ModelEntry":
        known = {f.name for f in dataclasses.fields(cls)}
        missing = [f.name for f in dataclasses.fields(cls) if f.default is dataclasses.MISSING and f.name not in d]
        if missing:
            raise ZooError(f"registry entry {d.get('name', d)!r} lacks required keys {missing}")
        entry = cls(**{k: v for k, v in d.items() if k in known})
        text = ("name", "file", "sha256", "summary", "card")
        bad = [k for k in text if not isinstance(getattr(entry, k), str)]
        bad += [k for k in ("command",) if entry.command is not None and not isinstance(entry.command, str)]
        if not isinstance(entry.size_bytes, int) or isinstance(entry.size_bytes, bool) or entry.size_bytes < 0:
            bad.append("size_bytes")
        if entry.temperature_K is not None and (isinstance(entry.temperature_K, bool)
                                                or not isinstance(entry.temperature_K, (int, float))):
            bad.append("temperature_K")
        if "sha256" not in bad and not (len(entry.sha256) == 64 and all(c in "0123456789abcdef" for c in entry.sha256)):
            bad.append("sha256")
        if bad:
            raise ZooError(f"registry entry {d.get('name')!r} has malformed fields: "
                           + ", ".join(f"{k}={d.get(k)!r}" for k in bad)
                           + " (names, paths and sha256 are strings, the sha256 64 hex digits, size_bytes a whole number)")
        return entry


# ----------------------------------------------------------------------------------------------
# Locating and reading the registry
# ----------------------------------------------------------------------------------------------
def default_models_dirs() -> List[Path]:
    """Candidate zoo directories in search order (the first that holds a registry is used)."""
    candidates = []
    env = os.environ.get(ENV_MODELS_DIR)
    if env:
        candidates.append(Path(env))
    candidates.append(_PACKAGE_DIR / "_models")  # inside an installed wheel
    candidates.append(_PACKAGE_DIR.parent / "models")  # source checkout / editable install
    return candidates


def zoo_dir(models_dir: Optional[PathLike] = None) -> Path:
    """The zoo directory in use (see the module docstring for the search order)."""
    if models_dir is not None:
        path = Path(models_dir)
        if not (path / REGISTRY_FILE).is_file():
            raise ZooError(f"no model registry in {str(path)!r} ({REGISTRY_FILE} is missing)")
        return path
    env = os.environ.get(ENV_MODELS_DIR)
    if env:  # an explicit choice is never silently replaced by another directory
        return zoo_dir(env)
    for path in default_models_dirs():
        if (path / REGISTRY_FILE).is_file():
            return path
    raise ZooError(
        "no model zoo found: looked for " + ", ".join(repr(str(p / REGISTRY_FILE)) for p in default_models_dirs())
        + f"; set {ENV_MODELS_DIR} or pass models_dir"
    )


def read_registry(models_dir: Optional[PathLike] = None) -> Dict[str, ModelEntry]:
    """Registry entries by name. Raises :class:`ZooError` for a missing or malformed registry."""
    root = zoo_dir(models_dir)
    path = root / REGISTRY_FILE
    try:
        with open(path) as fh:
            raw = json.load(fh)
    except json.JSONDecodeError as exc:
        raise ZooError(f"model registry {str(path)!r} is not valid JSON: {exc}") from exc
    if not isinstance(raw, dict) or raw.get("format") != REGISTRY_FORMAT:
        raise ZooError(f"{str(path)!r} is not an ase_denoise model registry (format must be {REGISTRY_FORMAT!r})")
    version = raw.get("format_version")
    if not isinstance(version, int) or version > REGISTRY_VERSION:
        raise ZooError(
            f"{str(path)!r} has registry format_version {version!r}; this ase_denoise reads <= {REGISTRY_VERSION}"
        )
    entries: Dict[str, ModelEntry] = {}
    items = raw.get("models", [])
    if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
        raise ZooError(f"{str(path)!r}: 'models' must be a list of entries (JSON objects), not {items!r:.80}")
    for item in items:
        entry = ModelEntry.from_dict(item)
        if entry.name in entries:
            raise ZooError(f"{str(path)!r} lists the model name {entry.name!r} twice")
        entries[entry.name] = entry
    return entries


def list_models(models_dir: Optional[PathLike] = None) -> List[str]:
    """Names of the models in the zoo, sorted. Nothing is downloaded or loaded."""
    return sorted(read_registry(models_dir))


def model_info(name: str, models_dir: Optional[PathLike] = None) -> ModelEntry:
    """The registry entry of ``name``; :class:`ZooError` listing the available names if unknown."""
    entries = read_registry(models_dir)
    if name not in entries:
        available = ", ".join(sorted(entries)) or "(none)"
        raise ZooError(f"unknown model name {name!r}; available models: {available}")
    return entries[name]


def _inside(root: Path, relative: str, what: str) -> Path:
    """``root / relative``, refusing absolute paths and paths that leave ``root``."""
    path = (root / relative).resolve()
    if Path(relative).is_absolute() or not path.is_relative_to(root.resolve()):
        raise ZooError(f"registry {what} path {relative!r} points outside the zoo directory {str(root)!r}")
    return path


def card_text(name: str, models_dir: Optional[PathLike] = None) -> str:
    """The model card (Markdown) of ``name``."""
    entry = model_info(name, models_dir)
    path = _inside(zoo_dir(models_dir), entry.card, "card")
    if not path.is_file():
        raise ZooError(f"model card {str(path)!r} of {name!r} is missing")
    return path.read_text()


# ----------------------------------------------------------------------------------------------
# Checking files
# ----------------------------------------------------------------------------------------------
def sha256_file(path: PathLike, chunk_bytes: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(chunk_bytes), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verified_bytes(name: str, models_dir: Optional[PathLike] = None) -> Tuple[Path, bytes]:
    """The path and the bytes of the weights of ``name``, read once and checked against the registry's
    size and sha256: what is loaded is what was hashed (the file cannot change in between).

    Raises :class:`ZooError` (unknown name, missing file) or :class:`ChecksumError` (a changed file).
    """
    entry = model_info(name, models_dir)
    path = _inside(zoo_dir(models_dir), entry.file, "file")
    if not path.is_file():
        raise ZooError(f"model file {str(path)!r} of {name!r} is missing from the zoo")
    if not isinstance(entry.size_bytes, int) or isinstance(entry.size_bytes, bool) or entry.size_bytes < 0:
        raise ZooError(f"registry entry {name!r}: size_bytes must be a whole number of bytes, not {entry.size_bytes!r}")
    with open(path, "rb") as fh:
        data = fh.read(entry.size_bytes + 1)  # never more than the registry promises
    if len(data) != entry.size_bytes:
        raise ChecksumError(
            f"refusing to load {str(path)!r}: its size does not match the registry (expected "
            f"{entry.size_bytes} bytes, actual {path.stat().st_size} bytes); the file was modified or truncated"
        )
    actual = hashlib.sha256(data).hexdigest()
    if actual != entry.sha256:
        raise ChecksumError(
            f"refusing to load {str(path)!r}: sha256 mismatch with the registry (expected {entry.sha256}, "
            f"actual {actual}); the file was modified or corrupted"
        )
    return path, data


def verified_path(name: str, models_dir: Optional[PathLike] = None) -> Path:
    """Path of the weights of ``name`` after checking its size and sha256 against the registry
    (to load them, use :func:`load_model`, which loads the very bytes it checked)."""
    return verified_bytes(name, models_dir)[0]


def looks_like_path(name_or_path: PathLike) -> bool:
    """True for arguments that are meant as file paths rather than zoo names."""
    if not isinstance(name_or_path, str):
        return True  # os.PathLike
    return os.sep in name_or_path or (os.altsep or os.sep) in name_or_path or name_or_path.endswith(
        (".safetensors", ".pt", ".pth", ".model", ".ckpt")
    )


def _zoo_names(models_dir: Optional[PathLike]) -> Optional[List[str]]:
    try:
        return list_models(models_dir)
    except ZooError:
        return None  # no zoo here (a bare install with ASE_DENOISE_MODELS_DIR unset): files only


def resolve(name_or_path: PathLike, models_dir: Optional[PathLike] = None) -> Path:
    """The file to load for ``name_or_path``. One rule: an argument that looks like a path (a separator,
    or a model file's suffix) is a file; any other argument is a zoo name when the registry lists it
    (a file of that name in the working directory does not replace the zoo model: write ``./name`` to
    load it), else a file.

    Raises ``FileNotFoundError`` for a file that does not exist, :class:`ZooError` for an unknown name
    (the message lists the available names) and :class:`ChecksumError` for a zoo file that does not
    match the registry.
    """
    return _resolve(name_or_path, models_dir)[0]


def _resolve(name_or_path: PathLike, models_dir: Optional[PathLike]) -> Tuple[Path, Optional[bytes]]:
    """(path, the verified bytes of a zoo model or None for a file given by the user)."""
    if not looks_like_path(name_or_path):
        name = str(name_or_path)
        names = _zoo_names(models_dir)
        if names is not None and name in names:
            if os.path.exists(name):
                logger.warning("%r is the zoo model of that name (sha256-checked), not the file %r in the working "
                               "directory; write ./%s to load the file", name, os.path.abspath(name), name)
            return verified_bytes(name, models_dir)
        if not os.path.isfile(name):
            if names is None:
                raise FileNotFoundError(f"model file {name!r} does not exist, and there is no model zoo to look it up in")
            raise ZooError(f"unknown model name {name!r} (and no file of that name exists); available models: "
                           + (", ".join(names) or "(none)"))
    if not os.path.isfile(name_or_path):
        raise FileNotFoundError(f"model file {os.fspath(name_or_path)!r} does not exist")
    return Path(name_or_path), None


def load_model(
    name_or_path: PathLike,
    *,
    dtype: Optional["torch.dtype"] = None,
    device: Union[str, "torch.device"] = "cpu",
    models_dir: Optional[PathLike] = None,
) -> "DenoiserMACE":
    """Load a model file, or a zoo model by name.

    ``name_or_path``: a zoo name (:func:`list_models`, looked up in ``models_dir`` or the shipped zoo),
    whose size and sha256 are checked against the registry first (:class:`ChecksumError` on a
    mismatch), or a file (a path, or a name the zoo does not list; :func:`resolve` has the one rule).
    ``dtype``: convert to this dtype (default: the dtype it was saved in). The returned model is in
    eval mode and carries the file's metadata as ``model.metadata``. Raises
    :class:`~ase_denoise.checkpoint.CheckpointError` for pickled, corrupt, foreign, newer-format or
    mismatched files, :class:`ZooError` listing the available names for an unknown one.
    """
    from .checkpoint import load_model_file  # torch and mace load here: listing the zoo stays cheap

    path, data = _resolve(name_or_path, models_dir)
    return load_model_file(path, dtype=dtype, device=device, data=data)


def load_zoo_model(
    name: str,
    models_dir: Optional[PathLike] = None,
    *,
    dtype: Optional["torch.dtype"] = None,
    device: Union[str, "torch.device"] = "cpu",
) -> "DenoiserMACE":
    """Load the zoo model ``name`` (sha256-checked, safetensors only; no network)."""
    from .checkpoint import load_model_file  # torch and mace load here: listing the zoo stays cheap

    path, data = verified_bytes(name, models_dir)
    logger.info("loading zoo model %r from %s", name, path)
    return load_model_file(path, dtype=dtype, device=device, data=data)


def verify_models(models_dir: Optional[PathLike] = None, load: bool = True) -> List[Tuple[str, bool, str]]:
    """Check every registry entry: the file exists, size and sha256 match and (``load``) it loads.

    Returns ``(name, ok, message)`` per model; never raises for a bad model file.
    """
    from .checkpoint import load_model_file  # torch and mace load here: listing the zoo stays cheap

    results: List[Tuple[str, bool, str]] = []
    for name in list_models(models_dir):
        try:
            path, data = verified_bytes(name, models_dir)
            message = f"sha256 ok ({path.name})"
            if load:
                model = load_model_file(path, data=data)
                levels = ", ".join(f"{s:g}" for s in model.noise_levels)
                message += f", loads ({model.config.symbols}, T={model.temperature_K} K, sigma={levels} A"
                if model.physics.default_noise_std is not None:
                    message += f"; default forces: the level {model.physics.default_noise_std:g} A"
                elif model.physics.default_extrapolation_order is not None:
                    message += f"; default forces: extrapolation of degree {model.physics.default_extrapolation_order}"
                message += ")"
            results.append((name, True, message))
        except (ZooError, CheckpointError, OSError) as exc:
            results.append((name, False, str(exc)))
    return results


# ----------------------------------------------------------------------------------------------
# Writing (benchmarks/train_zoo.py)
# ----------------------------------------------------------------------------------------------
def update_registry(entry: ModelEntry, models_dir: PathLike) -> Path:
    """Add or replace ``entry`` in ``models_dir/registry.json`` (created if missing), atomically."""
    root = Path(models_dir)
    root.mkdir(parents=True, exist_ok=True)
    path = root / REGISTRY_FILE
    entries = read_registry(root) if path.is_file() else {}
    entries[entry.name] = entry
    data = {
        "format": REGISTRY_FORMAT,
        "format_version": REGISTRY_VERSION,
        "models": [entries[k].to_dict() for k in sorted(entries)],
    }

    def write(tmp: str) -> None:
        with open(tmp, "w") as fh:
            json.dump(data, fh, indent=2)
            fh.write("\n")

    atomic_write(path, write, overwrite=True)
    return path


def register_model(
    models_dir: PathLike,
    name: str,
    weights: PathLike,
    card: str,
    summary: str,
    command: str,
    temperature_K: float,
    noise_std: Any,
    fit_note: str = "",
) -> ModelEntry:
    """Write ``card`` as ``<models_dir>/<name>/README.md``, ending in a "Reproduce" section (``command``,
    ``fit_note``: the same system through ``ase-denoise fit``, and the sha256 of ``weights``), and add
    ``name`` to the registry with the size and sha256 of ``weights`` (a file already in
    ``<models_dir>/<name>/``). ``noise_std``: A, one level or the list of a ladder. Returns the entry."""
    root, weights = Path(models_dir), Path(weights)
    folder = root / name
    if weights.resolve().parent != folder.resolve():
        raise ValueError(f"the weights of zoo model {name!r} must be in {folder}, got {weights}")
    sha = sha256_file(weights)
    note = f"{fit_note.strip()}\n\n" if fit_note else ""
    card = card.rstrip("\n") + f"\n\n## Reproduce\n\n    {command}\n\n{note}sha256 of the shipped file: `{sha}`\n"
    (folder / "README.md").write_text(card)
    entry = ModelEntry(name=name, file=f"{name}/{weights.name}", sha256=sha,
                       size_bytes=weights.stat().st_size, summary=summary, card=f"{name}/README.md",
                       temperature_K=temperature_K, noise_std=noise_std, command=command)
    update_registry(entry, root)
    return entry
