#!/usr/bin/env python
"""Speed of the ase_denoise calculator against MACE's own energy model, side by side.

Same process, same inputs, same hyperparameters: a periodic LJ-like argon liquid (fcc argon,
a = 5.26 Angstrom, rattled by 0.2 Angstrom, repeated to n atoms). For each dtype and size it times

* one force call through the ASE calculator (``atoms.get_forces()``, positions perturbed before every
  call so no cache can help) for MACE's ``MACECalculator`` (energy model, forces by autograd; it also
  computes the stress, as it always does) and for ``DenoiseCalculator`` with the ``edge`` and
  ``vector`` heads (forces = kT * eps_hat / sigma, no autograd);
* the model forward alone (and, for ours, the calculator's other steps: structure checks, frame
  conversion, neighbour list + collate), hence ``overhead_fraction = (calculator - forward) / calculator``;
* one training step on the same batch of 4 frames: ours = MSE on the vector output + backward + AdamW;
  MACE = energy + forces loss, forces by autograd with ``create_graph=True`` (``training=True``, as
  MACE's trainer does) + backward + AdamW. Batches are built beforehand for both; our per-step
  collate (we redraw noise, so neighbour lists are rebuilt every step) is reported on its own;
* Langevin MD at 2 fs for the largest size: steps/s and ns/day;
* peak memory (resident set) in fresh subprocesses (one per dtype and model; one for all in
  ``--quick``): ``VmHWM`` from ``/proc/self/status``, reset through ``/proc/self/clear_refs`` before
  each phase, minus the resident set at the start of the phase, after a warm-up call and step.
  glibc's mmap threshold is fixed (``MALLOC_MMAP_THRESHOLD_``) so freed tensors go back to the OS
  and a later phase cannot hide in memory kept from an earlier one. (``ru_maxrss`` is useless in
  a subprocess: Linux carries the parent's peak over fork+exec.)

The report opens with a summary: the ratio to MACE's energy+forces of each head's force call (edge, vector,
energy; and the vector head as a three-level ladder, sigma an input, and as the expansion head, each with its
default sigma -> 0 forces) and training step (edge, vector, energy) at every size, and with ``--zoo`` the default
forces of every zoo model (``zoo_speed.py``'s table): the figures the README's speed table quotes.

Every timing is the median of several repeats after warm-up, with one torch thread (the harness,
``interleaved``, and the builders of the system and of the three models are in ``common.py``).
The last line printed is machine-readable::

    inference_ratio=<ours_edge/MACE calculator, largest size> training_ratio=<ours_edge/MACE step,
    largest trained size> overhead_fraction=<ours_edge, largest size>

(float32 numbers when float32 was measured, else float64).

Usage::

    .venv/bin/python benchmarks/speed.py --quick
    .venv/bin/python benchmarks/speed.py --zoo --no-memory --dtype float32 --output benchmarks/speed_summary.md
    .venv/bin/python benchmarks/speed.py --output benchmarks/full.md
"""

from __future__ import annotations

import argparse
import copy
import gc
import json
import logging
import os
import subprocess
import sys
import warnings
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np
import torch
from ase import units
from ase.md.langevin import Langevin
from ase.md.velocitydistribution import MaxwellBoltzmannDistribution

if os.path.dirname(os.path.abspath(__file__)) not in sys.path:  # imported from elsewhere (run as a script: it is)
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402  (builders, timing harness, machine description)
from common import (  # noqa: E402
    ARGON_NOISE_STD as NOISE_STD,
    ARGON_TEMPERATURE_K as TEMPERATURE_K,
    LATTICE_A as LATTICE,
    RATTLE_A as RATTLE,
    adaptive_repeats,
    argon,
    interleaved,
    now,
    time_once,
)
from ase_denoise.data import check_atoms, to_frame
from ase_denoise.data.graphs import collate  # noqa: E402  (these do not import mace)
from ase_denoise.data.neighbours import average_num_neighbors  # noqa: E402

TIMESTEP_FS = 2.0
BATCH_FRAMES = 4
MODELS = ("mace", "edge", "vector")  # timed in every section (calls, steps, MD, memory)
LABEL = {"mace": "MACE (E, F by autograd)", "edge": "ours, edge head", "vector": "ours, vector head"}
#: timed in the force calls of the summary table only: the energy head (forces by autograd) and the two
#: ladders of three levels (docs/noise-ladder.md): sigma as an input (default forces: three levels
#: extrapolated) and the expansion head (default forces: the expansion's sigma -> 0 term, one pass)
SUMMARY_MODELS = ("energy", "ladder", "expansion")
SUMMARY_LABEL = {"edge": "edge head, one level", "vector": "vector head, one level",
                 "energy": "energy head, one level (forces by autograd)",
                 "ladder": "vector head, 3-level ladder, sigma an input (default: 3 levels extrapolated)",
                 "expansion": "vector head, 3-level expansion head (default: sigma -> 0 term, one pass)"}
LADDER_LEVELS = (0.025, 0.04, 0.06)  # Angstrom, the LJ zoo model's
TRAIN_HEADS = ("edge", "vector", "energy")


# --------------------------------------------------------------------------------------------
# inputs


def hyperparameters(args) -> Dict:
    """ModelConfig fields from the command line (the same for all three models)."""
    return dict(r_max=args.r_max, num_channels=args.channels, max_L=args.max_L, max_ell=args.max_ell,
                correlation=args.correlation, num_interactions=args.num_interactions)


def build_models(args, dtype: torch.dtype, avg_nn: float, summary: bool = False) -> Dict[str, torch.nn.Module]:
    """MACE and our edge and vector heads; with ``summary`` also :data:`SUMMARY_MODELS`."""
    from ase_denoise.config import PhysicsConfig
    from ase_denoise.model import build_model

    heads = ("edge", "vector", "energy") if summary else ("edge", "vector")
    models = common.benchmark_models(avg_nn, dtype, heads=heads, seed=0, **hyperparameters(args))
    if summary:
        ladder = PhysicsConfig(common.ARGON_TEMPERATURE_K, LADDER_LEVELS, (True,) * 3)
        for name, option in (("ladder", dict(noise_embedding=2)), ("expansion", dict(noise_expansion=2))):
            config = common.argon_config("vector", avg_nn, **{**hyperparameters(args), **option})
            models[name] = build_model(config, ladder, dtype=dtype, seed=0)
    return models


def make_calculators(models: Dict[str, torch.nn.Module], dtype: torch.dtype) -> Dict[str, object]:
    """Our calculators first; MACECalculator last (it extends ASE's class-level implemented_properties)."""
    from ase_denoise.calculator import DenoiseCalculator

    calcs = {head: DenoiseCalculator(copy.deepcopy(models[head])) for head in ("edge", "vector", *SUMMARY_MODELS)
             if head in models}
    # the edge head again with a neighbour list rebuilt on every call (no Verlet reuse)
    calcs["edge_noskin"] = DenoiseCalculator(copy.deepcopy(models["edge"]), skin=0.0)
    # a copy: MACECalculator freezes the parameters (requires_grad=False) of the module it gets
    calcs["mace"] = common.mace_calculator(copy.deepcopy(models["mace"]), dtype)
    return calcs


# --------------------------------------------------------------------------------------------
# the measurements


def bench_inference(models, calcs, n: int, dtype: torch.dtype, repeats: int, budget_s: float) -> Dict:
    base = argon(n, seed=1)
    rng = np.random.default_rng(2)
    names = [k for k in MODELS + ("edge_noskin",) + SUMMARY_MODELS if k in calcs]
    systems = {k: base.copy() for k in names}
    for k in names:
        systems[k].calc = calcs[k]

    def perturb():  # same new positions for every calculator, before each round of calls
        new = base.positions + rng.normal(0.0, 0.01, size=base.positions.shape)
        for a in systems.values():
            a.positions = new

    # one round = perturb (untimed), then each calculator once: every call sees changed positions
    fns: Dict[str, Callable[[], None]] = {k: systems[k].get_forces for k in names}

    # our calculator, step by step (what DenoiseCalculator.calculate does), on the same positions
    extra: Dict[str, Callable[[], None]] = {}
    n_edges = {}
    for head in ("edge", "vector"):
        calc = calcs[head]
        model = calc.model
        cfg = model.config
        atoms = systems[head]
        frame = to_frame(atoms, cfg.atomic_numbers)
        data = collate([frame.positions], [frame], 1, cfg.r_max, dtype)
        n_edges[head] = int(data["edge_index"].shape[1])
        verlet = copy.deepcopy(getattr(calc, "neighbours", None))  # the calculator's Verlet list, if any
        if verlet is not None:
            collate([frame.positions], [frame], 1, cfg.r_max, dtype, neighbour_lists=[verlet])  # build it
            extra[f"{head}.collate_reuse"] = lambda frame=frame, cfg=cfg, verlet=verlet: collate(
                [frame.positions], [frame], 1, cfg.r_max, dtype, neighbour_lists=[verlet])

        def fwd(model=model, data=data):
            with torch.no_grad():
                model.forces(data).to("cpu", torch.float64).numpy()

        extra.update({
            f"{head}.forward": fwd,
            # the calculator's structure checks (structure_frame = these checks + to_frame)
            f"{head}.check": lambda atoms=atoms, model=model: check_atoms(
                atoms, atomic_numbers=model.config.atomic_numbers, pbc=model.physics.pbc, r_max=model.config.r_max,
                far_atoms_ok=True),
            f"{head}.to_frame": lambda atoms=atoms, cfg=cfg: to_frame(atoms, cfg.atomic_numbers),
            f"{head}.collate": lambda frame=frame, cfg=cfg: collate([frame.positions], [frame], 1, cfg.r_max, dtype),
        })

    # MACE: its graph construction and its model call (with stress, as its calculator does; and E+F only)
    mcalc = calcs["mace"]
    mmodel = mcalc.models[0]
    batch = mcalc._atoms_to_batch(systems["mace"])

    def mace_fwd(stress):
        def fn():
            b = batch.clone().to_dict()
            out = mmodel(b, compute_stress=stress, training=False)
            out["forces"].detach().numpy()
        return fn

    def mace_energy_only():
        b = batch.clone().to_dict()
        with torch.no_grad():
            mmodel(b, compute_force=False, training=False)["energy"].numpy()

    extra.update({
        "mace.forward_e": mace_energy_only,
        "mace.batch": lambda: mcalc._atoms_to_batch(systems["mace"]),
        "mace.forward_stress": mace_fwd(True),
        "mace.forward_ef": mace_fwd(False),
    })
    fns.update(extra)

    t0 = now()
    perturb()
    for fn in fns.values():
        fn()
    probe = now() - t0
    reps = adaptive_repeats(probe, budget_s, 3, repeats)
    t = interleaved(fns, reps, warmup=1, before_round=perturb)
    calc = {k: t[k] for k in names}
    steps = {k: v for k, v in t.items() if k not in names}
    steps.update({f"{h}.n_edges": v for h, v in n_edges.items()})
    return {"calc": calc, "steps": steps, "repeats": reps}


def bench_training(models, n: int, dtype: torch.dtype, repeats: int, budget_s: float) -> Dict:
    frames = [argon(n, seed=10 + i) for i in range(BATCH_FRAMES)]
    rng = np.random.default_rng(3)
    fns = {}
    extra = {}
    for head in [h for h in TRAIN_HEADS if h in models]:
        model = copy.deepcopy(models[head]).train()
        cfg = model.config
        fns[head], noisy, fr = common.denoiser_train_step(model, frames, dtype, NOISE_STD, rng)
        extra[f"{head}.collate4"] = lambda noisy=noisy, fr=fr, cfg=cfg: collate(noisy, fr, 1, cfg.r_max, dtype)

    model = copy.deepcopy(models["mace"]).train()
    for p in model.parameters():
        p.requires_grad_(True)
    r_max = float(model.r_max)
    batch = common.mace_batch(frames, r_max, dtype)
    n_atoms = torch.tensor([len(a) for a in frames], dtype=dtype)
    e_ref = torch.as_tensor(rng.normal(0, 1, BATCH_FRAMES), dtype=dtype)
    f_ref = torch.as_tensor(rng.normal(0, 0.1, (sum(len(a) for a in frames), 3)), dtype=dtype)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)

    def mace_step():
        b = dict(batch)
        b["positions"] = batch["positions"].clone()  # MACE sets requires_grad on positions
        out = model(b, training=True, compute_force=True)  # forces by autograd, create_graph=True
        loss = torch.mean(((out["energy"] - e_ref) / n_atoms) ** 2) + 10.0 * torch.mean((out["forces"] - f_ref) ** 2)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    fns = {"mace": mace_step, **fns}
    t0 = now()
    for fn in fns.values():
        fn()
    reps = adaptive_repeats(now() - t0, budget_s, 3, repeats)
    out = interleaved(fns, reps, warmup=1)
    out.update(interleaved(extra, reps, warmup=0))
    out["mace.batch4"] = min(time_once(lambda: common.mace_batch(frames, r_max, dtype)) for _ in range(reps))
    return {"step": out, "repeats": reps}


def bench_md(calcs, n: int, steps: int) -> Dict[str, float]:
    """Steps/s of bare ASE Langevin steps with each calculator, after one warm-up step. (Not
    ``ase_denoise.md.run_langevin``: its per-interval observations would be timed too.)"""
    out = {}
    for k in MODELS:
        atoms = argon(n, seed=5)
        atoms.calc = calcs[k]
        MaxwellBoltzmannDistribution(atoms, temperature_K=TEMPERATURE_K, rng=np.random.default_rng(0))
        dyn = Langevin(atoms, TIMESTEP_FS * units.fs, temperature_K=TEMPERATURE_K, friction=0.01 / units.fs,
                       rng=np.random.default_rng(1))
        dyn.run(1)  # warm-up (first force call)
        t = now()
        dyn.run(steps)
        sps = steps / (now() - t)
        out[k] = sps
    return out


# --------------------------------------------------------------------------------------------
# memory (fresh subprocesses)


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return -1


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def memory_worker(spec: Dict) -> Dict:
    """Peak resident-set growth (MB) of n-atom inference calls and of a 4-frame training step.

    Each model is warmed up first (one call and one training step at the smallest size: lazy
    initialisation, e3nn/TorchScript caches), then every phase is measured as the growth of the
    high-water mark over the resident set at its start.
    """
    args = argparse.Namespace(**spec["args"])
    results: Dict = {}
    peak = _status_kb("VmHWM")
    for dname in spec["dtypes"]:
        dtype = getattr(torch, dname)
        models = build_models(args, dtype, spec["avg_nn"])
        calcs = make_calculators(models, dtype)
        gc.collect()
        gc.freeze()  # the models' many Python objects: later gc.collect() calls skip them (fast)
        for k in spec["models"]:
            warm = argon(spec["sizes"][0], seed=1)
            warm.calc = calcs[k]
            warm.get_forces()
            if spec["train_sizes"]:
                _one_train_step(models, k, spec["train_sizes"][0], dtype)
            for n in spec["sizes"]:
                atoms = argon(n, seed=1)
                atoms.calc = calcs[k]
                gc.collect()
                peak = max(peak, _status_kb("VmHWM"))
                can_reset = _reset_peak()
                rss0 = _status_kb("VmRSS")
                for i in range(2):
                    atoms.positions = atoms.positions + 0.01
                    atoms.get_forces()
                hwm = _status_kb("VmHWM")
                infer = (hwm - rss0) / 1024
                train = None
                if n in spec["train_sizes"]:
                    gc.collect()
                    peak = max(peak, _status_kb("VmHWM"))
                    _reset_peak()
                    rss0 = _status_kb("VmRSS")
                    _one_train_step(models, k, n, dtype)
                    hwm = _status_kb("VmHWM")
                    train = (hwm - rss0) / 1024
                peak = max(peak, hwm)
                results[f"{dname}:{k}:{n}"] = {"infer_mb": infer, "train_mb": train, "reset": can_reset}
        del models, calcs
        gc.unfreeze()
        gc.collect()
    # ru_maxrss is no use here: after fork+exec Linux carries the parent's peak into the child's
    results["peak_mb"] = max(peak, _status_kb("VmHWM")) / 1024
    return results


def _one_train_step(models, k: str, n: int, dtype: torch.dtype) -> None:
    """One training step of one model (forward, loss, backward, AdamW step; AdamW's state is tiny)."""
    frames = [argon(n, seed=10 + i) for i in range(BATCH_FRAMES)]
    rng = np.random.default_rng(3)
    model = copy.deepcopy(models[k]).train()
    for p in model.parameters():
        p.requires_grad_(True)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    if k == "mace":
        batch = common.mace_batch(frames, float(model.r_max), dtype)
        for _ in range(1):
            b = dict(batch)
            b["positions"] = batch["positions"].clone()
            out = model(b, training=True, compute_force=True)
            loss = torch.mean(out["energy"] ** 2) + torch.mean(out["forces"] ** 2)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    else:
        cfg = model.config
        fr = [to_frame(a, cfg.atomic_numbers) for a in frames]
        noise = [rng.normal(0.0, NOISE_STD, size=f.positions.shape) for f in fr]
        for _ in range(1):
            data = collate([f.positions + e for f, e in zip(fr, noise)], fr, 1, cfg.r_max, dtype)
            target = torch.as_tensor(np.concatenate([-e / NOISE_STD for e in noise]), dtype=dtype)
            loss = torch.mean((model(data) - target) ** 2)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    del model, opt


def run_memory(args, dtypes: Sequence[str], avg_nn: float, sizes, train_sizes, groups) -> Dict:
    """Run the memory worker in fresh subprocesses, one per group of (dtypes, models)."""
    results: Dict = {}
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536", MALLOC_TRIM_THRESHOLD_="0",
               OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    for g_dtypes, g_models in groups:
        spec = {"args": vars(args), "dtypes": list(g_dtypes), "avg_nn": avg_nn, "models": list(g_models),
                "sizes": list(sizes), "train_sizes": list(train_sizes)}
        proc = subprocess.run([sys.executable, os.path.abspath(__file__), "--memory-worker", json.dumps(spec)],
                              capture_output=True, text=True, env=env)
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("MEMORY ")]
        if proc.returncode != 0 or not lines:
            print(f"memory subprocess failed for {g_dtypes} {g_models}:\n{proc.stderr[-2000:]}", file=sys.stderr)
            continue
        res = json.loads(lines[-1][len("MEMORY "):])
        for key, val in res.items():
            if key.count(":") == 2:
                d, rest = key.split(":", 1)
                results.setdefault(d, {})[rest] = val
        results.setdefault("process", {})[f"{'+'.join(g_dtypes)} {'+'.join(g_models)}"] = res["peak_mb"]
        print(f"# memory {g_dtypes} {g_models} done", file=sys.stderr, flush=True)
    return results


# --------------------------------------------------------------------------------------------
# report


def fmt_ms(s: Optional[float]) -> str:
    if s is None:
        return "-"
    ms = s * 1e3
    return f"{ms:.0f}" if ms >= 100 else f"{ms:.1f}" if ms >= 10 else f"{ms:.2f}"


def fmt(x: Optional[float], d: int = 2) -> str:
    return "-" if x is None else f"{x:.{d}f}"


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="n in {64, 256}, fewer repeats (< 1 min)")
    p.add_argument("--sizes", type=int, nargs="+", help="atom counts (multiples of 4); default 64 512 4096")
    p.add_argument("--dtype", choices=("float32", "float64", "both"), default="both")
    p.add_argument("--channels", type=int, default=16)
    p.add_argument("--max-ell", dest="max_ell", type=int, default=2)
    p.add_argument("--max-L", dest="max_L", type=int, default=1)
    p.add_argument("--correlation", type=int, default=2)
    p.add_argument("--num-interactions", dest="num_interactions", type=int, default=2)
    p.add_argument("--r-max", dest="r_max", type=float, default=5.0)
    p.add_argument("--repeats", type=int, default=None, help="max repeats per timing (default 15; quick 11)")
    p.add_argument("--budget", type=float, default=None,
                   help="seconds per timing block; fewer repeats (min 3) when calls are slow")
    p.add_argument("--train-max-atoms", dest="train_max_atoms", type=int, default=None,
                   help="skip training steps with more atoms in the 4-frame batch (default 2048, i.e. 512 "
                        "atoms per frame: 4 x 4096 atoms would take the full run past 10 min; 0: no limit)")
    p.add_argument("--md-steps", dest="md_steps", type=int, default=None)
    p.add_argument("--no-memory", dest="memory", action="store_false")
    p.add_argument("--zoo", action="store_true", help="also time the default forces of every zoo model against MACE "
                   "with its hyperparameters (benchmarks/zoo_speed.py's table, in the summary)")
    p.add_argument("--output", help="also write the markdown report to this file")
    p.add_argument("--memory-worker", help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    # process settings: here, not at import (importing this module changes nothing global)
    common.single_thread(1, interop=True)
    warnings.simplefilter("ignore")  # TorchScript notices of e3nn/mace blocks at every model build
    logging.disable(logging.WARNING)
    common.mace_api()  # mace's import-time notice goes to stderr: stdout is the report

    if args.memory_worker:
        spec = json.loads(args.memory_worker)
        print("MEMORY " + json.dumps(memory_worker(spec)), flush=True)
        return 0

    t_start = now()
    sizes = args.sizes or ([64, 256] if args.quick else [64, 512, 4096])
    sizes = sorted(sizes)
    repeats = args.repeats or (11 if args.quick else 15)
    budget = args.budget or (1.8 if args.quick else 40.0)
    md_steps = args.md_steps or (10 if args.quick else 8)
    dtypes = ["float32", "float64"] if args.dtype == "both" else [args.dtype]
    train_max = 2048 if args.train_max_atoms is None else args.train_max_atoms
    train_sizes = [n for n in sizes if train_max <= 0 or BATCH_FRAMES * n <= train_max]
    if not train_sizes:
        train_sizes = [sizes[0]]

    probe = argon(sizes[0], seed=1)
    avg_nn = average_num_neighbors([to_frame(probe, [18])], args.r_max)

    results: Dict[str, Dict] = {}
    for dname in dtypes:
        dtype = getattr(torch, dname)
        models = build_models(args, dtype, avg_nn, summary=True)
        calcs = make_calculators(models, dtype)
        r = results[dname] = {"infer": {}, "train": {}, "md": None, "memory": {}}
        for n in sizes:
            r["infer"][n] = bench_inference(models, calcs, n, dtype, repeats, budget)
            print(f"# {dname} n={n} inference done ({now() - t_start:.0f} s)", file=sys.stderr, flush=True)
            if n in train_sizes:
                r["train"][n] = bench_training(models, n, dtype, repeats, budget)
                print(f"# {dname} n={n} training done ({now() - t_start:.0f} s)", file=sys.stderr, flush=True)
        r["md"] = bench_md(calcs, sizes[-1], md_steps)
        print(f"# {dname} MD done ({now() - t_start:.0f} s)", file=sys.stderr, flush=True)
        r["params"] = {k: sum(p.numel() for p in m.parameters()) for k, m in models.items()}
        r["mace_irreps"] = [str(i.target_irreps) for i in models["mace"].interactions]
        r["our_irreps"] = [str(i.target_irreps) for i in models["vector"].interactions]
        del calcs, models
        gc.collect()
    memory: Dict = {}
    if args.memory:
        # quick: one fresh process for everything (imports cost ~5 s each); full: one per (dtype, model)
        groups = [(tuple(dtypes), tuple(MODELS))] if args.quick else [((d,), (m,)) for d in dtypes for m in MODELS]
        memory = run_memory(args, dtypes, avg_nn, sizes, train_sizes, groups)
        for dname in dtypes:
            results[dname]["memory"] = memory.get(dname, {})
        print(f"# memory done ({now() - t_start:.0f} s)", file=sys.stderr, flush=True)

    zoo: List[str] = []
    if args.zoo:
        import zoo_speed
        from ase_denoise.zoo import list_models

        zoo_speed.table(sizes, list_models(), zoo.append)
        print(f"# zoo models done ({now() - t_start:.0f} s)", file=sys.stderr, flush=True)
    report = render(args, results, memory.get("process", {}), sizes, train_sizes, dtypes, avg_nn, md_steps,
                    now() - t_start, zoo)
    print(report)
    if args.output:
        with open(args.output, "w") as f:
            f.write(report + "\n")
    return 0


def summary(results, sizes, train_sizes, dtypes, zoo: List[str]) -> List[str]:
    """The ratio to MACE's energy+forces of every head's force call and training step, and of the zoo models'
    default forces: the table the README's speed section quotes."""
    dname = "float32" if "float32" in dtypes else dtypes[0]
    r = results[dname]
    L = [f"### Summary: ours / MACE energy+forces ({dname}; < 1: ours faster)", "",
         "| what | " + " | ".join(f"{n} atoms" for n in sizes) + " |", "| --- |" + " ---: |" * len(sizes)]
    for k in ("edge", "vector", *SUMMARY_MODELS):
        if k in r["infer"][sizes[0]]["calc"]:
            L.append(f"| force call: {SUMMARY_LABEL[k]} | "
                     + " | ".join(fmt(r["infer"][n]["calc"][k] / r["infer"][n]["calc"]["mace"]) for n in sizes) + " |")
    for k in TRAIN_HEADS:
        if r["train"] and k in r["train"][train_sizes[0]]["step"]:
            L.append(f"| training step ({BATCH_FRAMES} frames): {k} head | "
                     + " | ".join(fmt(r["train"][n]["step"][k] / r["train"][n]["step"]["mace"]) if n in r["train"] else "-"
                                  for n in sizes) + " |")
    L.append("")
    if zoo:
        L += ["Zoo models: their default forces (and their smallest level; and their architecture rebuilt with the "
              "expansion head) against MACE with each model's hyperparameters, on each model's own system repeated to "
              "about these sizes (`benchmarks/zoo_speed.py` says what is timed):", "", *zoo, ""]
    return L


def render(args, results, processes, sizes, train_sizes, dtypes, avg_nn, md_steps, wall, zoo=()) -> str:
    L: List[str] = []
    mode = "--quick" if args.quick else "full"
    L.append(f"## ase_denoise vs MACE speed ({mode})")
    L.append("")
    L.append(f"Machine: {common.machine()}.")
    L.append(f"System: periodic argon, fcc a={LATTICE} A rattled by {RATTLE} A; avg_num_neighbors={avg_nn:.2f} "
             f"(r_max {args.r_max}). Hyperparameters (all three models): r_max={args.r_max}, channels={args.channels}, "
             f"max_L={args.max_L}, max_ell={args.max_ell}, correlation={args.correlation}, "
             f"interactions={args.num_interactions}, num_bessel=8, polynomial cutoff=5, radial_MLP=[64,64,64].")
    d0 = results[dtypes[0]]
    L.append("Parameters: " + ", ".join(f"{k} {v:,}" for k, v in d0["params"].items())
             + f". Interaction target irreps: MACE {d0['mace_irreps']}, ours {d0['our_irreps']}.")
    L.append("Times are medians (ms) after warm-up, 1 torch thread; ratio = ours / MACE (< 1: ours faster).")
    L.append("")
    L += summary(results, sizes, train_sizes, dtypes, list(zoo))
    for dname in dtypes:
        r = results[dname]
        L.append(f"### {dname}: force call through the ASE calculator")
        L.append("")
        L.append("| atoms | edges | MACE calc | edge calc | vector calc | edge/MACE | vector/MACE "
                 "| edge calc, skin 0 | edge fwd | edge overhead | MACE fwd (E,F,S) | MACE fwd (E,F) | MACE fwd (E only) "
                 "| MACE graph | reps |")
        L.append("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for n in sizes:
            x = r["infer"][n]
            c, s = x["calc"], x["steps"]
            ovh = (c["edge"] - s["edge.forward"]) / c["edge"]
            L.append(f"| {n} | {s['edge.n_edges']} | {fmt_ms(c['mace'])} | {fmt_ms(c['edge'])} | {fmt_ms(c['vector'])} "
                     f"| {fmt(c['edge'] / c['mace'])} | {fmt(c['vector'] / c['mace'])} | {fmt_ms(c.get('edge_noskin'))} "
                     f"| {fmt_ms(s['edge.forward'])} | {ovh:.0%} | {fmt_ms(s['mace.forward_stress'])} "
                     f"| {fmt_ms(s['mace.forward_ef'])} | {fmt_ms(s['mace.forward_e'])} | {fmt_ms(s['mace.batch'])} "
                     f"| {x['repeats']} |")
        L.append("")
        L.append("calc: `atoms.get_forces()` through the calculator (MACE's also computes the stress; it builds "
                 "its graph every call, ours reuses a Verlet list with its default skin, which these small "
                 "perturbations never trigger to rebuild). skin 0: our edge calculator rebuilding its neighbour list "
                 "every call. fwd: the model call alone on a prebuilt batch (ours: no_grad forward to numpy; MACE: "
                 "energy + forces by autograd, with (S) and without stress; E only: its energy forward under no_grad, no backward). edge overhead = (edge calc - edge fwd) "
                 "/ edge calc. MACE graph: its atoms -> batch conversion (matscipy neighbour list included).")
        L.append("")
        L.append(f"Where the time of our calculator goes ({dname}, ms): structure checks (check_atoms) / to_frame / collate as the "
                 "calculator runs it (Verlet list reused) / forward incl. to-numpy; rest = calc minus those (ASE "
                 "bookkeeping plus timing noise); overhead fraction = (calc - forward) / calc, a difference of two "
                 "medians, so it can come out negative under load; last column: a fresh neighbour list + collate "
                 "(what a Verlet rebuild costs).")
        L.append("")
        L.append("| atoms | head | calc | check | to_frame | collate | forward | rest | overhead fraction "
                 "| fresh NL + collate |")
        L.append("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|")
        for n in sizes:
            x = r["infer"][n]
            for h in ("edge", "vector"):
                c, s = x["calc"][h], x["steps"]
                col = s.get(f"{h}.collate_reuse", s[f"{h}.collate"])
                rest = c - s[f"{h}.check"] - s[f"{h}.to_frame"] - col - s[f"{h}.forward"]
                L.append(f"| {n} | {h} | {fmt_ms(c)} | {fmt_ms(s[f'{h}.check'])} | {fmt_ms(s[f'{h}.to_frame'])} "
                         f"| {fmt_ms(col)} | {fmt_ms(s[f'{h}.forward'])} | {fmt_ms(rest)} "
                         f"| {(c - s[f'{h}.forward']) / c:.0%} | {fmt_ms(s[f'{h}.collate'])} |")
        L.append("")
        if r["train"]:
            L.append(f"### {dname}: one training step, batch of {BATCH_FRAMES} frames (batch prebuilt)")
            L.append("")
            skipped = [n for n in sizes if n not in train_sizes]
            if skipped:
                L.append(f"Not trained at {skipped} atoms per frame (--train-max-atoms; training_ratio below "
                         f"is at {max(train_sizes)} atoms per frame).")
                L.append("")
            L.append("| atoms/frame | MACE E+F step | edge step | vector step | edge/MACE | vector/MACE "
                     "| our collate (4 frames) | edge/MACE incl. collate | MACE graphs (4 frames, once per data set) | reps |")
            L.append("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
            for n in train_sizes:
                t = r["train"][n]["step"]
                L.append(f"| {n} | {fmt_ms(t['mace'])} | {fmt_ms(t['edge'])} | {fmt_ms(t['vector'])} "
                         f"| {fmt(t['edge'] / t['mace'])} | {fmt(t['vector'] / t['mace'])} | {fmt_ms(t['edge.collate4'])} "
                         f"| {fmt((t['edge'] + t['edge.collate4']) / t['mace'])} | {fmt_ms(t['mace.batch4'])} "
                         f"| {r['train'][n]['repeats']} |")
            L.append("")
        md = r["md"]
        L.append(f"### {dname}: Langevin MD, {sizes[-1]} atoms, {TIMESTEP_FS:g} fs, {md_steps} steps after 1 warm-up step")
        L.append("")
        L.append("| model | steps/s | ns/day | vs MACE |")
        L.append("|---|---:|---:|---:|")
        for k in MODELS:
            L.append(f"| {LABEL[k]} | {md[k]:.3g} | {md[k] * 86400 * TIMESTEP_FS * 1e-6:.3g} | {md[k] / md['mace']:.2f}x |")
        L.append("")
        mem = r["memory"]
        if mem:
            L.append(f"### {dname}: peak memory (MB of resident-set growth in a fresh process)")
            L.append("")
            L.append("| atoms | MACE infer | edge infer | vector infer | MACE train step | edge train step | vector train step |")
            L.append("|---:|---:|---:|---:|---:|---:|---:|")
            for n in sizes:
                row = [str(n)]
                for phase in ("infer_mb", "train_mb"):
                    for k in MODELS:
                        v = mem.get(f"{k}:{n}", {}).get(phase)
                        row.append("-" if v is None else f"{v:.0f}")
                L.append("| " + " | ".join(row) + " |")
            L.append("")
    if processes:
        L.append("Memory: each column is the growth of the resident-set high-water mark (VmHWM, reset via "
                 "/proc/self/clear_refs) over the resident set at the start of the phase (2 force calls; 1 AdamW "
                 "step on 4 frames), after one warm-up call and step. Whole-process peaks (MB, imports and "
                 "models included): " + "; ".join(f"{k}: {v:.0f}" for k, v in processes.items()) + ".")
        L.append("")
    L.append(f"Total wall time {wall:.0f} s. Command: `{' '.join(['python', 'benchmarks/speed.py'] + sys.argv[1:])}`")
    L.append("")
    key = "float32" if "float32" in dtypes else dtypes[0]
    r = results[key]
    n = sizes[-1]
    c, s = r["infer"][n]["calc"], r["infer"][n]["steps"]
    inf_ratio = c["edge"] / c["mace"]
    ovh = (c["edge"] - s["edge.forward"]) / c["edge"]
    if r["train"]:
        t = r["train"][max(r["train"])]["step"]
        tr = f"{t['edge'] / t['mace']:.3f}"
    else:
        tr = "nan"
    L.append(f"inference_ratio={inf_ratio:.3f} training_ratio={tr} overhead_fraction={ovh:.3f}")
    return "\n".join(L)


if __name__ == "__main__":
    sys.exit(main())
