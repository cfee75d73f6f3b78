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

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/ala2/aa_energy.py dnse-2000
    .venv/bin/python benchmarks/ala2/aa_energy.py --report
"""

from __future__ import annotations

import os

if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any, Dict, List, Tuple  # noqa: E402

import numpy as np  # noqa: E402
from ase import Atoms  # noqa: E402

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
import common  # noqa: E402  (benchmarks/common.py: load_script)

aa_replicas = common.load_script("ala2_aa_replicas", HERE / "aa_replicas.py")
study, make_data = aa_replicas.study, aa_replicas.make_data

KJ_PER_MOL_IN_EV = 1.0 / 96.48533212
RESULTS = HERE / "results"
logger = logging.getLogger("ala2.aa_energy")


def openmm_energies_and_forces(frames: List[Atoms]) -> Tuple[np.ndarray, np.ndarray]:
    """Potential energies [n] (eV) and forces [n, atoms, 3] (eV/A) of the frames under the data's own
    system (``make_data.build_system``: amber14 + GBn2, no cutoff, no constraints), on one CPU thread."""
    import openmm
    import openmm.unit as u

    topology, _, forcefield = make_data.build_system()
    context = openmm.Context(make_data.create_system(topology, forcefield),
                             openmm.VerletIntegrator(1.0 * u.femtosecond), openmm.Platform.getPlatformByName("CPU"),
                             {"Threads": "1"})
    energies, forces = [], []
    for atoms in frames:
        context.setPositions(atoms.positions / 10.0 * u.nanometer)
        state = context.getState(getEnergy=True, getForces=True)
        energies.append(state.getPotentialEnergy().value_in_unit(u.kilojoule_per_mole) * KJ_PER_MOL_IN_EV)
        forces.append(state.getForces(asNumpy=True).value_in_unit(u.kilojoule_per_mole / u.angstrom)
                      * KJ_PER_MOL_IN_EV)
    return np.asarray(energies), np.asarray(forces)


def compare(name: str, quick: bool = False) -> Dict[str, Any]:
    """Train (or load) ``name`` with ``study.py``'s recipe and compare its free energy ``A`` with the
    force field's ``U`` on the held-out frames (``quick``: tiny training, 20 of those frames)."""
    from ase_denoise.inference import predict_free_energy, structure_frame

    spec = study.RUNS[name]
    if spec.get("head") != "energy":
        raise ValueError(f"run {name!r} has the {spec.get('head', 'vector')} head; a free energy needs an "
                         f"energy-head run ({sorted(n for n, s in study.RUNS.items() if s.get('head') == 'energy')})")
    pool, test = study.split(study.load_frames())
    if quick:  # 20 frames spread over the held-out set (both basins)
        test = test[:: len(test) // 20][:20]
    model, _, _, _ = study.train_run(name, spec, pool, quick)
    energy_U, forces_U = openmm_energies_and_forces(test)
    labels = np.stack([a.arrays["ref_forces"] for a in test])
    label_error = float(np.abs(forces_U - labels).max())  # the stored labels are float32
    if label_error > 1e-3 * max(1.0, float(np.abs(labels).max())):
        raise RuntimeError(f"OpenMM's forces differ from the data's labels by up to {label_error:.3g} eV/A: "
                           "not the system the data were generated with")
    energy_A, forces_A = predict_free_energy(model, [structure_frame(a, model) for a in test])
    forces_A = forces_A.reshape(forces_U.shape)
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
    result = dict(name=name, spec=spec, n_frames=len(test), kT_eV=kT, label_check_max_abs_eV_per_A=label_error,
                  std_A_minus_U_kT=float(diff.std()), std_U_kT=float(energy_U.std() / kT),
                  correlation=float(np.corrcoef(energy_A, energy_U)[0, 1]), slope_A_on_U=slope,
                  force_rmse_eV_per_A=float(np.sqrt(((forces_A - forces_U) ** 2).mean())), basins=basins)
    if not quick:
        RESULTS.mkdir(parents=True, exist_ok=True)
        (RESULTS / f"aa-energy-{name}.json").write_text(json.dumps(result, indent=1))
    logger.info("%s: std(A - U) %.2f kT (std U %.2f kT), slope %.3f, basins %s", name, result["std_A_minus_U_kT"],
                result["std_U_kT"], slope, basins)
    return result


def report() -> str:
    rows = ["| run | held-out frames | std(A - U) (kT) | std(U) (kT) | slope of A on U | correlation | force RMSE (eV/A) "
            "| alpha_R offset vs beta (kT): mean | second cumulant | beta population: held-out data | "
            "predicted from the mean offset |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for path in sorted(RESULTS.glob("aa-energy-*.json")):
        r = json.loads(path.read_text())
        a, b = r["basins"].get("alpha_R"), r["basins"].get("beta/C7eq/PII")
        off = f"{a['offset_vs_beta_kT']:+.2f} ± {a['offset_stderr_kT']:.2f}" if a else "-"
        cum = f"{a['cumulant2_offset_vs_beta_kT']:+.2f}" if a else "-"
        pops = f"{b['data_population']:.3f} | {b['predicted_population']:.3f}" if b else "- | -"
        rows.append(f"| {r['name']} | {r['n_frames']} | {r['std_A_minus_U_kT']:.2f} | {r['std_U_kT']:.2f} | "
                    f"{r['slope_A_on_U']:.3f} | {r['correlation']:.3f} | {r['force_rmse_eV_per_A']:.3f} | {off} | "
                    f"{cum} | {pops} |")
    return "\n".join(rows)


def main(argv=None) -> int:
    global RESULTS
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="energy-head runs of study.py (dnse-<N>, fme-<N>)")
    parser.add_argument("--quick", action="store_true", help="tiny settings: a smoke test (nothing written)")
    parser.add_argument("--report", action="store_true")
    parser.add_argument("--runs-dir", default=str(study.RUNS_DIR), help="trained models (study.py's)")
    parser.add_argument("--results-dir", default=str(RESULTS))
    args = parser.parse_args(argv)
    RESULTS, study.RUNS_DIR = Path(args.results_dir), Path(args.runs_dir)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    unknown = [n for n in args.names if n not in study.RUNS]
    if unknown:
        parser.error(f"unknown runs {unknown}; known: {sorted(study.RUNS)}")
    for name in args.names:
        r = compare(name, quick=args.quick)
        print(json.dumps({k: r[k] for k in ("name", "std_A_minus_U_kT", "slope_A_on_U", "basins")}))
    if args.report:
        print(report())
    return 0


if __name__ == "__main__":
    sys.exit(main())
