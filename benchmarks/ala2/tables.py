"""Every table of the alanine-dipeptide ``README.md`` (all atoms and CG) and ``results/tables.md``, from
``results/summary.jsonl``.

``study.py --tables`` and ``cg.py --tables`` rewrite them (between ``<!-- table NAME -->`` markers),
``--check-tables`` fails if a document does not hold them; ``tests/test_benchmark_tables.py`` runs the
check. Only the summary records are read: no model, no data set, no torch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional

import numpy as np

from ala2 import cg, study
from study_kit import fmt, md_table, mean_std

SEEDS = (0, 1, 2)
BASINS = ("beta/C7eq/PII", "alpha_R", "alpha_L/C7ax")
REGIONS = ("C7eq", "PII", "alpha_R", "alpha_L/C7ax")


class Records:
    """The summary's records by kind, variant and run."""

    def __init__(self, summary):
        self.all = summary.load()

    def by(self, kind: str, variant: Optional[str] = None) -> Dict[str, Dict[str, Any]]:
        return {r["run"]: r for r in self.all if r["kind"] == kind and r.get("variant") == variant}

    def one(self, kind: str) -> Dict[str, Any]:
        return next(r for r in self.all if r["kind"] == kind)


def seed_runs(recipe: str, suffix: str = "") -> List[str]:
    return [f"{recipe}{'' if s == 0 else f'-seed{s}'}{suffix}" for s in SEEDS]


def each(values, digits=3):
    return ", ".join(fmt(v, digits) for v in values)


def pm(pop, digits=3):
    return f"{pop[0]:.{digits}f} ± {pop[1]:.{digits}f}"


# ----------------------------------------------------------------------------------------------
# data and recipes
# ----------------------------------------------------------------------------------------------
def data_table(rec: Records) -> str:
    pops = rec.one("data")["populations"]
    labels = {"beta/C7eq/PII": "beta / C7eq / PII (phi < 0, psi > 50 or < -150)", "alpha_R": "alpha_R (phi < 0, -150 < psi < 50)",
              "alpha_L/C7ax": "alpha_L / C7ax (phi > 0)"}
    return md_table(["basin", "population"], [[labels[b], pm(pops[b]) if pops[b][0] > 0 else "0 (not visited in 5 ns)"]
                                              for b in BASINS])


def aa_recipes_table() -> str:
    rows = []
    for word in study.ALL_ATOM:
        what, loss, copies, smoothed, head, torsions = study.WORDS[word]
        rows.append([f"`{word}-<N>`", what, loss, copies, head, "bonded" + (" + phi/psi torsions" if torsions else "")
                     + (", smoothed" if smoothed else "")])
    return md_table(["recipe", "what it is", "loss", "copies", "head", "priors"], rows)


def cg_recipes_table(rec: Records) -> str:
    runs = rec.by("cg-run")
    rows = []
    for word in cg.WORDS:
        what, loss, copies, smoothed, head, torsions = study.WORDS[word]
        levels = runs.get(f"{word}-2000", {}).get("noise_levels")
        ladder = "-" if loss == "force_matching" else (" / ".join(f"{x:g}" for x in levels) if levels else "auto")
        rows.append([f"`{word}-<N>`", what, head, ladder])
    return md_table(["recipe", "what it is", "head", "noise ladder at 2000 frames (A)"], rows)


# ----------------------------------------------------------------------------------------------
# all atoms
# ----------------------------------------------------------------------------------------------
AA_TABLE = (("denoise", "denoising, coordinates only"), ("denoise-smoothed", "denoising, smoothed priors"),
            ("mixed", "mixed labels"), ("force-match", "force matching"))


def aa_runs_table(rec: Records) -> str:
    runs = rec.by("aa-run")
    rows, stopped = [], []
    for n in study.FRAME_COUNTS:
        for word, label in AA_TABLE:
            res = [runs[x] for x in seed_runs(f"{word}-{n}") if x in runs]
            if not res:
                continue
            per = " / ".join(mean_std([r["forces"][e]["rmse"] for r in res]) for e in ("H", "C", "N", "O"))
            rows.append([label, n, len(res), mean_std([r["forces"]["all"]["relative_rmse"] for r in res]),
                         mean_std([r["forces"]["all"]["slope"] for r in res]), per,
                         f"{sum(r['md']['intact'] for r in res)}/{len(res)}",
                         mean_std([r["md"]["bond_std_ratio"] for r in res if r["md"]["intact"]])])
            for r in res:
                if r["md"].get("stopped"):
                    step = int(r["md"]["stopped"].rsplit(" ", 1)[1])
                    stopped.append(f"`{r['run']}` at {step * study.MD['timestep_fs'] / 1000:.2f} ps")
    table = md_table(["recipe", "frames", "seeds", "relative RMSE (all atoms)", "slope", "RMSE H / C / N / O (eV/A)",
                      "MD intact", "bond spread / reference (intact runs)"], rows)
    return (table + "\n\nA bond 1 A off its mean ends the MD (" + ", ".join(stopped) + "); runs before that went the full "
            "11 ps and count as broken when a bond left 0.5 A of its mean.")


def intact_temperature(r: Mapping[str, Any]) -> str:
    """Mean kinetic temperature of the intact replicas."""
    per = r.get("replica_temperatures_K")
    if per is None:
        return f"{r['mean_temperature_K']:.0f} (all replicas)"
    ok = [t for t, b, m in zip(per, r["broken_at_ps"], r["max_stretch_A"]) if b is None and m <= 0.5]
    return f"{np.mean(ok):.0f}" if ok else "-"


def aa_replicas_table(rec: Records, variant: Optional[str] = None) -> str:
    reps = rec.by("aa-replicas", variant)
    ref = rec.one("cg-reference")["regions"]
    order = [r.run_name(s) + w for r in study.BOOK for s in r.seeds for w in ("", "+wall")] + ["exact-force-field"]
    rows = [["reference (5 ns, 10 blocks)", "-", "-", "300", "1", "1"] + [pm(ref[b]) for b in REGIONS]]
    frictions = set()
    for name in order:
        r = reps.get(name)
        if r is None:
            continue
        frictions.add(r["settings"]["friction_per_fs"])
        broken = sorted(b for b in r["broken_at_ps"] if b is not None)
        pops = r.get("regions", {})
        rows.append([f"{name} (OpenMM)" if name == "exact-force-field" else name, f"{r['replicas_intact']}/{r['n_replicas']}",
                     ", ".join(f"{b:.1f}" for b in broken) or "-", intact_temperature(r)]
                    + [f"{r[k]:.2f}" if k in r else "-" for k in ("bond_std_ratio", "angle_std_ratio")]
                    + [pm(pops[b], 2) if b in pops else "-" for b in REGIONS])
    return (f"All-atom MD friction: {', '.join(f'{f:g}' for f in sorted(frictions))} /fs\n\n"
            + md_table(["run", "replicas intact", "broken after (ps)", "kinetic T (K, second half; intact replicas)",
                        "bond spread / data (intact)", "angle spread / data (intact)", *REGIONS], rows))


def aa_energy_table(rec: Records) -> str:
    rows = []
    for r in rec.by("aa-energy").values():
        a, b = r["basins"].get("alpha_R"), r["basins"].get("beta/C7eq/PII")
        rows.append([r["run"], r["n_frames"], f"{r['std_A_minus_U_kT']:.2f}", f"{r['std_U_kT']:.2f}", f"{r['slope_A_on_U']:.3f}",
                     f"{r['correlation']:.3f}", f"{r['force_rmse_eV_per_A']:.3f}",
                     f"{a['offset_vs_beta_kT']:+.2f} ± {a['offset_stderr_kT']:.2f}" if a else "-",
                     f"{a['cumulant2_offset_vs_beta_kT']:+.2f}" if a else "-",
                     f"{b['data_population']:.3f}" if b else "-", f"{b['predicted_population']:.3f}" if b else "-"])
    return md_table(["run", "held-out frames", "std(A - U) (kT)", "std(U) (kT)", "slope of A on U", "correlation",
                     "force RMSE (eV/A)", "alpha_R offset vs beta (kT): mean", "second cumulant",
                     "beta population: held-out data", "predicted from the mean offset"], rows)


def aa_torsions_table(rec: Records) -> str:
    reps = rec.by("aa-replicas")
    ex = reps["exact-force-field"]
    rows = [["exact force field (OpenMM)", f"{ex['replicas_intact']}/{ex['n_replicas']}", intact_temperature(ex),
             f"{ex['bond_std_ratio']:.2f} / {ex['angle_std_ratio']:.2f}"]
            + [pm(ex["regions"][b], 2) for b in REGIONS[:3]] + [f"{ex['regions']['alpha_L/C7ax'][0]:.2f}"]]
    for a, b in (("denoise-smoothed-2000", "denoise-smoothed-torsions-2000+wall"),
                 ("denoise-smoothed-2000-seed1", "denoise-smoothed-torsions-2000-seed1+wall"),
                 ("denoise-smoothed-2000-seed2+wall", "denoise-smoothed-torsions-2000-seed2+wall")):
        x, y = reps[a], reps[b]
        rows.append([f"{a} / {b}", f"{x['replicas_intact']}/{x['n_replicas']} / {y['replicas_intact']}/{y['n_replicas']}",
                     f"{intact_temperature(x)} / {intact_temperature(y)}",
                     f"{x['bond_std_ratio']:.2f} / {x['angle_std_ratio']:.2f}, {y['bond_std_ratio']:.2f} / {y['angle_std_ratio']:.2f}"]
                    + [f"{x['regions'][r][0]:.2f} / {y['regions'][r][0]:.2f}" for r in REGIONS])
    return md_table(["run", "intact", "T (K)", "bond / angle spread", *REGIONS], rows)


# ----------------------------------------------------------------------------------------------
# coarse-grained
# ----------------------------------------------------------------------------------------------
REFINED = (("+corrected1", "iteration 1"), ("+corrected2", "iteration 2"),
           ("+corrected2-half", "iteration 2 (damping 0.5 after a full first step)"),
           ("+corrected2-joint", "iteration 2 (a joint phi-psi step after a full first step)"),
           ("+corrected2-joint-half", "iteration 2 (a joint phi-psi step, damping 0.5 after a full first step)"))


def cg_rows():
    """(frames, word, label, suffix) per CG table row: each recipe, then its torsion-corrected iterations."""
    for n in cg.FRAME_COUNTS:
        for word in cg.WORDS:
            label = study.WORDS[word][0]
            yield n, word, label, ""
            for suffix, how in REFINED:
                yield n, word, f"{label} + torsion correction (no labels), {how}", suffix


def _group(runs, word, n, suffix):
    return [runs[x] for x in seed_runs(f"{word}-{n}", suffix) if x in runs]


def cg_runs_table(rec: Records, variant: Optional[str] = None) -> str:
    ref = rec.one("cg-reference")
    runs = rec.by("cg-run", variant)
    rows = [["reference (5 ns all-atom, mapped)", "-", "-", f"{ref['kl_between_halves']:.3f} (between halves)"]
            + [pm(ref["populations"][b]) for b in BASINS] + ["-", "300", "-"]]
    frictions, per_seed = set(), []
    for n, word, label, suffix in cg_rows():
        res = _group(runs, word, n, suffix)
        if not res:
            continue
        frictions.update(r["md"]["friction_per_fs"] for r in res)
        per_seed.append(f"`{word}-{n}{suffix}` " + each(r["kl"] for r in res))
        rows.append([label, n, len(res), mean_std([r["kl"] for r in res])]
                    + [mean_std([r["populations"].get(b, [np.nan])[0] for r in res]) for b in BASINS]
                    + [f"{sum(r['md']['replicas_intact'] for r in res)}/{sum(r['md']['n_replicas'] for r in res)}",
                       ", ".join(f"{r['md']['mean_temperature_K']:.0f}" for r in res),
                       mean_std([r["forces"]["all"]["rmse"] for r in res])])
    table = md_table(["recipe", "frames", "seeds", "KL to reference", *BASINS, "replicas intact", "MD kinetic T (K)",
                      "force RMSE (eV/A)"], rows)
    return (f"CG MD friction: {', '.join(f'{f:g}' for f in sorted(frictions))} /fs\n\n{table}\n\n"
            "KL per training seed (seed 0 first): " + "; ".join(per_seed) + "."
            + ("" if variant else f"\n\nThe product of the phi and psi marginals of the first {ref['n_training']} training "
               f"frames (what the torsion priors alone know, no MD): KL {ref['kl_marginals_product']:.3f}."))


def cg_regions_table(rec: Records) -> str:
    ref = rec.one("cg-reference")["regions"]
    runs = rec.by("cg-run")
    rows = [["reference (5 ns all-atom, mapped; 10-block errors)", "-", "-"] + [pm(ref[r]) for r in REGIONS]]
    for n, word, label, suffix in cg_rows():
        res = _group(runs, word, n, suffix)
        if res:
            rows.append([label, n, len(res)] + [mean_std([r["regions"][x][0] for r in res]) for x in REGIONS])
    return md_table(["recipe", "frames", "seeds", *REGIONS], rows)


def cg_marginals_table(rec: Records) -> str:
    ref = rec.one("cg-reference")
    m = ref["marginals"]
    runs = rec.by("cg-run")
    rows = [["reference (5 ns all-atom, mapped)", "-", "-", "0", "0", f"{m['reference']['mutual_information']:.3f}",
             f"{m['reference']['kl_held_out']:.3f}"]]
    for label, key in ((f"the first {ref['n_training']} training frames themselves", "training frames"),
                       ("the product of their phi and psi marginals", "product of their marginals")):
        rows.append([label, "-", "-"] + [f"{m[key][k]:.3f}" for k in ("kl_phi", "kl_psi", "mutual_information", "kl_held_out")])
    for n, word, label, suffix in cg_rows():
        res = _group(runs, word, n, suffix)
        if res:
            rows.append([label, n, len(res)] + [mean_std([r[k] for r in res])
                                                for k in ("kl_phi", "kl_psi", "mutual_information", "kl_held_out")])
    return md_table(["recipe", "frames", "seeds", "KL of phi marginal", "KL of psi marginal", "mutual information",
                     "KL to the held-out 500"], rows)


def cg_torsions_table(rec: Records) -> str:
    ref = rec.one("cg-reference")
    runs = rec.by("cg-run")
    rows = [["reference (5 ns)", f"{ref['kl_between_halves']:.3f} between halves", "-",
             f"{ref['populations']['beta/C7eq/PII'][0]:.3f}", f"{ref['populations']['alpha_R'][0]:.3f}",
             f"{ref['populations']['alpha_L/C7ax'][0]:.3f}", f"{ref['regions']['C7eq'][0]:.3f}"],
            ["product of the training marginals (no model, no MD)", "-", f"{ref['kl_marginals_product']:.3f}", "-", "-", "-", "-"]]
    for word, label in (("denoise-smoothed", "coordinates only"), ("denoise-smoothed-torsions", "coordinates only + torsion priors"),
                        ("force-match", "force matching"), ("force-match-torsions", "force matching + torsion priors")):
        res = _group(runs, word, 2000, "")
        rows.append([f"`{word}`, {label}", each(r["kl"] for r in res), mean_std([r["kl"] for r in res])]
                    + [f"{np.mean([r['populations'][b][0] for r in res]):.3f}" for b in BASINS]
                    + [f"{np.mean([r['regions']['C7eq'][0] for r in res]):.3f}"])
    return md_table(["recipe (2000 frames, 3 seeds)", "KL per seed", "KL mean ± std", *BASINS, "C7eq"], rows)


def _correction_rows(rec: Records, rows_spec) -> str:
    ref = rec.one("cg-reference")
    m = ref["marginals"]
    runs = rec.by("cg-run")
    rows = [["reference (5 ns)", f"{ref['kl_between_halves']:.3f} between halves", "-"]
            + [f"{ref['regions'][r][0]:.3f}" for r in ("C7eq", "PII", "alpha_R")]
            + ["0 / 0", f"{m['reference']['mutual_information']:.3f}", f"{m['reference']['kl_held_out']:.3f}"],
            [f"the {ref['n_training']} training frames themselves", "-", f"{m['training frames']['kl']:.3f}", "", "", "",
             f"{m['training frames']['kl_phi']:.3f} / {m['training frames']['kl_psi']:.3f}",
             f"{m['training frames']['mutual_information']:.3f}", f"{m['training frames']['kl_held_out']:.3f}"]]
    for label, recipe, suffix in rows_spec:
        res = [runs[x] for x in seed_runs(recipe, suffix)]
        rows.append([label, each(r["kl"] for r in res), mean_std([r["kl"] for r in res])]
                    + [f"{np.mean([r['regions'][x][0] for r in res]):.3f}" for x in ("C7eq", "PII", "alpha_R")]
                    + [f"{np.mean([r['kl_phi'] for r in res]):.3f} / {np.mean([r['kl_psi'] for r in res]):.3f}",
                       f"{np.mean([r['mutual_information'] for r in res]):.3f}", mean_std([r["kl_held_out"] for r in res])])
    return md_table(["run (3 seeds each)", "KL per seed", "KL", "C7eq", "PII", "alpha_R", "KL of phi / psi marginal",
                     "mutual information", "KL to the held-out 500"], rows)


DT, FT = "denoise-smoothed-torsions", "force-match-torsions"


def cg_correction_table(rec: Records) -> str:
    return _correction_rows(rec, ((f"`{DT}`, coordinates only + torsion priors", f"{DT}-2000", ""),
                                  (f"`{DT}` + torsion correction, 1 step", f"{DT}-2000", "+corrected1"),
                                  (f"`{DT}` + torsion correction, 2 steps", f"{DT}-2000", "+corrected2"),
                                  (f"`{FT}`, force matching + torsion priors", f"{FT}-2000", ""),
                                  (f"`{FT}` + torsion correction, 1 step", f"{FT}-2000", "+corrected1"),
                                  (f"`{FT}` + torsion correction, 2 steps", f"{FT}-2000", "+corrected2")))


def cg_joint_table(rec: Records) -> str:
    rows = []
    for recipe in (f"{DT}-2000", f"{FT}-2000"):
        rows += [(f"`{recipe}` + 1 step", recipe, "+corrected1"), (f"`{recipe}` + a full second step", recipe, "+corrected2")]
        if recipe.startswith(DT):
            rows.append((f"`{recipe}` + a half second step", recipe, "+corrected2-half"))
        rows += [(f"`{recipe}` + a joint step", recipe, "+corrected2-joint"),
                 (f"`{recipe}` + a half joint step", recipe, "+corrected2-joint-half")]
    rows += [(f"`{DT}-500`", f"{DT}-500", ""), (f"`{DT}-500` + 1 step", f"{DT}-500", "+corrected1"),
             (f"`{FT}-500`, force matching + torsion priors", f"{FT}-500", ""), (f"`{FT}-500` + 1 step", f"{FT}-500", "+corrected1")]
    return _correction_rows(rec, rows)


def md_seed_table(rec: Records) -> str:
    """The same trained models' MD with another thermostat seed (``cg.py --md-seed 10``)."""
    base, again = rec.by("cg-run"), rec.by("cg-run", "md-seed-10")
    rows = [[name, f"{base[name]['kl']:.3f}", f"{r['kl']:.3f}",
             " / ".join(f"{base[name]['populations'][b][0]:.3f}" for b in BASINS),
             " / ".join(f"{r['populations'][b][0]:.3f}" for b in BASINS)] for name, r in again.items()]
    return md_table(["run", "KL, MD seed = training seed", "KL, MD seed 10", "beta / alpha_R / alpha_L (training-seed MD)",
                     "beta / alpha_R / alpha_L (MD seed 10)"], rows)


# ----------------------------------------------------------------------------------------------
# the documents
# ----------------------------------------------------------------------------------------------
def readme_tables(rec: Records) -> Dict[str, str]:
    return {"data": data_table(rec), "aa-recipes": aa_recipes_table(), "aa-runs": aa_runs_table(rec),
            "aa-replicas": aa_replicas_table(rec), "aa-energy": aa_energy_table(rec), "aa-torsions": aa_torsions_table(rec),
            "cg-recipes": cg_recipes_table(rec), "cg-runs": cg_runs_table(rec), "cg-regions": cg_regions_table(rec),
            "cg-torsions": cg_torsions_table(rec), "cg-correction": cg_correction_table(rec),
            "cg-marginals": cg_marginals_table(rec), "cg-joint": cg_joint_table(rec),
            "cg-runs-friction-0.01": cg_runs_table(rec, "friction-0.01")}


def supplement_tables(rec: Records) -> Dict[str, str]:
    return {"aa-replicas-friction-0.01": aa_replicas_table(rec, "friction-0.01"), "cg-md-seed-10": md_seed_table(rec)}


def documents(st, quick: bool = False) -> Dict[Path, Dict[str, str]]:
    rec = Records(st.summary(quick))
    return {st.readme: readme_tables(rec), st.here / "results" / "tables.md": supplement_tables(rec)}
