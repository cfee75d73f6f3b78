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

import contextlib
import logging
import time
import weakref
from typing import IO, Any, Callable, Dict, Optional, Sequence, Type, Union

import numpy as np
from ase import Atoms, units
from ase.optimize import BFGS, FIRE, FIRE2, LBFGS, MDMin
from ase.optimize.optimize import Optimizer
from ase.parallel import world
from ase.utils import IOContext

__all__ = [
    "ForcesOnlyMDLogger",
    "ForcesOnlyLogMixin",
    "ForcesOnlyFIRE",
    "ForcesOnlyFIRE2",
    "ForcesOnlyBFGS",
    "ForcesOnlyLBFGS",
    "ForcesOnlyMDMin",
    "FORCES_ONLY_OPTIMIZERS",
    "max_force",
    "min_pair_distance",
    "relax",
    "run_langevin",
    "TrajectoryWriteError",
]

logger = logging.getLogger(__name__)


def max_force(forces: np.ndarray) -> float:
    """Largest per-atom force norm, ``max_i |F_i|``.

    ``forces``: array reshapeable to (n, 3), eV/Angstrom (a filter's generalised
    forces work too). Returns eV/Angstrom; 0.0 for an empty array.
    """
    f = np.asarray(forces, dtype=float).reshape(-1, 3)
    if len(f) == 0:
        return 0.0
    return float(np.sqrt((f * f).sum(axis=1).max()))


class ForcesOnlyMDLogger(IOContext):
    """MD logger that never asks for an energy; a drop-in for ``ase.md.MDLogger``.

    Columns: ``Time[ps]`` (only when ``dyn`` has ``get_time()``), kinetic energy
    ``Ekin[eV]`` (``Ekin/N[eV]`` with ``peratom=True``), temperature ``T[K]``
    (``atoms.get_temperature()``, which counts 3N degrees of freedom minus
    constraints) and ``Fmax[eV/A]``, the largest per-atom force norm of the
    (constrained) forces. The potential energy is not available from a
    forces-only calculator, so there is no Epot/Etot column.

    Parameters
    ----------
    dyn:
        The ASE dynamics object (only a weak reference is kept), or ``None`` to
        log without a time column.
    atoms:
        The atoms being propagated (must have a calculator giving forces).
    logfile:
        File name, open file object, or ``"-"`` for standard output.
    header:
        Write a header line first.
    mode:
        How a named ``logfile`` is opened (``"a"`` appends, ``"w"`` truncates).
    peratom:
        Log the kinetic energy per atom.

    Use it exactly like ``MDLogger``: ``dyn.attach(logger, interval=10)``. It is a
    context manager; ``close()`` closes a file it opened.
    """

    def __init__(
        self,
        dyn: Any,
        atoms: Atoms,
        logfile: Union[IO, str],
        header: bool = True,
        mode: str = "a",
        peratom: bool = False,
        comm=world,
    ):
        self.dyn = weakref.proxy(dyn) if hasattr(dyn, "get_time") else None
        self.atoms = atoms
        self.peratom = peratom
        self.logfile = self.openfile(file=logfile, mode=mode, comm=comm)
        natoms = atoms.get_global_number_of_atoms()
        if self.dyn is not None:
            self.hdr = "%-10s " % ("Time[ps]",)
            self.fmt = "%-10.4f "
        else:
            self.hdr = ""
            self.fmt = ""
        ekin_name = "Ekin/N[eV]" if peratom else "Ekin[eV]"
        digits = 4 if (peratom or natoms <= 100) else 3 if natoms <= 1000 else 2
        self.hdr += "%12s %9s %12s" % (ekin_name, "T[K]", "Fmax[eV/A]")
        self.fmt += "%%12.%df %%9.2f %%12.5f\n" % digits
        if header:
            self.logfile.write(self.hdr + "\n")
            self.logfile.flush()

    def __del__(self):
        self.close()

    def __call__(self) -> None:
        """Write one line for the current state of ``atoms``."""
        ekin = self.atoms.get_kinetic_energy()
        temp = self.atoms.get_temperature()
        fmax = max_force(self.atoms.get_forces())
        if self.peratom:
            ekin /= self.atoms.get_global_number_of_atoms()
        dat: tuple = ()
        if self.dyn is not None:
            dat = (self.dyn.get_time() / (1000 * units.fs),)
        dat += (ekin, temp, fmax)
        self.logfile.write(self.fmt % dat)
        self.logfile.flush()


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


def min_pair_distance(atoms: Atoms, cutoff: float = 6.0) -> float:
    """Closest approach of any two atoms (Angstrom), periodic images included; inf if none within ``cutoff``."""
    from matscipy.neighbours import neighbour_list

    if atoms.pbc.any():
        d = neighbour_list("d", atoms, cutoff)
    else:
        diff = atoms.positions[:, None] - atoms.positions[None]
        d = np.sqrt((diff**2).sum(-1))[np.triu_indices(len(atoms), 1)]
    return float(d.min()) if len(d) else float("inf")


#: an observer is called every ``interval`` MD steps with the atoms and the step number
Observer = Callable[[Atoms, int], None]
#: a stop hook returns ``None`` to go on, or a reason (str) to end the run cleanly
StopHook = Callable[[Atoms, int], Optional[str]]


def _trajectory_format(trajectory: str) -> str:
    """ASE's name of the file format of ``trajectory``; refuses formats ASE cannot write or that
    hold a single frame. Called before the run, so it fails now, not after the whole run."""
    import ase.io.formats

    try:
        fmt = ase.io.formats.filetype(trajectory, read=False)
        io = ase.io.formats.get_ioformat(fmt)
        if not io.can_write:
            raise ValueError(f"ASE cannot write {fmt!r}")
        if io.single and fmt != "traj":
            raise ValueError(f"the {fmt!r} format holds a single frame")
    except Exception as exc:
        raise ValueError(
            f"cannot write trajectory {trajectory!r}: unknown or unsuitable file format ({type(exc).__name__}: {exc}); "
            "use e.g. .traj or .extxyz"
        ) from exc
    return fmt


class _TrajectoryStream:
    """Appends frames to an open trajectory file as MD runs (nothing is held in memory)."""

    def __init__(self, path: str, fmt: str):
        import ase.io

        self.fmt = fmt
        if fmt == "traj":
            self.handle = ase.io.Trajectory(path, "w")
        else:
            self.handle = open(path, "w")

    def write(self, atoms: Atoms) -> None:
        import ase.io

        if self.fmt == "traj":
            self.handle.write(atoms)
        else:
            ase.io.write(self.handle, atoms, format=self.fmt)
            self.handle.flush()

    def close(self) -> None:
        self.handle.close()


class TrajectoryWriteError(OSError):
    """Writing the trajectory failed (e.g. the disk is full); an existing file was kept."""


def run_langevin(
    atoms: Atoms,
    *,
    temperature_K: float,
    steps: int,
    timestep_fs: float = 5.0,
    friction_per_fs: float = 0.01,
    trajectory: Optional[str] = None,
    interval: int = 10,
    seed: int = 0,
    logfile: Optional[str] = None,
    progress: bool = False,
    overwrite: bool = False,
    observers: Sequence[Observer] = (),
    stop: Optional[StopHook] = None,
    min_distance_stop: Optional[float] = None,
    thermalize: bool = True,
    distance_cutoff: float = 6.0,
) -> Dict[str, Any]:
    """Langevin MD with any forces-only calculator attached to ``atoms`` (modified in place).

    ASE's ``Langevin`` with ``fixcm=False`` (all 3N degrees of freedom thermalised, so the centre of
    mass is not held still and ``Stationary`` would be wrong here). Velocities start from
    Maxwell-Boltzmann at ``temperature_K`` (ASE's ``thermalize_momenta``, seeded;
    ``thermalize=False`` keeps the atoms' momenta, e.g. to continue a run). Every step the forces are
    checked: a non-finite force ends the run cleanly, with ``stopped`` saying so. Every ``interval``
    steps (and at step 0):

    * the temperature, the closest approach of two atoms (Angstrom, periodic images included, pairs
      within ``distance_cutoff``; ``inf`` if none) and the largest force are recorded;
    * the frame (positions, momenta, forces) is appended to ``trajectory`` (any multi-frame format
      ASE writes). It is streamed to a temporary file as the run goes and renamed at the end, so an
      existing file is never half-overwritten (refused if it exists unless ``overwrite``); if the
      run fails the frames up to the failure are kept, if *writing* fails an old file is kept;
    * a line is logged with :class:`ForcesOnlyMDLogger` to ``logfile``;
    * each of ``observers`` is called as ``observer(atoms, step)``;
    * ``stop(atoms, step)`` may return a reason to end the run early, and ``min_distance_stop``
      (Angstrom) ends it when two atoms come closer (an MD collapse): the run then ends cleanly and
      the result says why in ``stopped``.

    Returns ``steps`` (done), ``wall_s``, ``steps_per_second``, ``ns_per_day``,
    ``mean_temperature_K``, ``min_distance`` (Angstrom, over the observed steps),
    ``min_distance_step``, ``max_force`` (eV/Angstrom) and ``stopped`` (``None`` or the reason).
    """
    from ase.md.langevin import Langevin

    try:  # ASE >= 3.28 (3.29 deprecates MaxwellBoltzmannDistribution in its favour)
        from ase.md.velocitydistribution import thermalize_momenta
    except ImportError:  # older ASE
        from ase.md.velocitydistribution import MaxwellBoltzmannDistribution as thermalize_momenta

    from .files import atomic_output, check_writable

    if steps < 0 or interval < 1 or timestep_fs <= 0 or temperature_K <= 0:
        raise ValueError(
            f"need steps >= 0, interval >= 1, timestep_fs > 0, temperature_K > 0; got {steps}, {interval}, "
            f"{timestep_fs}, {temperature_K}"
        )
    traj_format = None
    if trajectory is not None:  # fail now, not after the whole run
        check_writable(trajectory, overwrite)
        traj_format = _trajectory_format(trajectory)
    rng = np.random.default_rng(seed)
    if thermalize:
        thermalize_momenta(atoms, temperature_K=temperature_K, rng=rng)
    dyn = Langevin(
        atoms, timestep_fs * units.fs, temperature_K=temperature_K, friction=friction_per_fs / units.fs,
        rng=rng, fixcm=False,
    )
    stats: Dict[str, list] = {"temperature": [], "min_distance": [], "max_force": []}
    closest = {"d": float("inf"), "step": -1}
    stopped: Dict[str, Optional[str]] = {"reason": None}
    stream: Optional[_TrajectoryStream] = None

    class _Stop(Exception):
        pass

    def check_forces() -> None:  # every step; the forces are cached, so this costs little
        if not np.all(np.isfinite(atoms.get_forces())):
            stopped["reason"] = f"non-finite force at MD step {int(dyn.nsteps)}"
            raise _Stop

    def observe() -> None:
        step = int(dyn.nsteps)
        forces = atoms.get_forces()
        d = min_pair_distance(atoms, cutoff=distance_cutoff)
        if d < closest["d"]:
            closest.update(d=d, step=step)
        stats["temperature"].append(atoms.get_temperature())
        stats["min_distance"].append(d)
        stats["max_force"].append(max_force(forces))
        if stream is not None:
            from ase.calculators.singlepoint import SinglePointCalculator

            snap = atoms.copy()
            snap.calc = SinglePointCalculator(snap, forces=forces.copy())
            try:
                stream.write(snap)
            except OSError as exc:
                raise TrajectoryWriteError(exc.errno, f"writing trajectory {trajectory!r} failed: {exc}") from exc
        for observer in observers:
            observer(atoms, step)
        reason = None
        if min_distance_stop is not None and d < min_distance_stop:
            reason = f"atoms {d:.3f} A apart at step {step} (< {min_distance_stop} A)"
        elif stop is not None:
            reason = stop(atoms, step)
        if reason:
            stopped["reason"] = reason
            raise _Stop

    dyn.attach(check_forces, interval=1)
    dyn.attach(observe, interval=interval)
    md_logger = None
    if logfile is not None:
        md_logger = ForcesOnlyMDLogger(dyn, atoms, logfile, mode="w")
        dyn.attach(md_logger, interval=interval)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=steps, desc="MD", unit="step", dynamic_ncols=True)
        dyn.attach(lambda: bar.update(1) if dyn.nsteps > 0 else None, interval=1)

    def keep_partial(exc: BaseException) -> bool:  # frames up to an MD failure, but not a failed write
        return not isinstance(exc, TrajectoryWriteError)

    output = atomic_output(trajectory, overwrite, keep_partial) if trajectory is not None else contextlib.nullcontext()
    t0 = time.perf_counter()
    try:
        with output as tmp:
            if tmp is not None:
                stream = _TrajectoryStream(tmp, traj_format)  # type: ignore[arg-type]
            try:
                dyn.run(steps)
            except _Stop:
                logger.warning("MD stopped early: %s", stopped["reason"])
            finally:
                if stream is not None:
                    stream.close()
    finally:
        wall = time.perf_counter() - t0
        if bar is not None:
            bar.close()
        if md_logger is not None:
            md_logger.close()
    done = int(dyn.nsteps)
    return {
        "steps": done,
        "wall_s": wall,
        "steps_per_second": done / wall if wall > 0 else float("inf"),
        "ns_per_day": done * timestep_fs * 1e-6 / wall * 86400 if wall > 0 else float("inf"),
        "mean_temperature_K": float(np.mean(stats["temperature"])) if stats["temperature"] else float("nan"),
        "min_distance": float(closest["d"]) if stats["min_distance"] else float("nan"),
        "min_distance_step": int(closest["step"]),
        "max_force": float(np.max(stats["max_force"])) if stats["max_force"] else float("nan"),
        "stopped": stopped["reason"],
    }
