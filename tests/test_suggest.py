"""Noise ladder and cutoff from the data (ase_denoise/suggest.py, ``--noise-std auto``)."""

import subprocess
import sys

import ase.io
import numpy as np
from ase.units import kB

from ase_denoise.reference import lj_argon_frames, sample_harmonic_dimer
from ase_denoise.suggest import LADDER, MAX_SHRINK, suggest_settings


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
    assert "settings from the data:" in out.stdout and "narrowest peak Ar-Ar" in out.stdout
    from ase_denoise import load_model

    model = load_model(tmp_path / "m.safetensors")
    assert model.noise_levels == s.noise_std and model.config.r_max == s.r_max
    assert model.config.noise_embedding == 2
