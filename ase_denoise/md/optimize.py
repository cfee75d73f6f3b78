"""ASE dynamics and relaxation with a forces-only calculator.

A denoiser with the default ``vector`` head (or the ``edge`` head) learns forces,
not energies: its calculator implements only ``"forces"`` and
``get_potential_energy()`` raises ASE's ``PropertyNotImplementedError``. What
that means for ASE's tools (measured with ASE 3.29, see ``tests/test_md_tools.py``)
is listed below. A model trained with ``head="energy"`` has a free energy
``A(x)`` (docs/energy-head.md): its calculator implements ``energy`` and
``free_energy`` too, and every tool listed under "Fails" runs unchanged with it
(``MDLogger``, all the optimizers, ``BasinHopping``, ``MinimaHopping``,
``ase.mep.NEB``; ``tests/test_energy_head.py``), except ``SciPyFmin`` and
``SciPyFminPowell``, whose ``run()`` fails in ASE 3.29 with every calculator
(a ``TypeError`` from its convergence check: ``fmax`` is never set). Line
searches compare energies that differ by ~1e-7 eV near a minimum: run their
calculator in float64.

Works unchanged
    Every MD integrator: ``VelocityVerlet``, ``Langevin``, ``Bussi``,
    ``Andersen``, ``NoseHooverChainNVT``, ``NVTBerendsen``. Their steps use forces
    and momenta only.

    ``ase.io.Trajectory``, as ``trajectory=`` of a dynamics object or attached
    by hand: the writer asks the calculator for each property with
    ``allow_calculation=False`` and skips the ones it does not implement, so
    frames store positions, momenta and forces. Reading a frame back gives a
    ``SinglePointCalculator`` with forces only (no energy).

Fails
    ``MDLogger``, hence any MD created with ``logfile=...``: it logs Epot and
    Etot. Use :class:`ForcesOnlyMDLogger` and pass no ``logfile`` to the
    integrator::

        dyn = Langevin(atoms, 2 * units.fs, temperature_K=300, friction=0.01 / units.fs)
        with ForcesOnlyMDLogger(dyn, atoms, "md.log") as logger:
            dyn.attach(logger, interval=10)
            dyn.run(1000)

    Every ASE optimizer, even with ``logfile=None``: ``Optimizer.log`` fetches
    the energy at step 0 whether or not it writes anything. On top of that the
    *step* of some optimizers needs energies (line searches, trust radius or
    downhill checks): ``BFGSLineSearch``, ``LBFGSLineSearch``,
    ``LBFGS(use_line_search=True)``, ``FIRE(downhill_check=True)``, ``GPMin``,
    ``GoodOldQuasiNewton``, ``PreconLBFGS``, ``PreconFIRE`` (Armijo line
    search), ``SciPyFminCG``/``SciPyFminBFGS``/``SciPyFmin``/``SciPyFminPowell``,
    ``BasinHopping`` and ``MinimaHopping``.

    Forces-only steps: ``FIRE`` (default ``downhill_check=False``), ``FIRE2``,
    ``BFGS``, ``LBFGS`` without line search, ``MDMin`` (also ``RFO`` and
    ``ODE12r``, which are not wrapped here; :class:`ForcesOnlyLogMixin` makes
    them usable). This module exports the first five with a ``log()`` that
    reports fmax only:
    :class:`ForcesOnlyFIRE`, :class:`ForcesOnlyFIRE2`, :class:`ForcesOnlyBFGS`,
    :class:`ForcesOnlyLBFGS`, :class:`ForcesOnlyMDMin`, and the one-liner
    :func:`relax`.

Relaxing on learned forces stops where the *smoothed* forces vanish: with a
denoiser trained at noise level sigma this is the minimum of the
sigma-smoothed free energy, close to but not exactly the minimum of U
(docs/design.md, "The estimator").

Units: ASE throughout. Time in ps in logs, energies in eV, temperature in K,
forces and fmax in eV/Angstrom, lengths in Angstrom.
"""

from __future__ import annotations

import logging
import time
from typing import IO, Any, Dict, Optional, Type, Union

from ase import Atoms
from ase.optimize import BFGS, FIRE, FIRE2, LBFGS, MDMin
from ase.optimize.optimize import Optimizer

from .langevin import max_force

logger = logging.getLogger(__name__)


class ForcesOnlyLogMixin:
    """Replace ``Optimizer.log`` by one that reports fmax only, never energies.

    Put it first in the bases of an ASE optimizer whose ``step()`` uses forces
    only (``class MyOpt(ForcesOnlyLogMixin, RFO)``). Log line: optimizer name,
    step number, wall-clock time and ``fmax`` (eV/Angstrom), the largest
    per-atom norm of the (generalised) forces that the convergence test uses.
    """

    def log(self, *args: Any, **kwargs: Any) -> None:  # signature differs across ASE versions
        fmax = max_force(self.atoms.get_forces())
        if self.logfile is None:
            return
        name = self.__class__.__name__
        if self.nsteps == 0:
            self.logfile.write("%s  %4s %8s %15s\n" % (" " * len(name), "Step", "Time", "fmax[eV/A]"))
        t = time.localtime()
        self.logfile.write("%s:  %3d %02d:%02d:%02d %15.6f\n" % (name, self.nsteps, t[3], t[4], t[5], fmax))


class ForcesOnlyFIRE(ForcesOnlyLogMixin, FIRE):
    """ASE ``FIRE`` for forces-only calculators.

    ``downhill_check=True`` compares energies between steps and is refused.
    All other arguments are FIRE's (``dt``, ``maxstep`` in Angstrom, ...).
    """

    def __init__(self, *args: Any, **kwargs: Any):
        if kwargs.get("downhill_check", False):
            raise ValueError("FIRE's downhill_check needs potential energies; a forces-only calculator has none")
        kwargs["downhill_check"] = False
        super().__init__(*args, **kwargs)


class ForcesOnlyFIRE2(ForcesOnlyLogMixin, FIRE2):
    """ASE ``FIRE2`` (its step uses forces only) with an energy-free log."""


class ForcesOnlyBFGS(ForcesOnlyLogMixin, BFGS):
    """ASE ``BFGS`` (Hessian update from forces and positions, no line search)
    with an energy-free log. ``maxstep`` in Angstrom."""


class ForcesOnlyLBFGS(ForcesOnlyLogMixin, LBFGS):
    """ASE ``LBFGS`` without line search, with an energy-free log.

    ``use_line_search=True`` evaluates energies and is refused.
    """

    def __init__(self, *args: Any, **kwargs: Any):
        if kwargs.get("use_line_search", False):
            raise ValueError("LBFGS's line search needs potential energies; a forces-only calculator has none")
        kwargs["use_line_search"] = False
        super().__init__(*args, **kwargs)


class ForcesOnlyMDMin(ForcesOnlyLogMixin, MDMin):
    """ASE ``MDMin`` (damped MD, forces only) with an energy-free log."""


FORCES_ONLY_OPTIMIZERS: Dict[str, Type[Optimizer]] = {
    "FIRE": ForcesOnlyFIRE,
    "FIRE2": ForcesOnlyFIRE2,
    "BFGS": ForcesOnlyBFGS,
    "LBFGS": ForcesOnlyLBFGS,
    "MDMIN": ForcesOnlyMDMin,
}


def _optimizer_class(optimizer: Union[str, Type[Optimizer]]) -> Type[Optimizer]:
    if isinstance(optimizer, str):
        try:
            return FORCES_ONLY_OPTIMIZERS[optimizer.upper()]
        except KeyError:
            raise ValueError(
                f"unknown optimizer {optimizer!r}; choose one of {sorted(FORCES_ONLY_OPTIMIZERS)} "
                "(the others need potential energies)"
            ) from None
    if isinstance(optimizer, type) and issubclass(optimizer, ForcesOnlyLogMixin) and issubclass(optimizer, Optimizer):
        return optimizer
    raise TypeError(
        f"optimizer must be a name in {sorted(FORCES_ONLY_OPTIMIZERS)} or an Optimizer subclass using "
        f"ForcesOnlyLogMixin, not {optimizer!r}"
    )


def relax(
    atoms: Atoms,
    fmax: float = 0.05,
    steps: int = 1000,
    optimizer: Union[str, Type[Optimizer]] = "FIRE",
    logfile: Optional[Union[IO, str]] = None,
    trajectory: Optional[str] = None,
    **optimizer_kwargs: Any,
) -> bool:
    """Relax ``atoms`` in place using forces only; return whether it converged.

    Parameters
    ----------
    atoms:
        Atoms (or an ASE filter) with a calculator attached; whatever calculator
        the user set is used, only its forces are requested.
    fmax:
        Convergence threshold on the largest per-atom force norm, eV/Angstrom.
    steps:
        Maximum number of optimizer steps.
    optimizer:
        ``"FIRE"`` (default, robust far from a minimum), ``"FIRE2"``, ``"BFGS"``
        (fast near a minimum), ``"LBFGS"`` or ``"MDMin"`` (case-insensitive), or a
        class built with :class:`ForcesOnlyLogMixin`.
    logfile:
        ``None`` for no log, a file name, an open file, or ``"-"`` for stdout.
    trajectory:
        Optional ``.traj`` file name; every step is written (positions, forces).
    **optimizer_kwargs:
        Passed to the optimizer (e.g. ``maxstep`` in Angstrom).

    Returns
    -------
    bool
        ``True`` if max |F| < ``fmax`` was reached within ``steps`` steps.
    """
    if getattr(getattr(atoms, "atoms", atoms), "calc", None) is None:
        raise ValueError("relax: atoms has no calculator attached")
    if fmax <= 0:
        raise ValueError(f"relax: fmax must be > 0 eV/A, got {fmax}")
    if steps < 0:
        raise ValueError(f"relax: steps must be >= 0, got {steps}")
    cls = _optimizer_class(optimizer)
    with cls(atoms, logfile=logfile, trajectory=trajectory, **optimizer_kwargs) as opt:
        converged = bool(opt.run(fmax=fmax, steps=steps))
        nsteps = opt.nsteps
    final = max_force(atoms.get_forces())
    if converged:
        logger.info("relax(%s): converged in %d steps, fmax %.4g eV/A", cls.__name__, nsteps, final)
    else:
        logger.warning(
            "relax(%s): not converged after %d steps, fmax %.4g eV/A > %.4g", cls.__name__, nsteps, final, fmax
        )
    return converged
