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
# # 03 · Duplication: how many noise draws per frame?
#
# Equilibrium frames are often the expensive part (long MD, a costly reference model), noise is free.
# `TrainConfig.n_duplicates = k` visits every training frame `k` times per epoch, each time with an
# independent noise draw. With the frames fixed, does a larger `k` buy better forces and better MD, and
# what does it cost?
#
# One thing to know before looking at the numbers: the sampler draws **fresh noise every epoch**
# (`ase_denoise/training/sampler.py`). So `k` duplicates for `E` epochs and 1 duplicate for `k·E` epochs show the
# model the same number of noisy samples; they differ in the order of the samples, in how often the
# model is validated and checkpointed, and in the learning-rate schedule. We therefore train
# `k ∈ {1, 2, 4, 8}` at a fixed number of epochs and add one control run: `k = 1` for `8×` the epochs.

# %%
import os
import shutil
import time

FAST = os.environ.get("ASE_DENOISE_TUTORIAL_FAST") == "1"

import matplotlib.pyplot as plt
import numpy as np
from ase import units
from ase.md.langevin import Langevin

from ase_denoise import DenoiseCalculator, TrainConfig, train
from ase_denoise.analysis import force_metrics, rdf, rdf_difference
from ase_denoise.data.reference import lj_argon_forces, lj_argon_frames

TEMPERATURE_K = 94.4
KS = [1, 2, 4, 8]
if FAST:
    N_TRAIN, N_TEST, SAMPLING = 30, 6, dict(stride=20, melt_steps=200, equilibration_steps=300)
    NOISE_STD = 0.05
    MODEL_OPTIONS = dict(head="vector", num_channels=8, max_ell=1, max_L=1, correlation=2, radial_mlp=[16, 16])
    EPOCHS, EMA, MD_STEPS = 3, 0.9, 300
else:
    N_TRAIN, N_TEST, SAMPLING = 100, 20, {}
    NOISE_STD = 0.03
    MODEL_OPTIONS = dict(head="vector", num_channels=16, max_ell=2, max_L=1, correlation=2)
    EPOCHS, EMA, MD_STEPS = 6, 0.99, 1500
print(f"FAST={FAST}: {N_TRAIN} fixed frames, sigma={NOISE_STD} A, {EPOCHS} epochs, k in {KS}")

frames = lj_argon_frames(N_TRAIN, TEMPERATURE_K, seed=0, cache_dir="data", **SAMPLING)
test_frames = lj_argon_frames(N_TEST, TEMPERATURE_K, seed=1, cache_dir="data", **SAMPLING)
test_ref = [lj_argon_forces(a) for a in test_frames]
r_max = 0.49 * frames[0].cell[0, 0]
r, g_ref = rdf(frames + test_frames, r_max, n_bins=80)

# %% [markdown]
# ## Train one model per `k` (and the control)
#
# For each model: the relative force RMSE against the true forces of an independent run, and the RMS
# difference between the `g(r)` of a short Langevin run with the model and the reference `g(r)`.

# %%
def train_and_score(label, n_duplicates, epochs):
    run_dir = f"runs/dup_{label}"
    shutil.rmtree(run_dir, ignore_errors=True)
    cfg = TrainConfig(n_duplicates=n_duplicates, epochs=epochs, batch_size=4, lr=5e-3, warmup_steps=5,
                      ema_decay=EMA, seed=0)
    t0 = time.perf_counter()
    result = train(frames, run_dir, noise_std=NOISE_STD, temperature_K=TEMPERATURE_K, train_config=cfg, **MODEL_OPTIONS)
    train_s = time.perf_counter() - t0
    calc = DenoiseCalculator(result.model)
    pred = []
    for a in test_frames:
        a = a.copy()
        a.calc = calc
        pred.append(a.get_forces())
    m = force_metrics(pred, test_ref)
    atoms = test_frames[0].copy()
    atoms.calc = calc
    dyn = Langevin(atoms, 10 * units.fs, temperature_K=TEMPERATURE_K, friction=0.01 / units.fs,
                   rng=np.random.default_rng(0), fixcm=False)
    snaps = []
    dyn.attach(lambda: snaps.append(atoms.copy()), interval=10)
    dyn.run(MD_STEPS)
    _, g = rdf(snaps[len(snaps) // 5:], r_max, n_bins=80)
    row = dict(label=label, k=n_duplicates, epochs=epochs, steps=result.history[-1]["step"], train_s=train_s,
               rel_rmse=m["relative_rmse"], cosine=m["cosine"], slope=m["slope"],
               rdf_rms=rdf_difference(g, g_ref)["rms"], history=result.history, g=g)
    print(f"{label:>10s}: k={n_duplicates} epochs={epochs:3d} steps={row['steps']:5d} train {train_s:6.1f} s  "
          f"rel. force RMSE {row['rel_rmse']:.3f}  cosine {row['cosine']:.3f}  slope {row['slope']:.3f}  "
          f"RDF rms diff {row['rdf_rms']:.4f}")
    return row


rows = [train_and_score(f"k={k}", k, EPOCHS) for k in KS]
control = train_and_score(f"k=1 x{max(KS)}ep", 1, max(KS) * EPOCHS)

# %% [markdown]
# ## Results

# %%
ks = np.array([row["k"] for row in rows])
fig, axes = plt.subplots(2, 2, figsize=(10, 7.5))
ax = axes[0, 0]
ax.plot(ks, [row["rel_rmse"] for row in rows], "o-", label=f"k duplicates, {EPOCHS} epochs")
ax.plot([max(KS)], [control["rel_rmse"]], "r*", ms=12, label=f"k=1, {max(KS) * EPOCHS} epochs (same samples as k={max(KS)})")
ax.set_ylabel("relative force RMSE (test frames)")
ax.legend(fontsize=8)
ax = axes[0, 1]
ax.plot(ks, [row["rdf_rms"] for row in rows], "o-")
ax.plot([max(KS)], [control["rdf_rms"]], "r*", ms=12)
ax.set_ylabel("RDF RMS difference vs reference")
ax = axes[1, 0]
times = np.array([row["train_s"] for row in rows])
per_k, overhead = np.polyfit(ks, times, 1)  # time = overhead + per_k * k
ax.plot(ks, times, "o-", label="measured")
ax.plot(ks, overhead + per_k * ks, "k--", lw=1, label=f"fit: {overhead:.1f} s + {per_k:.2f} s × k")
ax.plot([max(KS)], [control["train_s"]], "r*", ms=12)
ax.set_ylabel("training time (s)")
ax.legend(fontsize=8)
for ax in (axes[0, 0], axes[0, 1], axes[1, 0]):
    ax.set_xscale("log", base=2)
    ax.set_xticks(KS, [str(k) for k in KS])
    ax.set_xlabel("n_duplicates k")
ax = axes[1, 1]
for row in rows + [control]:
    h = row["history"]
    style = "r*--" if row is control else "o-"
    ax.plot([x["step"] for x in h], [x["force_relative_rmse"] for x in h], style, ms=4, label=row["label"])
ax.set_xlabel("optimizer steps")
ax.set_ylabel("relative force RMSE (validation frames)")
ax.set_title("learning curves against gradient steps", fontsize=9)
ax.legend(fontsize=8)
fig.suptitle(f"{N_TRAIN} fixed LJ argon frames, σ = {NOISE_STD} Å")
fig.tight_layout()
fig.savefig("duplication.png", dpi=120)
plt.show()

# %%
fig, ax = plt.subplots(figsize=(6, 3.5))
ax.plot(r, g_ref, "k-", lw=2, label="reference")
for row in rows:
    ax.plot(r, row["g"], lw=1, label=f"MD, {row['label']}")
ax.set_xlabel("r (Å)")
ax.set_ylabel("g(r)")
ax.legend(fontsize=8)
fig.tight_layout()
fig.savefig("duplication_rdf.png", dpi=120)
plt.show()

# %% [markdown]
# ## How to read this
#
# * **Cost**: at a fixed number of epochs the training time is a fixed overhead (building the model and
#   neighbour lists, validation and checkpoints after every epoch) plus a part proportional to `k`,
#   since an epoch is `k` passes over the frames. The control run does the same number of steps as
#   `k = 8` but validates and checkpoints `8×` as often, which is why it costs a little more.
# * **At a fixed number of epochs**, larger `k` means more gradient steps on more noise draws, and the
#   force error falls. The learning curves (bottom right) show how much of that is simply "more steps":
#   if the curves of different `k` lie on top of each other when plotted against steps, duplication is a
#   way of spending compute, not a free lunch. The control run (red star, `k = 1` with `8×` the epochs)
#   makes the same point from the other side.
# * What duplication does change, for the same compute: fewer epochs, so fewer validation passes and
#   checkpoints, and each frame's neighbour list is reused for all its copies. With expensive frames and
#   cheap noise, choose `k` so that an epoch is a convenient unit of work (the demo and the zoo model
#   use `k = 4`), and judge training by the force metrics or the `g(r)`, not by the epoch count.
# * One full run of this notebook (no `ASE_DENOISE_TUTORIAL_FAST`, about 4 minutes on two cores): the
#   learning curves of all five runs lay on a single curve against gradient steps. At 6 epochs the test
#   force error fell from 0.64 (k = 1) to 0.31 (k = 2) and 0.14-0.15 (k = 4, 8); the control run ended
#   at 0.12, and the RDF differences were 0.03 for k = 4, 8 and the control. With these frames,
#   duplication bought exactly what the same number of steps bought.
# * In fast mode every model is under-trained and the MD runs are short, so the RDF differences are
#   dominated by sampling noise.
