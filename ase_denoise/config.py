"""Configuration dataclasses, saved as JSON with the weights.

Three kinds of settings, kept apart because they change for different reasons:

* :class:`ModelConfig` - the architecture: what is needed to rebuild the network and load its
  weights (element table, cutoff, MACE hyperparameters, head).
* :class:`PhysicsConfig` - the physics of the training data: temperature, noise level(s) sigma,
  periodicity. It decides how the network's output becomes forces (``kT`` and ``sigma``).
* :class:`TrainConfig` - how the weights were fitted (provenance; not needed to use a model).

Each field's default is defined once, here; the command line builds its options from the fields'
``metadata`` (:func:`add_arguments`), so library and CLI defaults cannot disagree. ``from_dict``
refuses unknown keys in all three (one rule: a key this version does not know is a file from a
newer version or a typo, and silently dropping it would change the meaning of the file).

Units: Angstrom for lengths (``r_max``, ``noise_std``), Kelvin for ``temperature_K``.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import typing
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple, Type, TypeVar, Union

from ase.data import chemical_symbols
from ase.units import kB

from .forces import ForcesChoice, default_order
from .priors import prior_from_dict
from .typecheck import in_range, type_error

HEADS = ("edge", "energy", "vector")
LOSSES = ("denoising", "force_matching", "hybrid", "mixed")

T = TypeVar("T")


def _fail(name: str, value: Any, why: str) -> None:
    raise ValueError(f"invalid {name}={value!r}: {why}")


def _cli(flag: str, help: str, **argparse_kw: Any) -> Dict[str, Any]:
    """Field metadata: the field becomes the command-line option ``flag``."""
    return {"cli": flag, "help": help, **argparse_kw}


class _Dictable:
    """``to_dict`` / ``from_dict`` with one rule for unknown keys: refuse them; and one for the
    values read: each must have its field's type (``from_dict`` reads files, which may be hostile)."""

    def to_dict(self) -> Dict[str, Any]:
        d = dataclasses.asdict(self)  # type: ignore[call-overload]
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in d.items()}

    @classmethod
    def from_dict(cls: Type[T], d: Dict[str, Any]) -> T:
        known = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(
                f"unknown {cls.__name__} keys {unknown} (known: {sorted(known)}); "
                "is this file from a newer ase_denoise?"
            )
        hints = typing.get_type_hints(cls)
        for key, value in d.items():
            why = type_error(key, value, hints[key])
            if why:
                raise ValueError(f"invalid {cls.__name__}: {why}")
        return cls(**d)


def _pairs_arg(text: str, key: Any, value: Any, what: str, form: str) -> Dict[Any, Any]:
    """``"a=1,b=2"`` -> ``{key(a): value(1), ...}``; anything else is refused with the expected ``form``."""
    try:
        pairs = [item.split("=", 1) for item in text.split(",") if item.strip()]
        parsed = {key(k.strip()): value(v.strip()) for k, v in pairs}
    except ValueError:
        parsed = {}
    if not parsed:
        raise ValueError(f"{what} {text!r}: give {form}")
    return parsed


def bead_names_arg(text: str) -> Dict[int, str]:
    """``"1=C-ace,2=N"`` -> ``{1: "C-ace", 2: "N"}``; anything else is refused with the form."""
    return _pairs_arg(text, int, str, "bead names", "number=name pairs, e.g. 1=C-ace,2=N,3=CA")


def charges_arg(text: str) -> Dict[str, float]:
    """``"Li=1,Cl=-1"`` -> ``{"Li": 1.0, "Cl": -1.0}`` (charges in e); anything else is refused."""
    return _pairs_arg(text, str, float, "charges", "element=charge pairs in e, e.g. Li=1,Cl=-1")


#: the largest cutoff (Angstrom) of the network and of any prior (a neighbour list's cost grows as its cube)
MAX_CUTOFF = 30.0
#: the documented range of each architecture field (docs/checkpoint.md, "Limits"): every model inside
#: it builds in seconds on one core (256 channels, L 3, ell 3, 4 interactions, correlation 3: 62 M
#: weights, 14 s), so a file's header cannot make loading hang or take gigabytes
MODEL_LIMITS = {"num_channels": (1, 256), "max_L": (0, 3), "max_ell": (1, 3), "num_interactions": (1, 4),
                "correlation": (1, 3), "num_bessel": (1, 32), "num_polynomial_cutoff": (1, 12),
                "radial_mlp": (1, 512), "edge_mlp": (1, 512), "energy_mlp": (1, 256), "noise_embedding": (0, 4),
                "noise_expansion": (0, 4), "avg_num_neighbors": (1e-3, 1e4)}
MAX_MLP_LAYERS = 4
#: the documented range of the physics fields: temperature (K), noise levels (Angstrom) and their number
TEMPERATURE_RANGE_K = (1e-2, 1e5)
NOISE_STD_RANGE = (1e-5, 5.0)
MAX_NOISE_LEVELS = 16


@dataclass
class ModelConfig(_Dictable):
    """The architecture: everything needed to rebuild a denoiser and load its weights.

    ``atomic_numbers``: the element table (sorted, unique); any other element is refused.
    ``bead_names``: for coarse-grained beads, which are types rather than elements: {number: name}.
    Beads travel through ASE as placeholder atomic numbers (:func:`ase_denoise.data.bead_atoms`);
    these names say what each one is, are saved with the weights and shown where the table is shown.
    ``r_max`` (Angstrom): MACE cutoff. ``num_channels``, ``max_L`` (hidden irreps), ``max_ell``
    (spherical harmonics), ``num_interactions``, ``correlation``, ``num_bessel``,
    ``num_polynomial_cutoff``, ``radial_mlp``: MACE's own hyperparameters with MACE's meaning.
    ``avg_num_neighbors``: fixed message normaliser, measured on the training data.
    ``head``: ``"vector"`` (default) keeps ``1o`` features through every layer and sums a per-layer
    linear ``1x1o`` readout. ``"edge"`` is a symmetric pairwise head on a scalar last layer,
    ``v_i = sum_j w(s_i, s_j, |r_ij|) r_ij/|r_ij|`` with ``w`` symmetric in i and j, so its forces
    obey Newton's third law exactly (net force zero). ``edge_mlp``: hidden sizes of the edge head's
    weight network. ``"energy"``: MACE's own scalar readouts (linear per layer, a gated MLP of
    ``energy_mlp`` channels after the scalar last layer) summed over atoms into a free energy
    ``A(x)`` (eV); forces are ``-dA/dx`` by autograd, so they are conservative (docs/energy-head.md).
    Several noise levels: ``noise_embedding = p`` conditions every element-indexed weight on sigma
    (the node attributes are the one-hot times ``1, u, ..., u^p``, ``u`` the log of sigma), so each level
    is its own pass; ``noise_expansion = K`` instead leaves the network blind to sigma and has every head
    return K + 1 outputs, the coefficients of ``F_sigma = F_0 + s^2 F_1 + ... + s^2K F_K`` with
    ``s = sigma / sigma_max`` (docs/noise-ladder.md, "The expansion head"): one pass gives every level and
    the sigma -> 0 forces ``F_0``.
    """

    atomic_numbers: List[int]
    r_max: float = field(default=5.0, metadata=_cli("--r-max", "MACE cutoff, Angstrom", type=float))
    num_channels: int = field(default=16, metadata=_cli("--channels", "MACE channels", type=int))
    max_L: int = field(default=1, metadata=_cli("--max-L", "largest L of the hidden irreps", type=int))
    max_ell: int = field(default=2, metadata=_cli("--max-ell", "spherical harmonics degree", type=int))
    num_interactions: int = field(default=2, metadata=_cli("--interactions", "message-passing layers", type=int))
    correlation: int = field(default=2, metadata=_cli("--correlation", "MACE body order - 1", type=int))
    num_bessel: int = field(default=8, metadata=_cli("--num-bessel", "radial Bessel functions", type=int))
    num_polynomial_cutoff: int = field(
        default=5, metadata=_cli("--num-polynomial-cutoff", "order of the radial envelope", type=int)
    )
    radial_mlp: List[int] = field(
        default_factory=lambda: [64, 64, 64],
        metadata=_cli("--radial-mlp", "hidden sizes of the radial MLP", type=int, nargs="+"),
    )
    avg_num_neighbors: float = 10.0
    head: str = field(default="vector", metadata=_cli("--head", "output head", choices=HEADS))
    edge_mlp: List[int] = field(
        default_factory=lambda: [64, 64],
        metadata=_cli("--edge-mlp", "hidden sizes of the edge head's weight MLP", type=int, nargs="+"),
    )
    energy_mlp: int = field(
        default=16, metadata=_cli("--energy-mlp", "channels of the energy head's last (gated) readout", type=int)
    )
    noise_embedding: int = field(
        default=0,
        metadata=_cli("--noise-embedding", "degree in log sigma of the noise conditioning (several levels; "
                      "0 with one level; default with several: min(levels - 1, 2))", type=int),
    )
    noise_expansion: int = field(
        default=0,
        metadata=_cli("--noise-expansion", "several levels: degree K in sigma^2 of an explicit expansion "
                      "F_sigma = F_0 + s^2 F_1 + ... + s^2K F_K (s = sigma / the largest level) that the network "
                      "returns in one pass, not conditioned on sigma, so the sigma -> 0 forces F_0 cost one "
                      "level (0: condition on sigma with --noise-embedding)", type=int),
    )
    bead_names: Dict[int, str] = field(
        default_factory=dict, metadata=_cli("--bead-names", "coarse-grained beads: what each placeholder number is, "
                                            "e.g. 1=C-ace,2=N,3=CA (ase_denoise.data.bead_atoms)", type=bead_names_arg))

    def __post_init__(self) -> None:
        self.atomic_numbers = sorted({int(z) for z in self.atomic_numbers})
        self.bead_names = {int(z): str(name) for z, name in dict(self.bead_names).items()}
        self.radial_mlp = [int(x) for x in self.radial_mlp]
        self.edge_mlp = [int(x) for x in self.edge_mlp]
        self.validate()

    def validate(self) -> None:
        if not self.atomic_numbers:
            _fail("atomic_numbers", self.atomic_numbers, "the element table is empty")
        bad = [z for z in self.atomic_numbers if not 0 < z < len(chemical_symbols)]
        if bad:
            _fail("atomic_numbers", bad, "not atomic numbers of real elements")
        if not (self.r_max > 0 and math.isfinite(self.r_max)):
            _fail("r_max", self.r_max, "the cutoff (Angstrom) must be finite and > 0")
        in_range("r_max", self.r_max, 0, MAX_CUTOFF, " Angstrom")
        if self.head not in HEADS:
            _fail("head", self.head, f"choose one of {HEADS}")
        for name in ("num_channels", "num_interactions", "correlation", "num_bessel"):
            if int(getattr(self, name)) < 1:
                _fail(name, getattr(self, name), "must be >= 1")
        if self.max_ell < 1 or self.max_L < 0:
            _fail("max_ell/max_L", (self.max_ell, self.max_L), "need max_ell >= 1 and max_L >= 0")
        if self.head == "vector" and self.max_L < 1:
            _fail("max_L", self.max_L, "the 'vector' head needs max_L >= 1 (1o features)")
        if int(self.energy_mlp) < 1:
            _fail("energy_mlp", self.energy_mlp, "must be >= 1")
        if int(self.noise_embedding) < 0:
            _fail("noise_embedding", self.noise_embedding, "must be >= 0")
        if int(self.noise_expansion) < 0:
            _fail("noise_expansion", self.noise_expansion, "must be >= 0")
        if int(self.noise_expansion) > 0 and int(self.noise_embedding) > 0:
            _fail("noise_expansion", self.noise_expansion, f"an explicit expansion in sigma^2 replaces the noise "
                  f"conditioning: give noise_embedding=0, not {self.noise_embedding}")
        if not (self.avg_num_neighbors > 0 and math.isfinite(self.avg_num_neighbors)):
            _fail("avg_num_neighbors", self.avg_num_neighbors, "must be finite and > 0")
        for name, (low, high) in MODEL_LIMITS.items():  # a model this library builds in seconds
            value = getattr(self, name)
            for v in (value if isinstance(value, list) else [value]):
                in_range(name, v, low, high)
        for name in ("radial_mlp", "edge_mlp"):
            if len(getattr(self, name)) > MAX_MLP_LAYERS:
                _fail(name, getattr(self, name), f"at most {MAX_MLP_LAYERS} hidden layers")
        if self.bead_names:
            stray = sorted(set(self.bead_names) - set(self.atomic_numbers))
            if stray:
                _fail("bead_names", self.bead_names, f"numbers {stray} are not in the table {self.atomic_numbers}")
            names = list(self.bead_names.values())
            if len(set(names)) != len(names) or not all(n.strip() for n in names):
                _fail("bead_names", self.bead_names, "bead names must be unique and non-empty")

    def to_dict(self) -> Dict[str, Any]:
        d = super().to_dict()
        if not d["bead_names"]:
            del d["bead_names"]  # element models: the same JSON as before bead names existed
        return d

    @property
    def symbols(self) -> List[str]:
        """Names of the table's entries: bead names where given, else chemical symbols."""
        return [self.bead_names.get(z, chemical_symbols[z]) for z in self.atomic_numbers]


@dataclass
class PhysicsConfig(_Dictable):
    """The physics of the training data, which turns the network's output into forces.

    ``temperature_K``: temperature of the Boltzmann ensemble the frames were sampled from, K.
    ``kT = ase.units.kB * temperature_K`` (eV) scales every force; it is never guessed.
    ``noise_std``: the noise level(s) sigma, Angstrom (a float is stored as a one-element tuple,
    several are sorted). forces = ``kT * eps_hat / sigma`` (docs/design.md, "The estimator").
    ``pbc``: the periodicity of the training data; the calculator refuses other periodicity.
    ``priors``: pair terms added to the network's forces, in their JSON form
    (:mod:`ase_denoise.priors`: a repulsive wall below the data's closest approaches, screened
    Coulomb); the network was trained on the residual of those marked ``in_residual``.
    ``default_noise_std`` / ``default_extrapolation_order``: for a noise ladder, what the model's
    forces are by default (a calculator given ``noise_std`` or ``extrapolation_order`` overrides
    both): one trained level, or the sigma -> 0 extrapolation of that degree in sigma^2. Neither set:
    the extrapolation of degree ``min(levels - 1, 2)``. A recipe stores what its MD was validated with
    (docs/noise-ladder.md, "Which forces a ladder model returns"); at most one of the two is set.
    """

    temperature_K: float = field(
        metadata=_cli("--temperature-K", "temperature of the data, K (default: the frames' info['temperature_K'])",
                      type=float)
    )
    noise_std: Tuple[float, ...] = field(
        metadata=_cli("--noise-std", "noise standard deviation sigma, Angstrom", type=float)
    )
    pbc: Tuple[bool, bool, bool] = (False, False, False)
    priors: List[Dict[str, Any]] = field(default_factory=list)
    default_noise_std: Optional[float] = field(
        default=None,
        metadata=_cli("--default-noise-std", "a trained level (Angstrom) whose forces the model returns by default "
                      "instead of the sigma -> 0 extrapolation, stored with it", type=float),
    )
    default_extrapolation_order: Optional[int] = field(
        default=None,
        metadata=_cli("--default-extrapolation-order", "degree in sigma^2 of the sigma -> 0 extrapolation the model "
                      "returns by default, stored with it (fewer than the levels; default min(levels - 1, 2))", type=int),
    )

    def __post_init__(self) -> None:
        levels = (self.noise_std,) if isinstance(self.noise_std, (int, float)) else tuple(self.noise_std)
        self.noise_std = tuple(sorted(float(s) for s in levels))
        self.temperature_K = float(self.temperature_K)
        self.pbc = tuple(bool(p) for p in self.pbc)  # type: ignore[assignment]
        if self.default_noise_std is not None:
            self.default_noise_std = float(self.default_noise_std)
        self.validate()

    def validate(self) -> None:
        if not self.noise_std:
            _fail("noise_std", self.noise_std, "give at least one noise level (Angstrom)")
        for s in self.noise_std:
            if not (s > 0 and math.isfinite(s)):
                _fail("noise_std", s, "a noise standard deviation (Angstrom) must be finite and > 0")
        if len(set(self.noise_std)) != len(self.noise_std):
            _fail("noise_std", self.noise_std, "the noise levels must differ")
        if not (self.temperature_K > 0 and math.isfinite(self.temperature_K)):
            _fail("temperature_K", self.temperature_K, "the temperature (K) must be finite and > 0")
        in_range("temperature_K", self.temperature_K, *TEMPERATURE_RANGE_K, " K")
        for s in self.noise_std:
            in_range("noise_std", s, *NOISE_STD_RANGE, " Angstrom")
        if len(self.noise_std) > MAX_NOISE_LEVELS:
            _fail("noise_std", self.noise_std, f"at most {MAX_NOISE_LEVELS} noise levels")
        if len(self.pbc) != 3:
            _fail("pbc", self.pbc, "needs three booleans")
        order = self.default_extrapolation_order
        if order is not None and (isinstance(order, bool) or not isinstance(order, int) or not 0 <= order < len(self.noise_std)):
            _fail("default_extrapolation_order", order, f"the degree in sigma^2 must be an integer from 0 to "
                  f"{len(self.noise_std) - 1} for {len(self.noise_std)} noise level(s), or None")
        if self.default_noise_std is not None:
            if self.trained_level(self.default_noise_std) is None:
                _fail("default_noise_std", self.default_noise_std, f"not a trained level {self.noise_std} (Angstrom)")
            if order is not None:
                _fail("default_noise_std", self.default_noise_std,
                      f"give a default level or a default extrapolation order ({order}), not both")
        for prior in self.priors:
            prior_from_dict(prior)  # refuses unknown kinds and bad parameters

    @property
    def default_forces(self) -> ForcesChoice:
        """What the model returns when asked for its default forces (:class:`~ase_denoise.forces.ForcesChoice`)."""
        return ForcesChoice(noise_std=self.default_noise_std, extrapolation_order=self.default_extrapolation_order)

    def describe_default_forces(self) -> str:
        """What the model returns by default, in words: its stored choice, else its one level or the
        extrapolation through its ladder."""
        if not self.default_forces.is_default:
            return self.default_forces.label
        if len(self.noise_std) == 1:
            return f"its one level {self.noise_std[0]:g} A"
        return ForcesChoice(extrapolation_order=default_order(len(self.noise_std))).label

    def with_default_forces(self, forces: ForcesChoice) -> "PhysicsConfig":
        """A copy that stores ``forces`` as the default (validated like any stored default)."""
        return dataclasses.replace(self, default_noise_std=forces.noise_std,
                                   default_extrapolation_order=forces.extrapolation_order)

    def trained_level(self, sigma: float) -> Optional[float]:
        """The trained level equal to ``sigma`` (Angstrom, to a relative 1e-9), or None."""
        return next((s for s in self.noise_std if abs(s - float(sigma)) <= 1e-9 * s), None)

    @property
    def kT(self) -> float:
        """k_B * temperature_K, in eV."""
        return float(kB * self.temperature_K)


#: how the squared errors of a noise ladder's levels are weighted (TrainConfig.level_weighting)
LEVEL_WEIGHTINGS = ("uniform", "inverse_square")
#: which weights a training run returns and writes (TrainConfig.keep_weights)
KEEP_WEIGHTS = ("auto", "last", "best")


@dataclass
class TrainConfig(_Dictable):
    """Training settings (saved with the checkpoint for provenance).

    ``n_duplicates``: independent noise draws of every training frame per epoch (docs/design.md,
    "Duplication sampler"). ``batch_size``: noisy samples (frame copies) per optimiser step; by default as
    many as hold ``batch_atoms`` atoms (:meth:`frames_per_batch`: small graphs are batched by the hundred,
    as MACE users size batches by graph size). ``lr``, ``weight_decay``: AdamW. ``ema_decay``: exponential
    moving average of the weights (0 disables). ``lr_schedule``: "cosine" or "constant" (after ``warmup_steps``).
    ``valid_fraction``: fraction of *frames* held out (split by frame, never by duplicate); ``valid_duplicates``:
    fixed noise draws per validation frame (seeded once). ``patience``: epochs without validation improvement
    before early stopping (0 disables). ``max_minutes``: wall-clock budget of one call to fit(); training
    stops cleanly (resumable) when spent. ``keep_weights``: the (EMA) weights training returns and writes:
    ``last`` (the end of the schedule), ``best`` (lowest validation loss) or ``auto`` (``best`` for force
    matching, else ``last``: a denoising loss is dominated by noise no model predicts; docs/design.md).
    ``loss``: what the network learns from (:mod:`ase_denoise.training.losses`): "denoising" (noisy
    coordinates in, ``-N/sigma`` out; needs no labels), "force_matching" (clean coordinates in,
    per-atom force labels out; every training frame needs forces) or "hybrid" (the denoising term
    plus ``force_weight`` times the force term of the frames that carry labels) or "mixed" (noisy
    coordinates in; where a frame has force labels the target mixes them with the noise,
    variance-optimally: :class:`ase_denoise.training.losses.LabelMixing`). ``level_weighting``: how the
    squared errors of a ladder's levels are weighted (:func:`ase_denoise.training.losses.inverse_square_level_weight`).
    ``antithetic_noise``: each frame's noise draws come in mirrored pairs ``(N, -N)`` in one batch
    (:class:`ase_denoise.training.sampler.DuplicationSampler`); same optimum, lower gradient variance at small sigma.
    ``smoothed_priors``: the residual of bonded priors is taken against their noise-smoothed forces
    at each level (:meth:`ase_denoise.priors.Prior.smoothed_forces`); inference is unchanged (the raw
    priors plus the network's residual extrapolated to sigma -> 0).
    """

    n_duplicates: int = field(default=4, metadata=_cli("--duplicates", "noise draws per frame per epoch", type=int))
    epochs: int = field(default=50, metadata=_cli("--epochs", "epochs (passes over the training frames)", type=int))
    batch_size: Optional[int] = field(
        default=None, metadata=_cli("--batch-size", "noisy frame copies per step (default: as many as hold "
                                    "--batch-atoms atoms)", type=int))
    batch_atoms: int = field(
        default=512, metadata=_cli("--batch-atoms", "atoms per optimiser step, when --batch-size is not given: "
                                   "4 frames of 108 atoms, 256 copies of a dimer", type=int))
    lr: float = field(default=5e-3, metadata=_cli("--lr", "AdamW learning rate", type=float))
    weight_decay: float = field(default=1e-6, metadata=_cli("--weight-decay", "AdamW weight decay", type=float))
    ema_decay: float = field(
        default=0.99, metadata=_cli("--ema-decay", "decay of the weights' moving average (0: off)", type=float)
    )
    lr_schedule: str = field(
        default="cosine", metadata=_cli("--lr-schedule", "learning-rate schedule", choices=("cosine", "constant"))
    )
    warmup_steps: int = field(default=20, metadata=_cli("--warmup-steps", "linear warm-up steps", type=int))
    valid_fraction: float = field(
        default=0.1, metadata=_cli("--valid-fraction", "fraction of frames held out for validation", type=float)
    )
    valid_duplicates: int = field(
        default=4, metadata=_cli("--valid-duplicates", "fixed noise draws per validation frame", type=int)
    )
    patience: int = field(
        default=0, metadata=_cli("--patience", "early stopping after N epochs without improvement (0: off)", type=int)
    )
    keep_weights: str = field(
        default="auto", metadata=_cli("--keep-weights", "the weights written: last (end of the schedule), best (lowest "
                                      "validation loss), auto (best for force matching, else last)", choices=KEEP_WEIGHTS))
    max_minutes: Optional[float] = field(
        default=None, metadata=_cli("--max-minutes", "wall-clock budget of this call, minutes; resumable", type=float)
    )
    seed: int = field(default=0, metadata=_cli("--seed", "seed of the split, the noise and the weights", type=int))
    grad_clip: float = field(default=10.0, metadata=_cli("--grad-clip", "gradient norm clip (0: off)", type=float))
    dtype: str = field(default="float32", metadata=_cli("--dtype", "training precision", choices=("float32", "float64")))
    loss: str = field(
        default="denoising",
        metadata=_cli("--loss", "denoising (coordinates only); force_matching (per-atom force labels in the data; "
                      "noise-std then only sets the output scale); hybrid (denoising + force_weight x force "
                      "matching); mixed (noisy coordinates, labels mixed into the target)", choices=LOSSES),
    )
    force_weight: float = field(
        default=1.0, metadata=_cli("--force-weight", "weight of the force term in --loss hybrid", type=float)
    )
    level_weighting: str = field(
        default="uniform",
        metadata=_cli("--level-weighting", "weights of the noise levels of a ladder in the loss: uniform, or "
                      "inverse_square ((sigma_ref/sigma)^2: the small levels fitted as closely as the large)",
                      choices=LEVEL_WEIGHTINGS),
    )
    smoothed_priors: bool = field(
        default=False,
        metadata=_cli("--smoothed-priors", "subtract the bonded priors' noise-smoothed forces (each bond's or "
                      "angle's stiffness lowered by the noise, as the smoothed density has it) from the denoising "
                      "targets instead of their raw forces, so the network's residual holds no smoothed stiff "
                      "mode and sigma may exceed a bond's thermal width", action=argparse.BooleanOptionalAction),
    )
    antithetic_noise: bool = field(
        default=False,
        metadata=_cli("--antithetic-noise", "draw each frame's noise in mirrored pairs (N, -N) within a batch: "
                      "same optimum, less gradient noise at small sigma (needs even --duplicates and --batch-size)",
                      action=argparse.BooleanOptionalAction),
    )

    def frames_per_batch(self, atoms_per_frame: float) -> int:
        """``batch_size``, or the frame copies that hold ``batch_atoms`` atoms of frames of
        ``atoms_per_frame`` atoms (at least one; even for antithetic pairs)."""
        if self.batch_size is not None:
            return int(self.batch_size)
        n = max(1, int(self.batch_atoms // max(float(atoms_per_frame), 1.0)))
        return max(2, n - n % 2) if self.antithetic_noise else n

    def __post_init__(self) -> None:
        if int(self.n_duplicates) < 1:
            _fail("n_duplicates", self.n_duplicates, "each frame needs at least one noise draw per epoch")
        if int(self.epochs) < 1:
            _fail("epochs", self.epochs, "must be >= 1")
        if self.batch_size is not None and int(self.batch_size) < 1:
            _fail("batch_size", self.batch_size, "must be >= 1")
        if int(self.batch_atoms) < 1:
            _fail("batch_atoms", self.batch_atoms, "must be >= 1")
        if not self.lr > 0:
            _fail("lr", self.lr, "must be > 0")
        if not 0 <= self.ema_decay < 1:
            _fail("ema_decay", self.ema_decay, "must be in [0, 1)")
        if self.lr_schedule not in ("cosine", "constant"):
            _fail("lr_schedule", self.lr_schedule, "choose 'cosine' or 'constant'")
        if not 0 <= self.valid_fraction < 1:
            _fail("valid_fraction", self.valid_fraction, "must be in [0, 1)")
        if int(self.valid_duplicates) < 1:
            _fail("valid_duplicates", self.valid_duplicates, "must be >= 1")
        if self.dtype not in ("float32", "float64"):
            _fail("dtype", self.dtype, "choose 'float32' or 'float64'")
        if self.loss not in LOSSES:
            _fail("loss", self.loss, f"choose one of {', '.join(LOSSES)}")
        if not (math.isfinite(self.force_weight) and self.force_weight >= 0):
            _fail("force_weight", self.force_weight, "must be a finite number >= 0")
        if self.max_minutes is not None and not self.max_minutes > 0:
            _fail("max_minutes", self.max_minutes, "must be > 0")
        if self.keep_weights not in KEEP_WEIGHTS:
            _fail("keep_weights", self.keep_weights, f"choose one of {KEEP_WEIGHTS}")
        if self.level_weighting not in LEVEL_WEIGHTINGS:
            _fail("level_weighting", self.level_weighting, f"choose one of {LEVEL_WEIGHTINGS}")
        if self.antithetic_noise and (int(self.n_duplicates) % 2 or (self.batch_size is not None and int(self.batch_size) % 2)):
            _fail("antithetic_noise", self.antithetic_noise,
                  f"pairs (N, -N) need an even n_duplicates and batch_size (got {self.n_duplicates} and {self.batch_size})")


#: the steps of ``ase-denoise fit`` after training that ``--skip`` can leave out
FIT_STEPS = ("mean-force", "torsions", "torsion-pairs", "validate")


@dataclass
class FitConfig(_Dictable):
    """What ``ase-denoise fit`` (:func:`ase_denoise.fit`) is told about the system beyond its frames,
    and how much checking it does; everything else it reads off the data (:mod:`ase_denoise.fitting`).

    ``charges`` (e) and ``dielectric``: ions, given a Coulomb prior. ``dihedrals``: the torsions of a
    molecule to give priors and corrections (default: the backbone's rotating ones). ``wall``: a
    repulsive wall below the data's closest approaches (on by default). ``priors``: more priors, as
    short forms. ``skip``: steps after training to leave out (:data:`FIT_STEPS`). The MD checks run
    ``check_replicas`` Langevin replicas for ``equilibration_ps`` + ``check_ps`` picoseconds at
    ``timestep_fs`` (fs) with ``friction_per_fs`` (1/fs; default 0.01, 0.05 for a molecule, whose CG
    MD runs warm at less); a check whose measured pace would take more than ``check_minutes`` is
    shortened to fit (both parts in proportion; 0 or ``None``: never).
    """

    charges: Dict[str, float] = field(
        default_factory=dict, metadata=_cli("--charges", "ions: element charges in e, e.g. Li=1,Cl=-1 (with --dielectric)",
                                            type=charges_arg))
    dielectric: Optional[float] = field(
        default=None, metadata=_cli("--dielectric", "relative permittivity screening the charges (e.g. 94 for TIP3P)",
                                    type=float))
    dihedrals: Optional[str] = field(
        default=None, metadata=_cli("--dihedrals", "a molecule's torsions, e.g. 4-6-8-14,6-8-14-16 (0-based; default: "
                                    "the backbone's rotating dihedrals)"))
    wall: bool = field(default=True, metadata=_cli("--wall", "a repulsive wall below the data's closest approaches",
                                                   action=argparse.BooleanOptionalAction))
    priors: List[str] = field(
        default_factory=list, metadata=_cli("--prior", "another prior, as a short form (repeatable; "
                                            "ase_denoise.priors.specs)", action="append"))
    skip: List[str] = field(
        default_factory=list, metadata=_cli("--skip", "leave out a step after training (repeatable)", action="append",
                                            choices=FIT_STEPS))
    check_replicas: int = field(default=8, metadata=_cli("--check-replicas", "Langevin replicas per MD check", type=int))
    equilibration_ps: float = field(
        default=5.0, metadata=_cli("--equilibration-ps", "discarded part of each check's replicas, ps", type=float))
    check_ps: float = field(default=20.0, metadata=_cli("--check-ps", "kept part of each check's replicas, ps", type=float))
    timestep_fs: float = field(default=1.0, metadata=_cli("--timestep-fs", "MD timestep of the checks, fs", type=float))
    check_minutes: Optional[float] = field(
        default=20.0, metadata=_cli("--check-minutes", "longest one MD check may take, minutes: a longer one is "
                                    "shortened to fit, and says so (0: never shortened)", type=float))
    friction_per_fs: Optional[float] = field(
        default=None, metadata=_cli("--friction", "Langevin friction of the checks, 1/fs (default 0.01; 0.05 for a "
                                    "molecule)", type=float))

    def __post_init__(self) -> None:
        self.charges = {str(k): float(v) for k, v in dict(self.charges).items()}
        self.priors, self.skip = [str(p) for p in self.priors], [str(p) for p in self.skip]
        bad = sorted(set(self.skip) - set(FIT_STEPS))
        if bad:
            _fail("skip", bad, f"choose from {FIT_STEPS}")
        if self.dielectric is not None and not (math.isfinite(self.dielectric) and self.dielectric > 0):
            _fail("dielectric", self.dielectric, "the relative permittivity must be finite and > 0")
        if int(self.check_replicas) < 1:
            _fail("check_replicas", self.check_replicas, "must be >= 1")
        for name in ("equilibration_ps", "check_ps", "timestep_fs"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= (0 if name == "equilibration_ps" else 1e-9)):
                _fail(name, value, "must be finite and > 0 (>= 0 for the equilibration)")
        if self.friction_per_fs is not None and not self.friction_per_fs > 0:
            _fail("friction_per_fs", self.friction_per_fs, "must be > 0")
        if self.check_minutes is not None and not (math.isfinite(self.check_minutes) and self.check_minutes >= 0):
            _fail("check_minutes", self.check_minutes, "must be finite and >= 0 (0: never shortened)")


# ----------------------------------------------------------------------------------------------
# Command-line options generated from the dataclasses
# ----------------------------------------------------------------------------------------------
def _default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        return f.default_factory()  # type: ignore[misc]
    return dataclasses.MISSING


def cli_fields(cls: type, skip: Sequence[str] = ()) -> List[dataclasses.Field]:
    """The fields of ``cls`` that are command-line options (those with ``metadata['cli']``)."""
    return [f for f in dataclasses.fields(cls) if "cli" in f.metadata and f.name not in skip]


def add_arguments(
    parser: Union[argparse.ArgumentParser, Any], cls: type, skip: Sequence[str] = (), **overrides: Dict[str, Any]
) -> None:
    """Add one option per CLI field of ``cls`` to ``parser`` (a parser or argument group); its default is
    ``None`` (not given: the dataclass default applies, shown in the help). ``overrides``: per field name,
    argparse keywords to replace."""
    for f in cli_fields(cls, skip):
        kw = {k: v for k, v in f.metadata.items() if k != "cli"}
        kw.update(overrides.get(f.name, {}))
        default = _default(f)
        shown = "" if default is dataclasses.MISSING else f" (default: {default})"
        kw["help"] = kw["help"] + shown
        parser.add_argument(f.metadata["cli"], dest=f.name, default=None, **kw)


def options_from_args(args: argparse.Namespace, cls: type, skip: Sequence[str] = ()) -> Dict[str, Any]:
    """``{field: value}`` for the CLI fields of ``cls`` that were given on the command line."""
    return {f.name: getattr(args, f.name) for f in cli_fields(cls, skip) if getattr(args, f.name, None) is not None}


def field_names(cls: type) -> List[str]:
    return [f.name for f in dataclasses.fields(cls)]
