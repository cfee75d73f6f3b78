"""Noise ladder and cutoff from the data (ase_denoise/training/suggest.py, ``--noise-std auto``)."""

import subprocess
import sys

import ase.io
import numpy as np
from ase.units import kB

from ase_denoise.data.reference import lj_argon_frames, sample_harmonic_dimer
from ase_denoise.training import suggest_settings
from ase_denoise.training.suggest import LADDER, MAX_SHRINK


def test_harmonic_dimer_width_gives_the_ladder():
    k, T = 2.0, 300.0
    s = suggest_settings(sample_harmonic_dimer(3000, k=k, temperature_K=T, seed=0))
    (shell,) = s.shells
    width = np.sqrt(kB * T / k)  # the bond's thermal width
    assert abs(shell.inner_width / width - 1) < 0.12, (shell.inner_width, width)
    assert abs(shell.peak - 1.5) < 0.03
    top = s.noise_std[-1]
    assert abs(2 * top**2 / shell.inner_width**2 - MAX_SHRINK) < 0.01  # the stated shrink at the top level
    np.testing.assert_allclose(np.array(s.noise_std) / top, LADDER, rtol=0.01)
    assert any("narrowest peak H-H" in line for line in s.reasoning)


def test_liquid_argon_cutoff_is_the_end_of_the_first_shell(tmp_path):
    frames = lj_argon_frames(20, 94.4, cache_dir=tmp_path, seed=3, stride=20, equilibration_steps=300)
    s = suggest_settings(frames)
    (shell,) = s.shells
    assert 3.5 < shell.peak < 3.85 and shell.first_minimum is not None and 4.8 < shell.first_minimum < 5.6
    assert s.r_max == float(f"{shell.first_minimum:.3g}")
    ase.io.write(tmp_path / "ar.extxyz", frames)
    out = subprocess.run(
        [sys.executable, "-m", "ase_denoise.cli", "train", "--data", str(tmp_path / "ar.extxyz"), "--noise-std", "auto",
         "--r-max", "auto", "--output", str(tmp_path / "m.safetensors"), "--epochs", "1", "--channels", "4",
         "--max-ell", "1", "--correlation", "1", "--interactions", "1", "--radial-mlp", "8"],
        capture_output=True, text=True, check=True,
    )
    # the reasoning is logged once, by the library (the CLI's log goes to stderr)
    reasoning = [line for line in out.stderr.splitlines() if "settings from the data:" in line]
    assert any("narrowest peak Ar-Ar" in line for line in reasoning), out.stderr
    assert sum("narrowest peak Ar-Ar" in line for line in reasoning) == 1, "the auto rule is resolved once"
    from ase_denoise import load_model

    model = load_model(tmp_path / "m.safetensors")
    assert model.noise_levels == s.noise_std and model.config.r_max == s.r_max
    assert model.config.noise_embedding == 2


def test_auto_ladder_can_leave_out_the_pairs_bonded_priors_hold():
    """With smoothed bonded priors the network no longer resolves the bonds, so the ladder follows the
    narrowest peak among the other pairs: a stiff 0-1 bond (width 0.03 A) and a soft 1-2 tether
    (0.2 A); leaving out the bond's pair raises sigma_max from about 0.017 to about 0.06 A."""
    from ase import Atoms

    from ase_denoise.priors import HarmonicBonds
    from ase_denoise.priors import pairs_held_by_priors
    from ase_denoise.training import suggest_settings

    rng = np.random.default_rng(0)
    frames = []
    for _ in range(3000):
        bond, tether = 1.2 + rng.normal(0, 0.03), 3.0 + rng.normal(0, 0.2)
        frames.append(Atoms("COS", positions=[[0, 0, 0], [bond, 0, 0], [bond, tether, 0]]))
    held = pairs_held_by_priors([HarmonicBonds([(1, 0)], [1.2], [10.0])], frames)
    assert held == {(0, 1)} and pairs_held_by_priors(["bonded"], frames[:1]) >= {(0, 1)}
    plain = suggest_settings(frames)
    soft = suggest_settings(frames, exclude_pairs=held)
    assert 0.01 < plain.noise_std[-1] < 0.02  # the bond's width (0.03 A, read as about 0.04 off a binned peak)
    assert soft.noise_std[-1] > 3 * plain.noise_std[-1]
    assert "left out: 1 atom pairs" in soft.reasoning[0] and "C-O" not in " ".join(soft.reasoning[1:])
