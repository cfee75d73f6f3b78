"""``ase-denoise fit`` / ``ase_denoise.fit``: the kind of system read off the data with its recipe and
reasons, the steps recorded and resumed, the report and the card; on a metal the project never used,
held-out forces against the true ones (slow)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import ase.io
import numpy as np
import pytest
from ase import Atoms

from ase_denoise import fit
from ase_denoise.checkpoint import read_metadata
from ase_denoise.config import FitConfig
from ase_denoise.errors import TrainingError
from ase_denoise.fitting.system import backbone_dihedrals, data_topology, plan_system
from ase_denoise.priors import EwaldCoulomb
from ase_denoise.priors.specs import FittedPrior

from _helpers import run_cli

REPO = Path(__file__).resolve().parents[1]
#: the smallest model and the shortest checks: the pipeline, not its physics
TINY_MODEL = {"num_channels": 4, "max_ell": 1, "correlation": 1, "num_interactions": 1, "radial_mlp": [8]}
QUICK_CHECKS = dict(check_replicas=2, equilibration_ps=0.05, check_ps=0.3, timestep_fs=5.0)


def ala2_frames(every: int = 8):
    d = np.load(REPO / "benchmarks" / "ala2" / "ala2_aa_300K.npz")
    return [Atoms(numbers=d["numbers"], positions=p.astype(np.float64)) for p in d["positions"][:2000:every]]


def test_a_liquid_is_planned_with_a_wall_and_the_mean_force_correction(lj_argon_small):
    frames, _ = lj_argon_small
    plan = plan_system(frames, FitConfig())
    assert plan.kind == "periodic" and plan.priors == ["wall"] and plan.corrections == ["mean-force"]
    assert not plan.smallest_level and not plan.smoothed_priors
    assert any("liquid or solid" in r for r in plan.reasons) and any("--no-wall" in r for r in plan.reasons)
    assert plan_system(frames, FitConfig(wall=False)).priors == []


def test_ions_get_the_ewald_prior_and_the_smallest_level(lj_argon_small):
    frames, _ = lj_argon_small
    plan = plan_system(frames, FitConfig(charges={"Ar": 0.0}, dielectric=80.0))
    ewald = [p for p in plan.priors if isinstance(p, EwaldCoulomb)]
    assert len(ewald) == 1 and ewald[0].relative_permittivity == 80.0 and plan.smallest_level
    assert any("smallest trained level" in r for r in plan.reasons)
    with pytest.raises(ValueError, match="--dielectric"):
        plan_system(frames, FitConfig(charges={"Ar": 0.0}))
    with pytest.raises(ValueError, match="unknown element"):
        plan_system(frames, FitConfig(charges={"Xx": 1.0}, dielectric=80.0))


def test_a_molecule_gets_its_topology_and_its_rotating_backbone_dihedrals_from_the_data():
    """All-atom alanine dipeptide: the 21 bonds of its graph, and of the backbone's dihedrals only phi
    and psi rotate (the peptide bonds' omega stay planar): the torsions the hand-made recipe named."""
    frames = ala2_frames()
    bonds, angles = data_topology(frames)
    assert len(bonds) == 21 and len(angles) == 36 and (6, 8) in bonds and (8, 14) in bonds
    assert backbone_dihedrals(frames, bonds) == [(4, 6, 8, 14), (6, 8, 14, 16)]
    plan = plan_system(frames, FitConfig())
    assert plan.kind == "molecule" and plan.smoothed_priors and plan.corrections == ["torsions"]
    assert plan.priors[0] == FittedPrior("bonded", bonds=tuple(bonds), angles=tuple(angles))
    assert plan.priors[1:] == ["dihedrals:4-6-8-14,6-8-14-16", "nonbonded-wall"]
    given = plan_system(frames, FitConfig(dihedrals="4-6-8-14"))
    assert given.dihedrals == [(4, 6, 8, 14)] and "dihedrals:4-6-8-14" in given.priors
    # the same atoms unbonded (a frame far apart) are not one molecule; periodic frames are not either
    broken = [a.copy() for a in frames]
    broken[3].positions[21] += 8.0
    assert data_topology(broken) is None
    assert data_topology([Atoms("Ar3", positions=np.eye(3) * 3.7, cell=[10] * 3, pbc=True)] * 3) is None


def test_the_mean_force_correction_is_kept_unless_its_checks_say_it_hurt():
    """The rule that keeps the mean-force correction: its own mismatch must drop; its MD may not collapse,
    nor rise beyond the two checks' combined noise, nor move the forces' scale away from 1 beyond twice
    its error. A rise within the noise keeps it (a strict comparison of two noisy checks would not)."""
    from ase_denoise.fitting.pipeline import _keep_correction

    def check(error, noise=0.03, collapsed=0, scale=0.95, scale_error=0.03):
        return {"systematic_error": error, "rdf_error_noise": noise, "collapsed": collapsed,
                "force_scale": {"ratio": scale, "error": scale_error}}

    dropped, rose = ({"Li-Cl": 0.3}, {"Li-Cl": 0.03}), ({"Li-Cl": 0.03}, {"Li-Cl": 0.04})
    assert _keep_correction(check(0.15), check(0.05), *dropped)[0]
    kept, why = _keep_correction(check(0.041, 0.032), check(0.069, 0.040), *dropped)  # +0.028 within noise 0.051
    assert kept and "no worse beyond the checks' noise" in why
    kept, why = _keep_correction(check(0.041, 0.01), check(0.069, 0.01), *dropped)  # +0.028 beyond noise 0.014
    assert not kept and "0.041 -> 0.069" in why
    kept, why = _keep_correction(check(0.15), check(0.05), *rose)
    assert not kept and "mismatch did not drop" in why
    kept, why = _keep_correction(check(0.15), check(0.05, collapsed=2), *dropped)
    assert not kept and "2 of its MD replicas collapsed" in why
    kept, why = _keep_correction(check(0.027, 0.006, scale=1.029, scale_error=0.006),  # the EMT copper example
                                 check(0.014, 0.004, scale=0.949, scale_error=0.006), {"Cu-Cu": 0.044}, {"Cu-Cu": 0.007})
    assert not kept and "force scale moved away from 1" in why and "1.029 -> 0.949" in why
    # the trained model's own MD collapsed: any intact correction with a smaller mismatch is kept
    assert _keep_correction(check(float("nan"), collapsed=3), check(0.2), *dropped)[0]


def test_fit_writes_the_model_its_report_and_card_and_resumes_without_redoing_steps(lj_argon_small, tmp_path):
    frames, _ = lj_argon_small
    out = tmp_path / "ar.safetensors"
    result = fit(frames[:40], out, settings=FitConfig(**QUICK_CHECKS), train_options={"epochs": 2},
                 model_options=TINY_MODEL, command="ase-denoise fit (test)")
    assert result.path == str(out) and out.exists() and result.plan.kind == "periodic"
    assert set(result.steps) == {"train", "check-size", "mean-force", "validate"}
    assert result.steps["check-size"] == {}  # the quick checks fit the default 20 minutes
    assert result.steps["mean-force"]["kept"] in (True, False) and "sampling floor" in result.verdict
    assert "force_scale" in result.steps["validate"] and "force scale" in result.verdict
    kinds = [p.kind for p in result.model.priors]
    assert kinds[0] == "repulsive_wall" and ("pair_table" in kinds) == result.steps["mean-force"]["kept"]
    report = Path(result.report)
    text = report.read_text()
    for section in ("**Verdict.**", "## What was chosen, and why", "## Training", "## Checks against the data", "## Reproduce"):
        assert section in text, section
    reasons = result.steps["train"]["reasons"]  # the ladder and the cutoff, each with why
    assert any("sigma_max" in r for r in reasons) and any("r_max" in r for r in reasons)
    assert all(r in text for r in reasons)
    for png in ("loss.png", "rdf.png"):
        assert (report.parent / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and f"]({png})" in text
    card = read_metadata(out)["card"]
    assert "Fitted by `ase-denoise fit` (periodic)" in card and result.verdict in card
    code, shown, _ = run_cli(["models", "show", out])
    assert code == 0 and result.verdict in shown
    state = json.loads((tmp_path / "ar.safetensors.fit" / "fit.json").read_text())
    assert set(state["steps"]) == {"train", "check-size", "mean-force", "validate"}

    # resumed: the finished steps are skipped (no training, no MD), the same result
    trained = tmp_path / "ar.safetensors.fit" / "trained.safetensors"
    before = trained.stat().st_mtime_ns
    again = fit(frames[:40], out, settings=FitConfig(**QUICK_CHECKS), train_options={"epochs": 2},
                model_options=TINY_MODEL, resume=True)
    assert trained.stat().st_mtime_ns == before and again.verdict == result.verdict
    # a run started before an option existed resumes when the option is at its default, not otherwise
    state_file = tmp_path / "ar.safetensors.fit" / "fit.json"
    state = json.loads(state_file.read_text())
    del state["settings"]["fit"]["check_minutes"]
    state_file.write_text(json.dumps(state))
    again = fit(frames[:40], out, settings=FitConfig(**QUICK_CHECKS), train_options={"epochs": 2},
                model_options=TINY_MODEL, resume=True)
    assert trained.stat().st_mtime_ns == before and again.verdict == result.verdict
    with pytest.raises(TrainingError, match="other settings .*fit"):
        fit(frames[:40], out, settings=FitConfig(**{**QUICK_CHECKS, "check_minutes": 5.0}),
            train_options={"epochs": 2}, model_options=TINY_MODEL, resume=True)
    # a recorded decision is taken again by this version's rule on its recorded checks (no MD, no training)
    state = json.loads(state_file.read_text())
    decided = state["steps"]["mean-force"]["kept"]
    assert state["steps"]["mean-force"]["why"]
    state["steps"]["mean-force"].update(kept=not decided, path=None)
    del state["steps"]["mean-force"]["why"]
    state_file.write_text(json.dumps(state))
    again = fit(frames[:40], out, settings=FitConfig(**QUICK_CHECKS), train_options={"epochs": 2},
                model_options=TINY_MODEL, resume=True)
    assert trained.stat().st_mtime_ns == before and again.steps["mean-force"]["kept"] == decided
    assert again.verdict == result.verdict and again.steps["mean-force"]["why"] == result.steps["mean-force"]["why"]
    assert ("pair_table" in [p.kind for p in again.model.priors]) == decided
    # another setting, or a second fit into the same run directory, is refused
    with pytest.raises(TrainingError, match="other settings .*train"):
        fit(frames[:40], out, settings=FitConfig(**QUICK_CHECKS), train_options={"epochs": 3}, model_options=TINY_MODEL,
            resume=True)
    with pytest.raises(FileExistsError):
        fit(frames[:40], tmp_path / "other.safetensors", run_dir=tmp_path / "ar.safetensors.fit",
            settings=FitConfig(**QUICK_CHECKS), train_options={"epochs": 2}, model_options=TINY_MODEL)


def test_an_md_check_longer_than_its_budget_is_shortened_and_says_so(argon_model, argon, caplog):
    """The checks' length is planned from the model's measured pace: what would take longer than
    ``check_minutes`` is shortened in proportion (to no less than 0.2 + 1 ps), with a warning."""
    from ase_denoise.fitting.pipeline import _size_check

    frames = [argon.copy() for _ in range(4)]
    check = dict(n_replicas=2, equilibration_ps=5.0, check_ps=20.0, production_ps=20.0, timestep_fs=1.0, seed=0)
    assert _size_check(argon_model, frames, check, 0.01, minutes=600.0) == {}
    with caplog.at_level("WARNING"):
        sized = _size_check(argon_model, frames, check, 0.01, minutes=1e-4)
    assert sized == {"equilibration_ps": 0.2, "production_ps": 1.0}
    assert "--check-minutes" in caplog.text and "shortened to 0.2 + 1 ps" in caplog.text


def test_fit_from_the_command_line_logs_its_reasons_and_skips_what_it_is_told(lj_argon_small, tmp_path, caplog):
    frames, _ = lj_argon_small
    data = tmp_path / "ar.extxyz"
    ase.io.write(data, frames[:30])
    out = tmp_path / "m.safetensors"
    with caplog.at_level("INFO", logger="ase_denoise"):
        code, stdout, stderr = run_cli(["fit", "--data", data, "--output", out, "--epochs", "1", "--channels", "4",
                                        "--max-ell", "1", "--correlation", "1", "--interactions", "1", "--radial-mlp",
                                        "8", "--skip", "validate", "--no-wall"])
    assert code == 0, stderr
    assert "a liquid or solid" in caplog.text and "no mean-force correction" in caplog.text
    assert "not checked in MD" in stdout and str(out) in stdout
    assert read_metadata(out)["physics"]["priors"] == []  # --no-wall
    assert "ase-denoise fit --data" in read_metadata(out)["card"]
    code, _, stderr = run_cli(["fit", "--data", data, "--output", out, "--epochs", "1"])
    assert code == 2 and "exists" in stderr
    # resumed: the report's command reproduces the fit (no --resume in it); its time is the whole fit's
    argv = ["fit", "--data", data, "--output", out, "--epochs", "1", "--channels", "4", "--max-ell", "1", "--correlation",
            "1", "--interactions", "1", "--radial-mlp", "8", "--skip", "validate", "--no-wall"]
    elapsed = json.loads((tmp_path / "m.safetensors.fit" / "fit.json").read_text())["elapsed_s"]
    assert elapsed > 0
    code, _, stderr = run_cli(argv + ["--resume"])
    assert code == 0, stderr
    report = (tmp_path / "m.report" / "report.md").read_text()
    assert "--resume" not in report and "--resume" not in read_metadata(out)["card"] and "--no-wall" in report
    assert json.loads((tmp_path / "m.safetensors.fit" / "fit.json").read_text())["elapsed_s"] > elapsed
    assert f"the whole fit took {elapsed / 60:.0f} min" in report or f"took {elapsed / 60 + 0.5:.0f} min" in report


@pytest.mark.slow
def test_fit_with_defaults_recovers_a_metal_it_was_never_tuned_on(tmp_path):
    """EMT copper at 600 K (108 atoms, 300 frames; no forces used): ``fit`` with its defaults (the
    ladder and cutoff read off the data, the wall, antithetic pairs) and a fixed epoch budget gives
    held-out forces against the true EMT forces with slope 0.97-1.03 and relative RMSE <= 0.06, and
    writes its report."""
    from ase_denoise.analysis import force_metrics
    from ase_denoise.data.reference import emt_metal_frames
    from ase_denoise.inference import evaluate_forces, structure_frame

    sampling = dict(stride=10, equilibration_steps=1000)  # 50 fs between frames; 2 min of EMT
    train_frames = emt_metal_frames(300, 600.0, seed=0, **sampling)
    test_frames = emt_metal_frames(20, 600.0, seed=1, **sampling)
    for a in train_frames:
        del a.arrays["ref_forces"]  # coordinates only
    result = fit(train_frames, tmp_path / "cu.safetensors", train_options={"epochs": 4},
                 settings=FitConfig(check_replicas=2, equilibration_ps=0.2, check_ps=1.0, timestep_fs=2.0))
    model = result.model
    pred, ref = evaluate_forces(model, [structure_frame(a, model) for a in test_frames])
    m = force_metrics(pred, ref)
    assert 0.97 <= m["slope"] <= 1.03 and m["relative_rmse"] <= 0.06, m
    # the label-free force scale (Stein's identity on the training frames) agrees with the true one
    scale = result.steps["validate"]["force_scale"]
    assert abs(scale["ratio"] - m["slope"]) <= 0.015 + 3 * scale["error"], (scale, m)
    assert os.path.exists(result.report) and (Path(result.report).parent / "rdf.png").exists()


def test_a_run_state_resumes_with_settings_json_cannot_keep_as_given(tmp_path):
    """Integer keys (a molecule's bead names by atomic number) and tuples come back from fit.json as
    strings and lists: a resume with the same options must still match them."""
    from ase_denoise.fitting.pipeline import _RunState

    settings = {"model": {"bead_names": {1: "C-ace", 2: "N"}, "r_max": "auto"}, "plan": {"dihedrals": [(0, 1, 2, 4)]}}
    first = _RunState(str(tmp_path), settings, resume=False)
    first.finish("train", {"epochs": 3})
    again = _RunState(str(tmp_path), settings, resume=True)
    assert again.done("train") == {"epochs": 3}
    with pytest.raises(TrainingError, match=r"other settings \(model\)"):
        _RunState(str(tmp_path), {**settings, "model": {"bead_names": {1: "C-ace", 2: "CA"}, "r_max": "auto"}},
                  resume=True)


def test_a_molecule_gets_a_torsion_step_then_a_joint_step_on_its_torsion_pairs(tmp_path):
    """phi and psi: the one-dimensional torsion correction, then a joint step on the pair, each checked
    in MD and kept only if it helped; the final check gives the pair's joint KL with its floor and the
    report plots the pair; a run resumed from before the joint step existed runs it and checks again."""
    frames = ala2_frames(every=8)
    out = tmp_path / "ala2.safetensors"
    checks = FitConfig(check_replicas=2, equilibration_ps=0.05, check_ps=0.3, timestep_fs=1.0)
    result = fit(frames, out, temperature_K=300.0, settings=checks, train_options={"epochs": 1}, model_options=TINY_MODEL)
    assert result.plan.kind == "molecule" and len(result.plan.dihedrals) == 2
    assert {"torsions", "torsion-pairs", "validate"} <= set(result.steps)
    pairs = result.steps["torsion-pairs"]
    assert len(pairs["joint_kl"]) == len(pairs["marginal_kl"]) == len(pairs["intact"]) >= 1
    assert all(len(k) == 1 and np.isfinite(k[0]) for k in pairs["joint_kl"])  # one pair: (phi, psi)
    usable = [i for i, ok in enumerate(pairs["intact"]) if ok]
    if usable:  # the check with the smallest joint KL is chosen, the correction kept only if that is not the model as trained
        assert pairs["chosen"] == min(usable, key=lambda i: pairs["joint_kl"][i][0])
    assert pairs["kept"] == (pairs["chosen"] > 0)
    kinds = [p.kind for p in result.model.priors]
    assert ("dihedral_pair_correction" in kinds) == pairs["kept"]
    checked = result.steps["validate"]
    assert checked["sampled"] == pairs["sampled"]  # the final model's check is the joint step's chosen one
    assert len(checked["pair_kl"]) == len(checked["pair_kl_floor"]) == 1
    assert np.isfinite(checked["pair_kl"] + checked["pair_kl_floor"]).all()
    assert "joint distribution" in result.verdict
    report = Path(result.report)
    text = report.read_text()
    assert "](torsion_pairs.png)" in text and "joint torsion correction" in text
    assert (report.parent / "torsion_pairs.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # a run recorded before the joint step existed: resuming runs it, and checks the final model again
    state_file = tmp_path / "ala2.safetensors.fit" / "fit.json"
    state = json.loads(state_file.read_text())
    del state["steps"]["torsion-pairs"]
    state["steps"]["validate"]["verdict"] = "the check of the model before the joint step"
    state_file.write_text(json.dumps(state))
    again = fit(frames, out, temperature_K=300.0, settings=checks, train_options={"epochs": 1},
                model_options=TINY_MODEL, resume=True)
    assert "torsion-pairs" in again.steps and "joint distribution" in again.verdict
    assert again.steps["validate"]["sampled"] == again.steps["torsion-pairs"]["sampled"]
