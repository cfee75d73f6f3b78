"""What a training run returns: which of its two checkpoints (:func:`kept_weights`) and the
:class:`TrainResult` that holds it (docs/design.md, "Which weights are kept")."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List

from ..config import TrainConfig
from ..model import DenoiserMACE


def kept_weights(cfg: TrainConfig) -> str:
    """Which weights a run returns, "best" or "last" (``TrainConfig.keep_weights``). A denoising validation
    loss is dominated by the noise no model can predict: past the first epochs its changes are noise and
    the epoch it picks is random, while the weights at the end of the (decayed) schedule are the converged
    ones. Force labels rank epochs: there "auto" is "best"."""
    if cfg.keep_weights != "auto":
        return cfg.keep_weights
    return "best" if cfg.loss == "force_matching" else "last"


@dataclass
class TrainResult:
    model: DenoiserMACE  # the kept (EMA) weights, eval mode: ``path``
    best_path: str  # EMA weights of the epoch with the lowest validation loss
    last_path: str  # EMA weights after the last completed epoch
    history: List[Dict[str, float]] = field(default_factory=list)
    stopped: str = "epochs"  # "epochs" | "early_stopping" | "time_budget"
    kept: str = "best"  # "best" | "last": which of the two files ``model`` is

    @property
    def path(self) -> str:
        """The file of the kept weights (``best_path`` or ``last_path``)."""
        return self.last_path if self.kept == "last" else self.best_path
