"""Label-free checks and corrections of a trained model against its own data.

A denoiser's data set is its only reference: these measure what the model's MD or mean forces do
with the structure of the frames it was trained on, and correct it without force labels.

* :mod:`ase_denoise.refine.replica_md` - the one evaluation loop: batched Langevin replicas of a model
  from frames spread over the data (:func:`run_replicas`);
* :mod:`ase_denoise.refine.rdf` - the data's partial RDFs with their block errors, and the replicas'
  RDFs against them (noise-subtracted "systematic" error);
* :mod:`ase_denoise.refine.check` - :func:`check_structure` (``ase-denoise check-md``) and
  :func:`choose_default_forces` (``ase-denoise choose-forces``): which way of returning forces gives
  the best MD;
* :mod:`ase_denoise.refine.pair_table` - :func:`refine_structure` (``ase-denoise refine-structure``):
  iterative Boltzmann inversion of the MD's RDFs into a tabulated pair correction;
* :mod:`ase_denoise.refine.mean_force` - :func:`correct_mean_forces` (``ase-denoise correct-mean-forces``):
  Kirkwood's relation on the data frames, no MD;
* :mod:`ase_denoise.refine.torsions` - :func:`refine_torsions` (``ase-denoise refine-torsions``): a
  molecule's torsion distributions, one dihedral at a time or in pairs;
* :mod:`ase_denoise.refine.force_scale` - :func:`configurational_temperature`: whether the model's
  forces have the size of the data's, from Stein's identity on the data frames (no MD, no labels).

Each correction is a prior added at inference only (:mod:`ase_denoise.priors`), saved with the model
and shown in its card. Units: Angstrom, ps, K, eV; RDFs are dimensionless.
"""

from .check import StructureCheck, best_check, check_structure, choose_default_forces
from .force_scale import ForceScale, configurational_temperature
from .mean_force import MeanForceCorrection, correct_mean_forces, pmf_from_forces
from .pair_table import Refinement, pair_correction, refine_structure, with_pair_table
from .rdf import compare_with_reference, element_pairs, pair_rdfs, reference_structure
from .replica_md import require_model_temperature, run_replicas
from .torsions import TorsionRefinement, refine_torsions, torsion_marginal_kl, torsion_pair_kl

__all__ = [
    "ForceScale", "MeanForceCorrection", "Refinement", "StructureCheck", "TorsionRefinement", "best_check", "check_structure",
    "choose_default_forces", "compare_with_reference", "configurational_temperature", "correct_mean_forces", "element_pairs", "pair_correction",
    "pair_rdfs", "pmf_from_forces", "reference_structure", "refine_structure", "refine_torsions",
    "require_model_temperature", "run_replicas", "torsion_marginal_kl", "torsion_pair_kl", "with_pair_table",
]



