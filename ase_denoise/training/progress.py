"""The clock of a training run: the time budget, the learning-rate schedule that fits it, and the
progress reports a bar or a log line is drawn from.

With ``TrainConfig.max_minutes`` a run stops when the budget is spent; the cosine schedule is planned
for the steps the budget leaves room for (:class:`Clock`, re-planned as the pace becomes known), so a
budget-stopped run ends with the learning rate decayed rather than at its maximum. After every step the
trainer reports a :class:`Progress` (its total and time left within the budget).
"""

from __future__ import annotations

import csv
import logging
import math
import time
from dataclasses import dataclass
from typing import Any, Callable, Dict, List

from ..config import TrainConfig
from ..files import atomic_write

#: the columns of a run's ``log.csv``, one row per epoch
LOG_COLUMNS = ["epoch", "step", "lr", "train_loss", "valid_loss", "force_rmse", "force_relative_rmse", "force_cosine",
               "elapsed_s"]


def write_log(path: str, history: List[Dict[str, Any]]) -> None:
    """Write a run's epochs (``Trainer.history``) as ``log.csv`` at ``path``, atomically."""
    def write(tmp: str) -> None:
        with open(tmp, "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=LOG_COLUMNS, extrasaction="ignore")
            w.writeheader()
            for row in history:
                w.writerow({k: row.get(k, "") for k in LOG_COLUMNS})

    atomic_write(path, write, overwrite=True)


def lr_lambda(cfg: TrainConfig, horizon: Dict[str, int]):
    """The learning-rate factor at a step: a linear warm-up, then a cosine down to 0.02 over
    ``horizon["steps"]`` (read at every step: a time budget re-plans it, :meth:`Trainer.fit`)."""
    def fn(step: int) -> float:
        warm = min(1.0, (step + 1) / max(cfg.warmup_steps, 1))
        if cfg.lr_schedule == "constant":
            return warm
        progress = min(1.0, step / max(horizon["steps"], 1))
        return warm * (0.02 + 0.98 * 0.5 * (1.0 + math.cos(math.pi * progress)))

    return fn


@dataclass
class Progress:
    """Where a training run stands after an optimiser step (what a progress bar or a log line shows)."""

    step: int  # optimiser steps done, the whole run
    total: int  # the step the run will reach: its last epoch's, or what the time budget leaves room for
    epoch: int  # the epoch under way, 0-based
    epochs: int
    loss: float  # mean training loss of the last 50 steps
    eta_s: float  # seconds to go, within the time budget


#: called with a :class:`Progress` after every optimiser step (on the main rank)
ProgressCallback = Callable[[Progress], None]


#: how often ``progress=True`` logs a line (seconds)
PROGRESS_LOG_S = 60.0


class Clock:
    """The wall clock of one call of :meth:`Trainer.fit`: its budget, its pace, when to plan the schedule."""

    def __init__(self, budget_s: float, first_step: int):
        self.budget_s, self.first_step = budget_s, first_step
        self.start = time.perf_counter()
        self.planned = False

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def spent(self) -> bool:
        return self.elapsed() > self.budget_s

    def left_s(self) -> float:
        return max(self.budget_s - self.elapsed(), 0.0)

    def per_step(self, step: int) -> float:
        return self.elapsed() / max(step - self.first_step, 1)

    def reachable(self, step: int) -> int:
        """The step this call reaches at its pace so far (a large number without a budget)."""
        if not math.isfinite(self.budget_s):
            return 2**62
        return step + int(0.98 * self.left_s() / max(self.per_step(step), 1e-9))

    def progress(self, step: int, total_steps: int, epoch: int, epochs: int, loss: float) -> Progress:
        """Where the run stands: its total capped by what the budget leaves room for, the time left."""
        total = min(total_steps, max(self.reachable(step), step))
        return Progress(step=step, total=total, epoch=epoch, epochs=epochs, loss=loss,
                        eta_s=min((total - step) * self.per_step(step), self.left_s()))

    def plan_due(self, step: int) -> bool:
        """Plan once, early: after a few steps and a tenth of the budget (or a minute)."""
        if self.planned or not math.isfinite(self.budget_s) or step - self.first_step < 3:
            return False
        if self.elapsed() < min(0.1 * self.budget_s, 60.0):
            return False
        self.planned = True
        return True


def duration(seconds: float) -> str:
    seconds = max(float(seconds), 0.0)
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.0f} min" if seconds < 7200 else f"{seconds / 3600:.1f} h"


def epoch_line(row: Dict[str, Any], epochs: int, improved: bool) -> str:
    """One readable line per epoch: losses, the force error where labels exist, the time."""
    parts = [f"epoch {row['epoch'] + 1} of {epochs}: train loss {row['train_loss']:.4f}"]
    if "valid_loss" in row:
        parts.append(f"valid loss {row['valid_loss']:.4f}{' (best so far)' if improved else ''}")
    if "force_rmse" in row:
        parts.append(f"validation forces: RMSE {row['force_rmse']:.3g} eV/A, relative {row['force_relative_rmse']:.3f}, "
                     f"cosine {row['force_cosine']:.4f}")
    parts.append(f"lr {row['lr']:.2g}, {row['elapsed_s']:.0f} s")
    return ", ".join(parts)


def log_lines(log: logging.Logger) -> ProgressCallback:
    """Progress as a log line every :data:`PROGRESS_LOG_S` seconds (``train(progress=True)``: no bar
    redrawn with carriage returns in a log file)."""
    last = {"t": time.perf_counter()}

    def log_line(p: Progress) -> None:
        if time.perf_counter() - last["t"] >= PROGRESS_LOG_S:
            last["t"] = time.perf_counter()
            log.info("step %d of %d (epoch %d of %d), loss %.4f, about %s to go", p.step, p.total, p.epoch + 1,
                     p.epochs, p.loss, duration(p.eta_s))

    return log_line
