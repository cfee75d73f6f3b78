"""Duplication sampler (docs/design.md, "Duplication sampler")."""

import numpy as np
import pytest
from ase.build import bulk

from ase_denoise.data import to_frame
from ase_denoise.training.sampler import (
    DuplicationSampler,
    NoisyBatch,
    noised_copies,
    split_frames,
    validation_batches,
)


@pytest.fixture(scope="module")
def frames():
    out = []
    for i in range(10):
        a = bulk("Ar", "fcc", a=5.3, cubic=True)
        a.rattle(0.1, seed=i)
        out.append(to_frame(a, [18]))
    return out


def sampler(frames, seed=0, n_dup=3, batch=4, ids=range(10), **kw):
    return DuplicationSampler(frames, list(ids), n_dup, 0.1, batch, seed, **kw)


def collect(s, epoch, start=0):
    ids, noise = [], []
    for b in s.epoch(epoch, start_batch=start):
        ids += b.frame_ids
        noise += b.noise
    return ids, noise


def test_each_frame_visited_n_duplicates_times_with_independent_noise(frames):
    ids, noise = collect(sampler(frames), 0)
    assert sorted(ids) == sorted(list(range(10)) * 3)
    for f in range(10):
        draws = [n for i, n in zip(ids, noise) if i == f]
        assert len(draws) == 3
        # independent draws: pairwise distinct and uncorrelated
        for a in range(3):
            for b in range(a + 1, 3):
                assert not np.allclose(draws[a], draws[b])
    allnoise = np.concatenate(noise)
    assert abs(allnoise.std() - 0.1) < 0.01 and abs(allnoise.mean()) < 0.01


def test_noise_is_gaussian_with_the_stated_std(frames):
    s = DuplicationSampler(frames, range(10), 50, 0.07, 8, seed=1)
    x = np.concatenate(collect(s, 0)[1]).ravel()
    assert abs(x.std() - 0.07) / 0.07 < 0.02
    # Gaussian fourth moment: E[x^4] = 3 sigma^4
    assert abs(np.mean(x**4) / x.var() ** 2 - 3.0) < 0.15


def test_noise_is_fresh_each_epoch_and_reproducible(frames):
    s = sampler(frames)
    ids0, noise0 = collect(s, 0)
    ids1, noise1 = collect(s, 1)
    assert ids0 != ids1  # reshuffled
    first0 = [n for i, n in zip(ids0, noise0) if i == 0]
    first1 = [n for i, n in zip(ids1, noise1) if i == 0]
    assert not any(np.allclose(a, b) for a in first0 for b in first1)
    ids0b, noise0b = collect(sampler(frames), 0)  # a new sampler with the same seed
    assert ids0 == ids0b and all(np.array_equal(a, b) for a, b in zip(noise0, noise0b))
    ids0c, noise0c = collect(sampler(frames, seed=5), 0)
    assert not all(np.array_equal(a, b) for a, b in zip(noise0, noise0c))


def test_restart_mid_epoch_gives_the_same_batches(frames):
    s = sampler(frames)
    batches = list(s.epoch(2))
    resumed = list(s.epoch(2, start_batch=3))
    assert len(resumed) == len(batches) - 3
    for a, b in zip(batches[3:], resumed):
        assert a.frame_ids == b.frame_ids
        assert all(np.array_equal(x, y) for x, y in zip(a.noise, b.noise))


def test_noisy_positions_are_exactly_r_plus_noise(frames):
    b = next(iter(sampler(frames).epoch(0)))
    assert b.noise_std == [0.1] * len(b.frame_ids)  # the sigma of every copy travels with the batch
    for fid, noise, pos in zip(b.frame_ids, b.noise, b.positions):
        np.testing.assert_array_equal(pos, frames[fid].positions + noise)  # never rescaled


def test_concatenated_batches_keep_every_field_in_order(frames):
    a, b = list(sampler(frames).epoch(0))[:2]
    both = NoisyBatch.concat([a, b])
    assert both.frame_ids == a.frame_ids + b.frame_ids
    assert both.noise_std == a.noise_std + b.noise_std
    for x, y in zip(both.positions, a.positions + b.positions):
        np.testing.assert_array_equal(x, y)
    for x, y in zip(both.noise, a.noise + b.noise):
        np.testing.assert_array_equal(x, y)


def test_noised_copies_are_wrapped_samples_of_rho_sigma():
    atoms = bulk("Ar", "fcc", a=5.3, cubic=True).repeat(3)
    (copy,) = noised_copies([atoms], 0.05, seed=1)
    assert np.array_equal(atoms.positions, bulk("Ar", "fcc", a=5.3, cubic=True).repeat(3).positions)  # untouched
    scaled = copy.get_scaled_positions(wrap=False)
    assert scaled.min() >= 0.0 and scaled.max() < 1.0  # wrapped back into the cell
    d = copy.positions - atoms.positions
    d -= np.round(d @ np.linalg.inv(atoms.cell.array)) @ atoms.cell.array  # modulo the lattice
    n = d.size  # tolerances: 4 standard errors of the sample std and mean
    assert abs(d.std() - 0.05) < 4 * 0.05 / np.sqrt(2 * n) and abs(d.mean()) < 4 * 0.05 / np.sqrt(n)
    (again,) = noised_copies([atoms], 0.05, seed=1)
    np.testing.assert_array_equal(again.positions, copy.positions)


def test_split_is_by_frame_and_validation_noise_is_fixed(frames):
    train, valid = split_frames(10, 0.3, seed=0)
    assert len(valid) == 3 and set(train).isdisjoint(valid) and set(train) | set(valid) == set(range(10))
    assert np.array_equal(split_frames(10, 0.3, seed=0)[1], valid)
    s = sampler(frames, ids=train)
    seen = {i for e in range(3) for i in collect(s, e)[0]}
    assert seen == set(train)  # no validation frame is ever trained on
    v1 = validation_batches(frames, valid, 2, 0.1, 4, seed=0)
    v2 = validation_batches(frames, valid, 2, 0.1, 4, seed=0)
    assert all(np.array_equal(a, b) for x, y in zip(v1, v2) for a, b in zip(x.noise, y.noise))
    assert all(b.noise_std == [0.1] * len(b.frame_ids) for b in v1)
    assert sorted(i for b in v1 for i in b.frame_ids) == sorted(list(valid) * 2)


def test_frames_are_sharded_before_duplication(frames):
    ranks = [sampler(frames, rank=r, world_size=2) for r in range(2)]
    seen = [set(collect(s, 0)[0]) for s in ranks]
    assert seen[0].isdisjoint(seen[1]) and seen[0] | seen[1] == set(range(10))


@pytest.mark.parametrize("kw,msg", [({"n_duplicates": 0}, "n_duplicates"), ({"noise_std": 0.0}, "noise_std")])
def test_bad_settings_are_refused(frames, kw, msg):
    args = dict(frames=frames, frame_ids=range(10), n_duplicates=2, noise_std=0.1, batch_size=4, seed=0)
    args.update(kw)
    with pytest.raises(ValueError, match=msg):
        DuplicationSampler(**args)


# ------------------------------------------------------------------------------------------------
# Antithetic pairs (N, -N): same marginal noise, lower gradient noise (docs/noise-ladder.md)
# ------------------------------------------------------------------------------------------------
def test_antithetic_pairs_are_mirrored_draws_of_one_frame_in_one_batch(frames):
    levels = (0.05, 0.1)
    s = DuplicationSampler(frames, range(10), 4, levels, 6, seed=2, antithetic=True)
    ids, first_draws = [], {lvl: [] for lvl in levels}
    for b in s.epoch(0):
        assert len(b.frame_ids) % 2 == 0
        for k in range(0, len(b.frame_ids), 2):
            assert b.frame_ids[k] == b.frame_ids[k + 1] and b.noise_std[k] == b.noise_std[k + 1]
            np.testing.assert_array_equal(b.noise[k + 1], -b.noise[k])
            np.testing.assert_array_equal(b.positions[k + 1], frames[b.frame_ids[k]].positions - b.noise[k])
            first_draws[b.noise_std[k]].append(b.noise[k])
        ids += b.frame_ids
    assert sorted(ids) == sorted(list(range(10)) * 4)  # still n_duplicates visits per frame
    for level, draws in first_draws.items():  # the pairs' first draws: independent Gaussians at their level
        x = np.concatenate(draws).ravel()
        assert abs(x.std() / level - 1) < 0.1 and abs(x.mean()) < 0.2 * level
        assert not any(np.allclose(a, b) for i, a in enumerate(draws) for b in draws[i + 1:])


def test_antithetic_restart_mid_epoch_gives_the_same_batches(frames):
    s = sampler(frames, n_dup=4, batch=4, antithetic=True)
    ids, noise = collect(s, 3)
    ids2, noise2 = collect(s, 3, start=2)
    assert ids2 == ids[8:]
    assert all(np.array_equal(a, b) for a, b in zip(noise2, noise[8:]))
    assert collect(s, 4)[0] != ids  # fresh pairs each epoch


@pytest.mark.parametrize("kw", [{"n_duplicates": 3}, {"batch_size": 5}])
def test_antithetic_pairs_need_even_counts(frames, kw):
    args = dict(frames=frames, frame_ids=range(10), n_duplicates=2, noise_std=0.1, batch_size=4, seed=0, antithetic=True)
    args.update(kw)
    with pytest.raises(ValueError, match="antithetic"):
        DuplicationSampler(**args)
    from ase_denoise import TrainConfig

    with pytest.raises(ValueError, match="antithetic_noise"):
        TrainConfig(antithetic_noise=True, **{k: v for k, v in args.items() if k in ("n_duplicates", "batch_size")})


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_antithetic_pairs_lower_the_gradient_noise_at_small_sigma(tmp_path, dtype):
    """The loss gradient of one batch (real model, real training loss) over 16 batches at sigma 0.01 A:
    antithetic pairs cut its variance several-fold (on the zoo LiCl model 7x at 0.012 A,
    benchmarks/gradient_noise.md), and both settings estimate the same mean gradient."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
    from gradient_noise import compare

    from ase_denoise import TrainConfig
    from ase_denoise.training import prepare_data
    from ase_denoise.training import Trainer

    atoms = []
    for i in range(12):
        a = bulk("Ar", "fcc", a=5.3, cubic=True).repeat(2)
        a.rattle(0.15, seed=i)
        atoms.append(a)
    config, physics, converted = prepare_data(atoms, noise_std=0.01, temperature_K=94.4, r_max=4.0, num_channels=8,
                                              max_ell=1, num_interactions=1)
    trainer = Trainer(config, physics, converted, str(tmp_path), TrainConfig(n_duplicates=2, batch_size=8, dtype=dtype))
    row = compare(trainer, 0.01, n_batches=16)
    assert row["ratio"] > 3.0, row
    assert row["mean_gap_in_standard_errors"] < 4.0, row
