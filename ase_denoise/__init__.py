"""ase_denoise: learn a force field from atomic coordinates alone.

A MACE denoiser is trained to predict the noise ``N`` added to equilibrium coordinates (its output
``eps_hat`` against ``-N / sigma``); by Tweedie's formula ``kT * eps_hat / sigma`` is the force field
(eV/Angstrom) up to an O(sigma^2) smoothing bias, which a model trained at several noise levels
removes by extrapolating to sigma -> 0. The result is a forces-only ASE calculator.

The names here are what a user needs: train a model, run it, check and correct it without labels,
load and save files. The stages behind them are subpackages (docs/design.md, "Layout"):
:mod:`ase_denoise.data`, :mod:`ase_denoise.priors`, :mod:`ase_denoise.training`, :mod:`ase_denoise.refine`,
:mod:`ase_denoise.fitting`, :mod:`ase_denoise.md`, :mod:`ase_denoise.integrations`, :mod:`ase_denoise.cli`.
"""

__version__ = "0.1.0"

#: public name -> the module that defines it (imported on first use: ``import ase_denoise`` stays cheap)
_EXPORTS = {
    # fit (the validated path), train (the low-level one) and configure
    "fit": "fitting.pipeline",
    "FitResult": "fitting.pipeline",
    "FitConfig": "config",
    "train": "training.trainer",
    "TrainResult": "training.result",
    "TrainConfig": "config",
    "ModelConfig": "config",
    "PhysicsConfig": "config",
    "ForcesChoice": "forces",
    "read_frames": "data.frames",
    # run
    "DenoiseCalculator": "calculator",
    "ReplicaLangevin": "md.replicas",
    "run_langevin": "md.langevin",
    "relax": "md.optimize",
    # check and correct without labels
    "check_structure": "refine.check",
    "choose_default_forces": "refine.check",
    "correct_mean_forces": "refine.mean_force",
    "refine_structure": "refine.pair_table",
    "refine_torsions": "refine.torsions",
    # files and the zoo
    "DenoiserMACE": "model",
    "load_model": "zoo",
    "list_models": "zoo",
    "model_info": "zoo",
    "save_model": "checkpoint",
    # pymatgen
    "frames_to_structures": "data.interop",
    "structures_to_frames": "data.interop",
    "trajectory_to_frames": "data.interop",
    # errors
    "AseDenoiseError": "errors",
    "DataError": "errors",
    "CheckpointError": "errors",
    "ChecksumError": "errors",
    "NonFiniteForcesError": "errors",
    "TrainingError": "errors",
    "ZooError": "errors",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    """Import on first use: ``import ase_denoise`` stays cheap (torch and mace load lazily)."""
    if name in _EXPORTS:
        import importlib  # here, not at the top: only a lazy attribute lookup needs it

        value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'ase_denoise' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + __all__)
