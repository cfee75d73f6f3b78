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
# # 10 · Alanine dipeptide, coarse-grained: a molecule of named beads and its free-energy surface
#
# The standard test of coarse-grained (CG) force fields for molecules: alanine dipeptide mapped to six
# beads, the five backbone atoms C, N, CA, C, N and the alanine CB (the CGSchNet map), with its free
# energy over the backbone dihedrals phi and psi as the figure of merit. The zoo model `ala2-cg-300K`
# was trained on **bead coordinates alone**, taken from 4 ns of all-atom simulation (amber14 + GBn2
# implicit water, 300 K, `benchmarks/ala2/`). This notebook:
#
# 1. loads it and looks at what a CG molecule needs: bead types that are not elements, and the bonded
#    priors (harmonic bonds and angles fitted to the data, as CGnet does) the network was trained around;
# 2. checks the symmetry that makes the CB bead necessary: the network is O(3)-equivariant, so a mirror
#    image gets mirrored forces;
# 3. runs many Langevin replicas in one batched forward per step (`ReplicaLangevin`) and compares the
#    phi/psi free-energy surface and the basin populations with the all-atom reference.

# %%
import os

FAST = os.environ.get("ASE_DENOISE_TUTORIAL_FAST") == "1"

import ase.io
import matplotlib.pyplot as plt
import numpy as np
from ase.geometry import get_dihedrals

from ase_denoise import DenoiseCalculator, load_model
from ase_denoise.md import ReplicaLangevin
from ase_denoise.zoo import zoo_dir

N_REPLICAS = 4 if FAST else 32
EQUILIBRATION_STEPS = 20 if FAST else 2500  # 2 fs each
PRODUCTION_STEPS = 100 if FAST else 10000
SAMPLE_EVERY = 10 if FAST else 100
print(f"FAST={FAST}: {N_REPLICAS} replicas x ({EQUILIBRATION_STEPS} + {PRODUCTION_STEPS}) steps of 2 fs")

# %% [markdown]
# ## 1. Beads, their names, and the priors
#
# ASE knows no particle types other than elements, so each bead type travels as a placeholder atomic
# number (1, 2, ...) and the model keeps the names (`config.bead_names`, saved with the weights;
# `ase_denoise.data.bead_numbers` and `bead_atoms` build such structures). Every bead here is its own type.

# %%
model = load_model("ala2-cg-300K")
print("bead table:", dict(zip(model.config.atomic_numbers, model.config.symbols)))
print("noise ladder (A):", model.noise_levels, " temperature:", model.temperature_K, "K")
for prior in model.priors:
    print("-", prior.describe(model.config.bead_names))

model_dir = zoo_dir() / "ala2-cg-300K"
start = ase.io.read(model_dir / "start.extxyz")
print(start, "masses:", start.get_masses())

# %% [markdown]
# The forces: the network's mean force (the noise ladder extrapolated to sigma -> 0) plus the priors.

# %%
start.calc = DenoiseCalculator(model)
forces = start.get_forces()
names = [model.config.bead_names[z] for z in start.numbers]
for name, f in zip(names, forces):
    print(f"{name:6s} {f.round(3)}  eV/A")
print("net force:", forces.sum(axis=0).round(3), "(not zero: the vector head is not pairwise)")

# %% [markdown]
# ## 2. Why the CB bead: mirror images get mirrored forces
#
# The network is equivariant under rotations *and* reflections. Reflect the molecule and the forces
# are the reflected forces. On the five backbone beads alone, the mirror image of a structure at
# (phi, psi) sits at (-phi, -psi). alpha_R would then have exactly the free energy of alpha_L, which
# L-alanine does not have. With CB, the mirror image is D-alanine, which the data never contain, so
# the beads carry the chirality.

# %%
mirror = start.copy()
mirror.positions = start.positions * np.array([1.0, 1.0, -1.0])
mirror.calc = DenoiseCalculator(model)
print("max |F(mirror x) - mirror F(x)| =", np.abs(mirror.get_forces() - forces * np.array([1.0, 1.0, -1.0])).max(), "eV/A")


def phi_psi(positions):
    """phi, psi (degrees) from bead positions [..., 6, 3]: beads C-N-CA-C and N-CA-C-N."""
    x = np.asarray(positions).reshape(-1, 6, 3)
    out = []
    for i, j, k, l in ((0, 1, 2, 4), (1, 2, 4, 5)):
        out.append(get_dihedrals(x[:, j] - x[:, i], x[:, k] - x[:, j], x[:, l] - x[:, k]))
    return (np.stack(out, axis=1) + 180.0) % 360.0 - 180.0


print("start (phi, psi):", phi_psi(start.positions).round(1), " mirror:", phi_psi(mirror.positions).round(1))

# %% [markdown]
# ## 3. Many replicas, one forward per step
#
# A six-bead molecule is far too small to keep a CPU busy, so the time per step is mostly overhead.
# `ReplicaLangevin` runs N independent copies (ASE's Langevin scheme, each replica with its own random
# stream) and gets all their forces from one batched forward. The replicas start from the reference's
# frames, spread over its basins.

# %%
reference = np.load(model_dir / "reference_phi_psi.npz")["phi_psi_deg"].astype(float)
starts = []
for k in range(N_REPLICAS):
    a = start.copy()
    a.rattle(0.01, seed=k)  # different starts in the same basin; the thermostat does the rest
    starts.append(a)
# friction 0.05/fs: the vector head's forces are not exactly conservative, and at 0.01/fs their work
# heats six beads to about 330 K (the model card's limits; benchmarks/ala2/README.md)
runner = ReplicaLangevin(model, starts, temperature_K=300.0, timestep_fs=2.0, friction_per_fs=0.05,
                         seeds=range(N_REPLICAS))
runner.run(EQUILIBRATION_STEPS, interval=EQUILIBRATION_STEPS)
samples = []
result = runner.run(PRODUCTION_STEPS, interval=SAMPLE_EVERY,
                    observers=[lambda step, x, v: samples.append(phi_psi(x))])
sampled = np.concatenate(samples)
print(f"{result['steps_per_s']:.0f} steps/s x {N_REPLICAS} replicas = {result['steps_per_s'] * N_REPLICAS:.0f} "
      f"replica-steps/s; mean temperature {result['temperatures_K'].mean():.0f} K; {len(sampled)} phi/psi samples")

# %% [markdown]
# ## 4. Free-energy surface and basin populations
#
# `-kT ln p(phi, psi)` from the replicas against the all-atom reference (5 ns, mapped to the beads).
# The basins are the usual rectangles. All replicas here start from one frame and run for a short
# time, so the populations reflect the start; `benchmarks/ala2/README.md` has the study with
# replicas spread over the data, three training seeds and force matching for comparison.

# %%
BASINS = {"beta/PII": lambda p, s: (p < 0) & ((s > 50) | (s < -150)),
          "alpha_R": lambda p, s: (p < 0) & (s > -150) & (s < 50),
          "alpha_L": lambda p, s: p > 0}
for name, inside in BASINS.items():
    print(f"{name:9s} model {inside(*sampled.T).mean():.3f}   reference {inside(*reference.T).mean():.3f}")

kT = 8.617333e-5 * 300.0 * 96.485  # kJ/mol
edges = np.linspace(-180, 180, 37)
fig, axes = plt.subplots(1, 2, figsize=(8, 3.6))
for ax, (label, pp) in zip(axes, (("all-atom reference", reference), ("ala2-cg-300K replicas", sampled))):
    counts, _, _ = np.histogram2d(pp[:, 0], pp[:, 1], bins=[edges, edges])
    with np.errstate(divide="ignore"):
        fes = -kT * np.log(counts / counts.sum())
    fes -= fes[np.isfinite(fes)].min()
    im = ax.imshow(np.where(np.isfinite(fes), fes, np.nan).T, origin="lower", extent=(-180, 180, -180, 180),
                   vmin=0, vmax=15)
    ax.set(title=label, xlabel="phi (deg)", ylabel="psi (deg)")
fig.colorbar(im, ax=axes.tolist(), label="free energy (kJ/mol)")
fig.savefig("ala2_cg_fes.png", dpi=100, bbox_inches="tight")
plt.show()

# %% [markdown]
# What to take from this:
#
# - A CG molecule works like any other structure: beads are named types, the bonded priors hold the
#   chain together, and `DenoiseCalculator` and `ReplicaLangevin` run it.
# - The figures of the study (`benchmarks/ala2/README.md`, "Coarse-grained") say how close the
#   coordinates-only model gets to the reference and to force matching on the mapped forces.
