"""What the command groups share: the table of commands and small helpers."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Callable, Dict, Union

from tqdm import tqdm

#: command name -> function(args) -> exit status; each group registers its own
COMMANDS: Dict[str, Callable[[argparse.Namespace], int]] = {}


def command(name: str):
    """Register ``fn`` as the implementation of ``ase-denoise <name>``."""

    def register(fn: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
        COMMANDS[name] = fn
        return fn

    return register


def refuse_existing(path: str, overwrite: bool) -> None:
    """Refuse to replace an existing output file unless ``--overwrite`` was given."""
    if (os.path.exists(path) or os.path.islink(path)) and not overwrite:
        raise FileExistsError(f"{path!r} exists; pass --overwrite to replace it")


def _sig(value, digits: int = 5):
    """Floats to ``digits`` significant digits for printing (``round(v, 5)`` turns 3e-6 eV/A into 0.0)."""
    return float(f"{value:.{digits}g}") if isinstance(value, float) else value


def with_units(figures: Dict, units: Dict[str, str], digits: int = 4) -> Dict:
    """``figures`` for printing: each key that has a unit gets it as a suffix (``rmse`` -> ``rmse_eV/A``)
    and floats are rounded to ``digits`` significant digits."""
    return {(f"{k}_{units[k]}" if k in units else k): _sig(v, digits) for k, v in figures.items()}


class TrainingBar:
    """A progress bar fed by the trainer's reports (``train(progress=TrainingBar())``): its total is
    what the time budget leaves room for, so the time it shows left stays within the budget."""

    def __init__(self):
        self.bar = None

    def __call__(self, report) -> None:
        if self.bar is None:
            self.bar = tqdm(total=report.total, initial=report.step - 1, desc="training", unit="step",
                            dynamic_ncols=True, mininterval=1.0)
        self.bar.total = report.total
        self.bar.set_postfix(epoch=f"{report.epoch + 1}/{report.epochs}", loss=f"{report.loss:.4f}", refresh=False)
        self.bar.update(report.step - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def training_progress() -> Union[bool, TrainingBar]:
    """A bar on a terminal; elsewhere (a log file, CI) the library's periodic log lines, not a bar
    redrawn with carriage returns."""
    return TrainingBar() if sys.stderr.isatty() else True
