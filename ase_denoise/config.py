"""Configuration dataclasses, saved as JSON next to the weights.

Units: Angstrom for lengths (``r_max``, ``noise_std``), Kelvin for ``temperature_K``.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

from ase.data import chemical_symbols
from ase.units import kB

HEADS = ("edge", "vector")
LOSSES = ("denoising", "force_matching", "hybrid")


def _fail(name: str, value: Any, why: str) -> None:
    raise ValueError(f"invalid {name}={value!r}: {why}")


@dataclass
class ModelConfig:
    """Everything needed to rebuild a denoiser and turn its output into forces.

    Architecture
        ``atomic_numbers``: the element table (sorted, unique); any other element is refused.
        ``r_max`` (Angstrom): MACE cutoff. ``num_channels``, ``max_L`` (hidden irreps),
        ``max_ell`` (spherical harmonics), ``num_interactions``,
        ``correlation``, ``num_bessel``, ``num_polynomial_cutoff``, ``radial_mlp``: MACE's own
        hyperparameters with MACE's meaning. ``avg_num_neighbors``: fixed message normaliser,
        measured on the training data.
        ``head``: ``"vector"`` (default) keeps ``1o`` features through every layer and sums a
        per-layer linear ``1x1o`` readout. ``"edge"`` is a symmetric pairwise head on a scalar last
        layer, ``v_i = sum_j w(s_i, s_j, |r_ij|) r_ij/|r_ij|`` with ``w`` symmetric in i and j, so its
        forces obey Newton's third law exactly (net force zero). At the default sizes the vector head
        was both faster and more accurate on LJ argon (README, "Model and heads").
        ``edge_mlp``: hidden sizes of the edge head's weight network.

    Physics (DESIGN.md section 1)
        ``noise_std`` (sigma, Angstrom) and ``temperature_K`` (of the training data):
        forces = kT * output / sigma^2 with kT = ase.units.kB * temperature_K (eV).
        ``pbc``: the periodicity of the training data; the calculator refuses other periodicity.
    """

    atomic_numbers: List[int]
    noise_std: float
    temperature_K: float
    r_max: float = 5.0
    num_channels: int = 16
    max_L: int = 1
    max_ell: int = 2
    num_interactions: int = 2
    correlation: int = 2
    num_bessel: int = 8
    num_polynomial_cutoff: int = 5
    radial_mlp: List[int] = field(default_factory=lambda: [64, 64, 64])
    avg_num_neighbors: float = 10.0
    head: str = "vector"
    edge_mlp: List[int] = field(default_factory=lambda: [64, 64])
    pbc: Tuple[bool, bool, bool] = (False, False, False)

    def __post_init__(self) -> None:
        self.atomic_numbers = sorted({int(z) for z in self.atomic_numbers})
        self.pbc = tuple(bool(p) for p in self.pbc)  # type: ignore[assignment]
        self.radial_mlp = [int(x) for x in self.radial_mlp]
        self.edge_mlp = [int(x) for x in self.edge_mlp]
        self.validate()

    def validate(self) -> None:
        if not self.atomic_numbers:
            _fail("atomic_numbers", self.atomic_numbers, "the element table is empty")
        bad = [z for z in self.atomic_numbers if not 0 < z < len(chemical_symbols)]
        if bad:
            _fail("atomic_numbers", bad, "not atomic numbers of real elements")
        if not (self.noise_std > 0 and math.isfinite(self.noise_std)):
            _fail("noise_std", self.noise_std, "the noise standard deviation (Angstrom) must be finite and > 0")
        if not (self.temperature_K > 0 and math.isfinite(self.temperature_K)):
            _fail("temperature_K", self.temperature_K, "the temperature (K) must be finite and > 0")
        if not (self.r_max > 0 and math.isfinite(self.r_max)):
            _fail("r_max", self.r_max, "the cutoff (Angstrom) must be finite and > 0")
        if self.head not in HEADS:
            _fail("head", self.head, f"choose one of {HEADS}")
        for name in ("num_channels", "num_interactions", "correlation", "num_bessel"):
            if int(getattr(self, name)) < 1:
                _fail(name, getattr(self, name), "must be >= 1")
        if self.max_ell < 1 or self.max_L < 0:
            _fail("max_ell/max_L", (self.max_ell, self.max_L), "need max_ell >= 1 and max_L >= 0")
        if self.head == "vector" and self.max_L < 1:
            _fail("max_L", self.max_L, "the 'vector' head needs max_L >= 1 (1o features)")
        if not self.avg_num_neighbors > 0:
            _fail("avg_num_neighbors", self.avg_num_neighbors, "must be > 0")
        if len(self.pbc) != 3:
            _fail("pbc", self.pbc, "needs three booleans")

    @property
    def kT(self) -> float:
        """k_B * temperature_K, in eV."""
        return float(kB * self.temperature_K)

    @property
    def symbols(self) -> List[str]:
        return [chemical_symbols[z] for z in self.atomic_numbers]

    def to_dict(self) -> Dict[str, Any]:
        d = dataclasses.asdict(self)
        d["pbc"] = list(self.pbc)
        return d

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> "ModelConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown model config keys {unknown}; is this file from a newer ase_denoise?")
        return cls(**d)


@dataclass
class TrainConfig:
    """Training settings (saved with the checkpoint for provenance).

    ``n_duplicates``: independent noise draws of every training frame per epoch (DESIGN.md s3).
    ``batch_size``: noisy samples (frame copies) per optimiser step.
    ``lr``, ``weight_decay``: AdamW. ``ema_decay``: exponential moving average of the weights
    (0 disables). ``lr_schedule``: "cosine" or "constant" (after ``warmup_steps``).
    ``valid_fraction``: fraction of *frames* held out (split by frame, never by duplicate).
    ``patience``: epochs without validation improvement before early stopping (0 disables).
    ``max_minutes``: wall-clock budget of one call to fit(); training stops cleanly (resumable) when spent.
    ``valid_duplicates``: fixed noise draws per validation frame (seeded once).
    ``loss``: "denoising" (default: noisy coordinates in, ``-N/sigma`` out; needs no labels),
    "force_matching" (clean coordinates in, per-atom force labels out: the force-trained baseline
    with the same architecture; every training frame needs forces) or "hybrid" (the denoising term
    plus ``force_weight`` times the force term of the frames that carry labels). The force term is the
    mean squared error of ``kT * eps / sigma`` against the labels in units of ``kT / sigma``
    (``(eps - sigma * F / kT)^2``), so a model of any mode is used the same way (see training.py).
    """

    n_duplicates: int = 4
    epochs: int = 100
    batch_size: int = 8
    lr: float = 5e-3
    weight_decay: float = 1e-6
    ema_decay: float = 0.99
    lr_schedule: str = "cosine"
    warmup_steps: int = 20
    valid_fraction: float = 0.1
    valid_duplicates: int = 4
    patience: int = 0
    max_minutes: Optional[float] = None
    seed: int = 0
    grad_clip: float = 10.0
    dtype: str = "float32"
    loss: str = "denoising"
    force_weight: float = 1.0

    def __post_init__(self) -> None:
        if int(self.n_duplicates) < 1:
            _fail("n_duplicates", self.n_duplicates, "each frame needs at least one noise draw per epoch")
        if int(self.epochs) < 1:
            _fail("epochs", self.epochs, "must be >= 1")
        if int(self.batch_size) < 1:
            _fail("batch_size", self.batch_size, "must be >= 1")
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

    def to_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> "TrainConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})
