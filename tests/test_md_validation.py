"""Label-free check of a model's MD against its data's pair structure (ase_denoise.refine) and
``ase-denoise choose-forces``: the noise subtraction, the choices, and the model file written."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.io import write

from ase_denoise.checkpoint import load_model_file
from ase_denoise.forces import evaluation_levels
from ase_denoise.forces import ForcesChoice, forces_choices
from ase_denoise.model import with_default_forces
from ase_denoise.refine import compare_with_reference, element_pairs, reference_structure
from ase_denoise.zoo import load_model

from _helpers import ARGON_TINY, make_model, run_cli

REPO = Path(__file__).resolve().parents[1]
LICL_DATA = REPO / "benchmarks" / "licl" / "licl_cg_300K.npz"


def licl_frames(stop: int, start: int = 0):
    d = np.load(LICL_DATA)
    out = []
    for pos in d["positions"][start:stop]:
        atoms = Atoms(numbers=d["numbers"], positions=pos.astype(np.float64), cell=d["cell"], pbc=True)
        atoms.wrap()
        out.append(atoms)
    return out


def test_the_noise_subtracted_rdf_error_vanishes_for_the_data_and_not_for_other_structure():
    """Eight 20-frame windows of the LiCl trajectory against the RDFs of another 1000 frames of it: the
    raw RMS difference is sampling noise (clearly above 0), the systematic part nearly vanishes. The same
    windows with every ion displaced by 0.15 A (the Li-Cl contact peak smeared) keep a systematic error
    many times the MD noise."""
    frames = licl_frames(2000)
    reference = reference_structure(frames[:1000])
    assert set(element_pairs(frames[0])) == {("Li", "Li"), ("Li", "Cl"), ("Cl", "Cl")}
    assert reference["r"][-1] < 0.5 * frames[0].cell[0, 0]
    pairs = [("Li", "Li"), ("Li", "Cl"), ("Cl", "Cl")]
    windows = [frames[i: i + 20] for i in np.linspace(1000, 1979, 8).round().astype(int)]
    same = compare_with_reference(reference, windows, pairs, np.random.default_rng(0))
    assert same["rdf_error"] > 0.05 and same["rdf_error_noise"] > 0
    assert same["systematic_error"] < 0.35 * same["rdf_error"], same["systematic_error"]

    rng = np.random.default_rng(1)
    smeared = []
    for w in windows:
        out = []
        for atoms in w:
            atoms = atoms.copy()
            atoms.positions += rng.normal(0.0, 0.15, atoms.positions.shape)
            out.append(atoms)
        smeared.append(out)
    other = compare_with_reference(reference, smeared, pairs, np.random.default_rng(0))
    assert other["systematic_error"] > 5 * other["rdf_error_noise"] and other["systematic_error"] > 3 * same["systematic_error"]
    assert other["systematic_per_pair"]["Li-Cl"] == max(other["systematic_per_pair"].values())  # the sharpest peak


def test_reference_structure_refuses_what_it_cannot_measure(dimers):
    with pytest.raises(ValueError, match="periodic"):
        reference_structure(dimers)
    with pytest.raises(ValueError, match="at least 5"):
        reference_structure(licl_frames(3))


def test_the_choices_of_a_ladder_and_the_stored_default():
    one = make_model([18], noise_std=0.05, pbc=True, **ARGON_TINY)
    two = make_model([18], noise_std=[0.02, 0.04], pbc=True, **dict(ARGON_TINY, noise_embedding=4))
    three = make_model([18], noise_std=[0.02, 0.03, 0.04], pbc=True, **dict(ARGON_TINY, noise_embedding=4))
    assert forces_choices(one) == [ForcesChoice()]
    assert forces_choices(two) == [ForcesChoice(extrapolation_order=1), ForcesChoice(noise_std=0.02)]
    assert forces_choices(three) == [ForcesChoice(extrapolation_order=2), ForcesChoice(extrapolation_order=1),
                                     ForcesChoice(noise_std=0.02)]
    chosen = with_default_forces(three, ForcesChoice(noise_std=0.02))
    assert evaluation_levels(chosen, None)[0] == [0.02]
    assert three.physics.default_noise_std is None and len(evaluation_levels(three, None)[0]) == 3  # not changed
    linear = with_default_forces(chosen, ForcesChoice(extrapolation_order=1))
    assert linear.physics.default_noise_std is None and linear.physics.default_extrapolation_order == 1


@pytest.mark.slow
def test_choose_forces_cli_writes_a_new_model_with_the_best_choice(tmp_path):
    """The zoo LiCl model (3 levels) on 20 of its data frames, 2 replicas of 0.22 ps per choice: three
    choices measured and printed, the best (smallest systematic error, none collapsed) stored in a new
    file; the zoo file is untouched; an existing output or the model file itself is refused."""
    data = tmp_path / "licl.extxyz"
    write(data, licl_frames(1000)[::50])
    zoo_file = REPO / "models" / "licl-cg-300K" / "licl-cg-300K.safetensors"
    before = hashlib.sha256(zoo_file.read_bytes()).hexdigest()
    out = tmp_path / "chosen.safetensors"
    args = ["choose-forces", "--model", "licl-cg-300K", "--data", data, "--output", out, "--replicas", 2,
            "--equilibration-ps", 0.02, "--production-ps", 0.2]
    code, stdout, stderr = run_cli(args)
    assert code == 0, stderr
    lines = [l for l in stdout.splitlines() if "systematic RDF error" in l]
    assert len(lines) == 4 and lines[-1].startswith("chosen: ")  # three choices, then the choice
    labels = [c.label for c in forces_choices(load_model("licl-cg-300K"))]
    assert [l.split(":")[0] for l in lines[:3]] == labels
    errors = [float(l.split("systematic RDF error ")[1].split()[0]) for l in lines[:3]]
    chosen = load_model_file(out)
    best = forces_choices(chosen)[int(np.argmin(errors))]
    assert (chosen.physics.default_noise_std, chosen.physics.default_extrapolation_order) == (
        best.noise_std, best.extrapolation_order)
    assert hashlib.sha256(zoo_file.read_bytes()).hexdigest() == before

    code, _, stderr = run_cli(args)
    assert code == 2 and "exists" in stderr
    code, _, stderr = run_cli(["choose-forces", "--model", out, "--data", data, "--output", out, "--overwrite"])
    assert code == 2 and "model file itself" in stderr


def test_check_structure_refuses_data_of_another_temperature():
    from ase_denoise.refine import check_structure

    frames = licl_frames(10)
    for atoms in frames:
        atoms.info["temperature_K"] = 350.0
    with pytest.raises(ValueError, match="350.0.*300.0 K"):
        check_structure(load_model("licl-cg-300K"), frames, n_replicas=2, equilibration_ps=0.0, production_ps=0.1)


def test_check_md_cli_ranks_models_by_their_md_against_the_data(tmp_path, argon_model_file):
    """``ase-denoise check-md``: one line per model, then the best; a model of other elements than the
    data is refused by name before any MD runs."""
    data = tmp_path / "licl.extxyz"
    write(data, licl_frames(1000)[::100])
    args = ["check-md", "--data", data, "--replicas", 2, "--equilibration-ps", 0.0, "--production-ps", 0.1]
    code, stdout, stderr = run_cli(args + ["--model", "licl-cg-300K", "licl-cg-300K"])
    assert code == 0, stderr
    announcement, *lines = stdout.splitlines()  # what runs, and how long it should take here
    assert announcement.startswith("MD checks: 2 check(s) of 2 Langevin replicas x (0 ps discarded + 0.1 ps kept)")
    assert "300 K: 200 batched steps, about" in announcement and "steps/s here" in announcement
    assert [l.split(":")[0] for l in lines[:2]] == ["licl-cg-300K"] * 2
    figures = [l.split(": ", 1)[1].split(" replicas collapsed")[0] for l in lines[:2]]
    assert "systematic RDF error" in figures[0] and figures[0] == figures[1]  # same starts, same thermostat seeds
    assert lines[-1].startswith("best: licl-cg-300K")
    code, _, stderr = run_cli(args + ["--model", "licl-cg-300K", argon_model_file])
    assert code == 2 and "Li" in stderr and "(for " in stderr


# --- structure refinement (iterative Boltzmann inversion into a pair table) ------------------------

def _synthetic_reference(kT=0.0259, error=0.01):
    """An RDF with an excluded core, a contact peak and a second shell, with per-bin errors."""
    r = np.arange(0.05, 12.0, 0.1)
    g = np.where(r < 2.0, 0.0, 1.0 + 2.5 * np.exp(-((r - 2.4) / 0.15) ** 2) - 0.4 * np.exp(-((r - 3.2) / 0.3) ** 2)
                 + 0.3 * np.exp(-((r - 4.7) / 0.4) ** 2))
    g = np.clip(g, 0.0, None)
    return {"r": r, "A-B": g, "A-B_err": np.full_like(r, error)}


def test_pair_correction_inverts_a_known_change_of_the_pair_structure():
    """MD whose RDF is the data's times exp(-dU/kT) (the dilute-limit response to a pair term dU that is
    too attractive at contact and too repulsive in the second shell): one correction is -dU to within
    the 3-point smoothing in the sampled region; constant (no force) inside the core no pair reached;
    zero at the cutoff. An MD RDF within the noise of the data's gives no correction."""
    from ase_denoise.refine import pair_correction

    kT = 0.0259
    ref = _synthetic_reference(kT)
    r = ref["r"]
    du_true = -0.5 * kT * np.exp(-((r - 2.4) / 0.3) ** 2) + 0.3 * kT * np.exp(-((r - 4.7) / 0.5) ** 2)
    md = {"A-B": ref["A-B"] * np.exp(-du_true / kT)}
    grid, du = pair_correction(ref, md, {"A-B": np.full_like(r, 0.01)}, kT, cutoff=7.0)
    assert grid[-1] <= 7.0 and du["A-B"][-1] == 0.0
    du_true = du_true[: len(grid)]
    inner = (grid > 2.1) & (grid < 5.5)  # sampled, before the taper
    assert np.max(np.abs(du["A-B"][inner] + du_true[inner])) < 0.06 * kT
    assert np.all(du["A-B"][grid < 1.9] == du["A-B"][grid < 1.9][0])
    noisy = {"A-B": ref["A-B"] + np.random.default_rng(0).normal(0, 0.01, r.shape)}
    _, flat = pair_correction(ref, noisy, {"A-B": np.full_like(r, 0.05)}, kT, cutoff=7.0)
    assert np.max(np.abs(flat["A-B"])) < 0.02 * kT


@pytest.mark.slow
def test_refine_structure_adds_a_pair_table_that_the_calculator_applies(tmp_path):
    """The zoo LiCl model, one short correction (4 replicas x 0.3 ps against 40 data frames): a copy
    with a pair-table prior is made (the given model is not changed); its forces are the given model's
    plus exactly the table's; it saves and loads with the same forces; the chosen model is the one with
    the smallest systematic error; bad arguments are refused."""
    from ase_denoise import DenoiseCalculator
    from ase_denoise.checkpoint import save_model
    from ase_denoise.refine import refine_structure

    model = load_model("licl-cg-300K")
    frames = licl_frames(2000)[::50]
    result = refine_structure(model, frames, iterations=1, n_replicas=4, equilibration_ps=0.05, production_ps=0.3)
    assert len(result.checks) == 2 and len(result.models) == 2
    assert result.chosen == int(np.argmin([c.systematic_error for c in result.checks]))
    refined = result.models[1]
    assert [p.kind for p in model.priors] == ["repulsive_wall", "coulomb_ewald"]  # the given model unchanged
    table = refined.priors[-1]
    assert table.kind == "pair_table" and table.cutoff <= model.config.r_max
    assert set(table.u) == {(3, 3), (3, 17), (17, 17)} and all(v[-1] == 0.0 for v in table.u.values())
    atoms = frames[3].copy()
    f_model = DenoiseCalculator(model, dtype=torch.float64).get_forces(atoms.copy())
    f_refined = DenoiseCalculator(refined, dtype=torch.float64).get_forces(atoms.copy())
    np.testing.assert_allclose(f_refined - f_model, table.forces(atoms), atol=1e-9)
    path = save_model(refined, tmp_path / "refined.safetensors")
    again = load_model_file(path)
    np.testing.assert_allclose(DenoiseCalculator(again, dtype=torch.float64).get_forces(atoms.copy()), f_refined, atol=1e-12)
    assert "tabulated pair correction" in "\n".join(p.describe() for p in again.priors)
    with pytest.raises(ValueError, match="damping"):
        refine_structure(model, frames, damping=0.0)
    with pytest.raises(ValueError, match="cutoff of at least"):
        refine_structure(model, frames, cutoff=0.5)


@pytest.mark.slow
def test_refine_structure_cli_writes_the_checked_best_model(tmp_path):
    """``ase-denoise refine-structure`` on the zoo LiCl model: one line per check, the choice, a new file
    holding the chosen model (with its pair table when a correction was chosen); the zoo file is
    untouched and an existing output is refused."""
    data = tmp_path / "licl.extxyz"
    write(data, licl_frames(1000)[::50])
    zoo_file = REPO / "models" / "licl-cg-300K" / "licl-cg-300K.safetensors"
    before = hashlib.sha256(zoo_file.read_bytes()).hexdigest()
    out = tmp_path / "refined.safetensors"
    args = ["refine-structure", "--model", "licl-cg-300K", "--data", data, "--output", out, "--replicas", 2,
            "--equilibration-ps", 0.02, "--production-ps", 0.2]
    code, stdout, stderr = run_cli(args)
    assert code == 0, stderr
    announcement, *lines = stdout.splitlines()
    assert announcement.startswith("refine-structure: 2 check(s) of 2 Langevin replicas") and "about" in announcement
    assert lines[0].startswith("0 correction(s): systematic RDF error") and lines[1].startswith("1 correction(s): ")
    chosen = int(lines[-1].split("chosen: ")[1].split()[0])
    errors = [float(l.split("systematic RDF error ")[1].split()[0]) for l in lines[:2]]
    assert errors[chosen] == min(errors)
    kinds = [p.kind for p in load_model_file(out).priors]
    assert ("pair_table" in kinds) == (chosen == 1)
    assert hashlib.sha256(zoo_file.read_bytes()).hexdigest() == before
    code, _, stderr = run_cli(args)
    assert code == 2 and "exists" in stderr
