#!/usr/bin/env python
"""Long Langevin MD with the ``lj-argon-94K`` zoo model: stability and structural drift.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/long_md.py            # 1 ns: 100,000 steps of 10 fs

Starts from the first frame of an independent (held-out) true-LJ run, thermalises the momenta at
94.4 K and runs ASE Langevin MD (10 fs, friction 0.01/fs, ``fixcm=False``) with
``DenoiseCalculator.from_zoo("lj-argon-94K")`` (sha256-checked). It records:

* blow-up checks: forces and positions finite at every step, the **closest approach** of any two atoms
  (periodic images included, measured at *every* step), the largest force and the kinetic temperature;
* one frame every ``--sample-every`` steps (1 ps by default); the run is cut into four quarters and the
  **RDF of the first and last quarter** are compared (``ase_denoise.analysis.rdf_difference``), and each
  quarter's RDF against the reference RDF of the true-LJ run (``ase_denoise.reference.lj_argon_frames``,
  the model's training run) and against the RDF of the noised reference (``rho_sigma``, what MD with the
  sigma-smoothed forces samples, DESIGN.md section 1);
* the noise floor: the RDF difference between the first and second half of the reference run
  (two independent samples of the same structure), to judge the drift figures against;
* steps/s.

``--max-minutes`` bounds the wall clock (default 25): when it is spent the run stops, the figures are
computed on the steps done, and the report says so. Results go to ``--work-dir`` (JSON, sampled frames)
and the Markdown report to ``--report`` (default ``benchmarks/long_md.md``).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import shlex
import sys
import time
from typing import Any, Dict, List

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
logger = logging.getLogger("long_md")

MODEL = "lj-argon-94K"
TEMPERATURE_K = 94.4
BLOWUP_DISTANCE = 2.0  # Angstrom: LJ argon (sigma 3.40 A) at 94 K never comes this close (~3.0 A)


NOTES = [
    "- The closest approach is measured at every step (matscipy neighbour list, periodic images included);",
    "  the sampled-frame figure compares with the reference frames, both 1 ps apart (1000 MD frames against",
    "  300 reference frames: more frames give a lower minimum). LJ sigma is 3.40 A.",
    "- The first attempt at this run (before the fix below) stopped after more than 560 ps: the calculator refused",
    "  the structure because an atom had diffused more than one box length out of the periodic cell (ASE's",
    "  integrators never wrap positions). Since then `DenoiseCalculator` moves such atoms back by whole lattice",
    "  vectors (`ase_denoise.calculator.far_atoms_into_cell`; a lattice translation changes no force, tested",
    "  in `tests/test_properties.py`), and frames in *training data* with atoms far outside the cell are",
    "  still refused with a message.",
    "- The drift figure compares two quarters of one run (about 250 frames each, 1 ps apart); the noise floor",
    "  compares the two halves (150 frames each, 1 ps apart) of the true-LJ reference run, so the floor for",
    "  250-frame RDFs is somewhat lower. A drift at or below the floor means no structural drift is resolved.",
]


def closest_approach(atoms, cutoff: float = 4.5) -> float:
    """Smallest interatomic distance (Angstrom, periodic images included); ``cutoff`` if none is closer."""
    from matscipy.neighbours import neighbour_list

    d = neighbour_list("d", atoms, cutoff)
    return float(d.min()) if len(d) else cutoff


def closest_approach_of_frames(frames) -> float:
    """Smallest interatomic distance (Angstrom) over ``frames`` (one value per frame, minimum taken)."""
    return float(min(closest_approach(a) for a in frames))


def run(args: argparse.Namespace) -> Dict[str, Any]:
    import torch
    from ase import Atoms, units
    from ase.md.langevin import Langevin
    from ase.md.velocitydistribution import MaxwellBoltzmannDistribution

    from ase_denoise import DenoiseCalculator
    from ase_denoise.analysis import first_peak, rdf, rdf_difference
    from ase_denoise.demo import noised_copies
    from ase_denoise.reference import lj_argon_frames

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    os.makedirs(args.work_dir, exist_ok=True)

    calc = DenoiseCalculator.from_zoo(MODEL)
    meta = calc.model.metadata  # type: ignore[attr-defined]
    logger.info("model %s: T=%g K, sigma=%g A, dtype %s", MODEL, calc.temperature_K, calc.noise_std, calc.dtype)
    reference = lj_argon_frames(300, TEMPERATURE_K, cache_dir=args.data_dir, seed=0)  # the model's training run
    held_out = lj_argon_frames(40, TEMPERATURE_K, cache_dir=args.data_dir, seed=1)  # never seen in training

    atoms = held_out[0].copy()
    atoms.calc = calc
    rng = np.random.default_rng(args.seed)
    MaxwellBoltzmannDistribution(atoms, temperature_K=TEMPERATURE_K, rng=rng)
    dyn = Langevin(
        atoms, args.timestep_fs * units.fs, temperature_K=TEMPERATURE_K, friction=args.friction / units.fs,
        rng=rng, fixcm=False,
    )

    closest = {"d": np.inf, "step": -1}
    per_step_min: List[float] = []  # running minimum per sampling block
    block_min = [np.inf]
    blowup: List[str] = []

    def every_step() -> None:
        f = atoms.calc.results.get("forces")
        if (f is not None and not np.all(np.isfinite(f))) or not np.all(np.isfinite(atoms.positions)):
            blowup.append(f"non-finite forces or positions at step {dyn.nsteps}")
            raise FloatingPointError(blowup[-1])
        d = closest_approach(atoms)
        block_min[0] = min(block_min[0], d)
        if d < closest["d"]:
            closest.update(d=d, step=dyn.nsteps)
        if d < BLOWUP_DISTANCE:
            blowup.append(f"atoms {d:.3f} A apart at step {dyn.nsteps} (< {BLOWUP_DISTANCE} A)")
            raise FloatingPointError(blowup[-1])

    dyn.attach(every_step, interval=1)
    frames: List[Atoms] = []
    temps: List[float] = []
    fmax: List[float] = []
    budget_s = args.max_minutes * 60.0
    t0 = time.perf_counter()
    done = 0
    stopped = "completed"
    next_log = 0.0
    try:
        while done < args.steps:
            chunk = min(args.sample_every, args.steps - done)
            dyn.run(chunk)
            done += chunk
            snap = Atoms(numbers=atoms.numbers, positions=atoms.positions, cell=atoms.cell, pbc=atoms.pbc)
            snap.wrap()
            frames.append(snap)
            temps.append(float(atoms.get_temperature()))
            forces = atoms.get_forces()
            fmax.append(float(np.sqrt((forces**2).sum(1)).max()))
            per_step_min.append(block_min[0])
            block_min[0] = np.inf
            elapsed = time.perf_counter() - t0
            if elapsed >= next_log:
                logger.info(
                    "step %d/%d (%.1f ps): %.1f steps/s, T %.1f K, closest approach so far %.3f A, Fmax %.3f eV/A",
                    done, args.steps, done * args.timestep_fs / 1000, done / elapsed, temps[-1], closest["d"], fmax[-1],
                )
                next_log = elapsed + 60.0
            if elapsed > budget_s and done < args.steps:
                stopped = f"time budget ({args.max_minutes:g} min) spent"
                logger.warning("time budget spent after %d of %d steps", done, args.steps)
                break
    except FloatingPointError:
        stopped = "blow-up: " + blowup[-1]
        logger.error(stopped)
    except Exception as exc:  # e.g. the calculator refusing a structure: report it, keep the figures
        blowup.append(f"{type(exc).__name__} at step {dyn.nsteps}: {exc}")
        stopped = "failed: " + blowup[-1]
        logger.exception(stopped)
    wall = time.perf_counter() - t0
    steps_done = int(dyn.nsteps)

    import ase.io

    ase.io.write(os.path.join(args.work_dir, "long_md_frames.extxyz"), frames, format="extxyz")

    # ---------------------------------------------------------------- structure
    r_cut = 0.49 * float(np.min(atoms.cell.lengths()))
    n_bins = 120
    r, g_ref = rdf(reference, r_cut, n_bins=n_bins)
    _, g_sigma = rdf(noised_copies(reference, calc.noise_std, seed=0), r_cut, n_bins=n_bins)
    half = len(reference) // 2
    _, g_ref_a = rdf(reference[:half], r_cut, n_bins=n_bins)
    _, g_ref_b = rdf(reference[half:], r_cut, n_bins=n_bins)
    quarters = [list(q) for q in np.array_split(np.arange(len(frames)), 4)]
    results: Dict[str, Any] = {}
    if len(frames) >= 4:
        g_q = [rdf([frames[i] for i in q], r_cut, n_bins=n_bins)[1] for q in quarters]
        results["rdf_first_vs_last_quarter"] = rdf_difference(g_q[0], g_q[-1], r)
        results["rdf_quarters_vs_reference"] = [rdf_difference(g, g_ref, r) for g in g_q]
        results["rdf_quarters_vs_rho_sigma"] = [rdf_difference(g, g_sigma, r) for g in g_q]
        results["rdf_first_peak_quarters_A_g"] = [list(first_peak(r, g)) for g in g_q]
        results["temperature_quarters_K"] = [float(np.mean([temps[i] for i in q])) for q in quarters]
        results["closest_approach_quarters_A"] = [float(np.min([per_step_min[i] for i in q])) for q in quarters]
        np.savetxt(
            os.path.join(args.work_dir, "long_md_rdf.txt"), np.column_stack([r, g_ref, g_sigma, *g_q]),
            header="r_A g_reference g_rho_sigma g_q1 g_q2 g_q3 g_q4",
        )
    results.update(
        model=MODEL,
        model_sha256=_zoo_sha(),
        model_training=meta.get("training", {}).get("train_config", {}),
        steps_requested=args.steps,
        steps_done=steps_done,
        simulated_ps=steps_done * args.timestep_fs / 1000.0,
        timestep_fs=args.timestep_fs,
        friction_per_fs=args.friction,
        temperature_K=TEMPERATURE_K,
        stopped=stopped,
        stable=not blowup,
        wall_s=wall,
        steps_per_second=steps_done / wall if wall > 0 else float("nan"),
        closest_approach_A=float(closest["d"]),
        closest_approach_sampled_frames_A=closest_approach_of_frames(frames) if frames else float("nan"),
        reference_closest_approach_A=closest_approach_of_frames(reference),
        closest_approach_step=int(closest["step"]),
        max_force_sampled_eV_A=float(np.max(fmax)) if fmax else float("nan"),
        mean_temperature_K=float(np.mean(temps)) if temps else float("nan"),
        n_sampled_frames=len(frames),
        sample_every_steps=args.sample_every,
        rdf_r_max_A=r_cut,
        rdf_bins=n_bins,
        rdf_noise_floor_reference_halves=rdf_difference(g_ref_a, g_ref_b, r),
        rdf_first_peak_reference_A_g=list(first_peak(r, g_ref)),
        rdf_first_peak_rho_sigma_A_g=list(first_peak(r, g_sigma)),
        n_reference_frames=len(reference),
    )
    return results


def _zoo_sha() -> str:
    from ase_denoise.zoo import model_info

    return model_info(MODEL).sha256


def _machine() -> str:
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            names = [line.split(":", 1)[1].strip() for line in fh if line.startswith("model name")]
        if names:
            cpu = names[0]
    except OSError:
        pass
    return (
        f"{cpu}, {os.cpu_count()} cores (shared with other jobs), {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} torch thread(s) (OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')})"
    )


def _f(x: float, digits: int = 4) -> str:
    return f"{x:.{digits}g}"


def write_report(path: str, res: Dict[str, Any], command: str, machine: str, load_before: str) -> None:
    complete = res["steps_done"] >= res["steps_requested"]
    lines = [
        "# Long MD: `lj-argon-94K` zoo model, Langevin at 94.4 K",
        "",
        "Written by `benchmarks/long_md.py` (issue #5, item 6).",
        "",
        "```bash",
        command,
        "```",
        "",
        f"- Machine: {machine}; load average at start {load_before}.",
        f"- Model: `{res['model']}` from the zoo (sha256 `{res['model_sha256'][:16]}...`), float32, "
        "`DenoiseCalculator.from_zoo` (Verlet skin 1 A).",
        f"- Start: first frame of an independent true-LJ run (`lj_argon_frames(40, seed=1)`, never seen in training), "
        "108 atoms, periodic box 17.34 A; momenta drawn at 94.4 K (seed 0).",
        f"- Langevin, {res['timestep_fs']:g} fs step, friction {res['friction_per_fs']:g}/fs, `fixcm=False`.",
        "",
    ]
    if complete:
        lines.append(f"**Ran the full {res['steps_done']:,} steps = {res['simulated_ps'] / 1000:g} ns.**")
    else:
        lines.append(
            f"**Ran {res['steps_done']:,} of {res['steps_requested']:,} steps ({res['simulated_ps']:g} ps of "
            f"{res['steps_requested'] * res['timestep_fs'] / 1000:g} ps): {res['stopped']}.**"
        )
    lines += [
        "",
        "| figure | value |",
        "| --- | --- |",
        f"| outcome | {res['stopped']} |",
        f"| stable (finite at every step, no pair closer than {BLOWUP_DISTANCE} A) | {'yes' if res['stable'] else 'NO'} |",
        f"| closest approach over the run, every step checked (A) | {_f(res['closest_approach_A'])} "
        f"(step {res['closest_approach_step']:,}) |",
        f"| closest approach in the sampled frames (every {res['sample_every_steps']} steps) / in the "
        f"{res['n_reference_frames']} true-LJ reference frames (A) | {_f(res['closest_approach_sampled_frames_A'])} / "
        f"{_f(res['reference_closest_approach_A'])} |",
        f"| wall time (s) | {_f(res['wall_s'])} |",
        f"| steps/s (incl. the per-step closest-approach check) | {_f(res['steps_per_second'])} |",
        f"| ns/day | {_f(res['steps_per_second'] * res['timestep_fs'] * 1e-6 * 86400)} |",
        f"| mean kinetic temperature of sampled frames (K) | {_f(res['mean_temperature_K'])} |",
        f"| largest force in a sampled frame (eV/A) | {_f(res['max_force_sampled_eV_A'])} |",
        f"| sampled frames (every {res['sample_every_steps']} steps) | {res['n_sampled_frames']} |",
    ]
    if "rdf_first_vs_last_quarter" in res:
        d = res["rdf_first_vs_last_quarter"]
        floor = res["rdf_noise_floor_reference_halves"]
        n_q = res["n_sampled_frames"] // 4
        lines += [
            "",
            f"RDF up to {_f(res['rdf_r_max_A'])} A, {res['rdf_bins']} bins; quarters of about {n_q} frames each. "
            f"Reference: the model's training run, {res['n_reference_frames']} frames of true-LJ Langevin MD "
            "(`lj_argon_frames(300, seed=0)`); rho_sigma: the same frames with Gaussian noise of sigma added "
            "(what MD with sigma-smoothed forces should sample).",
            "",
            "| RDF comparison | RMS difference | max abs difference (at r, A) |",
            "| --- | --- | --- |",
            f"| **drift: first vs last quarter** | **{_f(d['rms'])}** | {_f(d['max_abs'])} ({_f(d['r_at_max_abs'], 3)}) |",
            f"| noise floor: first vs second half of the reference run ({res['n_reference_frames'] // 2} frames each) "
            f"| {_f(floor['rms'])} | {_f(floor['max_abs'])} ({_f(floor['r_at_max_abs'], 3)}) |",
        ]
        for k, (a, b) in enumerate(zip(res["rdf_quarters_vs_reference"], res["rdf_quarters_vs_rho_sigma"])):
            lines.append(
                f"| quarter {k + 1} vs reference / vs rho_sigma | {_f(a['rms'])} / {_f(b['rms'])} "
                f"| {_f(a['max_abs'])} ({_f(a['r_at_max_abs'], 3)}) / {_f(b['max_abs'])} |"
            )
        lines += [
            "",
            "| quarter | mean T (K) | closest approach (A) | first RDF peak (r A, g) |",
            "| --- | --- | --- | --- |",
        ]
        for k in range(4):
            p = res["rdf_first_peak_quarters_A_g"][k]
            lines.append(
                f"| {k + 1} | {_f(res['temperature_quarters_K'][k])} | {_f(res['closest_approach_quarters_A'][k])} "
                f"| {_f(p[0])}, {_f(p[1])} |"
            )
        pr, ps = res["rdf_first_peak_reference_A_g"], res["rdf_first_peak_rho_sigma_A_g"]
        lines.append(f"| reference | 94.4 | | {_f(pr[0])}, {_f(pr[1])} |")
        lines.append(f"| rho_sigma | | | {_f(ps[0])}, {_f(ps[1])} |")
    lines += ["", "## Notes", "", *NOTES]
    lines += [
        "",
        f"Raw figures: `{res['work_dir']}/long_md.json`; RDFs (r, reference, rho_sigma, quarters 1-4): "
        f"`{res['work_dir']}/long_md_rdf.txt`; sampled frames: `{res['work_dir']}/long_md_frames.extxyz` (not committed).",
        "",
    ]
    tmp = path + ".tmp"
    with open(tmp, "w") as fh:
        fh.write("\n".join(lines))
    os.replace(tmp, path)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=100_000, help="MD steps (default 100000 = 1 ns at 10 fs)")
    p.add_argument("--timestep-fs", type=float, default=10.0)
    p.add_argument("--friction", type=float, default=0.01, help="Langevin friction, 1/fs")
    p.add_argument("--sample-every", type=int, default=100, help="steps between sampled frames (default 100 = 1 ps)")
    p.add_argument("--max-minutes", type=float, default=25.0, help="wall-clock budget of the MD (default 25)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data-dir", default=os.path.join(REPO, "runs", "zoo", MODEL, "data"),
                   help="cache of the reference frames (default: the zoo training script's)")
    p.add_argument("--work-dir", default=os.path.join(REPO, "runs", "long_md"))
    p.add_argument("--report", default=os.path.join(REPO, "benchmarks", "long_md.md"), help="Markdown report ('' for none)")
    p.add_argument("--report-only", action="store_true",
                   help="rewrite --report from WORK_DIR/long_md.json of an earlier run; no MD")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    if args.report_only:
        with open(os.path.join(args.work_dir, "long_md.json")) as fh:
            res = json.load(fh)
        res.setdefault("work_dir", os.path.relpath(args.work_dir, REPO))
        if "reference_closest_approach_A" not in res:  # runs from before these figures existed
            import ase.io

            from ase_denoise.reference import lj_argon_frames

            frames = ase.io.read(os.path.join(args.work_dir, "long_md_frames.extxyz"), ":")
            res["closest_approach_sampled_frames_A"] = closest_approach_of_frames(frames)
            res["reference_closest_approach_A"] = closest_approach_of_frames(
                lj_argon_frames(300, TEMPERATURE_K, cache_dir=args.data_dir, seed=0)
            )
            with open(os.path.join(args.work_dir, "long_md.json"), "w") as fh:
                json.dump(res, fh, indent=1)
        command = res.get("command", "OMP_NUM_THREADS=1 .venv/bin/python benchmarks/long_md.py")
        write_report(args.report, res, command, res["machine"], res["load_average_at_start"])
        return 0
    import warnings

    warnings.filterwarnings("ignore")
    import mace  # noqa: F401  (before e3nn)

    load_before = " ".join(f"{x:.2f}" for x in os.getloadavg())
    res = run(args)
    res["machine"] = _machine()
    res["load_average_at_start"] = load_before
    res["work_dir"] = os.path.relpath(args.work_dir, REPO) if os.path.abspath(args.work_dir).startswith(REPO) else args.work_dir
    extra = list(argv if argv is not None else sys.argv[1:])
    command = " ".join(["OMP_NUM_THREADS=1 .venv/bin/python benchmarks/long_md.py", *map(shlex.quote, extra)])
    res["command"] = command
    with open(os.path.join(args.work_dir, "long_md.json"), "w") as fh:
        json.dump(res, fh, indent=1)
    if args.report:
        write_report(args.report, res, command, res["machine"], load_before)
    print(json.dumps({k: v for k, v in res.items() if not isinstance(v, (list, dict))}, indent=1))
    return 0 if res["stable"] else 1


if __name__ == "__main__":
    sys.exit(main())
