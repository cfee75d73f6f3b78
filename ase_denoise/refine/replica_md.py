"""The one evaluation loop of the label-free checks: batched Langevin replicas of a model, started from
frames spread over its data, with collapsed replicas detected and dropped.

Units: Angstrom, ps (``timestep_fs`` in fs, ``friction_per_fs`` in 1/fs), K.
"""

from __future__ import annotations

import logging
import time
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
from ase import Atoms

from ..forces import ForcesChoice
from ..md.langevin import min_pair_distance
from ..md.replicas import ReplicaLangevin
from ..model import DenoiserMACE

logger = logging.getLogger(__name__)


#: two atoms closer than this (Angstrom) mark a replica as collapsed; its later frames are dropped
COLLAPSE_DISTANCE = 1.0


def run_replicas(
    model: DenoiserMACE,
    starts: Sequence[Atoms],
    *,
    temperature_K: float,
    equilibration_ps: float,
    production_ps: float,
    timestep_fs: float = 1.0,
    friction_per_fs: float = 0.01,
    sample_every: int = 100,
    seeds: Optional[Sequence[int]] = None,
    forces: ForcesChoice = ForcesChoice(),
    collapse_distance: float = COLLAPSE_DISTANCE,
    progress: Optional[Callable[[int], None]] = None,
) -> Tuple[List[List[Atoms]], Dict[str, object]]:
    """Langevin replicas of ``model`` from ``starts`` (one each), all in one batched forward per step.

    Returns each replica's frames of the production part (one every ``sample_every`` steps) and a
    dict: ``collapsed_at_step`` (per replica, ``None`` or the step at which two atoms came closer
    than ``collapse_distance``: its frames stop there), ``closest_approach_A``, ``mean_temperature_K``
    (production), ``wall_s``, ``batch_steps_per_s``, ``stopped`` (a non-finite force ends the run).
    ``progress``: called with the steps done after each chunk (e.g. a tqdm bar's ``update``)."""
    n = len(starts)
    rep = ReplicaLangevin(model, starts, temperature_K=temperature_K, timestep_fs=timestep_fs,
                          friction_per_fs=friction_per_fs, seeds=seeds, forces=forces)
    n_equil = int(round(equilibration_ps * 1000 / timestep_fs))
    n_total = n_equil + int(round(production_ps * 1000 / timestep_fs))
    kept: List[List[Atoms]] = [[] for _ in range(n)]
    collapsed_at: List[Optional[int]] = [None] * n
    closest = np.full(n, np.inf)
    temps: List[np.ndarray] = []
    seen = set()

    def observe(step: int, positions, velocities) -> None:  # run() also observes at each call's start
        if step in seen:
            return
        seen.add(step)
        for i in range(n):
            if collapsed_at[i] is not None:
                continue
            atoms = rep.atoms(i)
            d = min_pair_distance(atoms, 4.0)
            closest[i] = min(closest[i], d)
            if d < collapse_distance:
                collapsed_at[i] = step
                logger.warning("replica %d: two atoms %.2f A apart at step %d (collapsed; its frames stop here)", i, d, step)
            elif step > n_equil:
                kept[i].append(atoms)
        if step > n_equil:
            temps.append(rep.temperatures())

    t0 = time.perf_counter()
    stopped = None
    while rep.steps_done < n_total and stopped is None:
        res = rep.run(min(10 * sample_every, n_total - rep.steps_done), interval=sample_every, observers=[observe])
        stopped = res["stopped"]
        if progress is not None:
            progress(res["steps"])
    wall = time.perf_counter() - t0
    return kept, dict(
        collapsed_at_step=collapsed_at, closest_approach_A=closest.tolist(), stopped=stopped, wall_s=wall,
        batch_steps_per_s=rep.steps_done / max(wall, 1e-12),
        mean_temperature_K=float(np.mean(temps)) if temps else float("nan"),
    )


def spread_starts(frames: Sequence[Atoms], n_replicas: int) -> List[Atoms]:
    """``n_replicas`` of ``frames`` evenly spaced over them (first and last included): starts as
    independent as the data allow."""
    idx = np.linspace(0, len(frames) - 1, n_replicas).round().astype(int)
    return [frames[i] for i in idx]


def require_model_temperature(model: DenoiserMACE, frames: Sequence[Atoms], why: str) -> None:
    """Refuse frames whose ``info["temperature_K"]`` is not the model's training temperature (``why``:
    the end of the message)."""
    temps = {float(a.info["temperature_K"]) for a in frames if "temperature_K" in a.info}
    if temps and any(abs(t - model.temperature_K) > 1e-6 for t in temps):
        raise ValueError(f"the frames say temperature_K {sorted(temps)}, the model was trained at "
                         f"{model.temperature_K} K: {why}")
