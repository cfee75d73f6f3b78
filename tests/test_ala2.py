"""Alanine dipeptide (benchmarks/ala2): the molecule built from internal coordinates is
L-alanine dipeptide with the force field's 22 atoms; the data script writes exact unconstrained forces
and resumes after an interruption without losing frames; the study pipeline runs end to end in quick mode.

OpenMM is an optional extra (installed by ``make venv``); without it these tests skip, except under
``CI=true``, where they fail."""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

if importlib.util.find_spec("openmm") is None:  # pragma: no cover
    if os.environ.get("CI") == "true":
        raise ImportError("openmm is not installed but CI=true: the alanine-dipeptide tests must run in CI")
    pytest.skip("openmm is not installed (pip install 'ase_denoise[openmm]')", allow_module_level=True)

from _helpers import benchmark_module  # noqa: E402

ALA2 = Path(__file__).resolve().parent.parent / "benchmarks" / "ala2"


def _module(name: str):
    return benchmark_module(f"ala2/{name}.py")


@pytest.fixture(scope="module")
def make_data():
    return _module("make_data")


def test_the_built_molecule_is_l_alanine_dipeptide(make_data):
    x = make_data.heavy_atom_positions()
    assert make_data.chirality(x) > 0  # (S) at CA
    mirrored = {k: v * np.array([1, 1, -1]) for k, v in x.items()}
    assert make_data.chirality(mirrored) < 0  # the sign test tells the mirror image apart
    topology, positions, _ = make_data.build_system()
    assert topology.getNumAtoms() == 22
    assert [a.element.symbol for a in topology.atoms()].count("H") == 12


def test_data_script_writes_unconstrained_forces_and_resumes(make_data, tmp_path, monkeypatch):
    import openmm
    import openmm.app as app
    import openmm.unit as u

    out = tmp_path / "ala2.npz"
    args = ["--output", str(out), "--n-frames", "6", "--equil-ps", "0.2", "--frame-interval-ps", "0.05",
            "--checkpoint-every", "3"]
    # interrupt the run at its 5th step call (equilibration + 3 frames, checkpoint after frame 3)
    real_step, calls = app.Simulation.step, {"n": 0}

    def step(self, n):
        calls["n"] += 1
        if calls["n"] == 5:
            raise KeyboardInterrupt
        return real_step(self, n)

    monkeypatch.setattr(app.Simulation, "step", step)
    with pytest.raises(KeyboardInterrupt):
        make_data.main(args)
    monkeypatch.setattr(app.Simulation, "step", real_step)
    partial = np.load(out.with_suffix(".partial.npz"))
    assert partial["positions"].shape == (3, 22, 3) and not out.exists()
    assert make_data.main(args + ["--resume"]) == 0
    assert not out.with_suffix(".partial.npz").exists() and not out.with_suffix(".state.xml").exists()
    d = np.load(out)
    assert d["positions"].shape == d["forces"].shape == (6, 22, 3)
    np.testing.assert_array_equal(d["positions"][:3], partial["positions"])  # the resumed run kept them
    assert json.loads(str(d["metadata"]))["units"]["forces"] == "eV/A"
    # the stored forces are the force field's at the stored positions (no constraints, float32 storage)
    topology, _, forcefield = make_data.build_system()
    system = forcefield.createSystem(topology, nonbondedMethod=app.NoCutoff, constraints=None)
    context = openmm.Context(system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("Reference"))
    context.setPositions(d["positions"][-1].astype(np.float64) * 0.1)
    f = context.getState(getForces=True).getForces(asNumpy=True).value_in_unit(u.kilojoule_per_mole / u.nanometer)
    f = f * make_data.KJ_PER_MOL_NM_TO_EV_PER_A
    assert np.abs(f - d["forces"][-1]).max() < 1e-3 * np.abs(f).max()
    phi_psi = make_data.dihedrals(d["positions"].astype(np.float64), {n: i for i, n in enumerate(d["names"])})
    assert phi_psi.shape == (6, 2) and np.all(np.abs(phi_psi) <= 180)


@pytest.mark.slow
def test_study_pipeline_quick(make_data, tmp_path):
    """The all-atom study on the shared framework: two quick runs, one record each (force errors per element,
    the MD), and the table from the records."""
    data = tmp_path / "ala2.npz"
    assert make_data.main(["--output", str(data), "--n-frames", "60", "--equil-ps", "0.2",
                           "--frame-interval-ps", "0.05"]) == 0
    study = _module("study")
    try:
        assert study.main(["--quick", "--only", "denoise-500", "force-match-500", "--data", str(data), "--out-dir",
                           str(tmp_path), "--runs-dir", str(tmp_path / "runs")]) == 0
        records = study.STUDY.by_run(quick=True)
    finally:
        study.STUDY.configure()
    for name in ("denoise-500", "force-match-500"):
        res = records[name]
        assert set(res["forces"]) == {"all", "H", "C", "N", "O"} and res["recipe"] == name and res["seed"] == 0
        assert res["md"]["simulated_ps"] > 0
    assert len(records["force-match-500"]["noise_levels"]) == 1  # force matching: one (unused) level
    assert len(records["denoise-500"]["noise_levels"]) == 3  # the auto ladder
    from ala2 import tables
    from study_kit import Summary

    table = tables.aa_runs_table(tables.Records(Summary(tmp_path / "results" / "summary-quick.jsonl")))
    assert "| denoising, coordinates only | 500 | 1 |" in table and "| force matching | 500 | 1 |" in table


def test_committed_data_set_is_what_the_readme_says(make_data):
    d = np.load(ALA2 / "ala2_aa_300K.npz")
    meta = json.loads(str(d["metadata"]))
    assert d["positions"].shape == d["forces"].shape == (2500, 22, 3)
    assert float(d["temperature_K"]) == 300.0 and meta["timestep_fs"] == 1.0 and meta["frame_interval_ps"] == 2.0
    assert np.all(np.isfinite(d["forces"])) and 0.5 < np.sqrt((d["forces"] ** 2).mean()) < 5.0  # eV/A
    phi_psi = make_data.dihedrals(d["positions"].astype(np.float64), {n: i for i, n in enumerate(d["names"])})
    populations = make_data.basin_populations(phi_psi)
    assert abs(populations[next(iter(make_data.BASINS))][0] - 0.588) < 0.001  # the README's table
    # REGIONS splits beta into C7eq and PII and keeps the other basins: the same partition, finer
    regions = make_data.basin_populations(phi_psi, basins=make_data.REGIONS)
    c7eq, pii, alpha_r, alpha_l = (regions[k][0] for k in make_data.REGIONS)
    beta, *others = (populations[k][0] for k in make_data.BASINS)
    assert c7eq + pii == pytest.approx(beta, abs=1e-12) and [alpha_r, alpha_l] == others
    assert abs(c7eq - 0.038) < 0.001 and 0 < c7eq < pii  # the README's region table: C7eq is rare in GBn2


@pytest.fixture(scope="module")
def cg():
    return _module("cg")


def test_cg_map_keeps_the_backbone_atoms_their_forces_and_the_dihedrals(make_data, cg):
    """Six beads, each one heavy atom (the CGSchNet map): bead positions and mapped forces are that
    atom's, the beads are named types, and phi/psi from the beads are the all-atom backbone dihedrals."""
    d = np.load(ALA2 / "ala2_aa_300K.npz")
    frames = cg.map_frames()
    assert len(frames) == len(d["positions"])
    names = [str(x) for x in d["names"]]
    for k, (atom, bead) in enumerate(cg.BEADS):
        i = names.index(atom)
        np.testing.assert_allclose(frames[7].positions[k], d["positions"][7, i], rtol=0, atol=1e-6)
        np.testing.assert_allclose(frames[7].arrays["ref_forces"][k], d["forces"][7, i], rtol=0, atol=1e-6)
    assert frames[0].numbers.tolist() == [1, 2, 3, 4, 5, 6]  # every bead its own type
    assert {z: t for t, z in cg.bead_table().items()}[4] == "CB"
    all_atom = make_data.dihedrals(d["positions"][:50].astype(np.float64), {n: i for i, n in enumerate(names)})
    np.testing.assert_allclose(cg.reference_phi_psi(frames[:50]), all_atom, atol=1e-3)
    # the CB bead carries the chirality: mirroring the beads flips the sign of phi and psi
    mirrored = np.stack([a.positions for a in frames[:50]]) * np.array([1.0, 1.0, -1.0])
    np.testing.assert_allclose(cg.dihedrals(mirrored), -all_atom, atol=1e-3)


def test_soft_ladder_skips_the_pairs_the_bonded_priors_cover(cg):
    """dns recipe: the auto rule on the bead pairs no bond or angle prior covers is set by a 1-4 pair
    (about 0.1 A wide), 2.5x wider than auto's, which the C-N bond (0.039 A) sets."""
    from ase_denoise.training import suggest_settings

    pool = cg.split(cg.map_frames())[0]
    soft, auto = cg.soft_ladder(pool), suggest_settings(pool).noise_std
    assert auto[-1] == pytest.approx(0.0149, abs=5e-4) and soft[-1] == pytest.approx(0.0383, abs=2e-3)
    assert soft[0] / soft[-1] == pytest.approx(0.45, abs=0.01)


def test_kl_divergence_of_phi_psi_samples(cg):
    rng = np.random.default_rng(0)
    beta = np.column_stack([rng.normal(-80, 20, 4000), rng.normal(150, 15, 4000)])
    alpha = np.column_stack([rng.normal(-80, 20, 4000), rng.normal(-40, 15, 4000)])
    assert cg.kl_divergence(beta, beta) == pytest.approx(0.0, abs=1e-12)
    same_law = cg.kl_divergence(beta[:2000], beta[2000:])
    assert 0 < same_law < 0.05  # sampling noise only
    assert cg.kl_divergence(beta, alpha) > 2.0  # disjoint basins
    # the product of the marginals keeps each angle's samples and loses their correlation
    coupled = np.column_stack([rng.normal(0, 30, 4000), np.zeros(4000)])
    coupled[:, 1] = coupled[:, 0] + rng.normal(0, 5, 4000)
    product = cg.marginals_product(coupled, copies=3)
    assert product.shape == (12000, 2) and np.array_equal(np.sort(product[:4000, 1]), np.sort(coupled[:, 1]))
    assert np.corrcoef(coupled.T)[0, 1] > 0.95 and abs(np.corrcoef(product.T)[0, 1]) < 0.05
    assert cg.kl_divergence(coupled, product) > 0.5


def test_js_divergence_and_pmf_rmse_of_phi_psi_samples(cg):
    """The figures CG diffusion papers report beside KL, on 64 x 64 bins: zero for one sample against
    itself, ln 2 (the JS maximum) for disjoint basins, and for a sample whose alpha basin counts twice
    the exact free-energy difference: ln 1.5 kT in every beta bin and ln 0.75 in every alpha bin,
    weighted by the bins' mean probability (5/12 and 7/12)."""
    rng = np.random.default_rng(0)
    def wrapped(phi, psi):  # angles as cg.dihedrals returns them, in [-180, 180)
        return (np.column_stack([phi, psi]) + 180.0) % 360.0 - 180.0

    beta = wrapped(rng.normal(-80, 20, 4000), rng.normal(150, 10, 4000))
    alpha = wrapped(rng.normal(-80, 20, 4000), rng.normal(-40, 10, 4000))
    assert cg.js_divergence(beta, beta) == pytest.approx(0.0, abs=1e-12)
    assert cg.pmf_rmse(beta, beta) == pytest.approx(0.0, abs=1e-12)
    assert cg.js_divergence(beta, alpha) == pytest.approx(np.log(2.0), abs=1e-12)
    assert cg.js_divergence(beta, alpha) == pytest.approx(cg.js_divergence(alpha, beta), abs=1e-12)
    assert cg.pmf_rmse(beta, alpha) > 5.0  # every visited bin empty on the other side: ln(p / 1e-6)
    both = np.concatenate([beta, alpha])
    alpha_twice = np.concatenate([beta, alpha, alpha])
    expected = np.sqrt(5 / 12 * np.log(1.5) ** 2 + 7 / 12 * np.log(0.75) ** 2)
    assert cg.pmf_rmse(both, alpha_twice) == pytest.approx(expected, rel=1e-9)
    assert 0 < cg.js_divergence(both, alpha_twice) < cg.js_divergence(beta, alpha)
    assert 0 < cg.js_divergence(beta[:2000], beta[2000:]) < 0.1  # sampling noise only, at 64 x 64 bins


@pytest.mark.slow
def test_cg_study_pipeline_quick(tmp_path, cg):
    """Trains denoising and force matching on the CG beads (tiny settings), runs batched replicas, writes
    one record per run, the tables and the free-energy plot; the torsion corrections (full, damped, joint)
    change the priors only; another MD seed is a variant record; publishing writes a zoo entry."""
    from ala2 import tables
    from ase_denoise.checkpoint import load_model_file

    args = ["--out-dir", str(tmp_path), "--runs-dir", str(tmp_path / "runs")]
    T = "denoise-smoothed-torsions-500"

    def records(variant=None):
        return {r["run"]: r for r in cg.STUDY.summary(quick=True).records("cg-run") if r.get("variant") == variant}

    def rec():
        return tables.Records(cg.STUDY.summary(quick=True))

    try:
        assert cg.main(["--quick", "--only", "denoise-500", "denoise-smoothed-500", "mixed-smoothed-500", "force-match-500",
                        "denoise-smoothed-energy-head-500", T, *args, "--plot", "denoise-500", "force-match-500"]) == 0
        runs = records()
        for name in ("denoise-500", "denoise-smoothed-500", "force-match-500"):
            res = runs[name]
            assert res["md"]["n_replicas"] == cg.QUICK["n_replicas"] and res["md"]["stopped"] is None
            assert np.isfinite(res["kl"]) and res["kl"] > 0
            assert abs(sum(v[0] for v in res["populations"].values()) - 1.0) < 1e-9
            assert abs(sum(v[0] for v in res["regions"].values()) - 1.0) < 1e-9
            assert {"kl_phi", "kl_psi", "mutual_information", "kl_held_out"} <= set(res)
        assert cg.BOOK.recipe("denoise-smoothed-500").get("smoothed") and cg.BOOK.recipe("mixed-smoothed-500").loss == "mixed"
        assert runs["denoise-smoothed-energy-head-500"]["md"]["friction_per_fs"] == cg.MD["friction_per_fs"]
        model = load_model_file(tmp_path / "runs" / "denoise-500-quick" / "best.safetensors")
        assert model.config.symbols == ["C-ace", "N", "CA", "CB", "C", "N-nme"]
        kinds = [p.to_dict()["kind"] for p in model.priors]
        assert kinds == ["harmonic_bonds", "harmonic_angles", "repulsive_wall"]
        assert "CA-CB" in model.priors[2].describe(model.config.bead_names)
        torsions = load_model_file(tmp_path / "runs" / f"{T}-quick" / "best.safetensors").priors
        assert [p.kind for p in torsions] == ["harmonic_bonds", "harmonic_angles", "repulsive_wall", "dihedrals"]
        assert torsions[3].dihedrals == [cg.PHI, cg.PSI] and torsions[3].in_residual
        table = tables.cg_runs_table(rec())
        assert "| reference (5 ns all-atom, mapped) |" in table and "| force matching | 500 | 1 |" in table
        assert table.startswith(f"CG MD friction: {cg.MD['friction_per_fs']:g} /fs")
        assert "The product of the phi and psi marginals of the first 2000 training frames" in table
        assert "| denoising as denoise-smoothed, energy head (conservative) | 500 | 1 |" in table
        regions = tables.cg_regions_table(rec()).splitlines()
        assert regions[0].startswith("| recipe | frames | seeds | C7eq | PII | alpha_R | alpha_L")
        row = next(r for r in regions if r.startswith("| force matching | 500 | 1 |"))
        assert sum(float(c) for c in row.strip("| ").split(" | ")[3:]) == pytest.approx(1.0, abs=0.003)
        assert load_model_file(tmp_path / "runs" / "denoise-smoothed-energy-head-500-quick" / "best.safetensors").config.head == "energy"
        # iterative Boltzmann correction of the torsions: the weights stay, a correction term is added
        assert cg.main(["--quick", "--refine", T, "--iterations", "2", *args]) == 0
        base = load_model_file(tmp_path / "runs" / f"{T}-quick" / "best.safetensors")
        refined = [load_model_file(tmp_path / "runs" / f"{T}+corrected{k}-quick" / "best.safetensors") for k in (1, 2)]
        for k, m in enumerate(refined, start=1):
            res = records()[f"{T}+corrected{k}"]
            assert res["refined_from"] == T and res["md"]["md_seed"] == 100 * k and np.isfinite(res["kl"])
            assert [p.kind for p in m.priors] == [p.kind for p in base.priors] + ["dihedral_correction"]
            assert all(torch.equal(a, b) for a, b in zip(m.state_dict().values(), base.state_dict().values()))
        assert refined[0].priors[-1].cos != refined[1].priors[-1].cos  # the second step moved the correction
        assert "+ torsion correction (no labels), iteration 2 | 500 | 1 |" in tables.cg_runs_table(rec())
        # a damped second step continues from the first: half of the full second step's change
        assert cg.main(["--quick", "--refine", T, "--start", "1", "--iterations", "1", "--damping", "0.5", *args]) == 0
        damped = load_model_file(tmp_path / "runs" / f"{T}+corrected2-half-quick" / "best.safetensors").priors[-1]
        first, full = (np.array([m.priors[-1].cos, m.priors[-1].sin]) for m in refined)
        np.testing.assert_allclose(np.array([damped.cos, damped.sin]) - first, 0.5 * (full - first), rtol=1e-3, atol=1e-6)
        res = records()[f"{T}+corrected2-half"]
        assert (res["iteration"], res["damping"], res["md"]["md_seed"]) == (2, 0.5, 200)
        assert "iteration 2 (damping 0.5 after a full first step) | 500 | 1 |" in tables.cg_runs_table(rec())
        with pytest.raises(FileNotFoundError, match="--iterations 3 first"):
            cg.refine_run(T, iterations=1, quick=True, start=3)
        # a joint phi/psi step beside the first step's one-dimensional correction
        assert cg.main(["--quick", "--refine", T, "--start", "1", "--joint", "--iterations", "1", *args]) == 0
        joint = load_model_file(tmp_path / "runs" / f"{T}+corrected2-joint-quick" / "best.safetensors")
        assert [p.kind for p in joint.priors] == [p.kind for p in refined[0].priors] + ["dihedral_pair_correction"]
        assert joint.priors[-2] == refined[0].priors[-1] and joint.priors[-1].pairs == [(cg.PHI, cg.PSI)]
        assert np.abs(joint.priors[-1].cos).max() > 0
        assert "iteration 2 (a joint phi-psi step after a full first step) | 500 | 1 |" in tables.cg_runs_table(rec())
        marginals = tables.cg_marginals_table(rec()).splitlines()
        assert marginals[0].startswith("| recipe | frames | seeds | KL of phi marginal") and len(marginals) == 5 + 10
        # the same trained model, MD with another thermostat seed: a variant record, the same forces
        first = records()["force-match-500"]
        assert cg.main(["--quick", "--only", "force-match-500", "--md-seed", "7", *args]) == 0
        again = records("md-seed-7")["force-match-500"]
        assert (first["md"]["md_seed"], again["md"]["md_seed"]) == (0, 7) and again["forces"] == first["forces"]
        assert not np.array_equal(np.load(cg.STUDY.raw / "cg-force-match-500-quick.phi_psi.npy"),
                                  np.load(cg.STUDY.raw / "cg-force-match-500-quick-md-seed-7.phi_psi.npy"))
        assert (tmp_path / "results" / "cg_fes-quick.png").stat().st_size > 3_000
        # publishing into a zoo directory: the card names the beads, the file verifies and loads by name
        from ase_denoise.zoo import card_text, load_model as load_by_name, verify_models

        zoo = tmp_path / "zoo"
        assert cg.main(["--quick", *args, "--publish", "denoise-500", "--models-dir", str(zoo)]) == 0
    finally:
        cg.STUDY.configure()
    [(name, ok, message)] = verify_models(zoo)
    assert (name, ok) == ("ala2-cg-300K", True) and "'C-ace', 'N', 'CA', 'CB', 'C', 'N-nme'" in message
    card = card_text("ala2-cg-300K", zoo)
    assert "4 = CB" in card and "CA-CB" in card and "H-He" not in card
    assert load_by_name("ala2-cg-300K", models_dir=zoo).config.symbols == model.config.symbols
    assert np.load(zoo / "ala2-cg-300K" / "reference_phi_psi.npz")["phi_psi_deg"].shape == (2500, 2)


def test_all_atom_torsion_priors_are_on_phi_and_psi(tmp_path):
    """Torsion-prior recipes: the ``dihedrals:`` entry names the atoms whose dihedrals are the data's phi and
    psi (``make_data.PHI``/``PSI``), and the fitted prior is lowest where the data are densest."""
    study, aa = _module("study"), _module("aa_replicas")
    from ase_denoise.priors import fit_dihedral_priors, parse_dihedrals

    spec = study.backbone_dihedrals()
    assert spec.startswith("dihedrals:") and study.RUNS["denoise-smoothed-torsions-2000-seed1"][0].get("torsions")
    assert study.RUNS["denoise-smoothed-torsions-energy-head-500"][0].head == "energy"
    assert not study.RUNS["denoise-smoothed-500"][0].get("torsions")
    frames = study.load_frames()[:400]
    prior = fit_dihedral_priors(frames, 0.025852, parse_dihedrals(spec.partition(":")[2]))
    positions = np.stack([a.positions for a in frames])
    angles = np.degrees(prior.angles(positions, np.zeros((3, 3)), [False] * 3))
    expected = aa.phi_psi(positions)
    np.testing.assert_allclose(np.angle(np.exp(1j * np.radians(angles - expected))), 0.0, atol=1e-9)
    grid = np.radians(np.arange(-180.0, 180.0, 5.0))
    u = prior.profile(np.stack([grid, grid], axis=1))
    counts = [np.histogram(angles[:, k], bins=np.arange(-180.0, 181.0, 5.0))[0] for k in range(2)]
    for k in range(2):
        assert abs(grid[np.argmin(u[:, k])] - grid[np.argmax(counts[k])]) < np.radians(30.0)
    assert study.plot_torsion_priors(tmp_path / "torsions.png", n_frames=400).stat().st_size > 3_000


def test_all_atom_phi_psi_are_the_cg_beads_dihedrals(cg):
    """``aa_replicas.py`` reads phi/psi off the all-atom coordinates: the same angles as the CG map's
    (whose beads are those backbone atoms) on the committed frames."""
    aa = _module("aa_replicas")
    data = np.load(ALA2 / "ala2_aa_300K.npz")
    angles = aa.phi_psi(data["positions"][:50])
    expected = cg.dihedrals(np.stack([a.positions for a in cg.map_frames()[:50]]))
    assert np.allclose(angles, expected, atol=1e-4)
    assert angles[:, 0].std() > 5.0  # the frames differ: not a constant compared with itself


def test_all_atom_bond_angles_agree_with_ase():
    """``aa_replicas.bond_angles`` (vectorised over frames) against ASE's ``Atoms.get_angles``."""
    from ase import Atoms

    from ase_denoise.priors import molecule_topology

    aa = _module("aa_replicas")
    data = np.load(ALA2 / "ala2_aa_300K.npz")
    atoms = [Atoms(numbers=data["numbers"], positions=p) for p in data["positions"][:3].astype(np.float64)]
    _, angles = molecule_topology(atoms[0])
    ours = aa.bond_angles(np.stack([a.positions for a in atoms]), angles)
    assert ours.shape == (3, len(angles)) and len(angles) > 30
    for a, row in zip(atoms, ours):
        assert np.allclose(row, a.get_angles(angles), atol=1e-6)


def test_first_distortion_names_the_bond_or_the_contact():
    """``aa_replicas.first_distortion`` on data frames: nothing for an undisturbed frame, the stretched
    bond for a stretched one, the pair for two non-bonded hydrogens pushed together."""
    from ase import Atoms

    from ase_denoise.priors import molecule_topology

    aa = _module("aa_replicas")
    data = np.load(ALA2 / "ala2_aa_300K.npz")
    x = data["positions"][:50].astype(np.float64)
    atoms = Atoms(numbers=data["numbers"], positions=x[0])
    bonds, angles = molecule_topology(atoms)
    bonds = np.asarray(bonds)
    pairs = aa.non_bonded_pairs(len(atoms), bonds, angles)
    assert len(pairs) == len(atoms) * (len(atoms) - 1) // 2 - len(bonds) - len({(a[0], a[2]) for a in angles})
    lengths = np.linalg.norm(x[:, bonds[:, 1]] - x[:, bonds[:, 0]], axis=-1).mean(axis=0)
    closest = np.linalg.norm(x[:, pairs[:, 1]] - x[:, pairs[:, 0]], axis=-1).min(axis=0)
    symbols = atoms.get_chemical_symbols()
    frames = np.stack([x[10], x[10], x[10]])
    i, j = bonds[0]
    frames[1, j] += 0.7 * (x[10, j] - x[10, i]) / np.linalg.norm(x[10, j] - x[10, i])  # bond 0.7 A longer
    h = [k for k, z in enumerate(data["numbers"]) if z == 1]
    a, b = next((int(p), int(q)) for p, q in pairs if p in h and q in h)
    frames[2, b] = frames[2, a] + 0.5 * (frames[2, b] - frames[2, a]) / np.linalg.norm(frames[2, b] - frames[2, a])
    calm, stretched, contact = aa.first_distortion(frames, bonds, lengths, pairs, closest, symbols)
    assert calm is None
    assert stretched["bond"] == f"{symbols[i]}{i}-{symbols[j]}{j}" and stretched["bond_off_A"] == pytest.approx(0.7, abs=0.1)
    assert contact["contact"] == f"H{a}-H{b}" and contact["contact_A"] == pytest.approx(0.5)
    assert contact["contact_data_min_A"] > 1.5


@pytest.mark.slow
def test_all_atom_replicas_pipeline_quick(tmp_path):
    """Trains tiny all-atom models (vector and energy head), runs two batched replicas each, counts intact
    ones, writes one record per run, the geometry, the plot and the table."""
    import torch

    from ase_denoise.checkpoint import load_model_file

    aa = _module("aa_replicas")
    D, E = "denoise-smoothed-500", "denoise-smoothed-energy-head-500"
    args = ["--quick", "--out-dir", str(tmp_path), "--runs-dir", str(tmp_path / "runs")]
    store = aa.study.STUDY
    try:
        assert aa.main([D, E, "--report", *args]) == 0
        reps = {r["run"]: r for r in store.summary(quick=True).records("aa-replicas")}
        res = reps[D]
        assert res["n_replicas"] == aa.QUICK["n_replicas"] and res["stopped"] is None and res["mean_temperature_K"] > 0
        assert len(res["replica_temperatures_K"]) == res["n_replicas"]
        assert res["simulated_ps_per_replica"] == pytest.approx(aa.QUICK["equilibration_ps"] + aa.QUICK["production_ps"])
        assert 0 <= res["replicas_intact"] <= res["n_replicas"] and len(res["broken_at_ps"]) == res["n_replicas"]
        assert len(res["first_distortion"]) == res["n_replicas"]
        assert all(d is None or d["ps"] > 0 for d in res["first_distortion"])
        if res["replicas_intact"]:
            assert abs(sum(v[0] for v in res["populations"].values()) - 1.0) < 1e-9
            assert abs(sum(v[0] for v in res["regions"].values()) - 1.0) < 1e-9
            assert res["bond_std_ratio"] > 0 and res["angle_std_ratio"] > 0
            geometry = np.load(aa.geometry_path(D, quick=True))
            n_frames = len(geometry["phi_psi_deg"])
            assert n_frames > 0 and n_frames % res["replicas_intact"] == 0  # the same samples from every intact replica
            assert geometry["bond_lengths_A"].shape == (n_frames, len(geometry["bonds"]))
            assert geometry["angles_deg"].shape[1] == len(geometry["angles"]) > len(geometry["bonds"])
            assert 0 < geometry["angles_deg"].min() and geometry["angles_deg"].max() < 180
        assert res["settings"]["friction_per_fs"] == aa.MD["friction_per_fs"] == 0.05 and res["variant"] is None
        assert load_model_file(tmp_path / "runs" / f"{D}-quick" / "best.safetensors").config.head == "vector"
        conservative = reps[E]
        assert conservative["head"] == "energy" and aa.study.RUNS[E][0].get("smoothed") is True
        assert load_model_file(tmp_path / "runs" / f"{E}-quick" / "best.safetensors").config.head == "energy"
        # the same trained model with the non-bonded wall (same weights; record "<run>+wall")
        assert aa.main([E, "--wall", *args]) == 0
        walled = store.summary(quick=True).get("aa-replicas", f"{E}+wall")
        assert (walled["wall"], conservative["wall"]) == (True, False)
        model, label, _ = aa.load_run(E, quick=True, wall=True)
        plain = load_model_file(tmp_path / "runs" / f"{E}-quick" / "best.safetensors")
        assert label == f"{E}+wall" and [p.kind for p in model.priors] == [p.kind for p in plain.priors] + ["nonbonded_wall"]
        assert all(torch.equal(v, plain.state_dict()[k]) for k, v in model.state_dict().items())
        assert model.priors[-1].r_on[(1, 1)] > 1.5  # H...H: the closest non-bonded approach, not a methyl's 1-3 pair
        # the same protocol with the exact force field (OpenMM): every replica intact, near 300 K
        assert aa.main(["--reference", "--plot", *args]) == 0
        exact = store.summary(quick=True).get("aa-replicas", aa.REFERENCE_LABEL)
        assert exact["replicas_intact"] == exact["n_replicas"] == aa.QUICK["n_replicas"] and exact["recipe"] is None
        assert exact["simulated_ps_per_replica"] == pytest.approx(aa.QUICK["equilibration_ps"] + aa.QUICK["production_ps"])
        assert 150 < exact["mean_temperature_K"] < 450 and exact["bond_std_ratio"] > 0
        table = aa.report(quick=True)
        assert table.startswith("All-atom MD friction: 0.05 /fs") and f"| {D} | " in table and f"| {E} | " in table
        assert f"| {E}+wall | " in table and "| exact-force-field (OpenMM) | 2/2 |" in table
        assert "| C7eq | PII | alpha_R | alpha_L/C7ax |" in table.splitlines()[2]
        # the energy-head model's free energy against the force field's energy on held-out frames (OpenMM
        # reproduces the stored labels first, so atom order and units are the data's)
        energy = _module("aa_energy")
        res = energy.compare(E, quick=True)  # the study's runs dir is still tmp_path/runs: loads the model above
        assert res["label_check_max_abs_eV_per_A"] < 1e-3 and res["n_frames"] == 20
        assert 2.0 < res["std_U_kT"] < 20.0  # 66 degrees of freedom: about sqrt(33) kT
        assert np.isfinite(res["std_A_minus_U_kT"]) and -1 <= res["correlation"] <= 1
        assert sum(b["n_frames"] for b in res["basins"].values()) <= 20
        assert sum(b["predicted_population"] for b in res["basins"].values()) == pytest.approx(1.0)
        beta = res["basins"]["beta/C7eq/PII"]  # both basins are among the 20 frames spread over the held-out set
        for b in res["basins"].values():  # each basin's weight against beta's: the data's ratio times exp(-offset)
            assert b["predicted_population"] / beta["predicted_population"] == pytest.approx(
                b["data_population"] / beta["data_population"] * np.exp(-b["offset_vs_beta_kT"]))
        with pytest.raises(ValueError, match="energy-head run"):
            energy.compare(D, quick=True)
        # A - U along psi over every 25th frame of the data set: per bin the frames (phi < 0) and the mean
        profile = energy.profile(E, quick=True)
        bins = profile["bins"]
        assert profile["n_frames"] == 100 and len(bins) == len(energy.PSI_BINS) - 1
        assert [b["psi_lo"] for b in bins][:2] == [-150.0, -130.0] and 50.0 in [b["psi_hi"] for b in bins]
        assert 50 < sum(b["n_frames"] for b in bins) <= 100
        assert all(np.isfinite(b["mean_kT"]) == (b["n_frames"] > 0) for b in bins)
        assert energy.plot_profiles(tmp_path / "profile.png", records=[profile]).stat().st_size > 3_000
        # replaying the replicas (aa_trace.py): the same trajectory twice, energies only for the energy head
        tracer = _module("aa_trace")
        rows, model = tracer.trace(E, replica=1, steps=20, quick=True)
        again, _ = tracer.trace(E, replica=1, steps=20, quick=True)
        assert [r[0] for r in rows] == list(range(0, 21, 10)) and np.array_equal(rows[-1][-1], again[-1][-1])
        assert not np.array_equal(rows[0][-1], rows[-1][-1])  # it moved
        energies = tracer.energies_kT(model, rows)
        assert energies[0] == (0.0, 0.0) and all(np.isfinite(e).all() for e in energies)
        assert tracer.energies_kT(tracer.trace(D, replica=0, steps=10, quick=True)[1], rows) == []
    finally:
        store.configure()
    # the committed runs at 0.01/fs are records of their own variant
    from ala2 import tables

    assert tables.aa_replicas_table(tables.Records(store.summary()), "friction-0.01").startswith("All-atom MD friction: 0.01 /fs")


@pytest.mark.slow
def test_refine_torsions_adds_a_dihedral_correction_that_the_calculator_applies(cg, tmp_path):
    """``refine_torsions`` on the zoo CG model (its torsion prior names phi and psi; it ships with one
    correction already), one more short correction (4 replicas x 1 ps against 200 data frames): the
    check before and after, a copy whose ``dihedral_correction`` replaces the given one (the given
    model and its weights unchanged) and whose forces are the given model's plus exactly the change of
    the correction; the chosen model has the smallest torsion marginal KL; the marginal KL is 0 for a
    sample against itself and large for disjoint ones; bad input is refused."""
    from ase_denoise import DenoiseCalculator, load_model
    from ase_denoise.refine import refine_torsions, torsion_marginal_kl
    from ase_denoise.priors import dihedral_angles

    model = load_model("ala2-cg-300K")
    frames = cg.split(cg.map_frames())[0][:2000:10]
    result = refine_torsions(model, frames, iterations=1, n_replicas=4, equilibration_ps=0.1, production_ps=1.0,
                             timestep_fs=2.0)
    assert len(result.marginal_kl) == 2 and len(result.models) == 2 and all(result.intact)
    assert all(k.shape == (2,) and np.all(k > 0) for k in result.marginal_kl)
    assert result.chosen == int(np.argmin([k.mean() for k in result.marginal_kl]))
    assert result.sampled[0].shape == (4 * 10, 2)  # a frame every 0.1 ps of 1 ps, per replica
    refined = result.models[1]
    kinds = [p.kind for p in model.priors]
    assert "dihedrals" in kinds and kinds.count("dihedral_correction") <= 1
    assert [p.to_dict() for p in load_model("ala2-cg-300K").priors] == [p.to_dict() for p in model.priors]  # unchanged
    before = next((p for p in model.priors if p.kind == "dihedral_correction"), None)
    correction = refined.priors[-1]
    assert correction.kind == "dihedral_correction" and correction.dihedrals == [cg.PHI, cg.PSI]
    assert [p.kind for p in refined.priors].count("dihedral_correction") == 1 and correction != before
    assert all(torch.equal(a, b) for a, b in zip(refined.state_dict().values(), model.state_dict().values()))
    atoms = frames[7].copy()
    difference = (DenoiseCalculator(refined, dtype=torch.float64).get_forces(atoms.copy())
                  - DenoiseCalculator(model, dtype=torch.float64).get_forces(atoms.copy()))
    expected = correction.forces(atoms) - (before.forces(atoms) if before is not None else 0.0)
    np.testing.assert_allclose(difference, expected, atol=1e-9)
    assert np.abs(expected).max() > 1e-4
    angles = dihedral_angles(frames, [cg.PHI, cg.PSI])
    np.testing.assert_allclose(torsion_marginal_kl(angles, angles), 0.0, atol=1e-12)
    assert torsion_marginal_kl(angles, angles + np.pi)[0] > 1.0  # phi: one basin, moved onto the empty half
    with pytest.raises(ValueError, match="damping"):
        refine_torsions(model, frames, damping=1.5)
    from ase_denoise.model import build_model

    plain = build_model(model.config, replace_priors(model.physics, []), torch.float32, seed=0)
    with pytest.raises(ValueError, match="no torsion prior"):
        refine_torsions(plain, frames)
    if before is not None:
        with pytest.raises(ValueError, match="already carries a torsion correction"):
            refine_torsions(model, frames, dihedrals=[cg.PHI])
    warm = [a.copy() for a in frames]
    for a in warm:
        a.info["temperature_K"] = 350.0
    with pytest.raises(ValueError, match="temperature_K"):
        refine_torsions(model, warm)


@pytest.mark.slow
def test_refine_torsions_joint_adds_a_pair_correction_beside_the_one_dimensional_one(cg):
    """``refine_torsions(..., joint=True)`` on the zoo CG model (phi and psi from its torsion prior, one
    pair): the checks carry the joint phi/psi KL and are ranked by it; the refined copy keeps the
    shipped one-dimensional correction and adds a ``dihedral_pair_correction`` whose forces are exactly
    the difference to the given model's; the joint KL is 0 for a sample against itself and large when
    one angle is shifted; an odd number of dihedrals is refused."""
    from ase_denoise import DenoiseCalculator, load_model
    from ase_denoise.refine import refine_torsions, torsion_pair_kl
    from ase_denoise.priors import dihedral_angles

    model = load_model("ala2-cg-300K")
    frames = cg.split(cg.map_frames())[0][:2000:10]
    result = refine_torsions(model, frames, iterations=1, n_replicas=4, equilibration_ps=0.1, production_ps=1.0,
                             timestep_fs=2.0, joint=True)
    assert len(result.joint_kl) == 2 and all(k.shape == (1,) and k[0] > 0 for k in result.joint_kl)
    assert result.chosen == int(np.argmin([k[0] for k in result.joint_kl]))
    assert "joint KL per pair" in result.figures(1)
    refined = result.models[1]
    assert [p.kind for p in refined.priors] == [p.kind for p in model.priors] + ["dihedral_pair_correction"]
    assert refined.priors[-2] == model.priors[-1] and refined.priors[-1].pairs == [(cg.PHI, cg.PSI)]
    atoms = frames[3].copy()
    difference = (DenoiseCalculator(refined, dtype=torch.float64).get_forces(atoms.copy())
                  - DenoiseCalculator(model, dtype=torch.float64).get_forces(atoms.copy()))
    np.testing.assert_allclose(difference, refined.priors[-1].forces(atoms), atol=1e-9)
    assert np.abs(difference).max() > 1e-4
    angles = dihedral_angles(frames, [cg.PHI, cg.PSI])
    np.testing.assert_allclose(torsion_pair_kl(angles, angles), 0.0, atol=1e-12)
    assert torsion_pair_kl(angles, angles + [np.pi, 0.0])[0] > 1.0  # phi moved onto its empty half
    with pytest.raises(ValueError, match="in pairs"):
        refine_torsions(model, frames, dihedrals=[cg.PHI], joint=True)


def replace_priors(physics, priors):
    from dataclasses import replace

    return replace(physics, priors=priors)


@pytest.mark.slow
def test_refine_torsions_cli_writes_the_checked_best_model(cg, tmp_path):
    """``ase-denoise refine-torsions`` on the zoo CG model: one line per check, the choice, a new file
    holding the chosen model (with the new correction when a correction was chosen); the zoo file is
    untouched; an existing output and malformed dihedrals are refused."""
    import hashlib

    from ase.io import write
    from _helpers import run_cli
    from ase_denoise.checkpoint import load_model_file

    data = tmp_path / "cg.extxyz"
    write(data, cg.split(cg.map_frames())[0][:2000:20])
    zoo_file = ALA2.parent.parent / "models" / "ala2-cg-300K" / "ala2-cg-300K.safetensors"
    before = hashlib.sha256(zoo_file.read_bytes()).hexdigest()
    out = tmp_path / "refined.safetensors"
    args = ["refine-torsions", "--model", "ala2-cg-300K", "--data", data, "--output", out, "--replicas", 2,
            "--equilibration-ps", 0.05, "--production-ps", 0.5, "--timestep-fs", 2]
    code, stdout, stderr = run_cli(args)
    assert code == 0, stderr
    announcement, *lines = stdout.splitlines()  # what runs and how long it should take, then the checks
    assert announcement.startswith("refine-torsions: 2 check(s) of 2 Langevin replicas")
    assert lines[0].startswith("0 correction(s): torsion marginal KL") and lines[1].startswith("1 correction(s): ")
    chosen = int(lines[-1].split("chosen: ")[1].split()[0])
    kls = [float(line.split("torsion marginal KL ")[1].split()[0]) for line in lines[:2]]
    assert kls[chosen] == min(kls)
    given = [p.to_dict() for p in load_model_file(zoo_file).priors]
    written = [p.to_dict() for p in load_model_file(out).priors]
    assert [d["kind"] for d in written].count("dihedral_correction") == 1
    assert (written == given) == (chosen == 0)  # the chosen check's correction, the shipped one if none helped
    assert hashlib.sha256(zoo_file.read_bytes()).hexdigest() == before
    code, _, stderr = run_cli(args)
    assert code == 2 and "exists" in stderr
    joint = tmp_path / "joint.safetensors"
    code, stdout, stderr = run_cli(args[:6] + [joint, "--joint"] + args[7:])
    assert code == 0, stderr
    lines = stdout.splitlines()[1:]
    assert "joint KL per pair" in lines[1] and "joint torsion KL" in lines[-1]
    kinds = [p.kind for p in load_model_file(joint).priors]
    assert kinds.count("dihedral_pair_correction") == (0 if lines[-1].startswith("chosen: 0 ") else 1)
    code, _, stderr = run_cli(args[:-6] + ["--overwrite", "--dihedrals", "0-1-2"])
    assert code != 0 and "quadruples" in stderr
