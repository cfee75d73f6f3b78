"""Running a trained denoiser: ASE dynamics and relaxation with a forces-only calculator, and many
replicas of one small system in one batched forward per step.

* :mod:`ase_denoise.md.langevin` - :func:`run_langevin`, the one MD driver (checks, trajectory,
  stop hooks), and :class:`ForcesOnlyMDLogger`;
* :mod:`ase_denoise.md.optimize` - forces-only ASE optimizers and :func:`relax`;
* :mod:`ase_denoise.md.replicas` - :class:`ReplicaLangevin`, N boxes with ASE's Langevin scheme.

Other engines (OpenMM, LAMMPS, torch-sim) are in :mod:`ase_denoise.integrations`.
"""

from .langevin import ForcesOnlyMDLogger, max_force, min_pair_distance, run_langevin
from .optimize import (
    FORCES_ONLY_OPTIMIZERS,
    ForcesOnlyBFGS,
    ForcesOnlyFIRE,
    ForcesOnlyFIRE2,
    ForcesOnlyLBFGS,
    ForcesOnlyLogMixin,
    ForcesOnlyMDMin,
    relax,
)
from .replicas import ReplicaLangevin

__all__ = [
    "FORCES_ONLY_OPTIMIZERS", "ForcesOnlyBFGS", "ForcesOnlyFIRE", "ForcesOnlyFIRE2", "ForcesOnlyLBFGS",
    "ForcesOnlyLogMixin", "ForcesOnlyMDLogger", "ForcesOnlyMDMin", "ReplicaLangevin", "max_force",
    "min_pair_distance", "relax", "run_langevin",
]



