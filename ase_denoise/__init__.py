"""ase_denoise: learn a force field from atomic coordinates alone.

A MACE denoiser is trained to predict the noise added to equilibrium coordinates; by Tweedie's
formula its output, scaled as ``kT * output / sigma^2``, is the force field (eV/Angstrom) up to an
O(sigma^2) smoothing bias. The result is a forces-only ASE calculator.
"""

__version__ = "0.1.0"

from .calculator import DenoiseCalculator  # noqa: E402
from .checkpoint import CheckpointError, load_model, read_metadata, save_model  # noqa: E402
from .config import ModelConfig, TrainConfig  # noqa: E402
from .data import DataError, read_frames  # noqa: E402
from .md import relax, run_langevin  # noqa: E402
from .model import DenoiserMACE, build_model  # noqa: E402
from .training import TrainResult, train  # noqa: E402

__all__ = [
    "DenoiseCalculator",
    "DenoiserMACE",
    "ModelConfig",
    "TrainConfig",
    "TrainResult",
    "CheckpointError",
    "DataError",
    "build_model",
    "load_model",
    "read_frames",
    "read_metadata",
    "relax",
    "run_langevin",
    "save_model",
    "train",
]
