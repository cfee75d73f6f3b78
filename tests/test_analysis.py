"""Force metrics, RDF and plots on inputs with known answers."""

from __future__ import annotations

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk

from ase_denoise.analysis import (
    first_peak,
    force_metrics,
    plot_force_parity,
    plot_rdf,
    rdf,
    rdf_difference,
)


# ------------------------------------------------------------------------------------------ metrics
def test_force_metrics_known_values():
    rng = np.random.default_rng(0)
    ref = rng.normal(size=(50, 3))
    same = force_metrics(ref, ref)
    assert same["rmse"] == 0 and same["mae"] == 0 and same["relative_rmse"] == 0
    assert same["cosine"] == pytest.approx(1.0) and same["slope"] == pytest.approx(1.0) and same["n"] == 50

    double = force_metrics(2 * ref, ref)
    assert double["cosine"] == pytest.approx(1.0)
    assert double["mean_cosine_per_atom"] == pytest.approx(1.0)
    assert double["slope"] == pytest.approx(2.0)
    assert double["relative_rmse"] == pytest.approx(1.0)  # |2r - r| = |r|

    zero = force_metrics(np.zeros_like(ref), ref)
    assert zero["relative_rmse"] == pytest.approx(1.0) and zero["slope"] == 0.0 and zero["cosine"] == 0.0

    flipped = force_metrics(-ref, ref)
    assert flipped["cosine"] == pytest.approx(-1.0) and flipped["mean_cosine_per_atom"] == pytest.approx(-1.0)
    assert flipped["rmse"] == pytest.approx(2 * np.sqrt(np.mean(ref**2)))

    # hand-computed: two atoms, one exact, one off by (1, 0, 0) out of six components
    m = force_metrics(np.array([[1.0, 0, 0], [1.0, 1, 0]]), np.array([[1.0, 0, 0], [0.0, 1, 0]]))
    assert m["rmse"] == pytest.approx(np.sqrt(1 / 6))
    assert m["mae"] == pytest.approx(1 / 6)
    assert m["relative_rmse"] == pytest.approx(np.sqrt(1 / 6) / np.sqrt(2 / 6))
    assert m["mean_cosine_per_atom"] == pytest.approx((1 + 1 / np.sqrt(2)) / 2)
    assert m["cosine"] == pytest.approx(2 / (np.sqrt(3) * np.sqrt(2)))
    assert m["slope"] == pytest.approx(2 / 2)


def test_force_metrics_lists_and_errors():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(4, 3)), rng.normal(size=(6, 3))
    pa, pb = a + 0.1, b - 0.2
    listed = force_metrics([pa, pb], [a, b])
    stacked = force_metrics(np.vstack([pa, pb]), np.vstack([a, b]))
    assert listed == stacked and listed["n"] == 10
    with pytest.raises(ValueError, match="shape"):
        force_metrics(np.zeros((4, 3)), np.zeros((5, 3)))
    with pytest.raises(ValueError, match="shape"):
        force_metrics(np.zeros((4, 2)), np.zeros((4, 2)))
    bad = a.copy()
    bad[1, 2] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        force_metrics(bad, a)


# ---------------------------------------------------------------------------------------------- rdf
def test_rdf_ideal_gas_is_one():
    rng = np.random.default_rng(2)
    box, n_atoms, n_frames = 20.0, 1000, 10
    frames = [
        Atoms(f"Ar{n_atoms}", positions=rng.uniform(0, box, (n_atoms, 3)), cell=[box] * 3, pbc=True)
        for _ in range(n_frames)
    ]
    r, g = rdf(frames, r_max=8.0, n_bins=40)
    assert r.shape == g.shape == (40,)
    np.testing.assert_allclose(r[:2], [0.1, 0.3])
    # expected ordered pair counts per bin; each unordered pair counts twice, so std(g) = sqrt(2/counts)
    shell = 4 / 3 * np.pi * ((r + 0.1) ** 3 - (r - 0.1) ** 3)
    counts = n_frames * n_atoms * (n_atoms - 1) / box**3 * shell
    sel = counts > 100
    assert np.all(np.abs(g[sel] - 1) < 5 * np.sqrt(2 / counts[sel]))
    assert np.mean(g[r > 3]) == pytest.approx(1.0, abs=0.005)


def test_rdf_fcc_first_peak_and_coordination():
    a = 5.26
    atoms = bulk("Ar", "fcc", a=a, cubic=True).repeat(4)  # box 21.04 A
    r, g = rdf(atoms, r_max=10.0, n_bins=500)
    position, height = first_peak(r, g)
    assert position == pytest.approx(a / np.sqrt(2), abs=0.5 * (r[1] - r[0]))
    assert height > 10
    # coordination number: integral of rho g 4 pi r^2 over the first shell = 12
    rho = len(atoms) / atoms.get_volume()
    dr = r[1] - r[0]
    first = r < 0.5 * (a / np.sqrt(2) + a)
    assert np.sum(rho * g[first] * 4 * np.pi * r[first] ** 2 * dr) == pytest.approx(12.0, rel=0.02)


def test_rdf_element_pairs():
    atoms = bulk("NaCl", "rocksalt", a=5.64, cubic=True).repeat(3)  # box 16.92 A
    atoms.set_chemical_symbols(["Li" if s == "Na" else "Cl" for s in atoms.get_chemical_symbols()])
    r, g_licl = rdf(atoms, r_max=5.0, n_bins=250, elements=("Li", "Cl"))
    _, g_lili = rdf(atoms, r_max=5.0, n_bins=250, elements=("Li", "Li"))
    assert first_peak(r, g_licl)[0] == pytest.approx(5.64 / 2, abs=0.02)
    assert first_peak(r, g_lili)[0] == pytest.approx(5.64 / np.sqrt(2), abs=0.02)
    assert np.all(g_licl[r < 5.64 / np.sqrt(2) - 0.1] >= 0) and g_lili[r < 3.5].max() == 0


def test_rdf_errors():
    atoms = bulk("Ar", "fcc", a=5.26, cubic=True).repeat(2)  # box 10.52 A, half 5.26
    with pytest.raises(ValueError, match="half the shortest box"):
        rdf(atoms, r_max=6.0)
    molecule = Atoms("Ar2", positions=[[0, 0, 0], [3, 0, 0]])
    with pytest.raises(ValueError, match="periodic"):
        rdf(molecule, r_max=3.0)


def test_rdf_difference_and_first_peak_interpolation():
    r = np.linspace(0.05, 9.95, 100)
    g = 1 + 2 * np.exp(-((r - 3.83) ** 2) / 0.1)
    pos, height = first_peak(r, g)
    assert pos == pytest.approx(3.83, abs=0.01)  # sub-bin: bins are 0.1 A wide
    assert height == pytest.approx(3.0, abs=0.05)
    d = rdf_difference(g, g + 0.1 * (r > 5), r=r)
    assert d["max_abs"] == pytest.approx(0.1)
    assert d["rms"] == pytest.approx(0.1 * np.sqrt(np.mean(r > 5)))
    assert d["r_at_max_abs"] > 5
    with pytest.raises(ValueError):
        rdf_difference(g, g[:-1])


# -------------------------------------------------------------------------------------------- plots
def test_plots_write_png(tmp_path):
    rng = np.random.default_rng(3)
    ref = rng.normal(size=(30, 3))
    path = plot_force_parity(ref + 0.1 * rng.normal(size=ref.shape), ref, tmp_path / "parity.png", title="test")
    assert path.exists() and path.stat().st_size > 1000
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    r = np.linspace(0.05, 8, 50)
    path = plot_rdf({"a": (r, 1 + np.sin(r) / r), "b": (r, np.ones_like(r))}, tmp_path / "sub" / "rdf.png")
    assert path.exists() and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_rdfs_against_a_reference_report_what_they_plot(tmp_path):
    """plot_rdfs_against_reference: the RMS difference is zero for the reference's own frames and
    grows when the frames change; the PNG is written."""
    from ase.build import bulk

    from ase_denoise.analysis import plot_rdfs_against_reference, rdf

    rng = np.random.default_rng(0)
    frames = []
    for _ in range(4):
        a = bulk("NaCl", "rocksalt", a=5.64, cubic=True).repeat(2)
        a.positions += rng.normal(0, 0.1, a.positions.shape)
        frames.append(a)
    r, g = rdf(frames, 5.0, n_bins=50, elements=("Na", "Cl"))
    reference = {"r": r, "Na-Cl": g, "Na-Cl_err": np.full_like(g, 0.01)}
    same = plot_rdfs_against_reference(frames, reference, [("Na", "Cl")], tmp_path / "same.png")
    assert same["Na-Cl"]["rms"] < 1e-12 and (tmp_path / "same.png").stat().st_size > 1000
    assert abs(same["Na-Cl"]["peak_r"] - 2.82) < 0.15
    hotter = [f.copy() for f in frames]
    for f in hotter:
        f.positions += rng.normal(0, 0.2, f.positions.shape)
    assert plot_rdfs_against_reference(hotter, reference, [("Na", "Cl")], tmp_path / "hot.png")["Na-Cl"]["rms"] > 0.1
