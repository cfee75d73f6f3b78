"""The duplication sampler: where the noise is drawn (docs/design.md, "Duplication sampler").

Every epoch visits each training frame ``n_duplicates`` times in a shuffled order; every visit gets
an independent Gaussian noise draw ``N ~ Normal(0, sigma^2)`` per atom and Cartesian component.
With several noise levels (a sigma ladder, docs/noise-ladder.md) each visit first draws its
sigma uniformly from the ladder. All randomness derives from ``(seed, epoch, batch index)`` through
numpy's ``SeedSequence``, so noise is fresh each epoch, a run is reproducible from its seed, and a
run interrupted in the middle of an epoch resumes with exactly the batches and noise it would have
seen.

Antithetic pairs (``antithetic=True``, docs/noise-ladder.md, "Less gradient noise without labels:
antithetic pairs"): the ``n_duplicates`` visits of a
frame come as ``n_duplicates / 2`` pairs, each pair one draw ``N`` and its mirror ``-N`` at the same
sigma, next to each other in one batch. Every copy is still a Gaussian draw, so the loss keeps its
expectation and optimum; in the pair's summed gradient the term linear in ``N``, whose variance grows
as ``1/sigma^2``, cancels, which is what makes the small levels of a ladder learnable from few frames.

Data-parallel training shards *frames* before duplication (``rank``/``world_size``): all copies of a
frame stay on one rank, and the noise of rank r is drawn from ``(seed, epoch, r, batch)``. Shards are
made equal by dropping the last ``n_frames % world_size`` training frames.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, List, Sequence, Tuple, Union

import numpy as np
from ase import Atoms

from ..data.frames import Frame

_VALIDATION_STREAM = 2**31 - 1  # a stream id no training epoch uses


def split_frames(n_frames: int, valid_fraction: float, seed: int) -> Tuple[np.ndarray, np.ndarray]:
    """Split frame indices into (train, valid) *by frame*; duplicates never straddle the split."""
    if n_frames < 1:
        raise ValueError("no frames to split")
    order = np.random.default_rng([seed, _VALIDATION_STREAM, 0]).permutation(n_frames)
    n_valid = int(round(valid_fraction * n_frames))
    if valid_fraction > 0 and n_frames >= 2:
        n_valid = min(max(n_valid, 1), n_frames - 1)
    else:
        n_valid = 0
    return np.sort(order[n_valid:]), np.sort(order[:n_valid])


def noise_levels(noise_std: Union[float, Sequence[float]]) -> Tuple[float, ...]:
    """One level or a ladder as a sorted tuple (Angstrom); refuses values that are not > 0."""
    levels = (noise_std,) if isinstance(noise_std, (int, float)) else tuple(noise_std)
    if not levels or any(not float(s) > 0 for s in levels):
        raise ValueError(f"noise_std={noise_std} Angstrom: every level must be > 0")
    return tuple(sorted(float(s) for s in levels))


def draw_noise(rng: np.random.Generator, n_atoms: int, noise_std: float) -> np.ndarray:
    """One noise draw, [n_atoms, 3] Angstrom, i.i.d. Normal(0, noise_std^2) per component."""
    return rng.normal(0.0, noise_std, size=(n_atoms, 3))


def noisy_positions(frame: Frame, noise: np.ndarray) -> np.ndarray:
    """``x = r + N`` (Angstrom), never rescaled.

    Deliberately *not* wrapped back into the cell: the model sees only edge vectors, which carry
    their periodic-image shifts, so a wrapped and an unwrapped ``x`` give identical outputs
    (tested); unwrapped, every noisy copy of a frame can reuse the frame's one skin neighbour list
    (docs/design.md, "Neighbour lists"), whereas a wrapped atom would look like a jump of a lattice vector.
    """
    return frame.positions + noise


@dataclass
class NoisyBatch:
    frame_ids: List[int]  # indices into the frame list
    noise: List[np.ndarray]  # [n_atoms_k, 3] each, Angstrom
    positions: List[np.ndarray]  # noisy positions r + N
    noise_std: List[float]  # the sigma each copy's noise was drawn with, Angstrom

    @staticmethod
    def concat(batches: Sequence["NoisyBatch"]) -> "NoisyBatch":
        """One batch holding all of ``batches`` (e.g. the union of the ranks' batches of one step)."""
        return NoisyBatch(
            [i for b in batches for i in b.frame_ids], [n for b in batches for n in b.noise],
            [p for b in batches for p in b.positions], [s for b in batches for s in b.noise_std],
        )


class DuplicationSampler:
    """Yields noisy batches for one epoch; restartable from ``(seed, epoch, start_batch)``.

    ``frame_ids``: the training frames (indices into ``frames``). ``noise_std``: sigma (Angstrom), or a
    ladder of levels from which each copy draws its own. ``batch_size``: noisy copies per batch.
    ``rank``/``world_size``: frames are sharded before duplication. ``antithetic``: copies come in
    mirrored pairs ``(N, -N)`` (needs an even ``n_duplicates`` and ``batch_size``, so that a pair never
    straddles two batches).
    """

    def __init__(
        self,
        frames: Sequence[Frame],
        frame_ids: Sequence[int],
        n_duplicates: int,
        noise_std: Union[float, Sequence[float]],
        batch_size: int,
        seed: int,
        rank: int = 0,
        world_size: int = 1,
        antithetic: bool = False,
    ):
        if n_duplicates < 1:
            raise ValueError(f"n_duplicates={n_duplicates}: each frame needs at least one noise draw per epoch")
        if antithetic and (n_duplicates % 2 or batch_size % 2):
            raise ValueError(
                f"antithetic noise pairs need an even n_duplicates and batch_size (got {n_duplicates} and "
                f"{batch_size}): each pair (N, -N) is two copies of one frame in one batch"
            )
        self.antithetic = bool(antithetic)
        self.noise_levels = noise_levels(noise_std)
        self.frames = frames
        ids = np.asarray(frame_ids, dtype=np.int64)
        if world_size > 1:  # equal shards, so every rank runs the same number of batches
            ids = ids[: len(ids) - len(ids) % world_size]
        self.frame_ids = ids[rank::world_size]
        if len(self.frame_ids) == 0:
            raise ValueError("no training frames on this rank")
        self.n_duplicates = int(n_duplicates)
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self.rank = int(rank)

    def __len__(self) -> int:
        """Batches per epoch."""
        return -(-len(self.frame_ids) * self.n_duplicates // self.batch_size)

    def epoch_order(self, epoch: int) -> np.ndarray:
        """Frame ids of one epoch: each training frame ``n_duplicates`` times, shuffled (antithetic:
        shuffled pairs, the two copies of a pair adjacent)."""
        rng = np.random.default_rng([self.seed, epoch, self.rank, 0])
        if self.antithetic:
            return np.repeat(rng.permutation(np.repeat(self.frame_ids, self.n_duplicates // 2)), 2)
        return rng.permutation(np.repeat(self.frame_ids, self.n_duplicates))

    def epoch(self, epoch: int, start_batch: int = 0) -> Iterator[NoisyBatch]:
        order = self.epoch_order(epoch)
        for b in range(start_batch, len(self)):
            ids = order[b * self.batch_size : (b + 1) * self.batch_size].tolist()
            rng = np.random.default_rng([self.seed, epoch, self.rank, 1, b])
            level_rng = np.random.default_rng([self.seed, epoch, self.rank, 2, b])
            if self.antithetic:  # one draw per pair, then its mirror (ids come in adjacent pairs)
                pair_sigmas = self._levels(len(ids) // 2, level_rng)
                draws = [draw_noise(rng, self.frames[i].n_atoms, s) for i, s in zip(ids[::2], pair_sigmas)]
                sigmas = [s for s in pair_sigmas for _ in range(2)]
                noise = [n for draw in draws for n in (draw, -draw)]
            else:
                sigmas = self._levels(len(ids), level_rng)
                noise = [draw_noise(rng, self.frames[i].n_atoms, s) for i, s in zip(ids, sigmas)]
            positions = [noisy_positions(self.frames[i], n) for i, n in zip(ids, noise)]
            yield NoisyBatch(ids, noise, positions, sigmas)

    def _levels(self, n: int, rng: np.random.Generator) -> List[float]:
        """sigma of each of ``n`` copies: the one level, or uniform draws from the ladder."""
        if len(self.noise_levels) == 1:
            return [self.noise_levels[0]] * n
        return [self.noise_levels[k] for k in rng.integers(len(self.noise_levels), size=n)]


def validation_batches(
    frames: Sequence[Frame],
    frame_ids: Sequence[int],
    n_duplicates: int,
    noise_std: Union[float, Sequence[float]],
    batch_size: int,
    seed: int,
) -> List[NoisyBatch]:
    """Fixed validation noise: drawn once from the seed, identical for every epoch; ``n_duplicates``
    copies of every frame at every level of the ladder."""
    rng = np.random.default_rng([seed, _VALIDATION_STREAM, 1])
    copies = [
        (int(i), s) for s in noise_levels(noise_std) for i in np.repeat(np.asarray(frame_ids, dtype=np.int64), n_duplicates)
    ]
    batches = []
    for start in range(0, len(copies), batch_size):
        chunk = copies[start : start + batch_size]
        noise = [draw_noise(rng, frames[i].n_atoms, s) for i, s in chunk]
        positions = [noisy_positions(frames[i], n) for (i, _), n in zip(chunk, noise)]
        batches.append(NoisyBatch([i for i, _ in chunk], noise, positions, [s for _, s in chunk]))
    return batches


def noised_copies(frames: Sequence[Atoms], noise_std: float, seed: int = 0) -> List[Atoms]:
    """Copies of ``frames`` with Gaussian noise of ``noise_std`` (Angstrom) added and wrapped back
    into their cells: samples of ``rho_sigma``, the density MD with sigma-smoothed forces samples
    (what a reference RDF is compared with to separate smoothing bias from learning error)."""
    rng = np.random.default_rng(seed)
    out = []
    for atoms in frames:
        copy = atoms.copy()
        copy.positions = noisy_positions(copy, draw_noise(rng, len(copy), noise_std))  # type: ignore[arg-type]
        copy.wrap()
        out.append(copy)
    return out
