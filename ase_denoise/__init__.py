"""ase_denoise: learn a force field from atomic coordinates alone.

A MACE denoiser is trained to predict the noise ``N`` added to equilibrium coordinates (its output
``eps_hat`` against ``-N / sigma``); by Tweedie's formula ``kT * eps_hat / sigma`` is the force field
(eV/Angstrom) up to an O(sigma^2) smoothing bias, which a model trained at several noise levels
removes by extrapolating to sigma -> 0. The result is a forces-only ASE calculator.
"""

__version__ = "0.1.0"

_EXPORTS = {
    "DenoiseCalculator": "calculator",
    "CheckpointError": "checkpoint",
    "load_model_file": "checkpoint",
    "read_metadata": "checkpoint",
    "save_model": "checkpoint",
    "ModelConfig": "config",
    "PhysicsConfig": "config",
    "TrainConfig": "config",
    "DataError": "data",
    "prepare_data": "data",
    "read_frames": "data",
    "predict": "inference",
    "relax": "md",
    "run_langevin": "md",
    "DenoiserMACE": "model",
    "build_model": "model",
    "with_prior": "model",
    "TrainResult": "training",
    "train": "training",
    "ChecksumError": "zoo",
    "ZooError": "zoo",
    "load_model": "zoo",
    "list_models": "zoo",
    "model_info": "zoo",
    "frames_to_structures": "interop",
    "structures_to_frames": "interop",
    "trajectory_to_frames": "interop",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    """Import on first use: ``import ase_denoise`` stays cheap (torch and mace load lazily)."""
    if name in _EXPORTS:
        import importlib

        value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'ase_denoise' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + __all__)
