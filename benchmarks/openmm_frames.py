"""The resumable production loop shared by the OpenMM data scripts of benchmarks/ala2 and benchmarks/water.

Every ``steps_per_frame`` steps, ``take(state)`` turns OpenMM's state (positions and forces) into one
frame's ``(positions, forces)`` arrays; every ``checkpoint_every`` frames the OpenMM state and the
frames so far are saved (``save(path, positions, forces)`` writes ``partial``), so ``--resume`` can
continue; at the end ``output`` is written and the checkpoint files are removed.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, List, Tuple

import numpy as np


def run_production(
    simulation, n_frames: int, steps_per_frame: int, take: Callable, save: Callable,
    positions: List[np.ndarray], forces: List[np.ndarray], output: Path, partial: Path, state_file: Path,
    checkpoint_every: int, desc: str = "production",
) -> Tuple[List[np.ndarray], List[np.ndarray]]:
    """Run until ``len(positions) == n_frames`` (``positions``/``forces``: the frames of a resumed run,
    extended in place); returns them."""
    from tqdm import tqdm

    bar = tqdm(total=n_frames, initial=len(positions), desc=desc, unit="frame")
    while len(positions) < n_frames:
        simulation.step(steps_per_frame)
        frame_positions, frame_forces = take(simulation.context.getState(getPositions=True, getForces=True))
        positions.append(np.asarray(frame_positions, dtype=np.float32))
        forces.append(np.asarray(frame_forces, dtype=np.float32))
        bar.update(1)
        if len(positions) % checkpoint_every == 0 and len(positions) < n_frames:
            simulation.saveState(str(state_file) + ".tmp")
            os.replace(str(state_file) + ".tmp", state_file)
            save(partial)
    bar.close()
    save(output)
    for path in (partial, state_file):
        if path.exists():
            path.unlink()
    return positions, forces
