"""Start a denoiser from an existing MACE model: copy its backbone, attach a fresh noise head.

A MACE energy model (``mace.modules.MACE`` / ``ScaleShiftMACE``, in memory or a ``.model`` file
written by mace's training) and a :class:`~ase_denoise.model.DenoiserMACE` share their backbone:
node embedding, radial basis, spherical harmonics, interaction and product blocks, under the same
module names. :func:`denoiser_from_mace` reads MACE's architecture hyperparameters off the module,
builds the matching :class:`~ase_denoise.config.ModelConfig`, copies every backbone tensor whose
name, shape and owning e3nn module (class and irreps) match, and leaves the rest -- the noise head
above all -- at a fresh, seeded initialisation. The :class:`TransferReport` lists what was copied,
what was not, and why. Fine-tuning is ordinary training started from the result:
``ase_denoise.train(frames, run_dir, initial_model=model)`` (one fine-tuning path for any model).

What cannot carry over, by construction:

* energy readouts, ``atomic_energies_fn`` (E0s), ``scale_shift``, ZBL pair repulsion: a denoiser has
  no energies; its head is new;
* the last layer of a ``vector``-head denoiser keeps ``1o`` features where MACE keeps only scalars,
  so tensors of that layer whose shapes differ stay fresh (``edge`` head: the last layer matches);
* the first interaction's ``skip_tp`` when MACE's first layer is a residual block: ase_denoise's
  first layer is a ``RealAgnosticInteractionBlock``, as in models from ``mace_run_train --model MACE``
  (the CLI default, which forces that first block); ``--model ScaleShiftMACE`` keeps the residual
  default ``--interaction_first``, and then that ``skip_tp`` (other shape) stays fresh, as the report says.

Units: ``noise_std`` and ``r_max`` in Angstrom, ``temperature_K`` in K (forces in eV/Angstrom are
``kT * eps_hat / noise_std``, docs/design.md).

Security: a ``.model`` file is a pickled Python object; unpickling runs code stored in the file.
:func:`load_mace_model` refuses it unless ``trust_pickle=True`` is passed, and the refusal happens
before a single byte is unpickled.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import warnings
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import zipfile

import torch
from torch import nn

from .._mace import host_environment_kept, o3
from ..config import ModelConfig, PhysicsConfig
from ..errors import MaceAdapterError, UntrustedPickleError
from ..files import PathLike
from ..model import DenoiserMACE, build_model, hidden_irreps

logger = logging.getLogger(__name__)

#: State-dict prefixes of the backbone shared by MACE and DenoiserMACE.
BACKBONE_PREFIXES = ("node_embedding.", "radial_embedding.", "spherical_harmonics.", "interactions.", "products.")

#: Interaction block classes of ase_denoise's backbone: layer 0, then every later layer.
OUR_INTERACTIONS = ("RealAgnosticInteractionBlock", "RealAgnosticResidualInteractionBlock")

# Why a MACE tensor outside the backbone is not used (prefix -> reason).
_UNUSED_REASONS = (
    ("readouts.", "energy readout: replaced by the noise head"),
    ("atomic_energies_fn.", "isolated-atom energies E0: a denoiser predicts no energies"),
    ("scale_shift.", "energy scale/shift: a denoiser predicts no energies"),
    ("pair_repulsion_fn.", "ZBL pair repulsion (an energy term): not part of the denoiser"),
    ("joint_embedding.", "extra (charge/spin/...) embedding: not supported by ase_denoise"),
    ("embedding_readout.", "extra embedding readout: not supported by ase_denoise"),
    ("r_max", "cutoff: read into ModelConfig.r_max"),
    ("num_interactions", "number of layers: read into ModelConfig.num_interactions"),
)

# Attributes that define what an e3nn/mace module computes; compared between source and target.
_SIGNATURE_ATTRS = (
    "irreps_in", "irreps_in1", "irreps_in2", "irreps_out", "hs", "correlation", "num_features",
    "r_max", "num_basis", "p",
)


# --------------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------------
@dataclass
class TensorNote:
    """One tensor that was not transferred: its state-dict ``name``, ``shape`` and the ``reason``."""

    name: str
    shape: Tuple[int, ...]
    reason: str


@dataclass
class TransferReport:
    """What :func:`transfer_backbone` copied from a MACE model into a denoiser.

    ``transferred``: denoiser state-dict names copied bit for bit from the MACE tensor of the same name.
    ``skipped``: denoiser tensors left at their fresh (seeded) initialisation, with the reason
    (the noise head always is). ``unused``: MACE tensors not used, with the reason.
    ``n_params_transferred`` / ``n_params``: trainable parameter elements copied / in the denoiser.
    ``notes``: architecture differences worth knowing (e.g. a residual first layer in MACE).
    """

    source: str
    config: ModelConfig
    transferred: List[str] = field(default_factory=list)
    skipped: List[TensorNote] = field(default_factory=list)
    unused: List[TensorNote] = field(default_factory=list)
    notes: List[str] = field(default_factory=list)
    n_params_transferred: int = 0
    n_params: int = 0

    @property
    def fraction_transferred(self) -> float:
        """Fraction of the denoiser's trainable parameter elements copied from MACE."""
        return self.n_params_transferred / self.n_params if self.n_params else 0.0

    def to_dict(self) -> Dict[str, Any]:
        """JSON-ready dictionary (for model cards and checkpoint metadata)."""
        return {
            "source": self.source,
            "config": self.config.to_dict(),
            "transferred": list(self.transferred),
            "skipped": [dataclasses.asdict(n) for n in self.skipped],
            "unused": [dataclasses.asdict(n) for n in self.unused],
            "notes": list(self.notes),
            "n_params_transferred": self.n_params_transferred,
            "n_params": self.n_params,
        }

    def summary(self) -> str:
        """Human-readable multi-line summary: counts, then every skipped/unused tensor with its reason."""
        lines = [
            f"MACE -> denoiser transfer from {self.source}:",
            f"  transferred {len(self.transferred)} tensors, {self.n_params_transferred} of {self.n_params} "
            f"trainable parameters ({100.0 * self.fraction_transferred:.1f}%)",
            f"  not transferred (fresh init) {len(self.skipped)} tensors:",
        ]
        lines += [f"    {n.name} {list(n.shape)}: {n.reason}" for n in self.skipped]
        lines.append(f"  MACE tensors not used {len(self.unused)}:")
        lines += [f"    {n.name} {list(n.shape)}: {n.reason}" for n in self.unused]
        if self.notes:
            lines.append("  notes:")
            lines += [f"    {n}" for n in self.notes]
        return "\n".join(lines)


# --------------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------------
def load_mace_model(path: PathLike, *, trust_pickle: bool = False, map_location: str = "cpu") -> nn.Module:
    """Load a MACE ``.model`` file (``torch.save`` of the whole module, as mace's training writes it).

    Such a file is a pickle: unpickling it executes code stored in the file, so it is loaded only with
    ``trust_pickle=True``. Without it, :class:`UntrustedPickleError` is raised before the file is
    opened for unpickling. TorchScript ("_compiled.model") files are refused: pass the plain ``.model``.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"MACE model file {path!r} does not exist")
    if not trust_pickle:
        raise UntrustedPickleError(
            f"{path!r} is a pickled MACE model (torch.save of the whole module): loading it executes code "
            "stored in the file, which can do anything your account can. Nothing was loaded. If you trust "
            "where the file came from, pass trust_pickle=True (e.g. denoiser_from_mace(path, ..., "
            "trust_pickle=True)), or load the module yourself and pass it instead of the path."
        )
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as zf:
            if any(name.endswith("constants.pkl") or "/code/" in name for name in zf.namelist()):
                raise MaceAdapterError(
                    f"{path!r} is a TorchScript (compiled) MACE model; the adapter needs the plain "
                    "'.model' file written next to it by mace's training"
                )
    logger.warning("unpickling %s (trust_pickle=True): this runs code stored in the file", path)
    with host_environment_kept(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # inside the guard, like every mace import (ase_denoise._mace): the pickle references mace classes
        import mace.modules  # noqa: F401

        obj = torch.load(path, map_location=map_location, weights_only=False)
    if not isinstance(obj, nn.Module):
        raise MaceAdapterError(f"{path!r} holds a {type(obj).__name__}, not a MACE torch module")
    return obj


# --------------------------------------------------------------------------------------------------
# Reading MACE's hyperparameters
# --------------------------------------------------------------------------------------------------
def _check_is_mace(model: nn.Module) -> None:
    if not isinstance(model, nn.Module):
        raise MaceAdapterError(f"expected a MACE torch module or a .model path, got {type(model).__name__}")
    missing = [
        name for name in ("node_embedding", "radial_embedding", "spherical_harmonics", "interactions", "products")
        if not hasattr(model, name)
    ]
    if missing or not hasattr(model, "atomic_numbers"):
        raise MaceAdapterError(
            f"{type(model).__name__} is not a MACE model: it lacks {missing or ['atomic_numbers']} "
            "(expected mace.modules.MACE, ScaleShiftMACE or a subclass)"
        )
    if isinstance(model, torch.jit.ScriptModule):
        raise MaceAdapterError("TorchScript MACE models are not supported; pass the plain (pickled) module")
    for name, module in model.named_modules():
        for attr in ("cueq_config", "oeq_config"):
            cfg = getattr(module, attr, None)
            if cfg is not None and getattr(cfg, "enabled", False):
                raise MaceAdapterError(
                    f"{name or type(model).__name__} uses {attr.split('_')[0]} acceleration (another weight "
                    "layout); convert the model to plain e3nn first (mace_cueq_to_e3nn / mace's oeq converter)"
                )


def _shortest_float(value: torch.Tensor) -> float:
    """The shortest decimal that round-trips in the tensor's dtype (float32 5.3 -> 5.3, not 5.300000190734863)."""
    return float(str(value.detach().cpu().numpy()[()]))


def _standard_hidden(irreps: Any, channels: int, max_L: int) -> bool:
    return str(irreps).replace(" ", "") == str(hidden_irreps(channels, max_L)).replace(" ", "")


def mace_model_config(
    mace_model: nn.Module,
    *,
    head: str = "edge",
    **options: Any,
) -> Tuple[ModelConfig, List[str]]:
    """The :class:`ModelConfig` (architecture) matching ``mace_model``'s backbone, and notes on what
    differs.

    Read off the module: ``atomic_numbers``, ``r_max`` (Angstrom, from the radial cutoff),
    ``num_bessel``, ``num_polynomial_cutoff``, ``max_ell`` (spherical harmonics), ``num_channels`` and
    ``max_L`` (hidden irreps of the first layer), ``num_interactions``, ``correlation``, ``radial_mlp``,
    ``avg_num_neighbors``. ``head`` and ``options`` (``edge_mlp``) set the rest. Raises
    :class:`MaceAdapterError` for modules that are not MACE or use features the denoiser's backbone
    cannot represent.
    """
    _check_is_mace(mace_model)
    notes: List[str] = []
    forbidden = sorted(set(options) - {"edge_mlp"})
    if forbidden:
        raise TypeError(f"options {forbidden} are read from the MACE model and cannot be overridden")

    numbers = [int(z) for z in mace_model.atomic_numbers.tolist()]
    if numbers != sorted(set(numbers)):
        raise MaceAdapterError(
            f"MACE element table {numbers} is not sorted and unique; ase_denoise orders elements by atomic "
            "number (mace's own training always does), so element-indexed weights would be scrambled"
        )
    radial = mace_model.radial_embedding
    if type(radial.bessel_fn).__name__ != "BesselBasis":
        notes.append(
            f"MACE uses a {type(radial.bessel_fn).__name__} radial basis, ase_denoise a Bessel basis: "
            "the radial networks (conv_tp_weights) are not transferred"
        )
    if hasattr(radial, "distance_transform"):
        notes.append(
            f"MACE applies a {type(radial.distance_transform).__name__} distance transform that ase_denoise "
            "does not: the radial networks (conv_tp_weights) are not transferred"
        )
    if not getattr(radial, "apply_cutoff", True):
        notes.append("MACE applies its radial cutoff to the messages (apply_cutoff=False); ase_denoise to the radial features")

    sh_irreps = mace_model.spherical_harmonics.irreps_out
    max_ell = int(sh_irreps.lmax)
    if o3.Irreps(sh_irreps) != o3.Irreps.spherical_harmonics(max_ell):
        raise MaceAdapterError(
            f"MACE spherical harmonics {sh_irreps} are not the standard O(3) ones (use_so3?): not supported"
        )
    n_layers = len(mace_model.interactions)
    first_hidden = mace_model.products[0].linear.irreps_out
    channels = int(o3.Irreps(first_hidden).count(o3.Irrep(0, 1)))
    if n_layers > 1:
        max_L = int(o3.Irreps(first_hidden).lmax)
        if not _standard_hidden(first_hidden, channels, max_L):
            notes.append(
                f"MACE hidden irreps {first_hidden} are not of the form {hidden_irreps(channels, max_L)}; "
                "tensors whose irreps differ are not transferred"
            )
    else:
        max_L = 1  # a single MACE layer keeps scalars only: max_L does not enter an edge-head denoiser
        if head == "vector":
            notes.append("MACE has one layer (scalars only); the vector head's 1o features start fresh")

    correlations = []
    for i, product in enumerate(mace_model.products):
        sc = product.symmetric_contractions
        if not hasattr(sc, "contractions"):
            raise MaceAdapterError(f"products.{i} is not an e3nn SymmetricContraction; convert the model to e3nn")
        correlations.append(int(sc.contractions[0].correlation))
    correlation = max(correlations)
    if len(set(correlations)) > 1:
        notes.append(
            f"MACE correlation differs per layer {correlations}; ase_denoise uses one ({correlation}): "
            "product weights of the other layers are not transferred"
        )
    inter0 = mace_model.interactions[0]
    radial_mlp = [int(x) for x in getattr(inter0, "radial_MLP", [64, 64, 64])]
    avg_num_neighbors = float(inter0.avg_num_neighbors)

    for i, block in enumerate(mace_model.interactions):
        ours = OUR_INTERACTIONS[0] if i == 0 else OUR_INTERACTIONS[1]
        theirs = type(block).__name__
        if theirs != ours:
            notes.append(
                f"interactions.{i} is a {theirs} in MACE, a {ours} in ase_denoise: "
                "tensors of the same name, shape and irreps are transferred, the others stay fresh"
                + (" (MACE's residual first layer also adds a self-connection that ours lacks)" if i == 0 and "Residual" in theirs else "")
            )
    heads = list(getattr(mace_model, "heads", None) or [])
    if len(heads) > 1:
        notes.append(f"MACE model has {len(heads)} heads {heads}: heads are energy readouts, none is transferred")

    config = ModelConfig(
        atomic_numbers=numbers,
        r_max=_shortest_float(radial.cutoff_fn.r_max),
        num_channels=channels,
        max_L=max_L,
        max_ell=max_ell,
        num_interactions=n_layers,
        correlation=correlation,
        num_bessel=int(radial.out_dim),
        num_polynomial_cutoff=int(radial.cutoff_fn.p),
        radial_mlp=radial_mlp,
        avg_num_neighbors=avg_num_neighbors,
        head=head,
        **options,
    )
    return config, notes


# --------------------------------------------------------------------------------------------------
# Transfer
# --------------------------------------------------------------------------------------------------
def _signature(module: nn.Module) -> Tuple[str, ...]:
    if isinstance(module, (torch.jit.ScriptModule, torch.fx.GraphModule)):
        # e3nn's generated kernels (constants such as Wigner 3j): the same code whether e3nn scripted
        # it (a MACE model built with e3nn's defaults) or left it as fx (ours: model.eager_e3nn_codegen)
        return ("e3nn generated code",)
    sig = [type(module).__name__]
    for attr in _SIGNATURE_ATTRS:
        value = getattr(module, attr, None)
        if value is None or isinstance(value, nn.Module):
            continue
        if isinstance(value, torch.Tensor):
            value = value.tolist() if value.numel() < 16 else tuple(value.shape)
        sig.append(f"{attr}={value}")
    return tuple(sig)


def _fmt(signature: Tuple[str, ...]) -> str:
    return f"{signature[0]}({', '.join(signature[1:])})"


def _module_chain(root: nn.Module, tensor_name: str) -> List[Tuple[str, Tuple[str, ...]]]:
    """(path, signature) of every module below the top-level block that owns ``tensor_name``."""
    parts = tensor_name.split(".")[:-1]
    start = 2 if parts and parts[0] in ("interactions", "products") else 1  # depth of the first module below the block
    chain = []
    module = root
    for depth, part in enumerate(parts):
        module = getattr(module, part) if not part.isdigit() else module[int(part)]  # type: ignore[index]
        if depth >= start and not isinstance(module, (nn.ModuleList, nn.ParameterList)):
            chain.append((".".join(parts[: depth + 1]), _signature(module)))
    return chain


def _unused_reason(name: str) -> Optional[str]:
    for prefix, reason in _UNUSED_REASONS:
        if name == prefix or name.startswith(prefix):
            return reason
    return None


def transfer_backbone(source: nn.Module, target: DenoiserMACE, *, source_name: str = "") -> TransferReport:
    """Copy every backbone tensor of MACE model ``source`` into denoiser ``target`` (in place).

    A tensor is copied when ``target`` has one of the same state-dict name and shape, under a
    backbone prefix (:data:`BACKBONE_PREFIXES`), and every module between the block (e.g.
    ``interactions.1``) and the tensor has the same class and irreps in both models. Radial networks
    are not copied when MACE's radial features differ (another basis or a distance transform).
    Copies are exact when both models have the same dtype (otherwise cast, and the report notes it).
    """
    _check_is_mace(source)
    src = source.state_dict()
    tgt = target.state_dict()
    params = dict(target.named_parameters())
    radial = source.radial_embedding
    radial_differs = type(radial.bessel_fn).__name__ != "BesselBasis" or hasattr(radial, "distance_transform")
    report = TransferReport(source=source_name or type(source).__name__, config=target.config)
    report.n_params = sum(p.numel() for p in target.parameters() if p.requires_grad)
    reasons: Dict[str, str] = {}  # why a MACE tensor of a backbone name was not used
    casts: set[str] = set()

    with torch.no_grad():
        for name, tensor in tgt.items():
            shape = tuple(tensor.shape)
            reason: Optional[str] = None
            if name.startswith(("edge_head.", "vector_readouts.", "energy_readouts.")):
                reason = "noise head: new, randomly initialised"
            elif name == "atomic_numbers":
                if name not in src or src[name].tolist() != tensor.tolist():
                    reason = "element table differs from MACE's"
            elif not name.startswith(BACKBONE_PREFIXES):
                reason = "not part of the shared backbone"
            elif name not in src:
                reason = "no tensor of this name in the MACE model"
            elif tuple(src[name].shape) != shape:
                reason = f"shape {list(shape)} here vs {list(src[name].shape)} in MACE (layer irreps differ)"
            elif radial_differs and ".conv_tp_weights." in name:
                reason = "radial network: MACE's radial features differ (basis or distance transform)"
            else:
                ours, theirs = _module_chain(target, name), _module_chain(source, name)
                if ours != theirs:
                    pair = next(((a, b) for a, b in zip(ours, theirs) if a != b), None)
                    if pair is None:
                        reason = "same shape but the modules holding it are nested differently"
                    else:
                        a, b = pair
                        reason = f"same shape but {a[0]} differs: {_fmt(a[1])} here vs {_fmt(b[1])} in MACE"
            if reason is not None:
                report.skipped.append(TensorNote(name, shape, reason))
                if name in src:
                    reasons[name] = reason
                continue
            if src[name].dtype != tensor.dtype:
                casts.add(f"{src[name].dtype} -> {tensor.dtype}")
            tensor.copy_(src[name])  # state_dict tensors share storage with the module; copy_ casts and crosses devices
            report.transferred.append(name)
            if name in params and params[name].requires_grad:
                report.n_params_transferred += tensor.numel()

    if casts:
        report.notes.append(f"tensors were cast ({', '.join(sorted(casts))}): copies are not bit-identical")
    transferred = set(report.transferred)
    for name, tensor in src.items():
        if name in transferred:
            continue
        reason = _unused_reason(name) or reasons.get(name) or "no counterpart in the denoiser"
        report.unused.append(TensorNote(name, tuple(tensor.shape), reason))
    return report


def denoiser_from_mace(
    mace_model_or_path: Union[nn.Module, PathLike],
    *,
    noise_std: float,
    temperature_K: float,
    head: str = "edge",
    trust_pickle: bool = False,
    edge_mlp: Optional[Sequence[int]] = None,
    pbc: Optional[Sequence[bool]] = None,
    dtype: Optional[torch.dtype] = None,
    seed: Optional[int] = 0,
) -> Tuple[DenoiserMACE, TransferReport]:
    """Build a denoiser whose backbone is copied from a MACE model; the noise head is new.

    Args:
        mace_model_or_path: a ``mace.modules.MACE``/``ScaleShiftMACE`` module, or the path of a
            ``.model`` file written by mace's training (a pickle: needs ``trust_pickle=True``).
        noise_std: sigma of the denoiser, Angstrom.
        temperature_K: temperature of the data the denoiser will be trained on, K.
        head: ``"edge"`` (default; the whole MACE backbone fits), ``"energy"`` (the backbone fits too;
            the free-energy readouts start fresh: MACE's readouts fit a potential energy, not a free
            energy at the denoiser's temperature) or ``"vector"`` (the last layer keeps ``1o``
            features, so its tensors of other shapes stay fresh).
        trust_pickle: allow unpickling a ``.model`` file (runs code from the file).
        edge_mlp: hidden sizes of the edge head (default: ModelConfig's).
        pbc: periodicity recorded with the model (training replaces it by the data's).
        dtype: dtype of the returned denoiser; default MACE's (the copy is bit-identical in MACE's
            dtype and converted afterwards if ``dtype`` differs).
        seed: seeds the fresh tensors (same seed and architecture -> same fresh weights as a
            from-scratch :class:`~ase_denoise.training.trainer.Trainer` with that seed); ``None`` uses
            torch's global generator. The global generator is left untouched otherwise.

    Fine-tune the result with ``ase_denoise.train(frames, run_dir, initial_model=model)``.

    Returns:
        ``(model, report)``: the denoiser in eval mode (``model.provenance`` describes the source)
        and the :class:`TransferReport`, also logged.
    """
    if isinstance(mace_model_or_path, (str, os.PathLike)):
        source_name = os.fspath(mace_model_or_path)
        mace_model = load_mace_model(mace_model_or_path, trust_pickle=trust_pickle)
    else:
        mace_model = mace_model_or_path
        source_name = f"{type(mace_model).__name__} (in memory)"
    options: Dict[str, Any] = {}
    if edge_mlp is not None:
        options["edge_mlp"] = list(edge_mlp)
    config, notes = mace_model_config(mace_model, head=head, **options)
    physics = PhysicsConfig(temperature_K=temperature_K, noise_std=noise_std, pbc=tuple(pbc or (False,) * 3))
    source_dtype = next((p.dtype for p in mace_model.parameters() if p.is_floating_point()), torch.float32)
    model = build_model(config, physics, dtype=source_dtype, seed=seed)
    report = transfer_backbone(mace_model, model, source_name=source_name)  # bit-exact in MACE's dtype
    report.notes = notes + report.notes
    if dtype is not None and dtype != source_dtype:
        model.to(dtype)
        report.notes.append(f"denoiser converted from MACE's {source_dtype} to {dtype} after the transfer")
    model.provenance = {
        "initialised_from": "mace",
        "source": source_name,
        "source_class": type(mace_model).__name__,
        "n_tensors_transferred": len(report.transferred),
        "n_params_transferred": report.n_params_transferred,
        "n_params": report.n_params,
    }
    logger.info(
        "denoiser from %s: transferred %d tensors (%d/%d trainable parameters, %.1f%%); %d left fresh "
        "(%s); %d MACE tensors unused",
        source_name, len(report.transferred), report.n_params_transferred, report.n_params,
        100.0 * report.fraction_transferred, len(report.skipped),
        ", ".join(sorted({n.name.split(".")[0] for n in report.skipped})), len(report.unused),
    )
    for note in report.notes:
        logger.info("MACE transfer: %s", note)
    return model.eval(), report
