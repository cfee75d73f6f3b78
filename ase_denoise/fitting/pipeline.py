"""``fit``: from equilibrium frames to a checked force field in one call, each step resumable.

1. **plan**: the kind of system and its recipe, read off the data (:mod:`ase_denoise.fitting.system`);
2. **train**: the ladder and cutoff read off the data, the recipe's priors, antithetic noise pairs
   (:func:`ase_denoise.train`, with the time or epoch budget given);
3. **mean-force** (periodic systems): the mean-force correction (:func:`ase_denoise.correct_mean_forces`),
   kept when its own mismatch dropped and the model's MD against the data's own RDFs does not say it
   hurt beyond the checks' noise (nor moved the forces' scale away from the data's);
4. **torsions** (molecules): the torsion correction (:func:`ase_denoise.refine_torsions`), kept only if
   the MD's torsion distributions got closer to the data's; then **torsion-pairs**: a joint step on the
   dihedrals in pairs (a peptide's phi with its psi), kept only if the MD's two-dimensional distributions
   got closer to the data's: the one-dimensional step matches each torsion on its own, not their coupling;
5. **validate**: batched-replica MD of the final model against the data's own structure, with the
   sampling floor, and a plain verdict;
6. **report**: a Markdown page with plots next to the model file, and its summary in the file's card.

The run directory records what is done (``fit.json``): calling again with ``resume=True`` (CLI:
``--resume``) skips the finished steps and continues an interrupted training. Every choice is logged
with its reason; every default can be overridden (:class:`~ase_denoise.config.FitConfig`, the training
and model options).

Units: Angstrom, K, ps, eV; RDFs are dimensionless, KL divergences in nats.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Tuple, Union

import numpy as np
from ase import Atoms

from ..checkpoint import load_model_file, save_model
from ..config import FitConfig, TrainConfig
from ..data.frames import data_temperature, read_frames
from ..errors import TrainingError
from ..files import PathLike, atomic_write, check_writable
from ..forces import ForcesChoice
from ..model import DenoiserMACE, with_default_forces
from ..refine import (check_structure, configurational_temperature, correct_mean_forces, reference_structure,
                      refine_torsions, torsion_marginal_kl, torsion_pair_kl)
from ..md.replicas import ReplicaLangevin
from ..refine.replica_md import run_replicas, spread_starts
from ..priors import dihedral_angles
from ..priors.specs import pairs_held_by_priors
from ..training.progress import PROGRESS_LOG_S, ProgressCallback
from ..training.suggest import suggest_settings
from ..training.trainer import train
from .report import write_report
from .system import SystemPlan, plan_system

logger = logging.getLogger(__name__)

STATE_FILE = "fit.json"
#: a systematic RDF error within this many times its MD noise is "at the noise floor"
FLOOR_FACTOR = 2.0


@dataclass
class FitResult:
    """What :func:`fit` made: the model (also written to ``path``), the report page, the plan with its
    reasons, each step's figures and the verdict."""

    model: DenoiserMACE
    path: str
    report: str
    plan: SystemPlan
    steps: Dict[str, Dict[str, Any]] = field(default_factory=dict)
    verdict: str = ""


class _RunState:
    """``fit.json`` in the run directory: the settings a run was started with and each finished step."""

    def __init__(self, run_dir: str, settings: Dict[str, Any], resume: bool,
                 defaults: Optional[Dict[str, Dict[str, Any]]] = None):
        self.path = os.path.join(run_dir, STATE_FILE)
        # compared as written: JSON turns integer keys (bead names' atomic numbers) and tuples into strings and lists
        settings = json.loads(json.dumps(settings, default=_plain))
        if resume and os.path.exists(self.path):
            with open(self.path) as fh:
                saved = json.load(fh)
            for section, section_defaults in (defaults or {}).items():  # an option the run predates: its default
                if isinstance(saved.get("settings", {}).get(section), dict):
                    saved["settings"][section] = {**section_defaults, **saved["settings"][section]}
            if saved.get("settings") != settings:
                changed = sorted(k for k in set(settings) | set(saved.get("settings", {}))
                                 if settings.get(k) != saved.get("settings", {}).get(k))
                raise TrainingError(f"cannot resume {run_dir}: it was started with other settings ({', '.join(changed)}); "
                                    "resume with the same data and options, or use a new run directory")
            self.steps: Dict[str, Dict[str, Any]] = saved.get("steps", {})
            self.elapsed_before: Optional[float] = saved.get("elapsed_s")  # None: a run from before it was kept
        elif os.path.exists(self.path):
            raise FileExistsError(f"{run_dir} already holds a fit ({STATE_FILE}); resume it (--resume) or choose "
                                  "another run directory")
        else:
            self.steps = {}
            self.elapsed_before = 0.0
        self.settings = settings
        self.started = time.perf_counter()

    def elapsed_s(self) -> Optional[float]:
        """The fit's wall time so far, s, over every run that worked on it (None if an earlier run did not keep it)."""
        return None if self.elapsed_before is None else self.elapsed_before + time.perf_counter() - self.started

    def done(self, step: str) -> Optional[Dict[str, Any]]:
        return self.steps.get(step)

    def finish(self, step: str, figures: Dict[str, Any]) -> Dict[str, Any]:
        self.steps[step] = figures
        self.save()
        return figures

    def save(self) -> None:
        """Write ``fit.json`` (the steps and the time spent so far)."""

        def write(tmp: str) -> None:
            with open(tmp, "w") as fh:
                json.dump({"settings": self.settings, "steps": self.steps, "elapsed_s": self.elapsed_s()}, fh, indent=1,
                          default=_plain)

        atomic_write(self.path, write, overwrite=True)


def _plain(obj: Any) -> Any:
    return obj.tolist() if hasattr(obj, "tolist") else obj.to_dict() if hasattr(obj, "to_dict") else str(obj)


def _check_figures(check) -> Dict[str, Any]:
    return {"systematic_error": check.systematic_error, "rdf_error": check.rdf_error,
            "rdf_error_noise": check.rdf_error_noise, "collapsed": check.collapsed, "n_replicas": check.n_replicas,
            "mean_temperature_K": check.mean_temperature_K, "wall_s": check.wall_s,
            "rdfs": {k: np.asarray(v).tolist() for k, v in check.rdfs.items()},
            "rdf_errors": {k: np.asarray(v).tolist() for k, v in check.rdf_errors.items()}}


def _settings_from_data(frames: List[Atoms], plan: SystemPlan, noise_std: Any,
                        model_options: Dict[str, Any]) -> Tuple[Dict[str, Any], List[str]]:
    """The ladder and the cutoff where they are ``"auto"`` (:func:`~ase_denoise.training.suggest.suggest_settings`,
    ignoring the pairs bonded priors hold when the recipe smooths them), with the reasoning, one line each:
    the train step's options and what the report says of them."""
    options = {**model_options, "noise_std": noise_std}
    if not (noise_std == "auto" or model_options.get("r_max") == "auto"):
        return options, []
    held = pairs_held_by_priors(plan.priors, frames) if plan.smoothed_priors else None
    suggestion = suggest_settings(frames, names=model_options.get("bead_names"), exclude_pairs=held)
    for line in suggestion.reasoning:
        logger.info("fit: settings from the data: %s", line)
    if noise_std == "auto":
        options["noise_std"] = list(suggestion.noise_std)
    if model_options.get("r_max") == "auto":
        options["r_max"] = suggestion.r_max
    return options, list(suggestion.reasoning)


class _MDProgress:
    """Log lines for an MD check: what runs (replicas, steps) before it starts, then where it stands
    with the time left, at most once a minute (``PROGRESS_LOG_S``)."""

    def __init__(self, label: str, check: Dict[str, Any], rounds: int = 1):
        self.label = label
        per_round = int(round((check["equilibration_ps"] + check["production_ps"]) * 1000 / check["timestep_fs"]))
        self.total = rounds * per_round
        self.done = 0
        self.start = self.last = time.perf_counter()
        logger.info("fit: MD check (%s): %d replicas, %d steps of %g fs (%g ps discarded, %g ps kept)%s", label,
                    check["n_replicas"], per_round, check["timestep_fs"], check["equilibration_ps"],
                    check["production_ps"], f", {rounds} rounds" if rounds > 1 else "")

    def __call__(self, steps: int) -> None:
        self.done += steps
        now = time.perf_counter()
        if now - self.last >= PROGRESS_LOG_S and self.done < self.total:
            self.last = now
            left = (now - self.start) / self.done * (self.total - self.done)
            logger.info("fit: MD check (%s): step %d of %d, about %s to go", self.label, self.done, self.total,
                        _duration(left))


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.0f} min"


def _size_check(model: DenoiserMACE, frames: List[Atoms], check: Dict[str, Any], friction: float,
                minutes: float) -> Dict[str, Any]:
    """The MD checks' length: as asked, or both parts shortened in proportion when the model's measured
    pace (a few batched steps of the replicas) would take longer than ``minutes`` per check, to no less
    than 0.2 + 1 ps (ten frames per replica)."""
    replicas = ReplicaLangevin(model, spread_starts(frames, check["n_replicas"]), temperature_K=model.temperature_K,
                               timestep_fs=check["timestep_fs"], friction_per_fs=friction,
                               seeds=list(range(check["n_replicas"])))
    replicas.run(2, interval=2)  # the first steps build neighbour lists
    start = time.perf_counter()
    replicas.run(8, interval=8)
    per_step = (time.perf_counter() - start) / 8
    steps = (check["equilibration_ps"] + check["production_ps"]) * 1000.0 / check["timestep_fs"]
    expected_s = per_step * steps
    if expected_s <= 60.0 * minutes:
        logger.info("fit: each MD check takes about %s (%d replicas, %.3g s per step)", _duration(expected_s),
                    check["n_replicas"], per_step)
        return {}
    factor = 60.0 * minutes / expected_s
    sized = {"equilibration_ps": round(max(check["equilibration_ps"] * factor, min(check["equilibration_ps"], 0.2)), 3),
             "production_ps": round(max(check["production_ps"] * factor, min(check["production_ps"], 1.0)), 3)}
    logger.warning("fit: an MD check as asked (%g + %g ps, %d replicas) would take about %s at %.3g s per step; "
                   "shortened to %g + %g ps to fit --check-minutes %g (its noise floor grows accordingly)",
                   check["equilibration_ps"], check["production_ps"], check["n_replicas"], _duration(expected_s),
                   per_step, sized["equilibration_ps"], sized["production_ps"], minutes)
    return sized


def _scale_figures(scale) -> Dict[str, Any]:
    return {"ratio": scale.ratio, "error": scale.error, "n_frames": scale.n_frames,
            "configurational_temperature_K": scale.configurational_temperature_K}


def _keep_correction(a: Dict[str, Any], b: Dict[str, Any], mismatch_before: Mapping[str, float],
                     mismatch_after: Mapping[str, float]) -> Tuple[bool, str]:
    """Keep the mean-force correction (checks ``b``) over the model as trained (checks ``a``)? With why.

    Kept when it met its own target (the mean-force mismatch, in kT, averaged over the pairs, dropped), none of its
    replicas collapsed, its systematic RDF error is not above the trained model's by more than the two
    checks' combined MD noise, and its forces' scale (the configurational temperature, ``force_scale``)
    is no further from the data's than the trained model's beyond twice their combined error: a pair
    correction can buy pair structure with forces of the wrong size (in a solid, where every pair's
    mean force is shared with its neighbours). Not "a smaller error than before": on twelve LiCl models the
    correction repaired every over-pairing model and moved the good ones by at most about one MD-noise
    unit (``benchmarks/licl/README.md``, the mean-force table), so a strict comparison of two noisy checks
    would throw it away on a good model about half the time for nothing."""
    if not np.mean(list(mismatch_after.values())) < np.mean(list(mismatch_before.values())):
        return False, "its mean-force mismatch did not drop"
    if b["collapsed"]:
        return False, f"{b['collapsed']} of its MD replicas collapsed"
    if not np.isfinite(b["systematic_error"]):
        return False, "its MD check gave no finite RDF error"
    if a["collapsed"] == 0 and np.isfinite(a["systematic_error"]):
        noise = float(np.hypot(a["rdf_error_noise"], b["rdf_error_noise"]))
        if b["systematic_error"] > a["systematic_error"] + noise:
            return False, (f"its MD's systematic RDF error rose beyond the checks' noise: "
                           f"{a['systematic_error']:.3f} -> {b['systematic_error']:.3f}, noise {noise:.3f}")
    sa, sb = a.get("force_scale"), b.get("force_scale")
    if sa and sb and np.isfinite(sa["ratio"]):
        limit = abs(sa["ratio"] - 1.0) + 2.0 * float(np.hypot(sa["error"], sb["error"]))
        if not np.isfinite(sb["ratio"]) or abs(sb["ratio"] - 1.0) > limit:
            return False, (f"its force scale moved away from 1 beyond twice its error: "
                           f"{sa['ratio']:.3f} -> {sb['ratio']:.3f} +- {sb['error']:.3f}")
    return True, "its mismatch dropped and its MD check is no worse beyond the checks' noise"


def fit(
    frames: Union[PathLike, List[Atoms]],
    output: PathLike,
    *,
    temperature_K: Optional[float] = None,
    settings: Optional[FitConfig] = None,
    train_options: Optional[Mapping[str, Any]] = None,
    model_options: Optional[Mapping[str, Any]] = None,
    run_dir: Optional[PathLike] = None,
    resume: bool = False,
    overwrite: bool = False,
    progress: Union[bool, ProgressCallback] = False,
    command: str = "",
) -> FitResult:
    """Fit a checked force field to equilibrium ``frames`` (a file ASE reads, or ``Atoms``) sampled at
    ``temperature_K`` (K; default the frames' ``info["temperature_K"]``) and write it to ``output``,
    with its report next to it (``<output>.report/report.md``). Module docstring for the steps.

    ``settings``: what the data cannot say (charges, a dielectric, dihedrals), what to leave out (the
    wall, steps) and the size of the MD checks (:class:`~ase_denoise.config.FitConfig`).
    ``train_options`` / ``model_options``: :class:`~ase_denoise.config.TrainConfig` and
    :class:`~ase_denoise.config.ModelConfig` fields over the recipe's (e.g. ``{"max_minutes": 10}``;
    ``noise_std`` and ``r_max`` default to ``"auto"``). ``run_dir`` (default ``<output>.fit``): the
    steps' files; ``resume``: continue a fit there. ``command``: how the fit was called, for its card."""
    settings = settings or FitConfig()
    output = os.fspath(output)
    check_writable(output, overwrite or resume)
    run_dir = os.fspath(run_dir or output + ".fit")
    os.makedirs(run_dir, exist_ok=True)
    model_options = dict(model_options or {})
    model_options.setdefault("r_max", "auto")
    noise_std = model_options.pop("noise_std", "auto")
    frames = read_frames(frames)
    temperature_K = data_temperature(frames, temperature_K)
    bead_names = model_options.get("bead_names")
    plan = plan_system(frames, settings, bead_names=bead_names)
    for reason in plan.reasons:
        logger.info("fit: %s", reason)
    recipe = {"antithetic_noise": True, "smoothed_priors": plan.smoothed_priors, **dict(train_options or {})}
    train_config = TrainConfig(**recipe)
    state = _RunState(run_dir, {"temperature_K": temperature_K, "n_frames": len(frames), "plan": plan.to_dict(),
                                "fit": settings.to_dict(), "train": train_config.to_dict(),
                                "model": {**model_options, "noise_std": noise_std}}, resume,
                      defaults={"fit": FitConfig().to_dict(), "train": TrainConfig().to_dict()})

    # ---------------------------------------------------------------- train
    trained_path = os.path.join(run_dir, "trained.safetensors")
    if state.done("train") is None:
        train_dir = os.path.join(run_dir, "train")
        chosen, reasons = _settings_from_data(frames, plan, noise_std, model_options)
        result = train(frames, train_dir, temperature_K=temperature_K, train_config=train_config,
                       priors=plan.priors, resume=os.path.exists(os.path.join(train_dir, "training_state.pt")),
                       progress=progress, **chosen)
        model = result.model
        if plan.smallest_level and len(model.noise_levels) > 1:
            model = with_default_forces(model, ForcesChoice(noise_std=min(model.noise_levels)))
        save_model(model, trained_path, training=model.metadata.get("training"), metrics=model.metadata.get("metrics"),
                   overwrite=True)
        state.finish("train", {"stopped": result.stopped, "epochs": len(result.history), "noise_std": list(model.noise_levels),
                               "reasons": reasons,
                               "r_max": model.config.r_max, "log": os.path.join(train_dir, "log.csv"),
                               "default_forces": model.physics.describe_default_forces()})
    model = load_model_file(trained_path)
    logger.info("fit: trained (%s); noise levels %s A, cutoff %g A, forces: %s", state.steps["train"]["stopped"],
                model.noise_levels, model.config.r_max, model.physics.describe_default_forces())

    check = dict(n_replicas=settings.check_replicas, equilibration_ps=settings.equilibration_ps,
                 production_ps=settings.check_ps, timestep_fs=settings.timestep_fs, seed=train_config.seed)
    friction = settings.friction_per_fs or (0.05 if plan.kind == "molecule" else 0.01)
    validate = "validate" not in settings.skip
    if validate and settings.check_minutes:  # sized once, at the trained model's pace, and kept for a resume
        if state.done("check-size") is None:
            state.finish("check-size", _size_check(model, frames, check, friction, settings.check_minutes))
        check.update(state.steps["check-size"])
    final_path = trained_path

    # ---------------------------------------------------------------- mean-force correction (periodic)
    if "mean-force" in plan.corrections and validate and "mean-force" not in settings.skip:
        path = os.path.join(run_dir, "mean-force.safetensors")
        if state.done("mean-force") is None:
            reference = reference_structure(frames)
            logger.info("fit: the mean-force correction, then MD of the model with and without it against the data's RDFs")
            corrected = correct_mean_forces(model, frames, reference=reference)
            before = _check_figures(check_structure(model, frames, reference=reference, friction_per_fs=friction,
                                                    progress=_MDProgress("without the correction", check), **check))
            after = _check_figures(check_structure(corrected.model, frames, reference=reference, friction_per_fs=friction,
                                                   progress=_MDProgress("with the correction", check), **check))
            before["force_scale"] = _scale_figures(configurational_temperature(model, frames, seed=check["seed"]))
            after["force_scale"] = _scale_figures(configurational_temperature(corrected.model, frames, seed=check["seed"]))
            kept, why = _keep_correction(before, after, corrected.before, corrected.after)
            if kept:
                save_model(corrected.model, path, training=model.metadata.get("training"),
                           metrics=model.metadata.get("metrics"), overwrite=True)
            state.finish("mean-force", {"kept": kept, "why": why, "path": path if kept else None, "before": before,
                                        "after": after,
                                        "mismatch_before": corrected.before, "mismatch_after": corrected.after,
                                        "reference": {k: np.asarray(v).tolist() for k, v in reference.items()}})
        else:  # resumed: the recorded checks decided again by this version's rule (no MD; the correction is deterministic)
            step = state.steps["mean-force"]
            kept, why = _keep_correction(step["before"], step["after"], step["mismatch_before"], step["mismatch_after"])
            if kept != step["kept"] or (kept and not os.path.exists(path)):
                logger.info("fit: the recorded checks of the mean-force correction now decide: %s (%s)",
                            "kept" if kept else "not kept", why)
                if kept:
                    reference = {k: np.asarray(v) for k, v in step["reference"].items()}
                    save_model(correct_mean_forces(model, frames, reference=reference).model, path,
                               training=model.metadata.get("training"), metrics=model.metadata.get("metrics"),
                               overwrite=True)
                state.steps.pop("validate", None)  # its figures were those of the other model
            if kept != step["kept"] or why != step.get("why"):
                state.finish("mean-force", {**step, "kept": kept, "why": why, "path": path if kept else None})
        step = state.steps["mean-force"]
        logger.info("fit: mean-force correction %s (%s): systematic RDF error %.3f without, %.3f with it (MD noise %.3f); "
                    "force scale %.3f without, %.3f with it (+- %.3f)", "kept" if step["kept"] else "not kept",
                    step.get("why", "recorded before the reason was"),
                    step["before"]["systematic_error"], step["after"]["systematic_error"],
                    step["before"]["rdf_error_noise"], step["before"]["force_scale"]["ratio"],
                    step["after"]["force_scale"]["ratio"], step["after"]["force_scale"]["error"])
        final_path = step["path"] or final_path
    elif "mean-force" in plan.corrections:
        logger.info("fit: no mean-force correction (%s)", "skipped" if "mean-force" in settings.skip
                    else "it is kept only if the MD check does not say it hurt, and the checks are skipped")

    # ---------------------------------------------------------------- torsion corrections (molecules)
    def torsion_step(name: str, joint: bool, seed_offset: int) -> Dict[str, Any]:
        """``name``: one ``refine_torsions`` iteration (``joint``: phi with psi) on the current final model,
        checked in MD with thermostat seeds offset by ``seed_offset``; kept only if its check improved."""
        if state.done(name) is None:
            refined = refine_torsions(load_model_file(final_path), frames, plan.dihedrals, iterations=1, joint=joint,
                                      friction_per_fs=friction, progress=_MDProgress(name, check, rounds=2),
                                      **{**check, "seed": check["seed"] + seed_offset})
            path = os.path.join(run_dir, f"{name}.safetensors")
            if refined.chosen > 0:
                save_model(refined.model, path, training=model.metadata.get("training"),
                           metrics=model.metadata.get("metrics"), overwrite=True)
            figures = {"kept": refined.chosen > 0, "path": path if refined.chosen > 0 else None,
                       "chosen": refined.chosen, "marginal_kl": [k.tolist() for k in refined.marginal_kl],
                       "intact": refined.intact, "mean_temperature_K": refined.mean_temperature_K,
                       "sampled": refined.sampled[refined.chosen].tolist()}
            if joint:
                figures["joint_kl"] = [k.tolist() for k in refined.joint_kl]
            state.steps.pop("validate", None)  # a run resumed from before this step: its check is of another model
            state.finish(name, figures)
        step = state.steps[name]
        logger.info("fit: %s %s: %s %s", "joint torsion correction" if joint else "torsion correction",
                    "kept" if step["kept"] else "not kept", "KL of the pairs" if joint else "torsion KL",
                    " -> ".join(f"{np.mean(k):.3f}" for k in step["joint_kl" if joint else "marginal_kl"]))
        return step

    if "torsions" in plan.corrections and validate and "torsions" not in settings.skip:
        logger.info("fit: the torsion correction on %s, checked in MD", plan.dihedrals)
        final_path = torsion_step("torsions", joint=False, seed_offset=0)["path"] or final_path
        # then phi with psi: the one-dimensional step matches each torsion on its own, not their coupling
        if len(plan.dihedrals) % 2:
            logger.info("fit: no joint torsion step: %d dihedrals do not make pairs", len(plan.dihedrals))
        elif plan.dihedrals and "torsion-pairs" not in settings.skip:
            pairs = [tuple(plan.dihedrals[c:c + 2]) for c in range(0, len(plan.dihedrals), 2)]
            logger.info("fit: a joint torsion correction on the pairs %s, checked in MD", pairs)
            # seed offset 2: thermostats the first step's two checks did not use
            final_path = torsion_step("torsion-pairs", joint=True, seed_offset=2)["path"] or final_path

    # ---------------------------------------------------------------- validation
    final = load_model_file(final_path)
    if validate and state.done("validate") is None:
        state.finish("validate", _validate(final, frames, plan, state, friction, check))
    verdict = state.steps["validate"]["verdict"] if validate else "not checked in MD (--skip validate)"
    logger.info("fit: %s", verdict)

    # ---------------------------------------------------------------- report and the model file
    report_dir = os.path.splitext(output)[0] + ".report"
    state.save()  # the time of this run too, for a later resume
    report, card = write_report(report_dir, frames, plan, state.steps, verdict, final, command=command,
                                wall_s=state.elapsed_s())
    save_model(final, output, training=final.metadata.get("training"), metrics=final.metadata.get("metrics"),
               overwrite=overwrite or resume, card=card)
    logger.info("fit: model written to %s, report %s", output, report)
    return FitResult(load_model_file(output), output, report, plan, state.steps, verdict)


#: a force scale further from 1 than this (and than twice its error) is named in the verdict
SCALE_TOLERANCE = 0.05


def _validate(model: DenoiserMACE, frames: List[Atoms], plan: SystemPlan, state: _RunState, friction: float,
              check: Dict[str, Any]) -> Dict[str, Any]:
    """The final model's MD against the data's own structure with its sampling floor, the size of its
    forces against the data's (the configurational temperature), and a plain verdict."""
    figures = _validate_md(model, frames, plan, state, friction, check)
    scale = figures.get("force_scale") or _scale_figures(configurational_temperature(model, frames, seed=check["seed"]))
    ratio, error = scale["ratio"], scale["error"]
    if not np.isfinite(ratio):
        sentence = "the forces do not point along the data's on average (no force scale): the model has not learned them"
        return {**figures, "force_scale": scale, "verdict": f"{figures['verdict']}; {sentence}"}
    sentence = (f"force scale {ratio:.3f} +- {error:.3f} (configurational temperature "
                f"{scale['configurational_temperature_K']:.0f} K at {model.temperature_K:g} K, no labels)")
    if abs(ratio - 1.0) > max(SCALE_TOLERANCE, 2.0 * error):
        sentence += f": the forces are {abs(ratio - 1.0):.0%} too {'strong' if ratio > 1 else 'weak'}"
    return {**figures, "force_scale": scale, "verdict": f"{figures['verdict']}; {sentence}"}


def _validate_md(model: DenoiserMACE, frames: List[Atoms], plan: SystemPlan, state: _RunState, friction: float,
                 check: Dict[str, Any]) -> Dict[str, Any]:
    """The final model's MD against the data's own structure, its sampling floor and a plain verdict."""
    if plan.kind == "periodic":
        done = state.steps.get("mean-force")
        if done is not None:  # the kept model's check has run already
            figures = done["after"] if done["kept"] else done["before"]
        else:
            reference = reference_structure(frames)
            figures = _check_figures(check_structure(model, frames, reference=reference, friction_per_fs=friction,
                                                     progress=_MDProgress("the final model", check), **check))
            figures["reference"] = {k: np.asarray(v).tolist() for k, v in reference.items()}
        floor = figures["rdf_error_noise"]
        if figures["collapsed"]:
            verdict = f"MD collapsed in {figures['collapsed']} of {figures['n_replicas']} replicas: not usable as it is"
        elif figures["systematic_error"] <= FLOOR_FACTOR * floor:
            verdict = (f"MD reproduces the data's pair structure to its sampling floor: systematic RDF error "
                       f"{figures['systematic_error']:.3f}, MD noise {floor:.3f}")
        else:
            verdict = (f"MD differs from the data's pair structure beyond the sampling floor: systematic RDF error "
                       f"{figures['systematic_error']:.3f} against an MD noise of {floor:.3f}")
        return {"kind": "rdf", **figures, "verdict": verdict}
    # molecules and clusters: the replicas stay intact; a molecule's torsions against the data's
    done = state.steps.get("torsion-pairs") or state.steps.get("torsions")
    if done is not None:  # the kept model's check has run already
        chosen = done["chosen"]
        figures = {"kind": "replicas", "collapsed": 0 if done["intact"][chosen] else 1, "n_replicas": check["n_replicas"],
                   "mean_temperature_K": done["mean_temperature_K"][chosen], "wall_s": float("nan"),
                   "sampled": done["sampled"], **_torsion_figures(frames, plan.dihedrals, np.asarray(done["sampled"]))}
        return {**figures, "verdict": _molecule_verdict(figures, figures["collapsed"] > 0)}
    starts = spread_starts(frames, check["n_replicas"])
    kept, info = run_replicas(model, starts, temperature_K=model.temperature_K,
                              equilibration_ps=check["equilibration_ps"], production_ps=check["production_ps"],
                              timestep_fs=check["timestep_fs"], friction_per_fs=friction,
                              sample_every=max(1, int(round(100.0 / check["timestep_fs"]))),
                              seeds=[1000 * (check["seed"] + 7) + r for r in range(len(starts))],
                              collapse_distance=0.5, progress=_MDProgress("the final model", check))
    collapsed = sum(c is not None for c in info["collapsed_at_step"])
    figures: Dict[str, Any] = {"kind": "replicas", "collapsed": collapsed, "n_replicas": len(starts),
                               "mean_temperature_K": info["mean_temperature_K"], "wall_s": info["wall_s"]}
    sampled = [a for rep in kept for a in rep]
    if plan.dihedrals and sampled:
        md = dihedral_angles(sampled, plan.dihedrals)
        figures.update(sampled=md.tolist(), **_torsion_figures(frames, plan.dihedrals, md))
    return {**figures, "verdict": _molecule_verdict(figures, bool(collapsed or info["stopped"]))}


def _torsion_figures(frames: List[Atoms], dihedrals: List[Tuple[int, ...]], md: np.ndarray) -> Dict[str, Any]:
    """The MD's torsion KL to the data (nats) per dihedral and, with an even number of dihedrals, per pair
    (:func:`~ase_denoise.refine.torsion_pair_kl`), each with its floor: the KL between the data's two halves."""
    data = dihedral_angles(frames, dihedrals)
    half = len(data) // 2
    figures = {"torsion_kl": torsion_marginal_kl(data, md).tolist(),
               "torsion_kl_floor": torsion_marginal_kl(data[:half], data[half:]).tolist()}
    if len(dihedrals) >= 2 and len(dihedrals) % 2 == 0:
        figures.update(pair_kl=torsion_pair_kl(data, md).tolist(),
                       pair_kl_floor=torsion_pair_kl(data[:half], data[half:]).tolist())
    return figures


def _molecule_verdict(figures: Dict[str, Any], broken: bool) -> str:
    if broken:
        return f"MD broke apart in at least one of {figures['n_replicas']} replicas: not usable as it is"
    if "torsion_kl" in figures:
        kl, floor = float(np.mean(figures["torsion_kl"])), float(np.mean(figures["torsion_kl_floor"]))
        text = (f"MD stays intact; torsion KL to the data {kl:.3f} nats against {floor:.3f} between the two halves "
                f"of the data ({'at' if kl <= FLOOR_FACTOR * floor else 'beyond'} the sampling floor)")
        if figures.get("pair_kl"):
            kl, floor = float(np.mean(figures["pair_kl"])), float(np.mean(figures["pair_kl_floor"]))
            text += (f"; KL of the torsion pairs' joint distribution {kl:.3f} nats against {floor:.3f} "
                     f"({'at' if kl <= FLOOR_FACTOR * floor else 'beyond'} the sampling floor)")
        return text
    return f"MD stays intact in all {figures['n_replicas']} replicas at {figures['mean_temperature_K']:.0f} K"
