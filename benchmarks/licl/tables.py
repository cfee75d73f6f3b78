"""Every table of the LiCl study's ``README.md`` and ``results/tables.md``, from ``results/summary.jsonl``.

``study.py --tables`` rewrites them (between ``<!-- table NAME -->`` markers), ``--check-tables`` fails if
a document does not hold them; ``tests/test_benchmark_tables.py`` runs the check. Only the summary
records are read (and the committed ``reference_rdf.npz`` for the PMF's reference curve): no model, no
data set, no torch.
"""

from __future__ import annotations

from itertools import combinations
from pathlib import Path
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence

import numpy as np

from licl import study
from study_kit import fmt, md_table, mean_std

KT_EV = study.TEMPERATURE_K * 8.617333262e-5
LADDER = study.LADDER
SMALLEST = f"{LADDER}-smallest-level"
LINEAR = f"{LADDER}-linear-extrapolation"
AVERAGED = f"{LADDER}-60-epochs-averaged"
FM = "force-match-1800"
FM_EWALD = "force-match-wall-ewald-1800"
PAIRS = ("Li-Li", "Li-Cl", "Cl-Cl")


def runs_of(recipe: str, seeds: Optional[Sequence[int]] = None) -> List[str]:
    r = study.BOOK.recipe(recipe)
    return [r.run_name(s) for s in (r.seeds if seeds is None else seeds)]


def each(values: Iterable[Any], digits: int = 3, sign: bool = False) -> str:
    return ", ".join(fmt(v, digits, sign) for v in values)


def peak(rec: Mapping[str, Any]) -> float:
    return rec["rdf"]["peak_g"]


def sd(values: Sequence[float]) -> float:
    return float(np.std(values, ddof=1)) if len(values) > 1 else 0.0


class Records:
    """The summary's records by kind and run."""

    def __init__(self, summary):
        self.all = summary.load()
        self.runs = self.by("run")
        self.pmf = self.by("pmf")
        self.replicas = {r["run"]: r for r in self.all if r["kind"] == "replicas" and r["production_ps"] == 20.0
                         and r["n_replicas"] == 8}
        self.long = {(r["run"], r["production_ps"], r.get("level"), r.get("order")): r
                     for r in self.all if r["kind"] == "long_md"}
        ref = self.by("reference").get("reference", {})
        self.floor, self.ref_peak = ref.get("floor"), (ref.get("li_cl_peak_r"), ref.get("li_cl_peak_g"))

    def by(self, kind: str) -> Dict[str, Dict[str, Any]]:
        return {r["run"]: r for r in self.all if r["kind"] == kind}

    def long_md(self, run: str, ps: float = 100.0, level=None, order=None):
        return self.long.get((run, ps, level, order))

    def present(self, names: Iterable[str], table: Mapping[str, Any]) -> List[Dict[str, Any]]:
        return [table[n] for n in names if n in table]


# ----------------------------------------------------------------------------------------------
# the per-run table, the seeds, the longer MD
# ----------------------------------------------------------------------------------------------
def _sigma_cell(rec, recipe) -> str:
    levels = rec.get("noise_levels") or [recipe.noise_std]
    return (", ".join(f"{x:g}" for x in levels) + (" +wall" if "wall" in recipe.priors else "")
            + (" +Ewald" if "ewald" in recipe.priors else ""))


def runs_table(rec: Records) -> str:
    """One row per run with its own training (seed 0 of every recipe first, then the other seeds, as
    declared); the ``weights_of`` recipes (other default forces of the same weights) are in "Which forces"."""
    lines = [f"Noise floor: RMS difference between the two halves (1 ns each) of the reference, mean over pairs = {rec.floor:.3f}.",
             "", f"Reference Li-Cl first peak: r = {rec.ref_peak[0]:.2f} A, g = {rec.ref_peak[1]:.2f}.", ""]
    rows = []
    ordered = [r.run_name(0) for r in study.BOOK] + [r.run_name(s) for r in study.BOOK for s in r.seeds if s]
    for name in ordered:
        res = rec.runs.get(name)
        recipe = study.recipe_of(name)
        if res is None or recipe.get("weights_of"):
            continue
        md, rdf, stab = res["md"], res.get("rdf"), res["stability"]
        loss = recipe.loss + (f" w={recipe.get('force_weight')}" if recipe.loss == "hybrid" else "")
        rows.append([name, loss, res["n_frames"], _sigma_cell(res, recipe),
                     f"{recipe.n_duplicates}{' (antithetic pairs)' if recipe.antithetic else ''}",
                     " / ".join(fmt(rdf[p], dash="—") for p in PAIRS) if rdf else "—",
                     fmt(rdf["rms_mean"], dash="—") if rdf else "—", fmt((rdf or {}).get("rms_mean_vs_noised"), dash="—"),
                     f"{rdf['peak_r']:.2f} / {rdf['peak_g']:.2f}" if rdf else "—",
                     fmt(stab["closest_approach_A"], 2, dash="—"), f"{stab['blew_up']}/{stab['runs']}",
                     fmt(res["forces"]["all"]["rmse"], dash="—"), fmt(res["train_elapsed_s"], 0, dash="—"),
                     f"{md['wall_s']:.0f}, {md['steps_per_s']:.0f}"])
    return "\n".join(lines) + "\n" + md_table(
        ["run", "loss", "frames", "sigma (A)", "k", "RDF RMS Li-Li / Li-Cl / Cl-Cl", "mean", "mean vs noised ref.",
         "Li-Cl peak r (A) / g", "closest approach (A)", "runs blown up", "force RMSE vs labels (eV/A)", "train (s)",
         "MD (s, steps/s)"], rows)


def seeds_table(rec: Records) -> str:
    """Recipes run over several training seeds (a committee recipe: its disjoint sets of members)."""
    rows = []
    for recipe in study.BOOK:
        if len(recipe.seeds) < 2 and not recipe.get("committee") or recipe.get("weights_of"):
            continue
        group = rec.present(recipe.runs(), rec.runs)
        if not group:
            continue
        ok = [r for r in group if r.get("rdf")]
        rms = np.array([r["rdf"]["rms_mean"] for r in ok])
        blown = sum(r["stability"]["blew_up"] for r in group)
        runs = sum(r["stability"]["runs"] for r in group)
        spread = (f"{rms.mean():.3f} ± {rms.std(ddof=1):.3f} ({rms.min():.3f} - {rms.max():.3f})" if len(rms) > 1
                  else f"{rms.mean():.3f} (one seed)" if len(rms) else "—")
        rows.append([recipe.name, f"{len(ok)} of {len(group)}", spread, f"{np.mean([peak(r) for r in ok]):.2f}" if ok else "—",
                     f"{blown}/{runs}"])
    return ("Over training seeds (each seed: its own training run and MD; blown-up runs count in the last column):\n\n"
            + md_table(["recipe", "seeds with RDFs", "mean RDF RMS: mean ± std (min - max)", "Li-Cl contact peak g: mean",
                        "MD runs blown up"], rows))


def long_table(rec: Records, ps: float = study.LONG_MD_PS) -> str:
    rows = []
    block = None
    for recipe in study.BOOK:
        group = [rec.long_md(n, ps) for n in recipe.runs() if rec.long_md(n, ps)]
        if not group:
            continue
        ok = [r for r in group if r.get("rdf")]
        rms = [r["rdf"]["rms_mean"] for r in ok]
        blocks = np.array([r["blocks_rms_mean"] for r in ok])
        block = block or ok[0].get("block_ps")
        rows.append([recipe.name, len(group), each(rms) or "—", mean_std(rms, dash="—"),
                     each([peak(r) for r in ok], 1) or "—",
                     " → ".join(f"{b:.2f}" for b in blocks.mean(axis=0)) if len(blocks) else "—",
                     f"{sum(int(r['md']['blew_up']) for r in group)}/{len(group)}"])
    return (f"Longer MD ({ps:g} ps per trained model after 5 ps of equilibration, from the same start frame as the "
            f"main runs, seed 7; `study.py --long-md {ps:g} --only ...`). Blocks: the same run cut into {block:g}-ps "
            "pieces, in time order; a rise from the first to the last block means the structure is still leaving "
            "the start frame's:\n\n"
            + md_table(["recipe", "training seeds", "mean RDF RMS per seed", "mean ± std over seeds", "Li-Cl peak g per seed",
                        "block RMS in time order (mean over seeds)", "blown up"], rows))


# ----------------------------------------------------------------------------------------------
# potential of mean force
# ----------------------------------------------------------------------------------------------
INNER_EDGE_R = 2.2  # from here the PMF RMS leaves out the innermost window (see pmf_summary)
CONTACT_R, BARRIER_R, SEPARATED_R = 2.3, 3.0, 4.6
_REF = {}


def reference_w(r: np.ndarray) -> np.ndarray:
    """``-kT ln g(r)`` of the all-atom reference at ``r`` (eV; NaN where g vanishes)."""
    if "ref" not in _REF:
        _REF["ref"] = dict(np.load(study.HERE / "reference_rdf.npz"))
    ref = _REF["ref"]
    g = np.interp(r, ref["r"], ref["Li-Cl"])
    ok = g > 1e-3
    return np.where(ok, -KT_EV * np.log(np.where(ok, g, 1.0)), np.nan)


def pmf_curve(record: Mapping[str, Any]):
    """``(r, dW/dr, its error, W, W's error, -kT ln g at r)`` of a ``pmf`` record: the windows' mean forces
    integrated by the trapezoid rule (variance of each step ``(h/2)^2 (e_a^2 + e_b^2)``), ``W`` aligned with
    ``-kT ln g`` at the largest distance."""
    win = np.array(record["windows"], dtype=float)
    r, dw, err = win[:, 0], win[:, 1], win[:, 2]
    steps = 0.5 * np.diff(r) * (dw[1:] + dw[:-1])
    w = np.concatenate([[0.0], np.cumsum(steps)])
    w_err = np.sqrt(np.concatenate([[0.0], np.cumsum((0.5 * np.diff(r)) ** 2 * (err[1:] ** 2 + err[:-1] ** 2))]))
    w_ref = reference_w(r)
    return r, dw, err, w - w[-1] + w_ref[-1], w_err, w_ref


def pmf_features(record: Mapping[str, Any]) -> Dict[str, float]:
    """RMS of ``W - (-kT ln g)`` over all windows and from 2.2 A, the errors (model minus reference) of the
    contact free energy ``W(2.3) - W(4.6)`` and of the barrier ``W(3.0) - W(2.3)`` (kT), and ``W`` (eV) at
    the three distances."""
    r, _, _, w, _, w_ref = pmf_curve(record)
    at = {x: int(np.argmin(np.abs(r - x))) for x in (CONTACT_R, BARRIER_R, SEPARATED_R)}
    diff = (w - w_ref) / KT_EV
    inner = r >= INNER_EDGE_R - 1e-9
    return dict(rms=float(np.sqrt(np.nanmean(diff ** 2))), rms_outer=float(np.sqrt(np.nanmean(diff[inner] ** 2))),
                rms_eV=float(np.sqrt(np.nanmean((w - w_ref) ** 2))),
                contact=float(diff[at[CONTACT_R]] - diff[at[SEPARATED_R]]), barrier=float(diff[at[BARRIER_R]] - diff[at[CONTACT_R]]),
                **{f"w{x}": float(w[at[x]]) for x in at}, **{f"ref{x}": float(w_ref[at[x]]) for x in at})


def pmf_table(rec: Records) -> str:
    rows = []
    labels = {"denoise-ladder-wall": "vector head, ladder + wall, seed 0",
              "denoise-ladder-wall-seed1": "vector head, same recipe, seed 1",
              "denoise-ladder-wall-seed2": "vector head, same recipe, seed 2",
              "denoise-ladder-wall-energy-head": "energy head, same recipe, seed 0"}
    for name, what in labels.items():
        if name in rec.pmf:
            f = pmf_features(rec.pmf[name])
            if not rows:
                rows.append(["all-atom reference, `-kT ln g(r)`", "-"] + [f"{f[f'ref{x}']:.3f} eV" for x in (CONTACT_R, BARRIER_R, SEPARATED_R)])
            rows.append([f"`{name}` ({what})", f"{f['rms_eV']:.3f} eV ({f['rms']:.2f} kT)"]
                        + [f"{f[f'w{x}']:.3f} eV" for x in (CONTACT_R, BARRIER_R, SEPARATED_R)])
    return md_table(["model", "RMS vs `-kT ln g`, 2.1-6 A", "contact minimum W(2.3 A)", "barrier W(3.0 A)",
                     "solvent-separated W(4.6 A)"], rows)


def _pmf_seeds(rec: Records, recipe: str, suffix: str = "") -> List[Dict[str, float]]:
    return [pmf_features(rec.pmf[n + suffix]) for n in runs_of(recipe, (0, 1, 2)) if n + suffix in rec.pmf]


def pmf_summary(rec: Records) -> str:
    """Per recipe (its seeds with all windows; ``+last-epoch``: the last epoch's weights) the PMF features."""
    groups: Dict[str, List[str]] = {}
    for name in rec.pmf:
        base, plus = name.partition("+")[::2]
        groups.setdefault(study.recipe_of(base).name + (f"+{plus}" if plus else ""), []).append(name)
    rows = []
    for group, names in groups.items():
        names.sort(key=lambda n: study.RUNS[n.partition("+")[0]][1])
        f = [pmf_features(rec.pmf[n]) for n in names]
        cells = []
        for key in ("rms", "rms_outer", "contact", "barrier"):
            v = np.array([x[key] for x in f])
            sign = not key.startswith("rms")
            cells.append(each(v, 2, sign) + (f" (mean {fmt(v.mean(), 2, sign)} ± {v.std(ddof=1):.2f})" if len(v) > 1 else ""))
        rows.append([group, ", ".join(names)] + cells)
    return ("Errors are model minus reference (`-kT ln g` of the all-atom data), in kT. Contact: `W(2.3) - W(4.6)` "
            "(negative: contact pairs over-bound). Barrier: `W(3.0) - W(2.3)`. RMS from 2.2 A: without the innermost "
            "window, where `-kT ln g` of the reference's 0.1-A bins is biased about 1 kT low (g changes about e^6-fold "
            "across the bin there).\n\n"
            + md_table(["recipe", "seeds", "RMS error, 2.1-6.0 A (kT)", "RMS error, 2.2-6.0 A (kT)", "contact error (kT)",
                        "barrier error (kT)"], rows))


def antithetic_table(rec: Records) -> str:
    rows = []
    for recipe, label in (("denoise-ladder-wall", "ladder + wall, independent draws"),
                          ("denoise-ladder-wall-antithetic", "ladder + wall, antithetic pairs"),
                          (FM, "force matching, 1800 labelled frames")):
        names = runs_of(recipe, (0, 1, 2))
        long = [rec.long_md(n) for n in names]
        f = _pmf_seeds(rec, recipe)
        rows.append([f"{label} (`{recipe}`)", mean_std([rec.runs[n]["rdf"]["rms_mean"] for n in names]),
                     mean_std([x["rdf"]["rms_mean"] for x in long]), each([peak(x) for x in long], 1),
                     mean_std([x["rms_outer"] for x in f], 2), each([x["contact"] for x in f], 2, True),
                     each([x["barrier"] for x in f], 2, True)])
    return md_table(["recipe", "RDF error, 30 ps", "RDF error, 100 ps", "Li-Cl peak g, 100 ps", "PMF RMS 2.2-6 A",
                     "contact error, W(2.3) - W(4.6)", "barrier error, W(3.0) - W(2.3)"], rows)


def last_epoch_table(rec: Records) -> str:
    rows = []
    for name in ("denoise-ladder-wall-antithetic", "denoise-ladder-wall-antithetic-seed2", "denoise-ladder-wall-seed1",
                 "denoise-ladder-wall-seed2", "force-match-1800-seed1", "force-match-1800-seed2"):
        if name in rec.pmf and f"{name}+last-epoch" in rec.pmf:
            kept, last = pmf_features(rec.pmf[name]), pmf_features(rec.pmf[f"{name}+last-epoch"])
            rows.append([f"`{name}` ({rec.runs[name]['best_epoch']})", fmt(kept["contact"], 2, True), fmt(last["contact"], 2, True),
                         f"{fmt(kept['barrier'], 2, True)} / {fmt(last['barrier'], 2, True)}"])
    return md_table(["run (best epoch of 30, FM of 33)", "contact error, kept epoch", "contact error, last epoch",
                     "barrier error, kept / last"], rows)


# ----------------------------------------------------------------------------------------------
# the Coulomb prior, longer training, nine seeds, committees
# ----------------------------------------------------------------------------------------------
def ewald_table(rec: Records) -> str:
    rows = []
    for recipe, label in (("denoise-ladder-wall-antithetic", "ladder + wall + pairs"), (LADDER, "... + Ewald prior"),
                          (FM, "force matching, 1800 labelled frames"), (FM_EWALD, "... + the same priors")):
        names = runs_of(recipe, (0, 1, 2))
        short = [rec.runs[n] for n in names]
        long = [rec.long_md(n) for n in names]
        blocks = np.array([x["blocks_rms_mean"] for x in long]).mean(axis=0)
        rows.append([f"{label} (`{recipe}`)", each([x["rdf"]["rms_mean"] for x in short]),
                     mean_std([x["rdf"]["rms_mean"] for x in short]), each([peak(x) for x in short], 1),
                     each([x["rdf"]["rms_mean"] for x in long]), mean_std([x["rdf"]["rms_mean"] for x in long]),
                     each([peak(x) for x in long], 1), " → ".join(f"{b:.2f}" for b in blocks)])
    return md_table(["recipe", "RDF error, 30 ps: per seed", "mean ± std", "Li-Cl peak g, 30 ps", "RDF error, 100 ps: per seed",
                     "mean ± std", "Li-Cl peak g, 100 ps", "25-ps blocks, 100 ps (mean over seeds)"], rows)


def averaged_table(rec: Records) -> str:
    rows = []
    for recipe, label in ((LADDER, "30 epochs, EMA 0.99, best-validation epoch"),
                          (AVERAGED, "60 epochs, EMA 0.999, last epoch"),
                          (FM_EWALD, "force matching, 1800 labelled frames, same priors")):
        runs = [rec.runs[n] for n in runs_of(recipe, (0, 1, 2))]
        train = [r["train_elapsed_s"] for r in runs]
        rows.append([f"`{recipe}` ({label})", each([r["rdf"]["rms_mean"] for r in runs]),
                     mean_std([r["rdf"]["rms_mean"] for r in runs]), each([peak(r) for r in runs], 1),
                     f"{sum(r['stability']['blew_up'] for r in runs)}/{sum(r['stability']['runs'] for r in runs)}",
                     f"{min(train):.0f}-{max(train):.0f}"])
    return md_table(["recipe", "RDF error, 30 ps: per seed", "mean ± std", "Li-Cl peak g per seed (ref. 12.7)",
                     "MD runs blown up", "train (s, per seed)"], rows)


def averaged_pmf_table(rec: Records) -> str:
    rows = []
    for recipe, suffix, label in ((LADDER, "", f"`{LADDER}`"), (AVERAGED, "+last-epoch", f"`{AVERAGED}` (last weights)"),
                                  (FM_EWALD, "", f"`{FM_EWALD}`")):
        f = _pmf_seeds(rec, recipe, suffix)
        rows.append([label, each([x["contact"] for x in f], 2, True), f"{sd([x['contact'] for x in f]):.2f}",
                     each([x["barrier"] for x in f], 2, True), mean_std([x["rms_outer"] for x in f], 2)])
    return md_table(["recipe", "contact error per seed", "std over seeds", "barrier error per seed", "PMF RMS 2.2-6 A (kT)"], rows)


def nine_seeds_table(rec: Records) -> str:
    runs = [rec.runs[n] for n in runs_of(LADDER)]
    rms = [r["rdf"]["rms_mean"] for r in runs]
    return md_table(["seed"] + [str(s) for s in range(len(runs))] + ["mean ± std"],
                    [["RDF error, 30 ps"] + [fmt(x) for x in rms] + [f"{mean_std(rms)} (median {np.median(rms):.3f})"],
                     ["Li-Cl peak g (ref. 12.7)"] + [fmt(peak(r), 1) for r in runs] + [f"{np.mean([peak(r) for r in runs]):.1f}"]])


def committee_table(rec: Records) -> str:
    rows = []
    for recipe in (f"committee-{LADDER}", "committee-force-match-wall-ewald-1800"):
        r = study.BOOK.recipe(recipe)
        for seed in r.seeds:
            name = r.run_name(seed)
            members = [rec.runs[m] for m in study.committee_members(r, seed)]
            c = rec.runs[name]
            rows.append([f"`{name}`", each([m["rdf"]["rms_mean"] for m in members]), each([peak(m) for m in members], 1),
                         fmt(c["rdf"]["rms_mean"]), fmt(peak(c), 1), f"{c['md']['wall_s']:.0f}"])
    return md_table(["committee", "members' RDF errors", "members' Li-Cl peaks", "committee RDF error",
                     "committee Li-Cl peak", "MD (s, 55 ps)"], rows)


def barrier_bins_table(rec: Records) -> str:
    com = rec.by("committee")
    den, fm = com[LADDER], com[FM_EWALD]
    names = {"2.0-2.6": "contact", "2.6-3.5": "barrier", "3.5-4.6": "solvent-separated"}
    rows = []
    for a, b in zip(den["bins"], fm["bins"]):
        rows.append([f"{names.get(a['bin'], a['bin'])}, {a['bin']} A", a["pairs"],
                     f"{min(a['bin_mean_per_seed']):+.3f} to {max(a['bin_mean_per_seed']):+.3f}", f"{a['bin_mean_spread']:.3f}",
                     f"{min(b['bin_mean_per_seed']):+.3f} to {max(b['bin_mean_per_seed']):+.3f}", f"{b['bin_mean_spread']:.3f}"])
    return md_table(["bin", f"pairs in {den['n_frames']} frames", f"denoiser seeds 0-{den['K'] - 1}", "spread",
                     f"force matching seeds 0-{fm['K'] - 1}", "spread"], rows)


def committee_variance(records: Sequence[Mapping[str, Any]]) -> str:
    """``committee.py``'s tables: the model variance over seeds, and the Li-Cl pair forces by distance bin."""
    rows = [[r["run"], r["K"], f"{r['model_variance']:.5f}", f"{r['label_ms']:.3f}", f"{r['mse_single_mean']:.5f}",
             f"{r['mse_mean']:.5f}", f"{r['gain_measured']:.5f}", f"{r['gain_expected']:.5f}"] for r in records]
    bins = [[r["run"], b["bin"], b["pairs"], f"{b['spread_per_pair']:.4f}", each(b["bin_mean_per_seed"], 4, True),
             f"{b['bin_mean_spread']:.4f}", f"{b['label_mean']:+.4f} ± {b['label_sem']:.4f}"] for r in records for b in r["bins"]]
    return (md_table(["recipe", "seeds", "model variance v per component ((eV/A)^2)", "mean squared label",
                      "MSE vs labels: one seed (mean)", "MSE: mean of the seeds", "gain measured", "gain expected (1 - 1/K) v"], rows)
            + "\n\nLi-Cl pairs: mean force along the pair (eV/A, attraction > 0) by distance bin. 'Spread per pair': RMS over "
            "pairs of the seeds' standard deviation; 'bin mean per seed': each seed's mean over the bin's pairs (their "
            "spread is the systematic, seed-dependent part).\n\n"
            + md_table(["recipe", "bin (A)", "pairs", "spread per pair", "bin mean per seed", "spread of the bin means",
                        "labels' bin mean ± s.e."], bins))


def forces_by_setting(record: Mapping[str, Any]) -> str:
    """``forces_by_setting.py``'s table."""
    rows = [[r["label"], r["seeds"], f"{r['mse']:.5f}", f"{r['slope_mean']:.3f}" + (f" ± {r['slope_std']:.3f}" if r.get("slope_std") is not None else ""),
             each(r["pulls"], 3, True), fmt(r.get("pull_spread"))] for r in record["rows"]]
    return (f"{record['n_frames']} held-out frames, the seeds of `{record['run']}` (mean ± std over seeds), "
            f"{record['n_barrier_pairs']} Li-Cl pairs on the 2.6-3.5 A barrier.\n\n"
            + md_table(["forces", "seeds", "MSE vs labels ((eV/A)^2)", "slope of labels on forces",
                        "barrier pull per seed (eV/A)", "spread of the pull"], rows))


def generalization(records: Sequence[Mapping[str, Any]]) -> str:
    """``generalization.py``'s table: explained fractions and the paired held-out difference to the base run."""
    if not records:
        return ""
    base = records[0]["base"]
    rows = []
    for res in records:
        for level, v in res["levels"].items():
            a, b, d = v["trained"], v["held_out"], v.get("paired")
            rows.append([res["run"], level, f"{a['explained']:+.4f} ± {a['explained_se']:.4f}",
                         f"{b['explained']:+.4f} ± {b['explained_se']:.4f}", f"{a['explained'] - b['explained']:+.4f}",
                         "-" if d is None else f"{d['dR']:+.5f} ± {d['dR_se']:.5f}",
                         "-" if d is None else f"{d['d_force_mse']:+.4f} ± {d['d_force_mse_se']:.4f}"])
    return md_table(["run", "sigma (A)", "explained, trained frames", "explained, held-out frames", "gap",
                     f"held-out, paired minus {base}", "as force MSE ((eV/A)^2)"], rows)


# ----------------------------------------------------------------------------------------------
# which forces a ladder model returns
# ----------------------------------------------------------------------------------------------
CHOICES = (("corrected, quadratic in sigma^2 (default)", None, None), ("corrected, linear (`extrapolation_order=1`)", None, 1),
           ("smallest level alone (0.0118 A)", 0.0118, None))


def extrapolation_table(rec: Records) -> str:
    rows = []
    for seed in (3, 4, 5, 8):
        name = f"{LADDER}-seed{seed}"
        for label, level, order in CHOICES:
            r = rec.long_md(name, 30.0, level, order)
            if r is None or (level and seed not in (5, 8)):
                continue
            c = r["contact_pairs"]
            rows.append([seed, label, fmt(r["rdf"]["rms_mean"]), fmt(peak(r), 1), f"{c['start']}, {c['mean']:.1f}, {c['end']}"])
    return md_table(["seed", "forces", "RDF error, 30 ps", "Li-Cl peak g", "contact pairs: start, mean, end"], rows)


def forces_choice_table(rec: Records) -> str:
    rows = []
    for label, level, order in (("corrected, quadratic in sigma^2 (the library default)", None, None),
                                ("corrected, linear (`extrapolation_order=1`)", None, 1),
                                ("smallest level alone, 0.0118 A (`noise_std=0.0118`)", 0.0118, None)):
        runs = [rec.long_md(n, 30.0, level, order) for n in runs_of(LADDER)]
        rms = [r["rdf"]["rms_mean"] for r in runs]
        rows.append([label] + [fmt(x) for x in rms] + [mean_std(rms), f"{np.mean([peak(r) for r in runs]):.1f}",
                                                     max(r["contact_pairs"]["max"] for r in runs)])
    runs = [rec.long_md(n, 30.0) for n in runs_of(FM_EWALD)]
    rms = [r["rdf"]["rms_mean"] for r in runs]
    rows.append([f"force matching, 1800 labelled frames, same priors (`{FM_EWALD}`, 3 seeds)"] + [fmt(x) for x in rms]
                + ["-"] * 6 + [mean_std(rms), f"{np.mean([peak(r) for r in runs]):.1f}", max(r["contact_pairs"]["max"] for r in runs)])
    return md_table(["forces (same 30-ps run, MD seed 7)", "seed 0"] + [str(s) for s in range(1, 9)]
                    + ["mean ± std", "mean Li-Cl peak g (ref. 12.7)", "most contact pairs in a frame (ref. 12)"], rows)


def main_protocol_table(rec: Records) -> str:
    rows = []
    for recipe, label in ((LADDER, f"corrected, quadratic (library default; `{LADDER}`)"),
                          (SMALLEST, f"smallest level alone (`{SMALLEST}`, the zoo model's default forces)"),
                          (LINEAR, f"corrected, linear (`{LINEAR}`)")):
        runs = [rec.runs[n] for n in runs_of(recipe)]
        rms = [r["rdf"]["rms_mean"] for r in runs]
        rows.append([label, each(rms), mean_std(rms), f"{np.mean([peak(r) for r in runs]):.1f}",
                     f"{sum(r['stability']['blew_up'] for r in runs)}/{sum(r['stability']['runs'] for r in runs)}"])
    fm = [[rec.runs[n] for n in runs_of(x)] for x in (FM, FM_EWALD)]
    rows.append([f"force matching, 1800 labelled frames (`{FM}`; `{FM_EWALD}` with the same priors)", "3 seeds each",
                 "; ".join(mean_std([r["rdf"]["rms_mean"] for r in g]) for g in fm),
                 "; ".join(f"{np.mean([peak(r) for r in g]):.1f}" for g in fm),
                 f"{sum(r['stability']['blew_up'] for g in fm for r in g)}/{sum(r['stability']['runs'] for g in fm for r in g)}"])
    return md_table([f"forces of the nine `{LADDER}` seeds", "RDF error, 30 ps, per seed 0-8", "mean ± std",
                     "mean Li-Cl peak g", "MD runs blown up"], rows)


# ----------------------------------------------------------------------------------------------
# replicas across the data, seed selection, refinement, mean-force correction
# ----------------------------------------------------------------------------------------------
def replicas_table(rec: Records, recipes: Sequence[str] = (SMALLEST, FM_EWALD), labels: Optional[Mapping[str, str]] = None,
                   speed: bool = False) -> str:
    """Per recipe over its seeds with a ``replicas`` record (8 x 20 ps): the RDF error and its parts."""
    rows = []
    for recipe in recipes:
        ok = [rec.replicas[n] for n in runs_of(recipe) if n in rec.replicas]
        if not ok:
            continue
        errs = [r["rms_mean"] for r in ok]
        syst = [r["rms_systematic"] for r in ok]
        row = [(labels or {}).get(recipe, f"`{recipe}`"), len(ok), each(errs), mean_std(errs),
               f"{np.mean([r['rms_boot'] for r in ok]):.3f}", f"{np.mean(syst):.3f} ± {sd(syst):.3f}",
               f"{np.mean([peak(r) for r in ok]):.1f}",
               f"{np.mean([r['contact_pairs_mean'] for r in ok]):.1f} / {max(r['contact_pairs_max'] for r in ok)}",
               f"{sum(r['collapsed'] for r in ok)}/{sum(r['n_replicas'] for r in ok)}"]
        rows.append(row + ([f"{np.mean([r['batch_steps_per_s'] for r in ok]):.1f}"] if speed else []))
    return md_table(["model (trained weights as before)" if not speed else "recipe", "seeds", "RDF error per seed",
                     "mean ± std", "MD noise of one figure", "systematic part, mean ± std", "Li-Cl peak g (ref. 12.7)",
                     "contact pairs mean / max (ref. 8.1 / 12)", "collapsed replicas"] + (["batch steps/s"] if speed else []), rows)


def replica_floor_line(rec: Records) -> str:
    f = rec.by("replica_floor")["reference"]
    return (f"Floor of this protocol (the reference trajectory's own {f['n_replicas']} windows of {f['production_ps']:g} ps at "
            f"the same start frames): {f['rms_mean']:.3f} ± {f['rms_boot']:.3f}, systematic part {f['rms_systematic']:.3f} "
            "(zero for a perfect model: the check of the noise subtraction).")


def _checks(rec: Records, recipe: str) -> Dict[int, tuple]:
    checks = {r["run"]: r for r in rec.all if r["kind"] == "check" and r["choice"] == "default" and r["production_ps"] == 10.0}
    out = {}
    for seed, name in enumerate(runs_of(recipe)):
        if name in checks and name in rec.replicas:
            out[seed] = (checks[name], rec.replicas[name])
    return out


def seed_check_table(rec: Records) -> str:
    rows = _checks(rec, SMALLEST)
    seeds = sorted(rows)
    return md_table(["seed"] + [str(s) for s in seeds],
                    [["check against its own 500 frames, systematic part"] + [fmt(rows[s][0]["systematic_error"]) for s in seeds],
                     ["evaluation against the 2-ns reference (table above)"] + [fmt(rows[s][1]["rms_mean"]) for s in seeds]])


def selection(rec: Records, recipe: str = SMALLEST, groups=((0, 1, 2), (3, 4, 5), (6, 7, 8))) -> str:
    """Label-free seed selection: in each group keep the seed whose MD matches its own training frames best
    (check), score the kept seeds by their evaluation against the 2-ns reference; and the expectation over
    every set of three seeds."""
    rows = _checks(rec, recipe)
    if len(rows) < 3:
        return ""
    seeds = sorted(rows)
    chk = np.array([rows[s][0]["systematic_error"] for s in seeds])
    ev = np.array([rows[s][1]["rms_mean"] for s in seeds])
    ev_sys = np.array([rows[s][1]["rms_systematic"] for s in seeds])

    def ranks(x):
        return np.argsort(np.argsort(x))

    rho = float(np.corrcoef(ranks(chk), ranks(ev_sys))[0, 1])
    table = md_table(["seed", "check: systematic error vs own data", "check: RMS ± MD noise", "evaluation: RDF error",
                      "evaluation: systematic part"],
                     [[s, f"{c:.3f}", f"{rows[s][0]['rdf_error']:.3f} ± {rows[s][0]['rdf_error_noise']:.3f}", f"{e:.3f}", f"{es:.3f}"]
                      for s, c, e, es in zip(seeds, chk, ev, ev_sys)])
    lines = [table, "", f"Spearman rank correlation of the check with the evaluation's systematic part over {len(seeds)} seeds: {rho:.2f}.", ""]
    kept = []
    for g in groups:
        if all(s in rows for s in g):
            best = min(g, key=lambda s: rows[s][0]["systematic_error"])
            kept.append(best)
            lines.append(f"* seeds {', '.join(map(str, g))}: kept seed {best} (evaluation {rows[best][1]['rms_mean']:.3f})")
    if len(kept) > 1:
        sel = [rows[s][1]["rms_mean"] for s in kept]
        lines += ["", f"Kept seeds: RDF error {np.mean(sel):.3f} ± {np.std(sel, ddof=1):.3f} over {len(kept)} selections, "
                  f"against {np.mean(ev):.3f} ± {np.std(ev, ddof=1):.3f} for all {len(seeds)} seeds."]
    triples = list(combinations(seeds, 3))
    picked = [rows[min(t, key=lambda s: rows[s][0]["systematic_error"])][1]["rms_mean"] for t in triples]
    oracle = [min(rows[s][1]["rms_mean"] for s in t) for t in triples]
    lines += [f"Over all {len(triples)} sets of three of these seeds: the kept seed's RDF error averages "
              f"{np.mean(picked):.3f} (std {np.std(picked, ddof=1):.3f}); keeping the truly best of each set would give "
              f"{np.mean(oracle):.3f}."]
    return "\n".join(lines)


def _refined(rec: Records, recipe: str, iterations: int = 2) -> List[tuple]:
    refine = {r["run"]: r for r in rec.all if r["kind"] == "refine" and r["iterations"] == iterations}
    rows = []
    for seed, name in enumerate(runs_of(recipe)):
        if name in refine and name in rec.replicas:
            res = refine[name]
            after = rec.replicas.get(f"{name}+refined") if res["chosen"] else rec.replicas[name]
            if after is not None:
                rows.append((seed, res, rec.replicas[name], after))
    return rows


def refinement_table(rec: Records, recipe: str = SMALLEST, iterations: int = 2) -> str:
    rows = _refined(rec, recipe, iterations)
    return md_table(["seed", "check after 0, 1, 2 corrections", "kept", "evaluation before -> after",
                     "Li-Cl peak before -> after (ref. 12.7)", "contact pairs (ref. 8.1)"],
                    [[seed, each(c["systematic_error"] for c in res["checks"]), res["chosen"],
                      f"{b['rms_mean']:.3f} -> {a['rms_mean']:.3f}", f"{peak(b):.1f} -> {peak(a):.1f}",
                      f"{b['contact_pairs_mean']:.1f} -> {a['contact_pairs_mean']:.1f}"] for seed, res, b, a in rows])


def refinement_summary(rec: Records, recipe: str = SMALLEST, iterations: int = 2) -> str:
    rows = _refined(rec, recipe, iterations)
    eb = [b["rms_mean"] for _, _, b, _ in rows]
    ea = [a["rms_mean"] for _, _, _, a in rows]
    gain = np.subtract(eb, ea)
    lines = [f"Over {len(rows)} seeds: {np.mean(eb):.3f} ± {sd(eb):.3f} as trained, {np.mean(ea):.3f} ± {sd(ea):.3f} "
             f"refined (mean ± std over seeds); paired gain {np.mean(gain):.3f} ± {sd(gain) / np.sqrt(len(rows)):.3f} "
             "(mean ± standard error)."]
    if len(rows) >= 3:  # keep the best of three seeds by the first check (before any correction), refined
        first = {seed: res["checks"][0]["systematic_error"] for seed, res, _, _ in rows}
        final = {seed: res["checks"][res["chosen"]]["systematic_error"] for seed, res, _, _ in rows}
        after = {seed: a["rms_mean"] for seed, _, _, a in rows}
        triples = list(combinations(sorted(after), 3))
        by_first = [after[min(t, key=first.get)] for t in triples]
        by_final = [after[min(t, key=final.get)] for t in triples]
        lines.append(f"Best of three seeds by the first check, refined: {np.mean(by_first):.3f} on average over all "
                     f"{len(triples)} sets of three (std {np.std(by_first, ddof=1):.3f}); by the check after refinement: "
                     f"{np.mean(by_final):.3f} (std {np.std(by_final, ddof=1):.3f}).")
    return "\n".join(lines)


def _mean_force(rec: Records, recipe: str) -> List[tuple]:
    mf = rec.by("mean_force")
    return [(seed, name, mf[name], rec.replicas[name], rec.replicas[f"{name}+mean-force"])
            for seed, name in enumerate(runs_of(recipe))
            if name in mf and name in rec.replicas and f"{name}+mean-force" in rec.replicas]


def mean_force_table(rec: Records, labels: Mapping[str, str] = None, digits: int = 3) -> str:
    labels = labels if labels is not None else {SMALLEST: "seed {seed}", FM_EWALD: "force matching seed {seed}"}
    rows = []
    for recipe, label in labels.items():
        for seed, name, res, b, a in _mean_force(rec, recipe):
            rows.append([label.format(seed=seed, name=name),
                         f"{res['mismatch'][0]['Li-Cl']:.3f} -> {res['mismatch'][-1]['Li-Cl']:.3f}",
                         f"{res['li_cl_correction_contact_eV']:+.{digits}f}", f"{b['rms_mean']:.3f} -> {a['rms_mean']:.3f}",
                         f"{peak(b):.1f} -> {peak(a):.1f}", f"{b['contact_pairs_mean']:.1f} -> {a['contact_pairs_mean']:.1f}",
                         f"{a['collapsed']}/{a['n_replicas']}"])
    return md_table(["run", "Li-Cl mismatch before -> after (kT)", "correction at contact, 2.35 A (eV)",
                     "evaluation before -> after", "Li-Cl peak before -> after (ref. 12.7)", "contact pairs (ref. 8.1)",
                     "collapsed"], rows)


def mean_force_summary(rec: Records) -> str:
    rows = []
    for recipe, label in ((SMALLEST, f"denoising, 500 frames of coordinates (`{SMALLEST}`)"),
                          (FM_EWALD, f"force matching, 1800 labelled frames, same priors (`{FM_EWALD}`)")):
        runs = _mean_force(rec, recipe)
        if not runs:
            continue
        before = [b["rms_mean"] for *_, b, _ in runs]
        after = [a["rms_mean"] for *_, a in runs]
        gain = np.subtract(before, after)
        sb = [b["rms_systematic"] for *_, b, _ in runs]
        sa = [a["rms_systematic"] for *_, a in runs]
        rows.append([label, mean_std(before), mean_std(after), f"{np.mean(gain):.3f} ± {sd(gain) / np.sqrt(len(gain)):.3f}",
                     f"{mean_std(sb)} -> {mean_std(sa)}"])
    n = "/".join(str(len(study.BOOK.recipe(r).seeds)) for r in (SMALLEST, FM_EWALD))
    return md_table([f"recipe ({n.replace('/', ' / ')} training seeds)", "RDF error as trained", "after the correction",
                     "paired gain (± s.e.)", "systematic part as trained -> corrected"], rows)


# ----------------------------------------------------------------------------------------------
# the documents
# ----------------------------------------------------------------------------------------------
def recipes_table(rec: Records) -> str:
    """The recipes as declared in ``study.py``, with the runs that have a record (MD included)."""
    def sigma(r):
        if r.noise_std == "auto":
            return "auto ladder"
        return ", ".join(f"{x:g}" for x in r.noise_std) if isinstance(r.noise_std, tuple) else f"{r.noise_std:g}"

    def measured(r):
        runs = set(r.runs())
        n = len(runs & set(rec.runs))
        long = len({k[0] for k in rec.long} & runs - set(rec.runs))
        return f"{n}" + (f" (+{long} long MD only)" if long else "") if n or long else "none (defined, not run)"

    rows = [[f"`{r.name}`", r.meaning, r.loss, r.frames if r.frames != "all" else 1800,
             "-" if r.loss == "force_matching" else sigma(r), r.n_duplicates, " + ".join(r.priors) or "-",
             f"{r.seeds[0]}-{r.seeds[-1]}" if len(r.seeds) > 1 else r.seeds[0], measured(r)] for r in study.BOOK]
    return md_table(["recipe", "what it is", "loss", "frames", "sigma (A)", "copies", "priors", "seeds", "runs measured"], rows)


def readme_tables(rec: Records) -> Dict[str, str]:
    return {
        "recipes": recipes_table(rec),
        "runs": runs_table(rec), "seeds": seeds_table(rec), "long-md": long_table(rec), "pmf": pmf_table(rec),
        "antithetic": antithetic_table(rec), "last-epoch": last_epoch_table(rec), "ewald": ewald_table(rec),
        "averaged": averaged_table(rec), "averaged-pmf": averaged_pmf_table(rec), "nine-seeds": nine_seeds_table(rec),
        "committees": committee_table(rec), "barrier-bins": barrier_bins_table(rec),
        "extrapolation": extrapolation_table(rec), "forces-choice": forces_choice_table(rec),
        "main-protocol": main_protocol_table(rec),
        "replicas": replicas_table(rec, labels={SMALLEST: f"denoising, coordinates only, smallest level (`{SMALLEST}`, the zoo recipe)",
                                                FM_EWALD: f"force matching, 1800 labelled frames, same priors (`{FM_EWALD}`)"}),
        "seed-check": seed_check_table(rec), "refinement": refinement_table(rec), "mean-force": mean_force_table(rec),
        "mean-force-summary": mean_force_summary(rec),
    }


def supplement_tables(rec: Records) -> Dict[str, str]:
    """``results/tables.md``: the full outputs of the helper scripts."""
    fbs = rec.by("forces_by_setting")
    return {
        "replicas-all": replica_floor_line(rec) + "\n\n" + replicas_table(
            rec, recipes=[r.name for r in study.BOOK], speed=True),
        "seed-selection": selection(rec),
        "refinement-all": refinement_table(rec) + "\n\n" + refinement_summary(rec),
        "mean-force-all": mean_force_table(rec, {r.name: "{name}" for r in study.BOOK}, digits=4),
        "pmf-summary": pmf_summary(rec),
        "committee": committee_variance([r for r in rec.all if r["kind"] == "committee"]),
        "forces-by-setting": forces_by_setting(fbs[LADDER]) if LADDER in fbs else "",
        "generalization": generalization([r for r in rec.all if r["kind"] == "generalization"]),
    }


def documents(st, quick: bool = False) -> Dict[Path, Dict[str, str]]:
    rec = Records(st.summary(quick))
    return {st.readme: readme_tables(rec), st.here / "results" / "tables.md": supplement_tables(rec)}
