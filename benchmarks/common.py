"""What the benchmark scripts share: builders, the timing harness, held-out force figures and the
machine description.

* **Builders**: the rattled fcc argon liquid stand-in (:func:`argon`), the architecture and physics
  of the argon benchmarks (:func:`argon_config`, :func:`argon_physics`), MACE's own energy model
  (``ScaleShiftMACE``) with the hyperparameters of a :class:`~ase_denoise.config.ModelConfig`
  (:func:`mace_energy_model`), ours with the same ones (:func:`benchmark_models`), MACE's
  calculator and data path (:func:`mace_calculator`, :func:`mace_batch`).
* **Timing**: :func:`interleaved` (medians after warm-up, calls interleaved in a fresh random
  order every round), :func:`adaptive_repeats`, :func:`time_once`.
* **Figures**: :func:`force_figures` (predicted vs labelled forces of held-out frames).
* **Machine**: :func:`machine` (CPU model, cores, OS, Python, torch/mace/e3nn/ase versions, threads).

Importing this module changes nothing global and imports neither torch nor mace: settings for a
benchmark *process* (one torch thread, silenced warnings) are made by the scripts' ``main()``
through :func:`single_thread`; mace is imported on first use through :func:`mace_api`, inside
:func:`ase_denoise._mace.host_environment_kept`, so the process keeps torch.load's weights-only
protection (mace switches it off for the whole process when imported), and with mace's
import-time notices sent to stderr (the scripts' stdout is their report).

Units: Angstrom, eV, K, seconds.
"""

from __future__ import annotations

import contextlib
import functools
import os
import platform
import statistics
import sys
import time
import types
import warnings
from typing import TYPE_CHECKING, Any, Callable, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple

import numpy as np

if TYPE_CHECKING:  # torch, mace and the model load on first use
    import torch
    from ase import Atoms

    from ase_denoise.config import ModelConfig, PhysicsConfig

# --------------------------------------------------------------------------------------------
# the argon benchmark system
# --------------------------------------------------------------------------------------------
LATTICE_A = 5.26  # Angstrom, fcc argon
RATTLE_A = 0.2  # Angstrom
ARGON_TEMPERATURE_K = 94.4  # as the demo
ARGON_NOISE_STD = 0.05  # Angstrom
#: the hyperparameters of the speed benchmarks (ModelConfig's defaults; names as in ModelConfig)
HYPERPARAMETERS = dict(r_max=5.0, num_channels=16, max_L=1, max_ell=2, correlation=2, num_interactions=2)


def fcc_repeat(n: int) -> Tuple[int, int, int]:
    """The most cubic repeat (a, b, c) of the 4-atom cubic fcc cell with ``4*a*b*c == n``."""
    if n % 4:
        raise SystemExit(f"n={n}: the fcc cubic cell has 4 atoms, choose a multiple of 4")
    m = n // 4
    best = None
    for a in range(1, m + 1):
        if m % a:
            continue
        for b in range(a, m // a + 1):
            if (m // a) % b:
                continue
            c = m // a // b
            if c < b:
                continue
            score = c / a
            if best is None or score < best[0]:
                best = (score, (a, b, c))
    return best[1]


def argon(n: int, seed: int = 0) -> "Atoms":
    """Periodic argon liquid stand-in: fcc a = 5.26 A repeated to ``n`` atoms, rattled by 0.2 A
    (seeded), wrapped."""
    from ase.build import bulk

    atoms = bulk("Ar", "fcc", a=LATTICE_A, cubic=True).repeat(fcc_repeat(n))
    atoms.rattle(stdev=RATTLE_A, seed=seed)
    atoms.wrap()
    return atoms


def argon_config(head: str, avg_num_neighbors: float, **hyperparameters: Any) -> "ModelConfig":
    """The architecture of the argon benchmarks: element table [Ar], ``head``, the measured
    ``avg_num_neighbors`` and :data:`HYPERPARAMETERS` (``hyperparameters`` override them)."""
    from ase_denoise.config import ModelConfig

    return ModelConfig(
        atomic_numbers=[18], head=head, avg_num_neighbors=avg_num_neighbors, **{**HYPERPARAMETERS, **hyperparameters}
    )


def argon_physics(noise_std: float = ARGON_NOISE_STD, temperature_K: float = ARGON_TEMPERATURE_K) -> "PhysicsConfig":
    """Periodic argon at 94.4 K, sigma 0.05 A (the demo's values)."""
    from ase_denoise.config import PhysicsConfig

    return PhysicsConfig(temperature_K=temperature_K, noise_std=noise_std, pbc=(True, True, True))


# --------------------------------------------------------------------------------------------
# mace, imported without side effects on the process
# --------------------------------------------------------------------------------------------
@contextlib.contextmanager
def mace_imports() -> Iterator[None]:
    """Run imports of mace (or of anything that imports it) in this block: the process keeps
    torch.load's weights-only default (:func:`ase_denoise._mace.host_environment_kept`), mace's
    import-time notices go to stderr and its import warnings are dropped."""
    with warnings.catch_warnings(), contextlib.redirect_stdout(sys.stderr):
        warnings.simplefilter("ignore")
        from ase_denoise._mace import host_environment_kept  # imports mace and e3nn (in that order) once

        with host_environment_kept():
            yield


@functools.lru_cache(maxsize=None)
def mace_api() -> types.SimpleNamespace:
    """The parts of mace the benchmarks use (imported once, see :func:`mace_imports`):
    ``modules``, ``data``, ``tools``, ``torch_geometric``, ``AtomicNumberTable``,
    ``KeySpecification``, ``MACECalculator``, ``o3`` (e3nn) and ``version``."""
    with mace_imports():
        import mace
        import mace.data
        import mace.modules
        import mace.tools
        from e3nn import o3
        from mace.calculators import MACECalculator
        from mace.data.utils import KeySpecification
        from mace.tools import torch_geometric

    return types.SimpleNamespace(
        modules=mace.modules, data=mace.data, tools=mace.tools, torch_geometric=torch_geometric,
        AtomicNumberTable=mace.tools.AtomicNumberTable, KeySpecification=KeySpecification,
        MACECalculator=MACECalculator, o3=o3, version=getattr(mace, "__version__", _version("mace-torch")),
    )


def mace_energy_model(
    config: "ModelConfig",
    dtype: Optional["torch.dtype"] = None,
    *,
    atomic_energies: Optional[Sequence[float]] = None,
    scale: float = 1.0,
    shift: float = 0.0,
    seed: Optional[int] = None,
) -> "torch.nn.Module":
    """MACE's own energy model (``ScaleShiftMACE``, what ``mace_run_train`` builds) with the
    hyperparameters of ``config``: r_max, channels and max_L (hidden irreps ``Cx0e + Cx1o + ...``),
    max_ell, correlation, interactions, num_bessel, polynomial cutoff, radial MLP, avg_num_neighbors
    and the element table; ``RealAgnosticInteractionBlock`` first, then
    ``RealAgnosticResidualInteractionBlock`` (as ase_denoise's backbone); MLP irreps ``16x0e``,
    SiLU gate. ``atomic_energies`` (eV, default 0), ``scale``/``shift``: its energy scale and shift.

    Built in torch's current default dtype, then converted to ``dtype`` if given. ``seed``: weights
    from this seed without touching torch's global generator (``None``: the global generator).
    """
    import torch

    from ase_denoise.model import hidden_irreps

    m = mace_api()
    n_elements = len(config.atomic_numbers)

    def build() -> torch.nn.Module:
        with warnings.catch_warnings():  # TorchScript notices of every e3nn block
            warnings.simplefilter("ignore")
            return m.modules.ScaleShiftMACE(
                r_max=config.r_max,
                num_bessel=config.num_bessel,
                num_polynomial_cutoff=config.num_polynomial_cutoff,
                max_ell=config.max_ell,
                interaction_cls=m.modules.blocks.RealAgnosticResidualInteractionBlock,
                interaction_cls_first=m.modules.blocks.RealAgnosticInteractionBlock,
                num_interactions=config.num_interactions,
                num_elements=n_elements,
                hidden_irreps=m.o3.Irreps(str(hidden_irreps(config.num_channels, config.max_L))),
                MLP_irreps=m.o3.Irreps("16x0e"),
                atomic_energies=np.zeros(n_elements) if atomic_energies is None else np.asarray(atomic_energies),
                avg_num_neighbors=config.avg_num_neighbors,
                atomic_numbers=list(config.atomic_numbers),
                correlation=config.correlation,
                gate=torch.nn.functional.silu,
                radial_MLP=list(config.radial_mlp),
                atomic_inter_scale=scale,
                atomic_inter_shift=shift,
            )

    if seed is None:
        model = build()
    else:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = build()
    return model if dtype is None else model.to(dtype)


def benchmark_models(
    avg_num_neighbors: float,
    dtype: "torch.dtype",
    heads: Sequence[str] = ("edge", "vector"),
    seed: int = 0,
    **hyperparameters: Any,
) -> Dict[str, "torch.nn.Module"]:
    """Our denoisers (one per head in ``heads``) and MACE's energy model (``"mace"``), all with the
    same hyperparameters (:func:`argon_config`; MACE gets the edge-head config, whose trunk is
    MACE's), in ``dtype``. Seeded without touching torch's global generator."""
    from ase_denoise.model import build_model

    physics = argon_physics()
    models: Dict[str, Any] = {
        head: build_model(argon_config(head, avg_num_neighbors, **hyperparameters), physics, dtype=dtype, seed=seed)
        for head in heads
    }
    models["mace"] = mace_energy_model(argon_config("edge", avg_num_neighbors, **hyperparameters), dtype, seed=seed)
    return models


def denoiser_train_step(model: "torch.nn.Module", frames: Sequence["Atoms"], dtype: "torch.dtype", noise_std: float,
                        rng: np.random.Generator):
    """``(step, noisy positions, Frames)``: ``step()`` is one training step of ``model`` (already in
    train mode) on one noise draw of ``frames``: MSE on the unit-variance target, backward, AdamW.
    The batch is built once, beforehand (the caller times the collate on its own if it wants)."""
    import torch

    from ase_denoise.data import to_frame
    from ase_denoise.data.graphs import collate

    cfg = model.config
    fr = [to_frame(a, cfg.atomic_numbers) for a in frames]
    noise = [rng.normal(0.0, noise_std, size=f.positions.shape) for f in fr]
    noisy = [f.positions + e for f, e in zip(fr, noise)]
    data = collate(noisy, fr, len(cfg.atomic_numbers), cfg.r_max, dtype)
    target = torch.as_tensor(np.concatenate([-e / noise_std for e in noise]), dtype=dtype)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)

    def step():
        loss = torch.mean((model(data) - target) ** 2)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step, noisy, fr


def mace_calculator(model: "torch.nn.Module", dtype: "torch.dtype", device: str = "cpu"):
    """mace's own ``MACECalculator`` around ``model`` (it freezes the parameters of the module it is
    given: pass a copy if the module is trained later). It extends ASE's class-level
    ``implemented_properties``: build it after other calculators."""
    import logging

    m = mace_api()
    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)  # it logs a dtype notice for every construction
    try:
        return m.MACECalculator(models=model, device=device, default_dtype=str(dtype).replace("torch.", ""))
    finally:
        logging.disable(previous)


def mace_batch(
    frames: Sequence["Atoms"],
    r_max: float,
    dtype: "torch.dtype",
    atomic_numbers: Sequence[int] = (18,),
    key_specification: Any = None,
) -> Dict[str, "torch.Tensor"]:
    """MACE's own data path (``config_from_atoms`` -> ``AtomicData`` -> ``Batch``), as its trainer
    builds it, as a dict of tensors in ``dtype``."""
    from ase_denoise.testing import default_dtype

    m = mace_api()
    table = m.AtomicNumberTable(list(atomic_numbers))
    kw = {} if key_specification is None else {"key_specification": key_specification}
    with default_dtype(dtype):
        graphs = [
            m.data.AtomicData.from_config(m.data.config_from_atoms(a, **kw), z_table=table, cutoff=r_max)
            for a in frames
        ]
    return m.torch_geometric.Batch.from_data_list(graphs).to_dict()


# --------------------------------------------------------------------------------------------
# process settings: call from a script's main(), never at import
# --------------------------------------------------------------------------------------------
def single_thread(threads: int = 1, interop: bool = False) -> None:
    """Run torch on ``threads`` threads (and, with ``interop``, as many inter-op threads: that can
    only be set before torch's first parallel work, so call this first thing in ``main()``)."""
    import torch

    torch.set_num_threads(threads)
    if interop:
        try:
            torch.set_num_interop_threads(threads)
        except RuntimeError:  # already set, or parallel work has started
            pass


# --------------------------------------------------------------------------------------------
# timing
# --------------------------------------------------------------------------------------------
def now() -> float:
    return time.perf_counter()


def time_once(fn: Callable[[], Any]) -> float:
    """Seconds of one call of ``fn``."""
    t = now()
    fn()
    return now() - t


def interleaved(
    fns: Mapping[str, Callable[[], Any]],
    repeats: int,
    warmup: int = 1,
    before_round: Optional[Callable[[], None]] = None,
    sync: Optional[Callable[[], None]] = None,
    seed: int = 12345,
) -> Dict[str, float]:
    """Median seconds of each of ``fns`` over ``repeats`` rounds, after ``warmup`` untimed rounds.

    Every round calls each function once, in a fresh random order (so load drift hits all of them
    alike and no function always runs right after the same other one, e.g. into the allocator state
    a big autograd call just left). ``before_round`` (untimed) starts each round; ``sync`` (e.g.
    ``torch.cuda.synchronize``) runs before and after each timed call.
    """
    keys = list(fns)
    order_rng = np.random.default_rng(seed)
    for _ in range(warmup):
        if before_round:
            before_round()
        for fn in fns.values():
            fn()
    times: Dict[str, List[float]] = {k: [] for k in keys}
    for _ in range(repeats):
        if before_round:
            before_round()
        for i in order_rng.permutation(len(keys)):
            k = keys[i]
            if sync:
                sync()
            t = now()
            fns[k]()
            if sync:
                sync()
            times[k].append(now() - t)
    return {k: statistics.median(v) for k, v in times.items()}


def adaptive_repeats(probe_s: float, budget_s: float, lo: int, hi: int) -> int:
    """Repeats that fit ``budget_s`` seconds when one round takes ``probe_s``, clipped to [lo, hi]."""
    return int(max(lo, min(hi, budget_s // max(probe_s, 1e-9))))


# --------------------------------------------------------------------------------------------
# figures
# --------------------------------------------------------------------------------------------
def force_figures(model: Any, frames: Sequence["Atoms"], batch_size: int = 8) -> Dict[str, float]:
    """Predicted (clean positions) vs labelled forces of ``frames`` (``arrays['ref_forces']`` or a
    calculator's forces): :func:`ase_denoise.analysis.force_metrics` plus ``ref_rms`` (eV/A)."""
    from ase_denoise.analysis import force_metrics
    from ase_denoise.data import to_frame
    from ase_denoise.inference import evaluate_forces

    pred, ref = evaluate_forces(model, [to_frame(a, model.config.atomic_numbers) for a in frames], batch_size)
    return {**force_metrics(pred, ref), "ref_rms": float(np.sqrt(np.mean(ref**2)))}


# --------------------------------------------------------------------------------------------
# machine description
# --------------------------------------------------------------------------------------------
def _version(dist: str) -> str:
    try:
        from importlib.metadata import version

        return version(dist)
    except Exception:
        return "?"


def cpu_model() -> str:
    """CPU model name from /proc/cpuinfo, with family and model numbers when given."""
    name, family, model_id = platform.processor() or platform.machine() or "unknown CPU", "", ""
    try:
        with open("/proc/cpuinfo") as fh:
            found = False
            for line in fh:
                if line.startswith("model name") and not found:
                    name, found = line.split(":", 1)[1].strip(), True
                elif line.startswith("cpu family") and not family:
                    family = line.split(":", 1)[1].strip()
                elif line.startswith("model\t") and not model_id:
                    model_id = line.split(":", 1)[1].strip()
    except OSError:
        pass
    return f"{name} (family {family}, model {model_id})" if family else name


def machine() -> str:
    """One line: the date (every figure states when and where it was measured), CPU model, logical CPUs,
    OS, Python, torch / mace-torch / e3nn / ase versions and the torch thread count (with
    ``OMP_NUM_THREADS``). Imports torch, not mace."""
    import time

    import torch

    threads = torch.get_num_threads()
    return (
        f"{time.strftime('%Y-%m-%d')}, {cpu_model()}, {os.cpu_count()} logical CPUs, {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}, torch {torch.__version__} with {threads} thread{'s' * (threads != 1)} "
        f"(OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}), mace-torch {_version('mace-torch')}, "
        f"e3nn {_version('e3nn')}, ase {_version('ase')}"
    )


def load_average() -> str:
    """The 1/5/15-minute load averages, or '?' where the OS has none."""
    return " ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "?"


def load_script(module_name: str, path) -> types.ModuleType:
    """The benchmark script at ``path`` as the module ``module_name`` (registered in ``sys.modules``;
    the name the tests give it, e.g. ``"ala2_study"``). Several folders have a ``study.py`` or a
    ``make_data.py``: importing them by their bare names would return whichever came first."""
    import importlib.util

    if module_name not in sys.modules:
        spec = importlib.util.spec_from_file_location(module_name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        spec.loader.exec_module(module)
    return sys.modules[module_name]
