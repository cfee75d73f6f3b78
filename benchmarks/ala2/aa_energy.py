#!/usr/bin/env python
"""All-atom alanine dipeptide, energy head: is the learned free energy the force field's energy?

All atoms and without constraints nothing is integrated out, so the density of the data is
``exp(-U/kT)`` with ``U`` the amber14 + GBn2 potential energy, and an energy-head model's free energy
``A`` (:func:`ase_denoise.inference.predict_free_energy`, priors included, extrapolated to sigma -> 0)
should equal ``U`` up to a constant. This script evaluates both on the held-out frames (OpenMM for
``U``, the same system ``make_data.py`` simulated) and reports, in kT at 300 K:

* ``std(A - U)``: how far the learned energy is from the true one, frame to frame;
* the mean of ``A - U`` in each Ramachandran basin minus its mean in beta: a constant offset ``d``
  in a basin multiplies that basin's Boltzmann weight by ``exp(-d/kT)`` against beta, which is what
  the model's MD populations inherit (exactly so if the offset is the same all over the basin). The
  exact relation is free-energy perturbation from the data's ensemble, ``Z_model(b) / Z(b) =
  <exp(-(A - U)/kT)>_b``; with ``A - U`` spread by 2 kT its exponential average is not converged on a
  few hundred frames, so the script gives its second-order cumulant (``mean - var/2``) beside the mean,
  and the basin populations the first-order offsets predict from the held-out frames' own;
* the slope of ``A`` on ``U`` (1 for a model that has the energy scale right).

OpenMM's forces on the same frames are checked against the stored labels first (atom order, units).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/ala2/aa_energy.py denoise-smoothed-energy-head-2000
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/ala2/aa_energy.py denoise-smoothed-energy-head-2000 --profile
    .venv/bin/python benchmarks/ala2/aa_energy.py --report --plot

Records (kinds ``aa-energy``, ``aa-energy-profile``) go to ``results/summary.jsonl``; the README's table
is ``study.py --tables``'s, the plot ``results/aa_energy_profile.png`` is drawn from the profile records.
"""

from __future__ import annotations

import os

if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any, Dict, List, Tuple  # noqa: E402

import numpy as np  # noqa: E402
from ase import Atoms  # noqa: E402

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from ala2 import aa_replicas  # noqa: E402
study, make_data = aa_replicas.study, aa_replicas.make_data

logger = logging.getLogger("ala2.aa_energy")


def openmm_energies_and_forces(frames: List[Atoms]) -> Tuple[np.ndarray, np.ndarray]:
    """Potential energies [n] (eV) and forces [n, atoms, 3] (eV/A) of the frames under the data's own
    system (``make_data.build_system``: amber14 + GBn2, no cutoff, no constraints), on one CPU thread."""
    import openmm
    import openmm.unit as u

    from ase_denoise.integrations.openmm import EV_IN_KJ_PER_MOL

    topology, _, forcefield = make_data.build_system()
    context = openmm.Context(make_data.create_system(topology, forcefield),
                             openmm.VerletIntegrator(1.0 * u.femtosecond), openmm.Platform.getPlatformByName("CPU"),
                             {"Threads": "1"})
    energies, forces = [], []
    for atoms in frames:
        context.setPositions(atoms.positions / 10.0 * u.nanometer)
        state = context.getState(getEnergy=True, getForces=True)
        energies.append(state.getPotentialEnergy().value_in_unit(u.kilojoule_per_mole) / EV_IN_KJ_PER_MOL)
        forces.append(state.getForces(asNumpy=True).value_in_unit(u.kilojoule_per_mole / u.angstrom)
                      / EV_IN_KJ_PER_MOL)
    return np.asarray(energies), np.asarray(forces)


def _energy_head_recipe(name: str):
    recipe, _ = study.RUNS[name]
    if recipe.head != "energy":
        raise ValueError(f"run {name!r} has the {recipe.head} head; a free energy needs an energy-head run "
                         f"({sorted(n for n, (r, _) in study.RUNS.items() if r.head == 'energy')})")
    return recipe


def learned_and_exact(model, frames: List[Atoms]):
    """The model's free energy [n] (eV) and forces [n, atoms, 3] (eV/A) on ``frames``, the force
    field's energy and forces (OpenMM), and the largest difference of OpenMM's forces from the stored
    labels (eV/A), checked first: a RuntimeError if they are not the data's system."""
    from ase_denoise.inference import predict_free_energy, structure_frame

    energy_U, forces_U = openmm_energies_and_forces(frames)
    labels = np.stack([a.arrays["ref_forces"] for a in frames])
    label_error = float(np.abs(forces_U - labels).max())  # the stored labels are float32
    if label_error > 1e-3 * max(1.0, float(np.abs(labels).max())):
        raise RuntimeError(f"OpenMM's forces differ from the data's labels by up to {label_error:.3g} eV/A: "
                           "not the system the data were generated with")
    energy_A, forces_A = predict_free_energy(model, [structure_frame(a, model) for a in frames])
    return energy_A, forces_A.reshape(forces_U.shape), energy_U, forces_U, label_error


def compare(name: str, quick: bool = False) -> Dict[str, Any]:
    """Train (or load) ``name`` with ``study.py``'s recipe and compare its free energy ``A`` with the
    force field's ``U`` on the held-out frames (``quick``: tiny training, 20 of those frames)."""
    recipe = _energy_head_recipe(name)
    pool, test = study.split(study.load_frames())
    if quick:  # 20 frames spread over the held-out set (both basins)
        test = test[:: len(test) // 20][:20]
    model, _, _, _ = study.train_run(name, pool, quick)
    energy_A, forces_A, energy_U, forces_U, label_error = learned_and_exact(model, test)
    kT = model.kT
    diff = (energy_A - energy_U) / kT  # [frames], in kT
    angles = aa_replicas.phi_psi(np.stack([a.positions for a in test]))
    basins = {}
    for basin, inside in make_data.BASINS.items():
        hits = inside(angles[:, 0], angles[:, 1])
        if hits.sum() >= 2:
            d = diff[hits]
            basins[basin.split(" ")[0]] = dict(n_frames=int(hits.sum()), mean_kT=float(d.mean()),
                                               var_kT2=float(d.var(ddof=1)),
                                               stderr_kT=float(d.std(ddof=1) / np.sqrt(len(d))))
    beta = basins.get(next(iter(make_data.BASINS)).split(" ")[0])
    for b in basins.values():  # offsets against beta: what the MD populations inherit
        b["offset_vs_beta_kT"] = b["mean_kT"] - beta["mean_kT"] if beta else float("nan")
        b["offset_stderr_kT"] = float(np.hypot(b["stderr_kT"], beta["stderr_kT"])) if beta and b is not beta else 0.0
        b["cumulant2_offset_vs_beta_kT"] = ((b["mean_kT"] - b["var_kT2"] / 2) - (beta["mean_kT"] - beta["var_kT2"] / 2)
                                            if beta else float("nan"))
    weights = {k: b["n_frames"] * np.exp(-b["offset_vs_beta_kT"]) for k, b in basins.items()}
    for k, b in basins.items():  # the held-out frames' populations, reweighted by the first-order offsets
        b["predicted_population"] = float(weights[k] / sum(weights.values()))
        b["data_population"] = b["n_frames"] / len(test)
    slope = float(np.polyfit(energy_U - energy_U.mean(), energy_A - energy_A.mean(), 1)[0])
    result = dict(kind="aa-energy", run=name, recipe=recipe.name, n_frames=len(test), kT_eV=kT,
                  label_check_max_abs_eV_per_A=label_error,
                  std_A_minus_U_kT=float(diff.std()), std_U_kT=float(energy_U.std() / kT),
                  correlation=float(np.corrcoef(energy_A, energy_U)[0, 1]), slope_A_on_U=slope,
                  force_rmse_eV_per_A=float(np.sqrt(((forces_A - forces_U) ** 2).mean())), basins=basins)
    if not quick:
        result = study.STUDY.summary().put(dict(result, date=time.strftime("%Y-%m-%d")))
    logger.info("%s: std(A - U) %.2f kT (std U %.2f kT), slope %.3f, basins %s", name, result["std_A_minus_U_kT"],
                result["std_U_kT"], slope, basins)
    return result


#: psi (degrees) on an axis cut at -150 (beta's edge on the far side): alpha_R (-40), the bridge
#: (0 to 50), C7eq (50 to 120), PII (150) and on to -150 (= 210) in one run; 20-degree bins, so the
#: basins' borders at 50 and 210 are edges
PSI_BINS = np.arange(-150.0, 210.0 + 1e-9, 20.0)


def profile(name: str, quick: bool = False) -> Dict[str, Any]:
    """Where ``A - U`` changes on the way from alpha_R to beta: its mean (kT, zero in beta) per psi
    bin (:data:`PSI_BINS`, phi < 0) over every frame of the data set (training and held-out: the
    transition region has few of either), with each bin's frame count and standard error. A model
    whose ``A - U`` steps where the data are sparse has its basin offset from the path between the
    basins; one whose ``A - U`` drifts inside a well-sampled basin has it from there."""
    _energy_head_recipe(name)
    frames = study.load_frames()
    pool, _ = study.split(frames)
    if quick:  # every 25th frame
        frames = frames[::25]
    model, n_train, _, _ = study.train_run(name, pool, quick)
    energy_A, _, energy_U, _, _ = learned_and_exact(model, frames)
    diff = (energy_A - energy_U) / model.kT
    angles = aa_replicas.phi_psi(np.stack([a.positions for a in frames]))
    phi, psi = angles[:, 0], np.where(angles[:, 1] < PSI_BINS[0], angles[:, 1] + 360.0, angles[:, 1])
    beta = make_data.BASINS[next(iter(make_data.BASINS))](angles[:, 0], angles[:, 1])
    diff = diff - diff[beta].mean()
    rows = []
    for lo, hi in zip(PSI_BINS[:-1], PSI_BINS[1:]):
        d = diff[(phi < 0) & (psi >= lo) & (psi < hi)]
        rows.append(dict(psi_lo=float(lo), psi_hi=float(hi), n_frames=int(len(d)),
                         mean_kT=float(d.mean()) if len(d) else float("nan"),
                         stderr_kT=float(d.std(ddof=1) / np.sqrt(len(d))) if len(d) > 1 else float("nan")))
    result = dict(kind="aa-energy-profile", run=name, n_frames=len(frames), n_training_frames=n_train, bins=rows)
    if not quick:
        result = study.STUDY.summary().put(dict(result, date=time.strftime("%Y-%m-%d")))
    return result


def plot_profiles(path: Path = None, records=None) -> Path:
    """Every ``aa-energy-profile`` record (of the summary, or ``records``): mean ``A - U`` per psi bin with
    its error, and the frames per bin: ``results/aa_energy_profile.png``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from study_kit import save_figure

    fig, (top, bottom) = plt.subplots(2, 1, figsize=(8, 6), sharex=True, gridspec_kw=dict(height_ratios=[3, 1]))
    counts = None
    for r in records if records is not None else study.STUDY.summary().records("aa-energy-profile"):
        mid = [(b["psi_lo"] + b["psi_hi"]) / 2 for b in r["bins"]]
        nan = float("nan")  # a bin without frames: null in the record
        top.errorbar(mid, [nan if b["mean_kT"] is None else b["mean_kT"] for b in r["bins"]],
                     yerr=[nan if b["stderr_kT"] is None else b["stderr_kT"] for b in r["bins"]], marker="o",
                     ms=3, capsize=2, label=r["run"])
        counts = (mid, [b["n_frames"] for b in r["bins"]])
    top.axhline(0.0, color="k", lw=0.8)
    for edge in (50.0, 210.0):
        top.axvline(edge, color="grey", ls=":", lw=0.8)
    top.set_ylabel("mean A - U, zero in beta (kT)")
    top.legend(fontsize=8)
    if counts:
        bottom.bar(counts[0], counts[1], width=17.0, color="grey")
        bottom.set_yscale("log")
    bottom.set_ylabel("frames (phi < 0)")
    bottom.set_xlabel("psi (degrees; -150 shown as 210): alpha_R | bridge | C7eq | PII")
    fig.suptitle("Energy head, all atoms: where the learned A departs from the force field's U")
    fig.tight_layout()
    return save_figure(fig, path or study.STUDY.results / "aa_energy_profile.png")


def report() -> str:
    """The study's table of the ``aa-energy`` records (``study.py --tables`` writes it into the README)."""
    from ala2 import tables

    return tables.aa_energy_table(tables.Records(study.STUDY.summary()))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="energy-head runs of study.py (denoise-smoothed-energy-head-<N>, ...)")
    parser.add_argument("--quick", action="store_true", help="tiny settings: a smoke test (nothing written)")
    parser.add_argument("--report", action="store_true")
    parser.add_argument("--profile", action="store_true", help="instead of the held-out comparison: mean A - U "
                        "per psi bin over all frames (an aa-energy-profile record)")
    parser.add_argument("--plot", action="store_true", help="results/aa_energy_profile.png from the profile records")
    parser.add_argument("--runs-dir", default=None, help="trained models (study.py's)")
    args = parser.parse_args(argv)
    study.STUDY.configure(runs_dir=args.runs_dir)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    unknown = [n for n in args.names if n not in study.RUNS]
    if unknown:
        parser.error(f"unknown runs {unknown}; study.py --list shows them")
    for name in args.names:
        if args.profile:
            r = profile(name, quick=args.quick)
            print(name + ": " + ", ".join(f"{b['psi_lo']:.0f}..{b['psi_hi']:.0f} {b['mean_kT']:+.2f} ({b['n_frames']})"
                                          for b in r["bins"]))
            continue
        r = compare(name, quick=args.quick)
        print(json.dumps({k: r[k] for k in ("run", "std_A_minus_U_kT", "slope_A_on_U", "basins")}))
    if args.plot or (args.profile and not args.quick):
        print(plot_profiles())
    if args.report:
        print(report())
    return 0


if __name__ == "__main__":
    sys.exit(main())
