"""The report of a fit: one Markdown page with the plots a person would look at, next to the model
file, and a short summary of it for the model's card (``ase-denoise models show FILE``).

Plots: the training losses by epoch (``loss.png``); for a periodic system the partial RDFs of the
model's MD over the data's, each with its two-standard-error band (``rdf.png``); for a molecule the
distribution of each torsion in the model's MD over the data's (``torsions.png``).
"""

from __future__ import annotations

import csv
import os
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
from ase import Atoms

from ..analysis import new_figure, save_figure
from ..files import atomic_write
from ..model import DenoiserMACE
from ..priors import dihedral_angles
from .system import SystemPlan


def _plot_losses(log_path: str, path: str) -> bool:
    if not log_path or not os.path.exists(log_path):
        return False
    with open(log_path) as fh:
        rows = list(csv.DictReader(fh))
    if not rows:
        return False
    epochs = [int(r["epoch"]) + 1 for r in rows]
    fig = new_figure((6.0, 3.8))
    ax = fig.add_subplot(1, 1, 1)
    for key, label in (("train_loss", "training loss"), ("valid_loss", "validation loss")):
        values = [float(r[key]) if r.get(key) not in (None, "") else np.nan for r in rows]
        ax.plot(epochs, values, "o-", ms=3, label=label)
    ax.axhline(1.0, color="grey", lw=0.8, ls=":", label="1: the loss of predicting no noise")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss per component")
    if any(r.get("force_rmse") for r in rows):
        other = ax.twinx()
        other.plot(epochs, [float(r["force_relative_rmse"]) if r.get("force_relative_rmse") else np.nan for r in rows],
                   "s--", color="C3", ms=3, label="relative force RMSE (validation labels)")
        other.set_ylabel("relative force RMSE")
        other.legend(fontsize=7, loc="upper center")
    ax.legend(fontsize=7)
    ax.set_title("training")
    fig.tight_layout()
    save_figure(fig, path)
    return True


def _plot_rdfs(reference: Dict[str, Any], figures: Dict[str, Any], path: str) -> List[str]:
    keys = [k for k in reference if f"{k}_err" in reference]
    r = np.asarray(reference["r"])
    fig = new_figure((4.2 * len(keys), 3.5))
    for i, key in enumerate(keys):
        ax = fig.add_subplot(1, len(keys), i + 1)
        g, err = np.asarray(reference[key]), np.asarray(reference[f"{key}_err"])
        ax.fill_between(r, g - 2 * err, g + 2 * err, color="0.75", lw=0, label="data ± 2 s.e.")
        ax.plot(r, g, "k-", lw=1.2, label="data")
        md, md_err = np.asarray(figures["rdfs"][key]), np.asarray(figures["rdf_errors"][key])
        ax.fill_between(r, md - 2 * md_err, md + 2 * md_err, color="C1", alpha=0.25, lw=0)
        ax.plot(r, md, "C1-", lw=1.2, label="model MD ± 2 s.e.")
        ax.set_xlabel("r (Å)")
        ax.set_title(key, fontsize=9)
        if i == 0:
            ax.set_ylabel("g(r)")
            ax.legend(fontsize=7)
    fig.suptitle(f"systematic RDF error {figures['systematic_error']:.3f} (MD noise {figures['rdf_error_noise']:.3f})",
                 fontsize=9)
    fig.tight_layout()
    save_figure(fig, path)
    return keys


def _plot_torsions(data: np.ndarray, md: np.ndarray, dihedrals: Sequence[Tuple[int, ...]], path: str) -> None:
    edges = np.linspace(-180.0, 180.0, 37)
    fig = new_figure((4.0 * len(dihedrals), 3.3))
    for i, quad in enumerate(dihedrals):
        ax = fig.add_subplot(1, len(dihedrals), i + 1)
        ax.hist(np.degrees(data[:, i]), edges, density=True, color="0.6", label="data")
        ax.hist(np.degrees(md[:, i]), edges, density=True, histtype="step", color="C1", lw=1.5, label="model MD")
        ax.set_xlabel(f"dihedral {'-'.join(map(str, quad))} (degrees)")
        if i == 0:
            ax.set_ylabel("density")
            ax.legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, path)


def _plot_torsion_pairs(data: np.ndarray, md: np.ndarray, dihedrals: Sequence[Tuple[int, ...]], path: str) -> None:
    """Per pair of dihedrals (first with second, ...): the data's joint histogram and the model MD's,
    side by side on one colour scale (20-degree bins, as the pair KL)."""
    edges = np.linspace(-180.0, 180.0, 19)
    n_pairs = len(dihedrals) // 2
    fig = new_figure((7.0, 3.3 * n_pairs))
    for p in range(n_pairs):
        a, b = 2 * p, 2 * p + 1
        hists = [np.histogram2d(np.degrees(x[:, a]), np.degrees(x[:, b]), [edges, edges], density=True)[0]
                 for x in (data, md)]
        top = max(h.max() for h in hists) or 1.0
        for k, (h, title) in enumerate(zip(hists, ("data", "model MD"))):
            ax = fig.add_subplot(n_pairs, 2, 2 * p + k + 1)
            ax.pcolormesh(edges, edges, h.T, cmap="viridis", vmin=0.0, vmax=top)
            ax.set_aspect("equal")
            ax.set_title(title, fontsize=9)
            ax.set_xlabel(f"dihedral {'-'.join(map(str, dihedrals[a]))} (degrees)", fontsize=8)
            ax.set_ylabel(f"dihedral {'-'.join(map(str, dihedrals[b]))} (degrees)", fontsize=8)
    fig.tight_layout()
    save_figure(fig, path)


def _number(x: Any, digits: int = 3) -> str:
    return f"{x:.{digits}f}" if isinstance(x, (int, float)) and np.isfinite(x) else "n/a"


_STOPPED = {"epochs": "the epoch budget", "time_budget": "the time budget", "early_stopping": "early stopping"}


def write_report(report_dir: str, frames: Sequence[Atoms], plan: SystemPlan, steps: Dict[str, Dict[str, Any]],
                 verdict: str, model: DenoiserMACE, command: str = "", wall_s: Optional[float] = 0.0) -> Tuple[str, str]:
    """Write ``report_dir/report.md`` and its plots; return its path and the card text (a summary)."""
    os.makedirs(report_dir, exist_ok=True)
    train = steps.get("train", {})
    lines = ["# Fit report", "", f"**Verdict.** {verdict}", "", "## The data", ""]
    species = ", ".join(model.config.symbols)
    lines += [f"- {len(frames)} frames of {len(frames[0])} atoms ({species}), "
              f"{'periodic' if frames[0].pbc.any() else 'not periodic'}, {model.temperature_K:g} K",
              f"- the kind of system: {plan.kind}", "", "## What was chosen, and why", ""]
    lines += [f"- {reason}" for reason in plan.reasons]
    lines += [f"- {reason}" for reason in train.get("reasons", [])]
    lines += ["", "## Training", "",
              f"- noise levels {', '.join(f'{s:g}' for s in model.noise_levels)} A, cutoff {model.config.r_max:g} A "
              f"(read off the data), {model.config.head} head",
              f"- {train.get('epochs', '?')} epochs ({_STOPPED.get(train.get('stopped'), train.get('stopped', '?'))}); forces returned: "
              f"{model.physics.describe_default_forces()}"]
    lines += [f"- prior: {p.describe(model.config.bead_names or None)}" for p in model.priors]
    if _plot_losses(train.get("log", ""), os.path.join(report_dir, "loss.png")):
        lines += ["", "![training losses](loss.png)"]
    summary = [f"Fitted by `ase-denoise fit` ({plan.kind}). {verdict}."]
    mean_force = steps.get("mean-force")
    torsions = steps.get("torsions")
    if mean_force or torsions:
        lines += ["", "## Corrections without labels", ""]
    if mean_force:
        why = f" ({mean_force['why']})" if mean_force.get("why") else ""
        text = (f"mean-force correction {'kept' if mean_force['kept'] else 'not kept'}{why}: systematic RDF error "
                f"{_number(mean_force['before']['systematic_error'])} without it, "
                f"{_number(mean_force['after']['systematic_error'])} with it (MD noise "
                f"{_number(mean_force['before']['rdf_error_noise'])}); its own mismatch "
                + ", ".join(f"{k} {v:.2f} -> {mean_force['mismatch_after'][k]:.2f} kT"
                            for k, v in mean_force["mismatch_before"].items()))
        scales = [mean_force[k].get("force_scale") for k in ("before", "after")]
        if all(scales):
            text += (f"; force scale {scales[0]['ratio']:.3f} without it, {scales[1]['ratio']:.3f} with it "
                     f"(+- {scales[1]['error']:.3f})")
        lines.append(f"- {text}")
        summary.append(text[0].upper() + text[1:] + ".")
    for name, what, key, measure in (("torsions", "torsion correction", "marginal_kl", "mean torsion KL"),
                                      ("torsion-pairs", "joint torsion correction (dihedrals in pairs)", "joint_kl",
                                       "KL of the pairs' joint distribution")):
        step = steps.get(name)
        if step:
            kls = " -> ".join(f"{np.mean(k):.3f}" for k in step[key])
            text = f"{what} {'kept' if step['kept'] else 'not kept'}: {measure} {kls} nats"
            lines.append(f"- {text}")
            summary.append(text[0].upper() + text[1:] + ".")
    checked = steps.get("validate")
    if checked:
        lines += ["", "## Checks against the data", "", f"- {checked['verdict']}",
                  f"- MD: {checked['n_replicas']} replicas, mean temperature {_number(checked.get('mean_temperature_K'), 0)} K, "
                  f"{_number(checked.get('wall_s'), 0)} s"]
        if checked.get("force_scale"):
            lines.append("- force scale: the data's configurational temperature measured with the model's forces, "
                         "over the data's temperature (Stein's identity on the frames, no labels; "
                         "`ase_denoise.refine.force_scale`): 1 when the forces have the data's size")
        reference = (mean_force or {}).get("reference") or checked.get("reference")
        if checked["kind"] == "rdf" and reference:
            _plot_rdfs(reference, checked, os.path.join(report_dir, "rdf.png"))
            lines += ["", "![partial RDFs of the model's MD over the data's](rdf.png)"]
        if plan.dihedrals and checked.get("sampled"):
            _plot_torsions(dihedral_angles(frames, plan.dihedrals), np.asarray(checked["sampled"]), plan.dihedrals,
                           os.path.join(report_dir, "torsions.png"))
            lines += ["", "![torsions of the model's MD over the data's](torsions.png)"]
        if plan.dihedrals and checked.get("sampled") and checked.get("pair_kl"):
            _plot_torsion_pairs(dihedral_angles(frames, plan.dihedrals), np.asarray(checked["sampled"]),
                                plan.dihedrals, os.path.join(report_dir, "torsion_pairs.png"))
            lines += ["", "![the torsion pairs' joint distributions: the data's and the model's MD](torsion_pairs.png)"]
    lines += ["", "## Reproduce", "", f"    {command or 'ase-denoise fit ...'}", "",
              f"({len(frames)} frames; " + (f"the whole fit took {wall_s / 60:.0f} min.)" if wall_s is not None
                                            else "the fit's time was not recorded by the run that started it.)")]
    summary.append(f"Reproduce: `{command}`." if command else "")
    path = os.path.join(report_dir, "report.md")

    def write(tmp: str) -> None:
        with open(tmp, "w") as fh:
            fh.write("\n".join(lines) + "\n")

    atomic_write(path, write, overwrite=True)
    return path, " ".join(s for s in summary if s)
