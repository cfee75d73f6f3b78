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
# # 04 · The ASE toolbox with a forces-only calculator
#
# A denoiser gives forces and nothing else: no energy, no stress. Most of ASE only needs forces, a few
# tools ask for energies. This notebook loads a ready-made model from the zoo (no training) and goes
# through what works, what does not and what to use instead:
#
# 1. load `lj-argon-94K` by name;
# 2. Langevin, Bussi and velocity-Verlet MD, with a trajectory file and an energy-free logger;
# 3. read the trajectories back and compare radial distribution functions;
# 4. relax a structure without energies;
# 5. what fails, with the error messages.

# %%
import os

FAST = os.environ.get("ASE_DENOISE_TUTORIAL_FAST") == "1"

import ase.io
import matplotlib.pyplot as plt
import numpy as np
from ase import units
from ase.build import bulk
from ase.calculators.calculator import PropertyNotImplementedError
from ase.md.bussi import Bussi
from ase.md.langevin import Langevin
from ase.md.verlet import VelocityVerlet
from IPython.display import Image, display

from ase_denoise import DenoiseCalculator, list_models, model_info, relax, run_langevin
from ase_denoise.analysis import plot_rdf, rdf, rdf_difference
from ase_denoise.md import ForcesOnlyFIRE, ForcesOnlyMDLogger, max_force
from ase_denoise.data.reference import lj_argon_frames

try:  # ASE >= 3.28
    from ase.md.velocitydistribution import thermalize_momenta
except ImportError:  # older ASE
    from ase.md.velocitydistribution import MaxwellBoltzmannDistribution as thermalize_momenta

MD_STEPS = 150 if FAST else 2000  # 10 fs each
SAMPLING = dict(stride=20, melt_steps=200, equilibration_steps=300) if FAST else {}
print(f"FAST={FAST}: {MD_STEPS} MD steps per integrator")

# %% [markdown]
# ## 1. A model from the zoo
#
# The zoo ships small trained models inside the package. Loading one by name checks the file's sha256
# against the registry (nothing is downloaded). The model card says what it was trained on and how
# well it does.

# %%
print(list_models())
entry = model_info("lj-argon-94K")
print(entry.summary)
print(f"trained at {entry.temperature_K} K with sigma = {entry.noise_std} A")

calc = DenoiseCalculator.from_zoo("lj-argon-94K")
print("implemented properties:", calc.implemented_properties)
print(f"calculator: sigma = {calc.noise_levels} A, T = {calc.temperature_K} K")

# %% [markdown]
# A starting structure and reference frames: liquid argon sampled with the true Lennard-Jones potential
# at the model's temperature (`ase_denoise.data.reference`).

# %%
T = calc.temperature_K
reference = lj_argon_frames(20, T, seed=2, cache_dir="data", **SAMPLING)
start = reference[-1]
print(start, f"box {start.cell[0, 0]:.2f} A")

# %% [markdown]
# ## 2. Three integrators
#
# All ASE integrators only need forces: they run unchanged. Two things to watch:
#
# * `trajectory="name.traj"` (ASE's `Trajectory`) works: it stores what the calculator has, i.e.
#   positions, momenta and forces.
# * `logfile=...` does **not** work: ASE's `MDLogger` prints the potential and total energy. Attach
#   `ForcesOnlyMDLogger` instead (time, kinetic energy, temperature, largest force).

# %%
def run_md(name, make_dyn):
    atoms = start.copy()
    atoms.calc = DenoiseCalculator.from_zoo("lj-argon-94K")
    thermalize_momenta(atoms, temperature_K=T, rng=np.random.default_rng(0))
    dyn = make_dyn(atoms, trajectory=f"{name}.traj", loginterval=10)  # a frame every 10 steps
    temperatures = []
    dyn.attach(lambda: temperatures.append(atoms.get_temperature()), interval=1)
    with ForcesOnlyMDLogger(dyn, atoms, f"{name}.log", mode="w") as logger:
        dyn.attach(logger, interval=10)
        dyn.run(MD_STEPS)
    return np.array(temperatures)


dt = 10 * units.fs
rng = np.random.default_rng(1)
integrators = {
    "langevin": lambda atoms, **kw: Langevin(atoms, dt, temperature_K=T, friction=0.01 / units.fs, fixcm=False, rng=rng, **kw),
    "bussi": lambda atoms, **kw: Bussi(atoms, dt, temperature_K=T, taut=500 * units.fs, rng=rng, **kw),
    "velocity_verlet": lambda atoms, **kw: VelocityVerlet(atoms, dt, **kw),
}
temperature = {name: run_md(name, make) for name, make in integrators.items()}
for name, temps in temperature.items():
    print(f"{name:16s} mean T over the second half {temps[len(temps) // 2:].mean():6.1f} K")
print(open("bussi.log").read()[:400])

# %%
fig, ax = plt.subplots(figsize=(7, 3.5))
time_ps = np.arange(MD_STEPS + 1) * 10 / 1000
for name, temps in temperature.items():
    ax.plot(time_ps[: len(temps)], temps, lw=1, label=name)
ax.axhline(T, color="k", ls=":", lw=1, label=f"{T} K")
ax.set_xlabel("time (ps)")
ax.set_ylabel("kinetic temperature (K)")
ax.legend(fontsize=8)
fig.tight_layout()
fig.savefig("md_temperatures.png", dpi=120)
plt.show()

# %% [markdown]
# Velocity Verlet conserves the total energy of a conservative force field. A denoiser's forces
# (`vector` head) are not constrained to be the gradient of anything, and there is no energy to monitor,
# so in NVE only the temperature tells you whether the run heats up or cools down: prefer a thermostat
# (Langevin or Bussi) for production runs with learned forces.
#
# ## 3. Reading the trajectories back
#
# Each frame read from a `.traj` file carries a `SinglePointCalculator` with the stored forces. Asking
# it for an energy fails, because none was stored.

# %%
frames = {name: ase.io.read(f"{name}.traj", index=":") for name in integrators}
first = frames["langevin"][-1]
print(len(frames["langevin"]), "frames;", first.calc, "; max |F| =", f"{max_force(first.get_forces()):.4f} eV/A")
try:
    first.get_potential_energy()
except PropertyNotImplementedError as exc:
    print("energy of a stored frame:", type(exc).__name__, exc)

r_max = 0.49 * start.cell[0, 0]
r, g_ref = rdf(reference, r_max, n_bins=80)
curves = {"reference (true LJ)": (r, g_ref)}
for name, traj in frames.items():
    _, g = rdf(traj[len(traj) // 5 :], r_max, n_bins=80)  # drop the first 20 %
    curves[name] = (r, g)
    print(f"{name:16s} RDF rms difference vs reference {rdf_difference(g, g_ref)['rms']:.4f}")
display(Image(filename=str(plot_rdf(curves, "rdf_integrators.png", title="zoo model lj-argon-94K"))))

# %% [markdown]
# The library's own Langevin driver does all of the above in one call and reports what matters for a
# learned potential (closest approach, largest force, speed). It writes any ASE format; the file appears
# only when the run finished.

# %%
atoms = start.copy()
atoms.calc = calc
stats = run_langevin(atoms, temperature_K=T, steps=MD_STEPS, timestep_fs=10, trajectory="run.extxyz",
                     interval=10, logfile="run.log", overwrite=True)
print({k: round(v, 3) if isinstance(v, float) else v for k, v in stats.items()})
print(len(ase.io.read("run.extxyz", index=":")), "frames in run.extxyz")

# %% [markdown]
# ## 4. Relaxing without energies
#
# Every ASE optimizer logs the energy, so ASE's own `FIRE` stops at step 0. `ase_denoise.relax` (or the
# `ForcesOnlyFIRE`, `ForcesOnlyBFGS`, ... classes in `ase_denoise.md`) run the same algorithms with a log
# that reports only the largest force. Optimizers whose *step* needs energies (line searches, `GPMin`,
# basin hopping) cannot work with any forces-only calculator.
#
# Test case: an fcc argon crystal (lattice constant 5.40 Å, the Lennard-Jones minimum) with every atom
# displaced by 0.1 Å. By symmetry the relaxed structure is the perfect lattice. Remember what a learned
# relaxation finds: the minimum of the σ-smoothed free energy, close to but not exactly the minimum of U.

# %%
crystal = bulk("Ar", "fcc", a=5.40, cubic=True).repeat(3)
ideal = crystal.positions.copy()
crystal.positions += np.random.default_rng(0).normal(0.0, 0.1, crystal.positions.shape)


def rms_from_ideal(atoms):
    shift = atoms.positions - ideal
    shift -= shift.mean(axis=0)  # the crystal as a whole may drift
    return np.sqrt((shift**2).sum(axis=1).mean())


rms_before = rms_from_ideal(crystal)
crystal.calc = DenoiseCalculator.from_zoo("lj-argon-94K")

from ase.optimize import FIRE

try:
    FIRE(crystal, logfile=None).run(fmax=0.01, steps=10)
except PropertyNotImplementedError as exc:
    print("ase.optimize.FIRE:", type(exc).__name__, exc)

print(f"before: max |F| = {max_force(crystal.get_forces()):.4f} eV/A")
converged = relax(crystal, fmax=0.005, steps=500, trajectory="relax.traj")
path = ase.io.read("relax.traj", index=":")
fmax_path = [max_force(a.get_forces()) for a in path]
print(f"converged={converged} after {len(path) - 1} steps, max |F| = {fmax_path[-1]:.5f} eV/A; RMS distance "
      f"from the ideal lattice {rms_before:.3f} A before, {rms_from_ideal(crystal):.4f} A after")

fig, ax = plt.subplots(figsize=(5, 3))
ax.semilogy(fmax_path, ".-")
ax.axhline(0.005, color="k", ls=":", lw=1, label="fmax = 0.005 eV/Å")
ax.set_xlabel("FIRE step")
ax.set_ylabel("max |F| (eV/Å)")
ax.legend()
fig.tight_layout()
fig.savefig("relax.png", dpi=120)
plt.show()

# %% [markdown]
# ## 5. What fails, and why
#
# The calculator raises ASE's `PropertyNotImplementedError` with a message that says why, for the
# energy and the stress alike (a stress is a derivative of the energy with respect to the cell, and
# there is no energy). Everything built on these fails the same way: `MDLogger`, optimizers' logs,
# energy-based convergence checks, equations of state, NPT barostats.

# %%
atoms = start.copy()
atoms.calc = calc
for what, call in [
    ("get_potential_energy()", atoms.get_potential_energy),
    ("get_stress()", atoms.get_stress),
    ("Langevin(..., logfile=...).run()",
     lambda: Langevin(atoms, dt, temperature_K=T, friction=0.01 / units.fs, fixcm=False, logfile=os.devnull).run(1)),
    ("ForcesOnlyFIRE(downhill_check=True)", lambda: ForcesOnlyFIRE(atoms, downhill_check=True)),
]:
    try:
        call()
        print(f"{what}: no error?")
    except (PropertyNotImplementedError, ValueError) as exc:
        print(f"{what}:\n    {type(exc).__name__}: {exc}")

# %% [markdown]
# Summary:
#
# | works unchanged | use instead | cannot work |
# | --- | --- | --- |
# | every MD integrator, `Trajectory`, `get_forces()`, RDFs and other structure analysis | `ForcesOnlyMDLogger` for `MDLogger`; `relax()` / `ForcesOnlyFIRE`, `ForcesOnlyBFGS`, ... for optimizers | energies, stress, NPT, line-search optimizers, NVE energy checks |
