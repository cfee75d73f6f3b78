#!/usr/bin/env python
"""Long Langevin MD with the ``lj-argon-94K`` zoo model: stability and structural drift.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/long_md.py            # 1 ns: 100,000 steps of 10 fs

Starts from the first frame of an independent (held-out) true-LJ run, thermalises the momenta at
94.4 K and runs ASE Langevin MD (10 fs, friction 0.01/fs, ``fixcm=False``) with
``DenoiseCalculator.from_zoo("lj-argon-94K")`` (sha256-checked), through
``ase_denoise.md.run_langevin`` with ``interval=1``. It records:

* blow-up checks at every step (by ``run_langevin``): forces finite, the **closest approach** of any two
  atoms (periodic images included; the run stops below 2 A), the largest force and the kinetic temperature;
* one frame every ``--sample-every`` steps (1 ps by default); the run is cut into four quarters and the
  **RDF of the first and last quarter** are compared (``ase_denoise.analysis.rdf_difference``), and each
  quarter's RDF against the reference RDF of the true-LJ run (``ase_denoise.data.reference.lj_argon_frames``,
  the model's training run) and against the RDF of the noised reference (``rho_sigma``, what MD with the
  sigma-smoothed forces samples, docs/design.md, "The estimator");
* the noise floor: the RDF difference between the first and second half of the reference run
  (two independent samples of the same structure), to judge the drift figures against;
* steps/s.

``--max-minutes`` bounds the wall clock (default 25): when it is spent the run stops, the figures are
computed on the steps done, and the report says so. Results go to ``--work-dir`` (JSON, sampled frames)
and the Markdown report to ``--report`` (default ``benchmarks/long_md.md``). ``--quick`` is a smoke test
of the script (300 steps, short-sampled reference frames; report in the work directory).
"""

from __future__ import annotations

import os

if __name__ == "__main__":  # a benchmark process: one thread (set before numpy and torch load; never on import)
    os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import shlex  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from typing import Any, Dict, List  # noqa: E402

import numpy as np  # noqa: E402

if os.path.dirname(os.path.abspath(__file__)) not in sys.path:  # imported from elsewhere (run as a script: it is)
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402  (machine description, one-thread setting)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
logger = logging.getLogger("long_md")

MODEL = "lj-argon-94K"
TEMPERATURE_K = 94.4
BLOWUP_DISTANCE = 2.0  # Angstrom: LJ argon (sigma 3.40 A) at 94 K never comes this close (~3.0 A)
CLOSEST_CUTOFF = 4.5  # Angstrom: neighbour-list cutoff of the closest-approach figures (all pairs are > 2.5 A)
N_REFERENCE, N_HELD_OUT = 300, 40  # frames of the reference (training) run and of the held-out run
#: --quick: a smoke test of the script (short-sampled reference frames, a few hundred steps)
QUICK = dict(steps=300, sample_every=10, n_reference=20, n_held_out=2,
             sampling=dict(stride=20, equilibration_steps=200, melt_steps=100))


NOTES = [
    "- The closest approach is measured at every step (`ase_denoise.md.run_langevin` with `interval=1`;",
    "  matscipy neighbour list, periodic images included); the sampled-frame figure compares with the",
    "  reference frames, both 1 ps apart (1000 MD frames against 300 reference frames: more frames give a",
    "  lower minimum). LJ sigma is 3.40 A.",
    "- The first attempt at this run (before the fix below) stopped after more than 560 ps: the calculator refused",
    "  the structure because an atom had diffused more than one box length out of the periodic cell (ASE's",
    "  integrators never wrap positions). Since then `DenoiseCalculator` moves such atoms back by whole lattice",
    "  vectors (`ase_denoise.inference.structure_frame`; a lattice translation changes no force, tested",
    "  in `tests/test_properties.py`), and frames in *training data* with atoms far outside the cell are",
    "  still refused with a message.",
    "- The drift figure compares two quarters of one run (about 250 frames each, 1 ps apart); the noise floor",
    "  compares the two halves (150 frames each, 1 ps apart) of the true-LJ reference run, so the floor for",
    "  250-frame RDFs is somewhat lower. A drift at or below the floor means no structural drift is resolved.",
]


def closest_approach_of_frames(frames) -> float:
    """Smallest interatomic distance (Angstrom, periodic images included) over ``frames``."""
    from ase_denoise.md import min_pair_distance

    return float(min(min_pair_distance(a, cutoff=CLOSEST_CUTOFF) for a in frames))


def reference_frames(args: argparse.Namespace):
    """The model's training run (seed 0) and an independent, held-out run (seed 1) of true-LJ MD."""
    from ase_denoise.data.reference import lj_argon_frames

    n_ref, n_held = (QUICK["n_reference"], QUICK["n_held_out"]) if args.quick else (N_REFERENCE, N_HELD_OUT)
    kw = QUICK["sampling"] if args.quick else {}
    reference = lj_argon_frames(n_ref, TEMPERATURE_K, cache_dir=args.data_dir, seed=0, **kw)
    held_out = lj_argon_frames(n_held, TEMPERATURE_K, cache_dir=args.data_dir, seed=1, **kw)  # never seen in training
    return reference, held_out


def run(args: argparse.Namespace) -> Dict[str, Any]:
    from ase import Atoms

    from ase_denoise import DenoiseCalculator
    from ase_denoise.analysis import first_peak, rdf, rdf_difference
    from ase_denoise.md import max_force, min_pair_distance, run_langevin
    from ase_denoise.training.sampler import noised_copies

    os.makedirs(args.work_dir, exist_ok=True)

    calc = DenoiseCalculator.from_zoo(MODEL)
    meta = calc.model.metadata
    # a one-level model's MD samples rho_sigma; a ladder's corrected forces target the unsmoothed density
    levels = calc.noise_levels
    sigma = levels[0] if len(levels) == 1 else 0.0
    logger.info("model %s: T=%g K, levels %s A (%s), dtype %s", MODEL, calc.temperature_K, levels,
                "one level" if sigma else "corrected to sigma -> 0", calc.dtype)
    reference, held_out = reference_frames(args)

    atoms = held_out[0].copy()
    atoms.calc = calc

    # run_langevin checks every step (interval=1): forces finite, closest approach (its run minimum, and a
    # clean stop below BLOWUP_DISTANCE). The observer keeps every sample_every-th frame and, per block of
    # sample_every steps, the closest approach (for the per-quarter figures; run_langevin keeps the run's only).
    every = args.sample_every
    frames: List[Atoms] = []
    temps: List[float] = []
    fmax: List[float] = []
    per_block_min: List[float] = []
    seen = {"step": 0, "block_min": np.inf, "closest": np.inf, "closest_step": -1}
    budget_s = args.max_minutes * 60.0
    t0 = time.perf_counter()
    next_log = [0.0]

    def observe(atoms: Atoms, step: int) -> None:
        d = min_pair_distance(atoms, cutoff=CLOSEST_CUTOFF)
        seen["step"] = step
        seen["block_min"] = min(seen["block_min"], d)
        if d < seen["closest"]:
            seen.update(closest=d, closest_step=step)
        if step == 0 or step % every:
            return
        snap = Atoms(numbers=atoms.numbers, positions=atoms.positions, cell=atoms.cell, pbc=atoms.pbc)
        snap.wrap()
        frames.append(snap)
        temps.append(float(atoms.get_temperature()))
        fmax.append(max_force(atoms.get_forces()))
        per_block_min.append(seen["block_min"])
        seen["block_min"] = np.inf
        elapsed = time.perf_counter() - t0
        if elapsed >= next_log[0]:
            logger.info(
                "step %d/%d (%.1f ps): %.1f steps/s, T %.1f K, closest approach so far %.3f A, Fmax %.3f eV/A",
                step, args.steps, step * args.timestep_fs / 1000, step / elapsed, temps[-1], seen["closest"], fmax[-1],
            )
            next_log[0] = elapsed + 60.0

    budget_spent = []

    def out_of_time(atoms: Atoms, step: int):
        """Stop at a sampling boundary once the wall-clock budget is spent."""
        if step > 0 and step % every == 0 and step < args.steps and time.perf_counter() - t0 > budget_s:
            budget_spent.append(step)
            logger.warning("time budget spent after %d of %d steps", step, args.steps)
            return f"time budget ({args.max_minutes:g} min) spent"
        return None

    md = None
    try:
        md = run_langevin(
            atoms, temperature_K=TEMPERATURE_K, steps=args.steps, timestep_fs=args.timestep_fs,
            friction_per_fs=args.friction, interval=1, seed=args.seed, observers=[observe], stop=out_of_time,
            min_distance_stop=BLOWUP_DISTANCE,
        )
    except RuntimeError as exc:  # run_langevin raises on a non-finite force
        stopped = f"blow-up: {exc}"
        logger.error(stopped)
    except Exception as exc:  # e.g. the calculator refusing a structure: report it, keep the figures
        stopped = f"failed: {type(exc).__name__} at step {seen['step']}: {exc}"
        logger.exception(stopped)
    if md is not None:
        steps_done, wall = md["steps"], md["wall_s"]
        closest, closest_step = md["min_distance"], md["min_distance_step"]
        if md["stopped"] is None:
            stopped = "completed"
        elif budget_spent:
            stopped = md["stopped"]
        else:  # min_distance_stop: two atoms came closer than BLOWUP_DISTANCE
            stopped = "blow-up: " + md["stopped"]
            logger.error(stopped)
    else:  # run_langevin raised, so its figures are lost: the observer's (same steps) stand in
        steps_done, wall = seen["step"], time.perf_counter() - t0
        closest, closest_step = seen["closest"], seen["closest_step"]
    stable = stopped == "completed" or bool(budget_spent)

    import ase.io

    ase.io.write(os.path.join(args.work_dir, "long_md_frames.extxyz"), frames, format="extxyz")

    # ---------------------------------------------------------------- structure
    r_cut = 0.49 * float(np.min(atoms.cell.lengths()))
    n_bins = 120
    r, g_ref = rdf(reference, r_cut, n_bins=n_bins)
    g_sigma = rdf(noised_copies(reference, sigma, seed=0), r_cut, n_bins=n_bins)[1] if sigma else g_ref
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
        results["closest_approach_quarters_A"] = [float(np.min([per_block_min[i] for i in q])) for q in quarters]
        np.savetxt(
            os.path.join(args.work_dir, "long_md_rdf.txt"), np.column_stack([r, g_ref, g_sigma, *g_q]),
            header="r_A g_reference g_rho_sigma g_q1 g_q2 g_q3 g_q4",
        )
    results.update(
        model=MODEL,
        model_sha256=_zoo_sha(),
        model_training=meta.get("training", {}).get("train_config", {}),
        noise_levels_A=list(levels),
        rho_sigma_A=sigma,
        steps_requested=args.steps,
        steps_done=int(steps_done),
        simulated_ps=steps_done * args.timestep_fs / 1000.0,
        timestep_fs=args.timestep_fs,
        friction_per_fs=args.friction,
        temperature_K=TEMPERATURE_K,
        stopped=stopped,
        stable=stable,
        wall_s=wall,
        steps_per_second=steps_done / wall if wall > 0 else float("nan"),
        closest_approach_A=float(closest),
        closest_approach_sampled_frames_A=closest_approach_of_frames(frames) if frames else float("nan"),
        reference_closest_approach_A=closest_approach_of_frames(reference),
        closest_approach_step=int(closest_step),
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


def _f(x: float, digits: int = 4) -> str:
    return f"{x:.{digits}g}"


def write_report(path: str, res: Dict[str, Any], command: str, machine: str, load_before: str) -> None:
    complete = res["steps_done"] >= res["steps_requested"]
    lines = [
        "# Long MD: `lj-argon-94K` zoo model, Langevin at 94.4 K",
        "",
        "Written by `benchmarks/long_md.py`.",
        "",
        "```bash",
        command,
        "```",
        "",
        f"- Machine: {machine}; load average at start {load_before}.",
        f"- Model: `{res['model']}` from the zoo (sha256 `{res['model_sha256'][:16]}...`), noise levels "
        f"{', '.join(f'{x:g}' for x in res.get('noise_levels_A', []))} A"
        f"{' corrected to sigma -> 0' if len(res.get('noise_levels_A', [])) > 1 else ''}, float32, "
        "`DenoiseCalculator.from_zoo` (Verlet skin 1 A).",
        "- Start: first frame of an independent true-LJ run (`lj_argon_frames(40, seed=1)`, never seen in training), "
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
            "(what MD with sigma-smoothed forces should sample)"
            + (f", here sigma = {res['rho_sigma_A']:g} A." if res.get("rho_sigma_A") else
               "; this model's forces are corrected to sigma -> 0, so rho_sigma is the reference itself."),
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
    p.add_argument("--steps", type=int, default=None, help="MD steps (default 100000 = 1 ns at 10 fs)")
    p.add_argument("--timestep-fs", type=float, default=10.0)
    p.add_argument("--friction", type=float, default=0.01, help="Langevin friction, 1/fs")
    p.add_argument("--sample-every", type=int, default=None, help="steps between sampled frames (default 100 = 1 ps)")
    p.add_argument("--max-minutes", type=float, default=25.0, help="wall-clock budget of the MD (default 25)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data-dir", default=os.path.join(REPO, "runs", "zoo", MODEL, "data"),
                   help="cache of the reference frames (default: the zoo training script's)")
    p.add_argument("--work-dir", default=None, help="default runs/long_md (--quick: runs/long_md_quick)")
    p.add_argument("--report", default=None,
                   help="Markdown report ('' for none; default benchmarks/long_md.md, --quick: WORK_DIR/long_md.md)")
    p.add_argument("--report-only", action="store_true",
                   help="rewrite --report from WORK_DIR/long_md.json of an earlier run; no MD")
    p.add_argument("--quick", action="store_true",
                   help=f"smoke test: {QUICK['steps']} steps, a frame every {QUICK['sample_every']}, "
                        f"{QUICK['n_reference']} short-sampled reference frames")
    args = p.parse_args(argv)
    if args.steps is None:
        args.steps = QUICK["steps"] if args.quick else 100_000
    if args.sample_every is None:
        args.sample_every = QUICK["sample_every"] if args.quick else 100
    if args.work_dir is None:
        args.work_dir = os.path.join(REPO, "runs", "long_md_quick" if args.quick else "long_md")
    if args.report is None:
        args.report = os.path.join(args.work_dir, "long_md.md") if args.quick else os.path.join(REPO, "benchmarks", "long_md.md")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    if args.report_only:
        with open(os.path.join(args.work_dir, "long_md.json")) as fh:
            res = json.load(fh)
        res.setdefault("work_dir", os.path.relpath(args.work_dir, REPO))
        if "reference_closest_approach_A" not in res:  # runs from before these figures existed
            import ase.io

            frames = ase.io.read(os.path.join(args.work_dir, "long_md_frames.extxyz"), ":")
            res["closest_approach_sampled_frames_A"] = closest_approach_of_frames(frames)
            res["reference_closest_approach_A"] = closest_approach_of_frames(reference_frames(args)[0])
            with open(os.path.join(args.work_dir, "long_md.json"), "w") as fh:
                json.dump(res, fh, indent=1)
        command = res.get("command", "OMP_NUM_THREADS=1 .venv/bin/python benchmarks/long_md.py")
        write_report(args.report, res, command, res["machine"], res["load_average_at_start"])
        return 0
    import warnings

    warnings.filterwarnings("ignore")
    common.single_thread(int(os.environ.get("OMP_NUM_THREADS", "1")))
    load_before = common.load_average()
    res = run(args)
    res["machine"] = common.machine() + "; cores shared with other jobs"
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
