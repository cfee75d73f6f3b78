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
# # 06 · pymatgen in, pymatgen out
#
# If your snapshots live in pymatgen (a `Trajectory` read from a VASP `XDATCAR`, `Structure`s from a
# database), you can train on them directly and get pymatgen objects back from the MD:
#
# 1. structures in: an `XDATCAR` read with pymatgen, converted by `ase_denoise.data.interop`;
# 2. train on the list of `Structure`s;
# 3. run MD from a `Structure`, and turn the MD frames back into `Structure`s and a pymatgen `Trajectory`;
# 4. analyse with pymatgen (coordination numbers), write a CIF, compare RDFs.
#
# The snapshots here are Lennard-Jones argon sampled with `ase_denoise.data.reference` and written as an
# `XDATCAR` first, so that the notebook runs anywhere; replace that file with your own.

# %%
import os
import shutil
import time
import warnings

FAST = os.environ.get("ASE_DENOISE_TUTORIAL_FAST") == "1"
warnings.filterwarnings("ignore", message="No Pauling electronegativity")  # pymatgen on noble gases

import matplotlib.pyplot as plt
import numpy as np
from ase import units
from ase.md.langevin import Langevin
from pymatgen.core import Structure
from pymatgen.core.trajectory import Trajectory
from pymatgen.io.ase import AseAtomsAdaptor

from ase_denoise import DenoiseCalculator, TrainConfig, frames_to_structures, structures_to_frames, train
from ase_denoise.analysis import first_peak, rdf, rdf_difference
from ase_denoise.data.interop import frames_to_trajectory
from ase_denoise.data.reference import lj_argon_frames

TEMPERATURE_K = 94.4
if FAST:
    N_FRAMES, SAMPLING, MD_STEPS = 30, dict(stride=20, melt_steps=200, equilibration_steps=300), 300
    NOISE_STD = 0.05
    MODEL_OPTIONS = dict(head="vector", num_channels=8, max_ell=1, max_L=1, correlation=2, radial_mlp=[16, 16])
    TRAIN = TrainConfig(n_duplicates=4, epochs=4, batch_size=4, lr=5e-3, warmup_steps=5, ema_decay=0.9, seed=0)
else:
    N_FRAMES, SAMPLING, MD_STEPS = 150, {}, 3000
    NOISE_STD = 0.03
    MODEL_OPTIONS = dict(head="vector", num_channels=16, max_ell=2, max_L=1, correlation=2)
    TRAIN = TrainConfig(n_duplicates=4, epochs=15, batch_size=4, lr=5e-3, seed=0, max_minutes=6)
print(f"FAST={FAST}: {N_FRAMES} structures, {TRAIN.epochs} epochs, {MD_STEPS} MD steps")

# stand-in for your own data: an XDATCAR written through pymatgen
sampled = lj_argon_frames(N_FRAMES, TEMPERATURE_K, seed=0, cache_dir="data", **SAMPLING)
frames_to_trajectory(sampled).write_Xdatcar("XDATCAR", system="LJ argon 94.4 K")
print(open("XDATCAR").read()[:300])

# %% [markdown]
# ## 1. Structures in
#
# pymatgen reads the `XDATCAR` into a `Trajectory`; indexing it gives `Structure`s. A `Structure` has no
# notion of a sampling temperature, so it is given once, here or to `train` (a structure that states a
# different one in `properties["temperature_K"]` is refused rather than overwritten).

# %%
trajectory = Trajectory.from_file("XDATCAR")
structures = [trajectory[i] for i in range(len(trajectory))]
print(len(structures), "structures;", structures[0].composition, structures[0].lattice.abc, type(structures[0]).__name__)

frames = structures_to_frames(structures, temperature_K=TEMPERATURE_K)  # what train() does internally
print(frames[0], frames[0].info)

# %% [markdown]
# ## 2. Train on the `Structure`s
#
# `train` accepts the list of structures as it is (or a file, or `ase.Atoms`). There are no forces in an
# `XDATCAR`, and none are needed.

# %%
run_dir = "runs/pymatgen"
shutil.rmtree(run_dir, ignore_errors=True)
t0 = time.perf_counter()
result = train(structures, run_dir, noise_std=NOISE_STD, temperature_K=TEMPERATURE_K, train_config=TRAIN, **MODEL_OPTIONS)
print(f"trained {len(result.history)} epochs in {time.perf_counter() - t0:.0f} s; "
      f"final validation loss {result.history[-1]['valid_loss']:.4f}")

# %% [markdown]
# ## 3. MD from a `Structure`, `Structure`s back
#
# `AseAtomsAdaptor.get_atoms` turns a `Structure` into `ase.Atoms`; attach the calculator and run any ASE
# integrator. `frames_to_structures` and `frames_to_trajectory` turn the MD frames back into pymatgen
# objects.

# %%
atoms = AseAtomsAdaptor.get_atoms(structures[-1])
atoms.calc = DenoiseCalculator(result.model)
dyn = Langevin(atoms, 10 * units.fs, temperature_K=TEMPERATURE_K, friction=0.01 / units.fs, fixcm=False,
               rng=np.random.default_rng(0))
md_frames = []
dyn.attach(lambda: md_frames.append(atoms.copy()), interval=10)
dyn.run(MD_STEPS)
md_frames = md_frames[len(md_frames) // 5:]  # drop the first 20 %
for f in md_frames:
    f.wrap()

md_structures = frames_to_structures(md_frames)
md_trajectory = frames_to_trajectory(md_frames)
print(f"{len(md_structures)} MD structures ({type(md_structures[0]).__name__}), trajectory of {len(md_trajectory)} frames")
last = md_structures[-1]
print(last.composition, f"density {last.density:.3f} g/cm^3,", "site properties:", sorted(last.site_properties))

# %% [markdown]
# ## 4. Analysis with pymatgen, files, and a round trip
#
# A CIF of the last MD snapshot (and reading it back), then the coordination number of every atom with
# pymatgen's neighbour list, for the input structures and for the MD structures. The first-shell cutoff
# is the first minimum of the reference `g(r)`.

# %%
md_structures[-1].to(filename="md_last.cif")
from_cif = Structure.from_file("md_last.cif")
print(f"CIF round trip: {len(from_cif)} sites, {from_cif.composition}, max position change "
      f"{np.abs(from_cif.cart_coords - md_structures[-1].cart_coords).max():.1e} A (coordinates are stored as text)")

r_max = 0.49 * frames[0].cell[0, 0]
r, g_in = rdf(frames, r_max, n_bins=80)
_, g_md = rdf(structures_to_frames(md_structures), r_max, n_bins=80)  # Structures back to ase.Atoms
peak_r, _ = first_peak(r, g_in)
window = (r > peak_r) & (r < 6.5)
cutoff = float(r[window][np.argmin(g_in[window])])
print(f"first peak {peak_r:.2f} A, first minimum (shell cutoff) {cutoff:.2f} A")


def coordination_numbers(structure_list):
    counts = []
    for s in structure_list:
        centers, _, _, _ = s.get_neighbor_list(r=cutoff)
        counts.append(np.bincount(centers, minlength=len(s)))
    return np.concatenate(counts)


cn_in, cn_md = coordination_numbers(structures), coordination_numbers(md_structures)
print(f"mean coordination number: input {cn_in.mean():.2f}, MD {cn_md.mean():.2f}")
print("RDF difference MD vs input:", {k: round(v, 4) for k, v in rdf_difference(g_md, g_in).items()})

fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.6))
bins = np.arange(min(cn_in.min(), cn_md.min()) - 0.5, max(cn_in.max(), cn_md.max()) + 1.5)
ax1.hist(cn_in, bins=bins, density=True, alpha=0.5, label=f"input structures (mean {cn_in.mean():.2f})")
ax1.hist(cn_md, bins=bins, density=True, alpha=0.5, label=f"denoiser MD (mean {cn_md.mean():.2f})")
ax1.set_xlabel(f"neighbours within {cutoff:.2f} Å (pymatgen)")
ax1.set_ylabel("fraction of atoms")
ax1.legend(fontsize=8)
ax2.plot(r, g_in, label="input structures")
ax2.plot(r, g_md, label="denoiser MD")
ax2.axvline(cutoff, color="grey", ls=":", lw=1)
ax2.set_xlabel("r (Å)")
ax2.set_ylabel("g(r)")
ax2.legend(fontsize=8)
fig.tight_layout()
fig.savefig("pymatgen_analysis.png", dpi=120)
plt.show()

# %% [markdown]
# ## Summary
#
# * In: `train(structures, ..., temperature_K=T)` takes `Structure`s (or `structures_to_frames`, which
#   also accepts a `Trajectory`, keeps a temperature stated in the data and turns a `forces` site
#   property into evaluation-only reference forces).
# * Out: `frames_to_structures` / `frames_to_trajectory` give pymatgen objects, so the rest of a pymatgen
#   workflow (CIF, `XDATCAR`, structure analysis, databases) continues from the MD.
# * Periodic frames become `Structure`s, non-periodic ones `Molecule`s.
