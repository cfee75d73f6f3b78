"""The exact check (docs/design.md, "Exact check: a harmonic bond"): a harmonic dimer.

Both atoms are noised, so the bond vector sees noise of variance 2 sigma^2 and the smoothed force
along the bond is F_sigma = F / (1 + 2 k sigma^2 / kT) = -k_eff (d - d0). We train on exact Boltzmann
samples and fit the slope of the predicted bond force against (d - d0).

Settings make 2 k sigma^2 / kT = 1, so the expected slope is -k/2. Tolerance: 10% of k_eff.
The alternatives a wrong pipeline would give are far outside it: dropping kT multiplies the slope
by 1/kT ~ 39, using sigma instead of sigma^2 multiplies it by 1/sigma = 10 (or 0.1), a missing
factor 2 in the noise variance gives -2k/3 (+33%), and forgetting the smoothing gives -k (+100%).
"""

import numpy as np
import pytest
from ase import Atoms
from ase.units import kB

from ase_denoise.config import TrainConfig
from ase_denoise.data.reference import sample_harmonic_dimer
from ase_denoise.testing import model_output
from ase_denoise.training import prepare_data
from ase_denoise.training import Trainer

T = 300.0
KT = kB * T
SIGMA = 0.1
K = KT / (2 * SIGMA**2)  # eV/A^2, makes 2 k sigma^2 / kT = 1
D0 = 1.5
K_EFF = K / (1 + 2 * K * SIGMA**2 / KT)
TOLERANCE = 0.10


def bond_force_slope(model) -> float:
    ds = np.linspace(D0 - 0.2, D0 + 0.2, 21)  # +-1.4 thermal widths
    f_bond = []
    for d in ds:
        atoms = Atoms("HH", positions=[[0, 0, 0], [d, 0, 0]])
        eps = model_output(model, atoms)
        (sigma,) = model.noise_levels
        f_bond.append((model.kT * eps / sigma)[1, 0])  # force on atom 2 along the bond, eV/A
    return float(np.polyfit(ds - D0, f_bond, 1)[0])


@pytest.mark.parametrize("head", ["edge", "vector"])
def test_harmonic_bond_force_is_recovered_with_the_predicted_shrink(head, tmp_path):
    frames = sample_harmonic_dimer(2000, k=K, d0=D0, temperature_K=T, seed=0)
    config, physics, converted = prepare_data(
        frames, noise_std=SIGMA, r_max=3.0, num_channels=8, max_L=1 if head == "vector" else 0, max_ell=1,
        num_interactions=1, correlation=1, radial_mlp=[16, 16], edge_mlp=[32, 32], head=head,
    )
    assert abs(physics.kT - KT) < 1e-12  # temperature read from the frames' info
    cfg = TrainConfig(n_duplicates=4, epochs=8, batch_size=64, lr=5e-3, valid_fraction=0.1, seed=0, dtype="float64")
    result = Trainer(config, physics, converted, str(tmp_path), cfg).fit()
    slope = bond_force_slope(result.model)
    assert abs(slope + K_EFF) < TOLERANCE * K_EFF, f"slope {slope:.4f} eV/A^2, expected {-K_EFF:.4f}"
    # and it is clearly not the unsmoothed force
    assert abs(slope + K) > 3 * TOLERANCE * K_EFF
    # the validation force error against the TRUE force reflects exactly this shrink: rel. RMSE ~ 0.5
    assert 0.4 < result.history[-1]["force_relative_rmse"] < 0.6
