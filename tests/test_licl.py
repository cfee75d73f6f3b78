"""The committed LiCl data set (benchmarks/licl), its reference RDFs, the study pipeline on the shared study
framework (benchmarks/study_kit.py) and the tables its helper scripts' records feed."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from ase_denoise.analysis import first_peak
from ase_denoise.zoo import card_text, model_info, verify_models
from ase_denoise.forces import ForcesChoice

from _helpers import benchmark_module, benchmark_package

REPO = Path(__file__).resolve().parent.parent
LICL = REPO / "benchmarks" / "licl"


@pytest.fixture(scope="module")
def study():
    return benchmark_module("licl/study.py")


@pytest.fixture
def scratch(tmp_path):
    """The study module the helper scripts import (``study``) pointed at ``tmp_path`` (results, runs), and back."""
    replica_md = benchmark_module("licl/replica_md.py")
    st = replica_md.study.STUDY
    shutil.copy(LICL / "reference_rdf.npz", tmp_path / "reference_rdf.npz")
    st.configure(out_dir=tmp_path, runs_dir=tmp_path / "runs")
    yield replica_md
    st.configure()


@pytest.fixture(scope="module")
def frames(study):
    return study.load_frames(LICL / "licl_cg_300K.npz")


def test_data_set_is_what_it_says(frames):
    d = np.load(LICL / "licl_cg_300K.npz")
    meta = json.loads(str(d["metadata"]))
    assert len(frames) == meta["frames_saved"] == 2000
    assert float(d["temperature_K"]) == 300.0 and meta["temperature_K"] == 300.0
    atoms = frames[0]
    assert atoms.get_chemical_symbols().count("Li") == 24 and atoms.get_chemical_symbols().count("Cl") == 24
    assert np.allclose(atoms.cell.array, np.eye(3) * atoms.cell[0, 0]) and 23.0 < atoms.cell[0, 0] < 27.0
    # 24 ion pairs at about 2.5 mol/L
    molar = 24 / (atoms.get_volume() * 1e-27) / 6.02214076e23
    assert 2.2 < molar < 2.9, molar
    forces = np.stack([a.arrays["ref_forces"] for a in frames])
    assert np.all(np.isfinite(forces))
    rms = np.sqrt(np.mean(forces**2))
    assert 0.1 < rms < 2.0, rms  # instantaneous ion forces in water, eV/A
    assert all(a.info["temperature_K"] == 300.0 for a in frames[:5])


def test_reference_rdfs_match_the_data(study, frames):
    ref = dict(np.load(LICL / "reference_rdf.npz"))
    again = study.rdfs(frames[::4], float(ref["r"][-1] + study.BIN_WIDTH / 2))
    for key in ("Li-Li", "Li-Cl", "Cl-Cl"):
        assert ref[key].shape == ref[f"{key}_err"].shape == ref["r"].shape
        # a quarter of the frames: equal within a few block errors on average
        assert np.sqrt(np.mean((again[key] - ref[key]) ** 2)) < 4 * np.sqrt(np.mean(ref[f"{key}_err"] ** 2)) + 0.02
    r, g = first_peak(ref["r"], ref["Li-Cl"])
    assert 2.1 < r < 2.5 and g > 3  # Li-Cl contact ion pairs of the Joung-Cheatham ions
    assert ref["r"][-1] <= 0.5 * frames[0].cell[0, 0]


@pytest.mark.slow
def test_study_pipeline_quick(study, tmp_path):
    """--quick: every stage of the study (train, CG MD through ASE, RDFs against the reference and against
    rho_sigma, one summary record per run, the plots, the tables) on the real data, and --publish. The
    committed reference RDFs are copied in (recomputing them from 2000 frames is the slow part)."""
    shutil.copy(LICL / "reference_rdf.npz", tmp_path / "reference_rdf.npz")
    try:
        rc = study.main(["--quick", "--only", "denoise-sigma0.26-copies1", "force-match-500", "--plots",
                         "--out-dir", str(tmp_path), "--runs-dir", str(tmp_path / "runs"),
                         "--data", str(LICL / "licl_cg_300K.npz")])
        assert rc == 0
        records = study.STUDY.by_run(quick=True)
        assert set(records) == {"denoise-sigma0.26-copies1", "force-match-500"}
        assert not (tmp_path / "results" / "summary.jsonl").exists()  # quick records stay apart
        dn = records["denoise-sigma0.26-copies1"]
        assert dn["md"]["simulated_ps"] > 0 and np.isfinite(dn["forces"]["all"]["rmse"])
        assert dn["recipe"] == "denoise-sigma0.26-copies1" and dn["seed"] == 0 and dn["noise_levels"] == [0.26]
        if dn.get("rdf"):  # unless a quick model blew up: against the reference and against rho_sigma
            assert np.isfinite(dn["rdf"]["rms_mean"]) and np.isfinite(dn["rdf"]["rms_mean_vs_noised"])
            assert (tmp_path / "results" / "raw" / "denoise-sigma0.26-copies1-quick_rdf.npz").exists()
        assert "rms_mean_vs_noised" not in (records["force-match-500"].get("rdf") or {})
        for name in ("rdf_duplicates-quick.png", "rdf_force_matching-quick.png", "rdf_error-quick.png"):
            assert (tmp_path / name).stat().st_size > 1000, name
        tables = benchmark_package("licl.tables")

        table = tables.runs_table(tables.Records(study.STUDY.summary(quick=True)))
        assert "| denoise-sigma0.26-copies1 | denoising | 40 | 0.26 | 1 |" in table
        assert "| force-match-500 | force_matching | 40 | 0.26 | 1 |" in table

        # --publish: weights, card, reference RDFs and a start frame land in a zoo that verifies
        zoo = tmp_path / "zoo"
        study.publish("denoise-sigma0.26-copies1", models_dir=zoo, quick=True)
        (name, ok, why), = verify_models(zoo)
        assert name == "licl-cg-300K" and ok, why
        entry = model_info(name, zoo)
        card = card_text(name, zoo)
        for needed in (entry.sha256, entry.command, "noise_std", "n_duplicates", "Temperature", "Architecture", "RDF RMS"):
            assert needed in card, needed
        assert (zoo / name / "reference_rdf.npz").exists() and (zoo / name / "start.extxyz").exists()
    finally:
        study.STUDY.configure()


@pytest.mark.slow
def test_committee_run_trains_its_members_and_runs_their_mean(study, tmp_path, monkeypatch):
    """A committee recipe (``committee``: a member recipe, ``committee_size`` seeds per committee) trains
    each member once, in its own run directory, and runs MD with one calculator over all of them; the force
    errors are those of the members' mean."""
    from ase_denoise.checkpoint import load_model_file
    from ase_denoise.data import to_frame
    from ase_denoise.inference import predict

    shutil.copy(LICL / "reference_rdf.npz", tmp_path / "reference_rdf.npz")
    member = study.BOOK.recipe("denoise-sigma0.26-copies1").but(name="t-member", seeds=(0, 1))
    committee = member.but(name="t-committee", seeds=(0,), committee="t-member", committee_size=2,
                           seed_names={0: "seeds0-1"})
    for r in (member, committee):
        monkeypatch.setitem(study.BOOK.recipes, r.name, r)
        for seed in r.seeds:
            monkeypatch.setitem(study.BOOK.runs, r.run_name(seed), (r, seed))
    args = ["--quick", "--out-dir", str(tmp_path), "--runs-dir", str(tmp_path / "runs"), "--data", str(LICL / "licl_cg_300K.npz")]
    try:
        assert study.main(args + ["--train-only", "--only", "t-committee-seeds0-1"]) == 0
        assert not (tmp_path / "results" / "summary-quick.jsonl").exists()  # trained only
        members = [load_model_file(tmp_path / "runs" / f"{m}-quick" / "best.safetensors") for m in ("t-member", "t-member-seed1")]
        assert study.main(args + ["--only", "t-committee-seeds0-1"]) == 0
        result = study.STUDY.by_run(quick=True)["t-committee-seeds0-1"]
        assert result["md"]["simulated_ps"] > 0 and not result["md"]["blew_up"]
        test = study.load_frames(LICL / "licl_cg_300K.npz")[-study.N_TEST:][:40]
        frames = [to_frame(a, members[0].config.atomic_numbers) for a in test]
        mean = np.mean([predict(m, frames) for m in members], axis=0)
        ref = np.concatenate([f.ref_forces for f in frames])
        assert result["forces"]["all"]["rmse"] == pytest.approx(np.sqrt(np.mean((mean - ref) ** 2)), rel=1e-6)
    finally:
        study.STUDY.configure()


def test_recipes_are_data_with_readable_names(study):
    """Every run name is its recipe's name (seed 0) or ``<recipe>-seed<K>``; recipe names are lowercase
    words; the zoo recipe's options reach the training settings."""
    for run, (recipe, seed) in study.RUNS.items():
        assert run == recipe.run_name(seed) and (seed == 0 or run.endswith(f"-seed{seed}") or "-seeds" in run)
    zoo = study.BOOK.recipe("denoise-ladder-wall-ewald-antithetic-smallest-level")
    assert zoo.get("weights_of") == "denoise-ladder-wall-ewald-antithetic" and zoo.seeds == tuple(range(9))
    spec = study.BOOK.recipe("denoise-ladder-wall-ewald-antithetic").spec(3)
    assert spec["priors"] == ["wall", "ewald"] and spec["antithetic"] and spec["seed"] == 3 and spec["epochs"] == 30
    assert study.committee_members(study.BOOK.recipe("committee-denoise-ladder-wall-ewald-antithetic"), 1) == [
        f"denoise-ladder-wall-ewald-antithetic-seed{k}" for k in (3, 4, 5)]
    with pytest.raises(ValueError, match="lowercase"):
        study.Recipe("Bad_Name", "no")


def test_averaged_recipe_uses_its_ema_and_last_weights(study, frames, tmp_path, monkeypatch):
    """The "-60-epochs-averaged" recipe (EMA 0.999, last-epoch weights) reaches the trainer and the model the
    study runs: two quick epochs, and the model returned is the last epoch's, not the best-validation one."""
    from ase_denoise.checkpoint import read_metadata

    recipe = study.BOOK.recipe("denoise-ladder-wall-ewald-antithetic-60-epochs-averaged")
    monkeypatch.setattr(study, "QUICK", dict(study.QUICK, epochs=2))
    model, n_frames, last = study.train_run(recipe, 0, frames, tmp_path, quick=True)
    assert last["training"]["train_config"]["ema_decay"] == 0.999
    assert last["training"]["train_config"]["antithetic_noise"] is True
    assert model.metadata["metrics"]["epoch"] == read_metadata(tmp_path / "last.safetensors")["metrics"]["epoch"] == 1
    assert [p.kind for p in model.priors] == ["repulsive_wall", "coulomb_ewald"]

    # generalization.py scores it at one of its levels: the zero predictor's loss is a chi-square mean
    # (about 1), the model's explained fraction after two quick epochs is small, and R = 1 - model / zero
    gen = benchmark_module("licl/generalization.py")
    level = model.noise_levels[-1]
    res = gen.explained_fraction(model, frames[:3], level, draws=4, seed=0)
    assert 0.9 < res["loss_zero"] < 1.1
    assert abs(res["explained"] - (1 - res["loss_model"] / res["loss_zero"])) < 1e-12
    assert -0.2 < res["explained"] < 0.2 and len(res["per_frame_model"]) == 3


def test_default_forces_recipes_reuse_the_weights_and_store_their_choice(study, frames, tmp_path):
    """``...-smallest-level`` / ``...-linear-extrapolation``: the Ewald recipe's trained weights (``weights_of``,
    trained once) with the smallest level, or the linear extrapolation, stored as the model's default forces;
    a model file saved from them gives those forces through a plain ``DenoiseCalculator``."""
    from ase_denoise import DenoiseCalculator, save_model
    from ase_denoise.checkpoint import load_model_file
    from ase_denoise.data import to_frame
    from ase_denoise.inference import predict

    study.STUDY.configure(runs_dir=tmp_path)
    try:
        small, _, _ = study.train_run(study.BOOK.recipe("denoise-ladder-wall-ewald-antithetic-smallest-level"), 0, frames,
                                      tmp_path / "unused", quick=True)
        base_dir = tmp_path / "denoise-ladder-wall-ewald-antithetic-quick"
        assert not (tmp_path / "unused").exists() and (base_dir / "best.safetensors").exists()
        linear, _, _ = study.train_run(study.BOOK.recipe("denoise-ladder-wall-ewald-antithetic-linear-extrapolation"), 0,
                                       frames, tmp_path / "unused", quick=True)
    finally:
        study.STUDY.configure()
    base = load_model_file(base_dir / "best.safetensors")
    assert len(base.noise_levels) == 3 and base.physics.default_noise_std is None
    assert small.physics.default_noise_std == min(base.noise_levels) and linear.physics.default_extrapolation_order == 1
    for key, value in base.state_dict().items():  # the same weights
        assert torch.equal(small.state_dict()[key], value) and torch.equal(linear.state_dict()[key], value)
    test = [to_frame(a, base.config.atomic_numbers) for a in frames[-2:]]
    atoms = frames[-1].copy()
    for model, expected in ((small, predict(base, test, forces=ForcesChoice(noise_std=min(base.noise_levels)))),
                            (linear, predict(base, test, forces=ForcesChoice(extrapolation_order=1)))):
        again = load_model_file(save_model(model, tmp_path / f"m{id(model)}.safetensors"))
        np.testing.assert_allclose(DenoiseCalculator(again).get_forces(atoms), expected[-len(atoms):], rtol=0,
                                   atol=1e-5 * np.abs(expected).max())  # float32: one frame against a batch of two
        assert np.abs(expected - predict(base, test)).max() > 1e-6  # differs from the quadratic default


def test_replica_md_pools_independent_replicas_and_measures_its_own_noise(scratch, tmp_path):
    """``benchmarks/licl/replica_md.py``: N replicas of one model from N frames spread over the data, in one
    batched run; the pooled RDF error comes with its bootstrap (over replicas) standard error and a
    noise-subtracted 'systematic' part. On the reference's own windows that part must nearly vanish
    while the raw RMS difference does not: the check that the subtraction removes sampling noise."""
    replica_md = scratch
    floor = replica_md.reference_floor(8, 20.0)
    assert floor["rms_mean"] > 0.03 and floor["rms_boot"] > 0
    assert floor["rms_systematic"] < 0.3 * floor["rms_mean"], floor

    res = replica_md.run_model("denoise-sigma0.26-copies1", 3, equilibration_ps=0.02, production_ps=0.3, quick=True)
    store = replica_md.study.STUDY.summary(quick=True)
    assert store.get("replicas", "denoise-sigma0.26-copies1", n_replicas=3, production_ps=0.3) == res
    assert (tmp_path / "runs" / "denoise-sigma0.26-copies1-quick" / "best.safetensors").exists()
    assert len(set(res["start_frames"])) == 3 and len(set(res["seeds"])) == 3
    assert res["collapsed"] == 0 and res["stopped"] is None
    assert res["frames_per_replica"] == [3, 3, 3]  # a frame every 0.1 ps of the 0.3-ps production
    assert np.isfinite(res["rms_mean"]) and res["rms_boot"] > 0 and 0 <= res["rms_systematic"] <= res["rms_mean"]
    assert 100 < res["mean_temperature_K"] < 1000
    # skipped when its record exists: the same figures come back without running again
    assert replica_md.run_model("denoise-sigma0.26-copies1", 3, equilibration_ps=0.02, production_ps=0.3, quick=True) == res
    # the mean-force correction of the same quick model (no MD): saved, and it lowers the mismatch
    mf = replica_md.mean_force_run("denoise-sigma0.26-copies1", iterations=2, quick=True)
    assert store.get("mean_force", "denoise-sigma0.26-copies1")["iterations"] == 2
    from ase_denoise.checkpoint import load_model_file
    assert load_model_file(tmp_path / "runs" / "denoise-sigma0.26-copies1-quick" / "mean_force.safetensors").priors[-1].kind == "pair_table"
    assert len(mf["mismatch"]) == 3 and mf["mismatch"][-1]["Li-Cl"] < mf["mismatch"][0]["Li-Cl"]


RECIPE = "denoise-ladder-wall-ewald-antithetic-smallest-level"


def _records(tmp_path, records):
    """A summary of ``records`` and its ``tables.Records``."""
    tables = benchmark_package("licl.tables")
    summary = benchmark_package("study_kit").Summary(tmp_path / "summary.jsonl")
    summary.write(records)
    return tables.Records(summary)


def _name(seed):
    return RECIPE if seed == 0 else f"{RECIPE}-seed{seed}"


def _evaluation(name, err, peak=12.0, contacts=8.0, systematic=None):
    return dict(kind="replicas", run=name, n_replicas=8, production_ps=20.0, rms_mean=err, rms_boot=0.02,
                rms_systematic=err - 0.04 if systematic is None else systematic, rdf=dict(peak_g=peak),
                contact_pairs_mean=contacts, contact_pairs_max=12, collapsed=0)


def test_seed_selection_keeps_the_seed_the_check_prefers(tmp_path):
    """``tables.selection``: in each group the seed with the smallest check error is kept and scored by its
    evaluation run; the expectation over all sets of three is computed from the same records."""
    from itertools import combinations

    tables = benchmark_package("licl.tables")

    check = [0.05, 0.01, 0.30, 0.20, 0.10, 0.40]  # seed -> systematic error against its own data
    evaluation = [0.12, 0.08, 0.30, 0.25, 0.09, 0.35]  # seed -> RDF error against the reference
    records = []
    for seed, (c, e) in enumerate(zip(check, evaluation)):
        records.append(dict(kind="check", run=_name(seed), choice="default", production_ps=10.0, systematic_error=c,
                            rdf_error=c + 0.05, rdf_error_noise=0.02))
        records.append(_evaluation(_name(seed), e))
    text = tables.selection(_records(tmp_path, records), groups=((0, 1, 2), (3, 4, 5)))
    assert "seeds 0, 1, 2: kept seed 1 (evaluation 0.080)" in text
    assert "seeds 3, 4, 5: kept seed 4 (evaluation 0.090)" in text
    assert "Kept seeds: RDF error 0.085 ± 0.007 over 2 selections" in text
    picked = [evaluation[min(t, key=lambda s: check[s])] for t in combinations(range(6), 3)]
    assert f"the kept seed's RDF error averages {np.mean(picked):.3f}" in text


def test_refinement_table_scores_the_kept_model_of_each_seed(tmp_path):
    """``tables.refinement_table``: a seed whose refinement kept a correction is scored by the refined
    model's evaluation (``+refined``), one that kept none (0) by the model as trained; the summary is over both."""
    tables = benchmark_package("licl.tables")

    records = []
    for seed, chosen, checks, before, after in [(0, 0, [0.02, 0.03, 0.04], 0.09, None),
                                                (1, 2, [0.20, 0.15, 0.12], 0.29, 0.21)]:
        records.append(dict(kind="refine", run=_name(seed), iterations=2, chosen=chosen,
                            checks=[dict(systematic_error=c) for c in checks]))
        records.append(_evaluation(_name(seed), before, 18.0 if seed else 12.0, 11.0))
        if after is not None:
            records.append(_evaluation(f"{_name(seed)}+refined", after, 16.0, 10.0))
    rec = _records(tmp_path, records)
    text = tables.refinement_table(rec)
    assert "| 0 | 0.020, 0.030, 0.040 | 0 | 0.090 -> 0.090 | 12.0 -> 12.0 | 11.0 -> 11.0 |" in text
    assert "| 1 | 0.200, 0.150, 0.120 | 2 | 0.290 -> 0.210 | 18.0 -> 16.0 | 11.0 -> 10.0 |" in text
    assert "Over 2 seeds: 0.190 ± 0.141 as trained, 0.150 ± 0.085 refined" in tables.refinement_summary(rec)


def test_mean_force_table_pairs_each_run_with_its_corrected_evaluation(tmp_path):
    """``tables.mean_force_table``: each seed's mismatch before/after, its correction at contact and both
    evaluations; seeds without all three records are left out; the summary pairs them by seed."""
    tables = benchmark_package("licl.tables")

    records = []
    for seed, before, after in [(0, 0.09, 0.08), (1, 0.29, 0.10), (2, 0.30, None)]:
        records.append(dict(kind="mean_force", run=_name(seed), mismatch=[{"Li-Cl": 0.1 + seed}, {"Li-Cl": 0.03}],
                            li_cl_correction_contact_eV=0.01 * seed))
        records.append(_evaluation(_name(seed), before, 12.0 + seed, 8.0 + seed))
        if after is not None:
            records.append(_evaluation(f"{_name(seed)}+mean-force", after, 12.5, 8.2))
    rec = _records(tmp_path, records)
    text = tables.mean_force_table(rec, {RECIPE: "seed {seed}"})
    assert "| seed 0 | 0.100 -> 0.030 | +0.000 | 0.090 -> 0.080 | 12.0 -> 12.5 | 8.0 -> 8.2 | 0/8 |" in text
    assert "| seed 1 | 1.100 -> 0.030 | +0.010 | 0.290 -> 0.100 | 13.0 -> 12.5 | 9.0 -> 8.2 | 0/8 |" in text
    assert "seed 2" not in text
    assert tables.mean_force_summary(rec).splitlines()[2].startswith(
        f"| denoising, 500 frames of coordinates (`{RECIPE}`) | 0.190 ± 0.141 | 0.090 ± 0.014 | 0.100 ± 0.090 |")
