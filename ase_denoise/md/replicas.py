"""Independent Langevin replicas of one small system, all forces from one batched forward per step.

A 48-ion box spends most of an ASE step outside the network: one forward of one box is small, and
the calculator and integrator add per-call overhead. Running N replicas as one graph of N systems
amortises both: :class:`ReplicaLangevin` integrates N copies with ASE's own Langevin scheme (the
same update and the same coefficients as ``ase.md.langevin.Langevin`` with ``fixcm=False``,
vectorised over replicas) and gets their forces from one call of
:func:`ase_denoise.inference.predict` (one batched forward; a noise-ladder model's sigma -> 0
correction and the priors included, as the calculator does). Each replica has its own random
stream, so replica ``i`` seeded with ``seeds[i]`` follows the trajectory of an ASE ``Langevin`` run
with ``rng=np.random.default_rng(seeds[i])`` (tested to rounding).

Units: ASE's (Angstrom, eV, amu; ``timestep_fs`` in fs, ``friction_per_fs`` in 1/fs, temperature K).
"""

from __future__ import annotations

import logging
import time
from typing import Any, Callable, Dict, List, Optional, Sequence

import numpy as np
from ase import Atoms, units

from ..data.frames import fold_far_atoms
from ..data.neighbours import SkinNeighbourList
from ..forces import ForcesChoice, as_forces_choice, evaluation_levels
from ..inference import predict, structure_frame
from ..model import DenoiserMACE
from .langevin import check_md_temperature, thermalize_momenta

logger = logging.getLogger(__name__)

#: ``observer(step, positions [N, n, 3], velocities [N, n, 3])`` every ``interval`` steps (and at step 0)
ReplicaObserver = Callable[[int, np.ndarray, np.ndarray], None]


class ReplicaLangevin:
    """N independent Langevin runs of one system, forces from one batched forward per step.

    Parameters
    ----------
    model:
        a trained :class:`~ase_denoise.model.DenoiserMACE` (its own dtype and device are used).
    replicas:
        the start structures (same atoms in the same order; cells may differ). Not modified.
    temperature_K, timestep_fs, friction_per_fs:
        the thermostat, as ASE's ``Langevin(atoms, timestep_fs * units.fs, temperature_K=...,
        friction=friction_per_fs / units.fs, fixcm=False)``.
    seeds:
        one seed per replica for its random stream (default ``0 .. N-1``).
    thermalize:
        draw momenta from Maxwell-Boltzmann (ASE's ``thermalize_momenta`` with each replica's
        stream); otherwise the replicas' own momenta are used.
    allow_other_temperature:
        run at a ``temperature_K`` other than the model's training temperature (refused by default,
        :func:`~ase_denoise.md.langevin.check_md_temperature`).
    forces, skin:
        as :class:`~ase_denoise.calculator.DenoiseCalculator`: which forces
        (:class:`~ase_denoise.forces.ForcesChoice`, default the model's), and the Verlet skin of each
        replica's neighbour list, Angstrom.
    """

    def __init__(
        self,
        model: DenoiserMACE,
        replicas: Sequence[Atoms],
        *,
        temperature_K: float,
        timestep_fs: float = 1.0,
        friction_per_fs: float = 0.01,
        seeds: Optional[Sequence[int]] = None,
        thermalize: bool = True,
        forces: Optional[ForcesChoice] = None,
        skin: float = 1.0,
        allow_other_temperature: bool = False,
    ):
        if not replicas:
            raise ValueError("no replicas to run")
        check_md_temperature(model.temperature_K, temperature_K, allow_other_temperature)
        numbers = replicas[0].numbers
        if any(len(a) != len(numbers) or np.any(a.numbers != numbers) for a in replicas):
            raise ValueError("every replica must hold the same atoms in the same order (one system, many copies)")
        seeds = list(range(len(replicas))) if seeds is None else [int(s) for s in seeds]
        if len(seeds) != len(replicas):
            raise ValueError(f"{len(seeds)} seeds for {len(replicas)} replicas")
        self.model = model
        self.forces_choice = as_forces_choice(forces)
        evaluation_levels(model, self.forces_choice)  # refuses an untrained level or too high an order, now
        self.frames = [structure_frame(a, model, what=f"replica {i}") for i, a in enumerate(replicas)]
        self.lists = [SkinNeighbourList(model.config.r_max, skin) for _ in replicas]
        self.rngs = [np.random.default_rng(s) for s in seeds]
        self.masses = np.asarray(replicas[0].get_masses(), dtype=np.float64)[:, None]  # [n, 1] amu
        self.dt = timestep_fs * units.fs
        self.temperature_K = float(temperature_K)
        kT, fr, dt = units.kB * temperature_K, friction_per_fs / units.fs, self.dt
        sigma = np.sqrt(2 * kT * fr / self.masses)  # as ase.md.langevin.Langevin.updatevars
        self.c1 = dt / 2.0 - dt * dt * fr / 8.0
        self.c2 = dt * fr / 2 - dt * dt * fr * fr / 8.0
        self.c3 = np.sqrt(dt) * sigma / 2.0 - dt**1.5 * fr * sigma / 8.0
        self.c5 = dt**1.5 * sigma / (2 * np.sqrt(3))
        self.c4 = fr / 2.0 * self.c5
        self.positions = np.stack([f.positions for f in self.frames])  # [N, n, 3]
        if thermalize:
            momenta = []
            for atoms, rng in zip(replicas, self.rngs):
                copy = atoms.copy()
                thermalize_momenta(copy, temperature_K=temperature_K, rng=rng)
                momenta.append(copy.get_momenta())
        else:
            momenta = [a.get_momenta() for a in replicas]
        self.velocities = np.stack(momenta) / self.masses  # [N, n, 3]
        self.forces = self.compute_forces()
        self.steps_done = 0

    @property
    def n_replicas(self) -> int:
        return len(self.frames)

    def compute_forces(self) -> np.ndarray:
        """Forces (eV/A) [N, n, 3] at the current positions: one batched forward."""
        for frame, x in zip(self.frames, self.positions):
            frame.positions = x
        out = predict(self.model, self.frames, forces=self.forces_choice, batch_size=self.n_replicas,
                      neighbour_lists=self.lists)
        return out.reshape(self.positions.shape)

    def step(self) -> None:
        """One Langevin step of every replica (ASE's scheme, ``fixcm=False``)."""
        n = self.positions.shape[1]
        xi = np.stack([rng.standard_normal(size=(n, 3)) for rng in self.rngs])  # same draws, same order as ASE
        eta = np.stack([rng.standard_normal(size=(n, 3)) for rng in self.rngs])
        rnd_pos = self.c5 * eta
        rnd_vel = self.c3 * xi - self.c4 * eta
        v = self.velocities + (self.c1 * self.forces / self.masses - self.c2 * self.velocities + rnd_vel)
        x = self.positions
        self.positions = x + self.dt * v + rnd_pos
        v = (self.positions - x - rnd_pos) / self.dt
        self.forces = self.compute_forces()
        self.velocities = v + (self.c1 * self.forces / self.masses - self.c2 * v + rnd_vel)
        self.steps_done += 1

    def temperatures(self) -> np.ndarray:
        """Kinetic temperature of each replica [N], K (3N degrees of freedom, as ASE counts them)."""
        ekin = 0.5 * (self.masses * self.velocities**2).sum(axis=(1, 2))
        return ekin / (1.5 * units.kB * self.positions.shape[1])

    def atoms(self, i: int) -> Atoms:
        """Replica ``i`` now, as ``Atoms`` with momenta (a new object)."""
        frame = self.frames[i]
        numbers = np.asarray(self.model.config.atomic_numbers)[frame.species]
        out = Atoms(numbers=numbers, positions=self.positions[i], cell=frame.cell, pbc=frame.pbc,
                    masses=self.masses[:, 0])  # the start structures' masses (beads: not the placeholders')
        out.set_momenta(self.velocities[i] * self.masses)
        return out

    def run(self, steps: int, interval: int = 10, observers: Sequence[ReplicaObserver] = ()) -> Dict[str, Any]:
        """Advance every replica ``steps`` steps. Every ``interval`` steps (and at step 0) the
        temperatures are recorded and ``observers`` called. A non-finite force stops the run with
        ``stopped`` saying so. Returns ``steps``, ``wall_s``, ``steps_per_s`` (of the batch; times
        ``n_replicas`` for the aggregate), ``temperatures_K`` [samples, N] and ``stopped``."""
        temps: List[np.ndarray] = []
        stopped = None
        t0 = time.perf_counter()

        def observe() -> None:
            temps.append(self.temperatures())
            for observer in observers:
                observer(self.steps_done, self.positions, self.velocities)

        start = self.steps_done
        observe()
        for k in range(1, steps + 1):
            self.step()
            if not np.all(np.isfinite(self.forces)):
                bad = sorted({int(i) for i in np.argwhere(~np.isfinite(self.forces))[:, 0]})
                stopped = f"non-finite force in replicas {bad[:10]} at step {self.steps_done}"
                break
            if k % interval == 0:
                for frame, x in zip(self.frames, self.positions):  # as the calculator does
                    fold_far_atoms(x, frame.cell, frame.pbc)
                observe()
        wall = time.perf_counter() - t0
        done = self.steps_done - start
        return {"steps": done, "wall_s": wall, "steps_per_s": done / max(wall, 1e-12),
                "temperatures_K": np.array(temps), "stopped": stopped}
