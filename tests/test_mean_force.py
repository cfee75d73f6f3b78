"""Kirkwood's relation on data frames: the mean-force check and correction (ase_denoise.refine.mean_force)."""

from __future__ import annotations

import copy
from dataclasses import replace

import numpy as np
import pytest
import torch
from ase.io import write
from ase.units import kB

from ase_denoise.checkpoint import load_model_file
from ase_denoise.refine import reference_structure
from ase_denoise.refine import correct_mean_forces, pmf_from_forces
from ase_denoise.priors import DSFCoulomb
from ase_denoise.zoo import load_model

from _helpers import run_cli
from test_md_validation import REPO, licl_frames


def _kirkwood_rms(frames, forces, kT):
    """RMS (kT) of ``-kT ln g - W_forces`` over the bins where g > 0.5, mean removed."""
    ref = reference_structure(frames)
    r = ref["r"]
    w = pmf_from_forces(frames, forces, r, float(r[-1]), ["Ar-Ar"])["Ar-Ar"]
    sampled = ref["Ar-Ar"] > 0.5
    diff = (-kT * np.log(np.where(sampled, ref["Ar-Ar"], 1.0)) - w)[sampled]
    return float(np.sqrt(np.mean((diff - diff.mean()) ** 2)) / kT), int(sampled.sum())


def test_kirkwood_relation_holds_for_the_exact_forces_of_a_boltzmann_sample(lj_argon_small):
    """LJ argon at 94.4 K, 60 frames with the true forces: the projected pair force averaged by
    distance and integrated is -kT ln g(r) to within 0.1 kT RMS over the whole sampled range
    (measured 0.03 kT over 3.35-8.55 A); forces at half their strength break it several times over
    (measured 0.19 kT)."""
    frames, _ = lj_argon_small
    forces = np.concatenate([a.arrays["ref_forces"] for a in frames])
    kT = kB * 94.4
    exact, n_bins = _kirkwood_rms(frames, forces, kT)
    weak, _ = _kirkwood_rms(frames, 0.5 * forces, kT)
    assert n_bins > 40
    assert exact < 0.1, exact
    assert weak > 4 * exact, (weak, exact)


@pytest.fixture(scope="module")
def licl_setting():
    """The zoo LiCl model, 250 data frames (every 8th of the first 2000) and their RDFs."""
    frames = licl_frames(2000)[::8]
    return load_model("licl-cg-300K"), frames, reference_structure(frames)


def test_the_correction_satisfies_kirkwood_and_removes_a_known_pair_perturbation(licl_setting):
    """A correction makes the model satisfy Kirkwood's relation on its data (the mismatch falls to
    a few hundredths of kT), and it is the model's: adding a known pair potential P (a weak screened
    Coulomb term) to the model changes the correction by about -P. Checked on the Li-Cl pairing free
    energy, W(contact, 2.35 A) - W(solvent-separated, 4.65 A): P moves it by -1.6 kT, the correction
    puts back all but a quarter of that (measured: 0.0405 eV of P, 0.004-0.009 eV left over)."""
    model, frames, ref = licl_setting
    a = correct_mean_forces(model, frames, reference=ref)
    assert a.before["Li-Cl"] > 0.05 and all(v < 0.08 for v in a.after.values()), (a.before, a.after)
    perturbation = DSFCoulomb({3: 0.3, 17: -0.3}, 4.0, alpha=0.3, r_cut=float(a.r[-1]))
    perturbed = copy.deepcopy(model)
    perturbed.priors = perturbed.priors + [perturbation]
    perturbed.physics = replace(perturbed.physics, priors=[p.to_dict() for p in perturbed.priors])
    b = correct_mean_forces(perturbed, frames, reference=ref)
    assert b.before["Li-Cl"] > a.before["Li-Cl"] + 0.03
    assert all(v < 0.08 for v in b.after.values()), b.after
    r = a.r
    contact, separated = int(np.argmin(abs(r - 2.35))), int(np.argmin(abs(r - 4.65)))
    p = perturbation.pair_terms(np.full(len(r), 3), np.full(len(r), 17), r)[0]
    p_shift = p[contact] - p[separated]
    left = (b.correction_at["Li-Cl"] + p - a.correction_at["Li-Cl"])
    left_shift = left[contact] - left[separated]
    assert p_shift < -1.5 * kB * 300
    assert abs(left_shift) < 0.25 * abs(p_shift), (left_shift, p_shift)


def test_the_corrected_model_is_the_model_plus_its_table_and_an_earlier_table_is_continued(licl_setting, tmp_path):
    """The corrected copy's forces are the given model's plus exactly the table's (the given model is
    not changed); it saves and loads; correcting the corrected model again starts from its table and
    stays where it was (the fixed point); iterations=0 only checks."""
    from ase_denoise import DenoiseCalculator
    from ase_denoise.checkpoint import save_model

    model, frames, ref = licl_setting
    result = correct_mean_forces(model, frames, reference=ref, iterations=3)
    assert [p.kind for p in model.priors] == ["repulsive_wall", "coulomb_ewald"]
    table = result.model.priors[-1]
    assert table.kind == "pair_table" and "mean-force correction" in table.source
    assert set(table.u) == {(3, 3), (3, 17), (17, 17)} and all(v[-1] == 0.0 for v in table.u.values())
    atoms = frames[5].copy()
    f_model = DenoiseCalculator(model, dtype=torch.float64).get_forces(atoms.copy())
    f_corrected = DenoiseCalculator(result.model, dtype=torch.float64).get_forces(atoms.copy())
    np.testing.assert_allclose(f_corrected - f_model, table.forces(atoms), atol=1e-9)
    again = load_model_file(save_model(result.model, tmp_path / "corrected.safetensors"))
    np.testing.assert_allclose(DenoiseCalculator(again, dtype=torch.float64).get_forces(atoms.copy()), f_corrected,
                               atol=1e-12)
    check = correct_mean_forces(result.model, frames, reference=ref, iterations=0)
    assert check.mismatch[0] == pytest.approx(result.after, abs=1e-9)
    further = correct_mean_forces(result.model, frames, reference=ref, iterations=2)
    for key, u in result.correction_at.items():
        assert np.max(np.abs(further.correction_at[key] - u)) < 0.1 * np.max(np.abs(u)) + 1e-3, key
    bare = correct_mean_forces(model, frames, reference=ref, iterations=0)
    assert bare.table is None and bare.model is model and len(bare.mismatch) == 1


def test_correct_mean_forces_refuses_what_it_cannot_use(licl_setting):
    model, frames, ref = licl_setting
    with pytest.raises(ValueError, match="damping"):
        correct_mean_forces(model, frames, reference=ref, damping=0.0)
    with pytest.raises(ValueError, match="iterations"):
        correct_mean_forces(model, frames, reference=ref, iterations=-1)
    with pytest.raises(ValueError, match="cutoff of at least"):
        correct_mean_forces(model, frames, reference=ref, cutoff=0.5)
    hot = [a.copy() for a in frames[:10]]
    for a in hot:
        a.info["temperature_K"] = 400.0
    with pytest.raises(ValueError, match="temperature_K"):
        correct_mean_forces(model, hot)
    molecule = frames[0].copy()
    molecule.pbc = False
    with pytest.raises(ValueError, match="periodic"):
        correct_mean_forces(model, [molecule] * 10)


def test_correct_mean_forces_cli_reports_and_writes_a_new_model(tmp_path):
    data = tmp_path / "licl.extxyz"
    write(data, licl_frames(1000)[::10])
    zoo_file = REPO / "models" / "licl-cg-300K" / "licl-cg-300K.safetensors"
    zoo_bytes = zoo_file.read_bytes()
    code, stdout, stderr = run_cli(["correct-mean-forces", "--model", "licl-cg-300K", "--data", data])
    assert code == 0, stderr
    assert "mean-force mismatch" in stdout and "Li-Cl" in stdout and "written" not in stdout
    out = tmp_path / "corrected.safetensors"
    args = ["correct-mean-forces", "--model", "licl-cg-300K", "--data", data, "--output", out, "--iterations", 2]
    code, stdout, stderr = run_cli(args)
    assert code == 0, stderr
    assert "after 2 iteration(s)" in stdout and f"written to {out}" in stdout
    assert load_model_file(out).priors[-1].kind == "pair_table"
    assert zoo_file.read_bytes() == zoo_bytes
    code, _, stderr = run_cli(args)
    assert code != 0 and "exists" in stderr
    code, _, stderr = run_cli(["correct-mean-forces", "--model", out, "--data", data, "--output", out, "--overwrite"])
    assert code != 0 and "--model file itself" in stderr
