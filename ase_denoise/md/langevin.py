"""Langevin MD with a forces-only calculator (:func:`run_langevin`, the library's one MD driver) and an
MD logger that never asks for an energy.

Units: ASE throughout. Time in ps in logs, energies in eV, temperature in K, forces in eV/Angstrom,
lengths in Angstrom.
"""

from __future__ import annotations

import contextlib
import logging
import time
import weakref
from typing import IO, Any, Callable, Dict, Optional, Sequence, Union

import ase.io
import ase.io.formats
import numpy as np
from ase import Atoms, units
from ase.calculators.singlepoint import SinglePointCalculator
from ase.md.langevin import Langevin
from ase.parallel import world
from ase.utils import IOContext
from matscipy.neighbours import neighbour_list
from tqdm.auto import tqdm

from ..errors import TrajectoryWriteError
from ..files import atomic_output, check_writable

try:  # ASE >= 3.28 (3.29 deprecates MaxwellBoltzmannDistribution in its favour)
    from ase.md.velocitydistribution import thermalize_momenta
except ImportError:  # older ASE
    from ase.md.velocitydistribution import MaxwellBoltzmannDistribution as thermalize_momenta

logger = logging.getLogger(__name__)

#: two atoms closer than this (Angstrom) end an MD run by default: no bond is this short
OVERLAP_DISTANCE = 0.5


def check_md_temperature(model_temperature_K: Optional[float], temperature_K: float, allowed: bool) -> None:
    """Refuse MD at a temperature other than the model's training temperature (both K) unless ``allowed``:
    the learned forces are ``kT * score`` of the data's ensemble and mean nothing at another state point."""
    if model_temperature_K is None or allowed:
        return
    if abs(float(temperature_K) - float(model_temperature_K)) > 1e-6 * float(model_temperature_K):
        raise ValueError(
            f"MD at {temperature_K:g} K with a model trained at {model_temperature_K:g} K: its forces are the "
            f"{model_temperature_K:g} K ensemble's (kT times the score of that data) and are not a force field of "
            f"another temperature; run at {model_temperature_K:g} K, or pass allow_other_temperature=True "
            "(CLI: --allow-other-temperature) to run it anyway")


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


def min_pair_distance(atoms: Atoms, cutoff: float = 6.0) -> float:
    """Closest approach of any two atoms (Angstrom), periodic images included; inf if none within ``cutoff``."""
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
        self.fmt = fmt
        if fmt == "traj":
            self.handle = ase.io.Trajectory(path, "w")
        else:
            self.handle = open(path, "w")

    def write(self, atoms: Atoms) -> None:
        if self.fmt == "traj":
            self.handle.write(atoms)
        else:
            ase.io.write(self.handle, atoms, format=self.fmt)
            self.handle.flush()

    def close(self) -> None:
        self.handle.close()


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
    min_distance_stop: Optional[float] = OVERLAP_DISTANCE,
    thermalize: bool = True,
    distance_cutoff: float = 6.0,
    allow_other_temperature: bool = False,
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
      (Angstrom; default :data:`OVERLAP_DISTANCE`, ``None`` switches the guard off) ends it when two
      atoms come closer (an MD collapse): the run then ends cleanly and the result says why in ``stopped``.

    A learned force field is the data's own temperature's (its forces are ``kT`` times a score): with
    a calculator that states its training temperature (``DenoiseCalculator.temperature_K``) a run at
    another ``temperature_K`` is refused unless ``allow_other_temperature``.

    Returns ``steps`` (done), ``wall_s``, ``steps_per_second``, ``ns_per_day``,
    ``mean_temperature_K``, ``min_distance`` (Angstrom, over the observed steps),
    ``min_distance_step``, ``max_force`` (eV/Angstrom) and ``stopped`` (``None`` or the reason).
    """
    if steps < 0 or interval < 1 or timestep_fs <= 0 or temperature_K <= 0:
        raise ValueError(
            f"need steps >= 0, interval >= 1, timestep_fs > 0, temperature_K > 0; got {steps}, {interval}, "
            f"{timestep_fs}, {temperature_K}"
        )
    check_md_temperature(getattr(atoms.calc, "temperature_K", None), temperature_K, allow_other_temperature)
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
