"""Training a denoiser: noisy frames in, ``-noise/sigma`` out (docs/design.md).

The network and its loss terms are defined elsewhere (:mod:`ase_denoise.model`,
:mod:`ase_denoise.training.losses`), the noise is drawn in :mod:`ase_denoise.training.sampler`; this module owns the
loop: AdamW, the learning-rate schedule, an EMA of the weights, validation on *fixed* noise, early
stopping, a wall-clock budget, checkpoints, resuming to bit-identical weights, and data-parallel
training. When validation frames carry force labels, each epoch also reports the force error of
``kT * eps_hat / sigma`` at their clean positions: that is the figure that matters.

Output directory layout::

    best.safetensors      EMA weights of the epoch with the lowest validation loss
    last.safetensors      EMA weights after the last completed epoch
                          (``TrainConfig.keep_weights`` says which of the two training returns)
    training_state.pt     everything needed to resume (tensors and plain numbers only)
    log.csv               one row per epoch
"""

from __future__ import annotations

import logging
import math
import os
import pickle
import time
from typing import Any, Dict, List, Optional, Sequence, Union

import numpy as np
import torch


from ..analysis import force_metrics
from ..checkpoint import load_model_file, save_model
from ..config import ModelConfig, PhysicsConfig, TrainConfig
from ..data.frames import Frame
from ..data.graphs import collate
from ..data.neighbours import SkinNeighbourList, training_skin
from ..errors import DataError, TrainingError
from ..files import atomic_write, deferred_interrupts, remove_orphans
from ..forces import ForcesChoice
from ..inference import evaluate_forces
from ..model import DenoiserMACE, build_model
from ..priors import prior_from_dict
from .ema import averaged_model
from .losses import (LabelMixing, Residual, inverse_square_level_weight, loss_inputs, prior_residual, squared_errors,
                     term_weight)
from .prepare import prepare_data
from .progress import Clock, Progress, ProgressCallback, epoch_line, log_lines, lr_lambda, write_log
from .result import TrainResult, kept_weights
from .sampler import DuplicationSampler, NoisyBatch, split_frames, validation_batches

logger = logging.getLogger(__name__)

STATE_FILE = "training_state.pt"
#: the files a run directory holds (each written by an atomic rename)
OUTPUT_FILES = ("best.safetensors", "last.safetensors", STATE_FILE, "log.csv")

# Settings that define the split and the noise stream: a resumed run must keep them.
RESUME_FROZEN = ("seed", "valid_fraction", "valid_duplicates", "n_duplicates", "dtype", "loss", "force_weight",
                 "level_weighting", "antithetic_noise")


def _physics_of(state: Dict[str, Any]) -> Optional[PhysicsConfig]:
    """The physics a training state was written for (states from before a PhysicsConfig field was
    added lack its key, which means its default), or None if unreadable."""
    try:
        return PhysicsConfig.from_dict(state["physics"])
    except (KeyError, TypeError, ValueError):
        return None


class Trainer:
    """Owns the model, optimiser, EMA, sampler and the files in ``output_dir``."""

    def __init__(
        self,
        model_config: ModelConfig,
        physics: PhysicsConfig,
        frames: Sequence[Frame],
        output_dir: str,
        train_config: Optional[TrainConfig] = None,
        *,
        progress: Union[bool, ProgressCallback] = False,
        rank: int = 0,
        world_size: int = 1,
        device: Union[str, torch.device] = "cpu",
        initial_model: Optional[DenoiserMACE] = None,
    ):
        """``model_config``/``physics``/``frames``: as :func:`ase_denoise.training.prepare_data` returns them.

        ``initial_model``: start from these weights instead of a fresh initialisation (fine-tuning,
        e.g. a model from :func:`ase_denoise.integrations.mace.denoiser_from_mace`). Its architecture
        (:class:`ModelConfig`, element table included) must equal ``model_config``; its physics may
        differ. A resumed run continues from its saved state instead.

        Data-parallel training: start one process per device (e.g. with ``torchrun``), initialise
        ``torch.distributed`` and pass ``rank``/``world_size``. Frames are sharded before duplication;
        gradients are summed across ranks so that a step equals a single-process step on the union
        of the ranks' batches (the loss is the mean over all atoms of that union). Rank 0 writes files.
        """
        self.cfg = train_config or TrainConfig()
        self.model_config = model_config
        self.physics = physics
        self.frames = list(frames)
        self.output_dir = os.fspath(output_dir)
        self.progress = progress
        self.rank, self.world_size = rank, world_size
        self.distributed = world_size > 1
        if self.distributed and not (torch.distributed.is_available() and torch.distributed.is_initialized()):
            raise RuntimeError(f"world_size={world_size} needs torch.distributed to be initialised (e.g. run under torchrun)")
        self.is_main = rank == 0
        self.device = torch.device(device)
        self.dtype = torch.float64 if self.cfg.dtype == "float64" else torch.float32
        self.train_ids, self.valid_ids = split_frames(len(self.frames), self.cfg.valid_fraction, self.cfg.seed)
        self._check_labels()
        # frame copies per step: given, or as many as hold cfg.batch_atoms atoms
        self.batch_size = self.cfg.frames_per_batch(self._atoms_per_frame())
        self.sampler = DuplicationSampler(
            self.frames, self.train_ids, self.cfg.n_duplicates, physics.noise_std,
            self.batch_size, self.cfg.seed, rank=rank, world_size=world_size,
            antithetic=self.cfg.antithetic_noise,
        )
        # force matching sees clean coordinates: one copy of each validation frame is enough
        valid_copies = 1 if self.cfg.loss == "force_matching" else self.cfg.valid_duplicates
        self.valid_batches = validation_batches(
            self.frames, self.valid_ids, valid_copies, physics.noise_std, self.batch_size, self.cfg.seed,
        )
        # priors acting where data are: the network learns the residual (ase_denoise.training.losses)
        self.residual: Optional[Residual] = prior_residual(
            [prior_from_dict(d) for d in physics.priors], model_config.atomic_numbers, physics.kT, self.cfg.smoothed_priors)
        self.level_weight = None
        if self.cfg.level_weighting == "inverse_square" and len(physics.noise_std) > 1:
            self.level_weight = inverse_square_level_weight(physics.noise_std)
        self.mixing: Optional[LabelMixing] = None
        if self.cfg.loss == "mixed":
            self.mixing = LabelMixing.from_frames([self.frames[i] for i in self.train_ids], physics.kT, self.residual)
            logger.info("label mixing: mean squared force component per species %s (eV/A)^2; weight of the "
                        "force label at each level %s", self.mixing.second_moment,
                        {s: {k: round(float(self.mixing.weight(np.array([k]), s)[0, 0]), 3)
                             for k in self.mixing.second_moment} for s in physics.noise_std})
        # one skin list per clean frame serves all its noisy copies (ase_denoise.data.neighbours)
        skin = training_skin(max(physics.noise_std))
        self.neighbour_lists = [SkinNeighbourList(model_config.r_max, skin) for _ in self.frames]
        for frame, nl in zip(self.frames, self.neighbour_lists):
            nl.edges(frame.positions, frame.cell, frame.pbc)
        self.model = build_model(model_config, physics, dtype=self.dtype, seed=self.cfg.seed)
        self.initial_weights: Optional[Dict[str, Any]] = None
        if initial_model is not None:
            self._load_initial(initial_model)
        self.model.to(self.device)
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=self.cfg.lr, weight_decay=self.cfg.weight_decay)
        self.total_steps = self.cfg.epochs * len(self.sampler)
        # the cosine's length: every epoch's steps, or (re-planned by fit) the steps the time budget allows
        self.schedule = {"steps": self.total_steps}
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lr_lambda(self.cfg, self.schedule))
        self.ema = None
        if self.cfg.ema_decay > 0:
            self.ema = averaged_model(self.model, self.cfg.ema_decay)
        self.epoch = 0  # next epoch to run
        self.batch = 0  # next batch within that epoch
        self.step = 0
        self.best_valid = math.inf
        self.epochs_since_best = 0
        self.elapsed_s = 0.0
        self.history: List[Dict[str, float]] = []
        self._running: List[float] = []

    def _atoms_per_frame(self) -> float:
        ids = self.train_ids if len(self.train_ids) else np.arange(len(self.frames))
        return float(np.mean([self.frames[i].n_atoms for i in ids])) if len(ids) else 1.0

    def _check_labels(self) -> None:
        """Force-matching needs a label on every frame (and one noise level: it has no noise); hybrid
        and mixed need labels on at least one training frame."""
        if self.cfg.loss == "force_matching" and len(self.physics.noise_std) > 1:
            raise ValueError(
                f"loss='force_matching' sees clean coordinates: give one noise_std (the output scale), "
                f"not a ladder {self.physics.noise_std}"
            )
        unlabelled = [i for i, f in enumerate(self.frames) if f.ref_forces is None]
        if self.cfg.loss == "force_matching" and unlabelled:
            raise DataError(
                f"loss='force_matching' needs per-atom force labels on every frame, but {len(unlabelled)} frames "
                f"(e.g. {unlabelled[:5]}) have none (atoms.arrays['ref_forces'] or calculator forces, eV/A)"
            )
        if self.cfg.loss in ("hybrid", "mixed") and all(self.frames[i].ref_forces is None for i in self.train_ids):
            raise DataError(f"loss={self.cfg.loss!r} needs force labels on some training frames, but none has any")

    def _load_initial(self, initial_model: DenoiserMACE) -> None:
        ours, theirs = self.model_config.to_dict(), initial_model.config.to_dict()
        differ = sorted(k for k in ours if ours[k] != theirs.get(k))
        if differ:
            raise ValueError(
                f"initial_model's architecture differs from model_config in {differ} "
                f"(initial {[theirs.get(k) for k in differ]}, config {[ours[k] for k in differ]})"
            )
        self.model.load_state_dict(initial_model.state_dict(), strict=True)  # cast to the training dtype
        self.initial_weights = dict(initial_model.provenance or {"initialised_from": "given model"})
        logger.info("training starts from given weights: %s", self.initial_weights)

    # ------------------------------------------------------------------ files
    @property
    def best_path(self) -> str:
        return os.path.join(self.output_dir, "best.safetensors")

    @property
    def last_path(self) -> str:
        return os.path.join(self.output_dir, "last.safetensors")

    @property
    def state_path(self) -> str:
        return os.path.join(self.output_dir, STATE_FILE)

    def eval_model(self) -> DenoiserMACE:
        """The weights used for validation and saving (EMA if enabled)."""
        return self.ema.module if self.ema is not None else self.model  # type: ignore[return-value]

    def training_summary(self) -> Dict[str, Any]:
        sizes = [f.n_atoms for f in self.frames]
        return {
            "n_frames": len(self.frames),
            "n_train_frames": int(len(self.train_ids)),
            "n_valid_frames": int(len(self.valid_ids)),
            "atoms_per_frame": [int(min(sizes)), int(max(sizes))],
            "temperature_K": self.physics.temperature_K,
            "noise_std": list(self.physics.noise_std),
            "train_config": self.cfg.to_dict(),
            "frames_per_batch": self.batch_size,
            "epochs_completed": self.epoch,
            "steps": self.step,
            **({"initial_weights": self.initial_weights} if self.initial_weights else {}),
        }

    def save_state(self) -> None:
        state = {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "ema": self.ema.state_dict() if self.ema is not None else {},
            "epoch": self.epoch,
            "batch": self.batch,
            "step": self.step,
            "best_valid": self.best_valid,
            "epochs_since_best": self.epochs_since_best,
            "elapsed_s": self.elapsed_s,
            "schedule_steps": self.schedule["steps"],
            "history": self.history,
            "model_config": self.model_config.to_dict(),
            "physics": self.physics.to_dict(),
            "train_config": self.cfg.to_dict(),
        }
        with deferred_interrupts():
            atomic_write(self.state_path, lambda tmp: torch.save(state, tmp), overwrite=True)

    def load_state(self) -> None:
        """Resume from ``training_state.pt`` (read with ``weights_only=True``: no code runs)."""
        try:
            state = torch.load(self.state_path, map_location="cpu", weights_only=True)
        except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError) as exc:
            raise TrainingError(
                f"{self.state_path} is not a readable ase_denoise training state (corrupt, truncated, or "
                f"holding objects other than tensors and plain numbers; nothing in it was executed): {exc}"
            ) from exc
        try:
            self._restore(state)
        except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
            why = f"no {exc.args[0]!r} entry" if isinstance(exc, KeyError) else str(exc)
            raise TrainingError(f"{self.state_path} is not a readable ase_denoise training state ({why})") from exc

    def _restore(self, state: Dict[str, Any]) -> None:
        if not isinstance(state, dict):
            raise TypeError(f"it holds a {type(state).__name__}, not a mapping")
        if state["model_config"] != self.model_config.to_dict() or _physics_of(state) != self.physics:
            raise TrainingError(
                f"{self.state_path} was written for a different model/data configuration; "
                "resume with the same data and options, or use a new output directory"
            )
        saved = TrainConfig.from_dict(state["train_config"]).to_dict()
        now = self.cfg.to_dict()
        # the frame copies per step, as resolved from batch_size or batch_atoms
        saved["batch_size"] = TrainConfig.from_dict(state["train_config"]).frames_per_batch(self._atoms_per_frame())
        now["batch_size"] = self.batch_size
        changed = [k for k in (*RESUME_FROZEN, "batch_size") if saved[k] != now[k]]
        if changed:
            raise TrainingError(
                f"cannot resume {self.state_path} with different {', '.join(changed)} "
                f"(was {[saved[k] for k in changed]}, now {[now[k] for k in changed]}): these fix the "
                "train/validation split and the noise stream; resume with the original values or start a new run"
            )
        if saved["epochs"] != now["epochs"]:
            logger.warning(
                "resuming with epochs=%d instead of %d: the learning-rate schedule is recomputed for the new total",
                now["epochs"], saved["epochs"],
            )
        if saved["lr"] != now["lr"]:
            logger.warning("resuming: lr=%g is ignored, the saved optimiser state (lr=%g) continues", now["lr"], saved["lr"])
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if self.ema is not None:
            self.ema.load_state_dict(state["ema"])
        for key in ("epoch", "batch", "step", "best_valid", "epochs_since_best", "elapsed_s", "history"):
            setattr(self, key, state[key])
        if saved["epochs"] == now["epochs"]:  # else the schedule spans the new epochs (warned above)
            self.schedule["steps"] = int(state.get("schedule_steps", self.schedule["steps"]))
        logger.info("resumed from %s at epoch %d batch %d", self.state_path, self.epoch, self.batch)

    # ------------------------------------------------------------------ steps
    def _loss_terms(self, model: DenoiserMACE, batch: NoisyBatch) -> Dict[str, tuple]:
        """Squared-error sums and component counts of this rank's share of the batch, per loss term
        (:mod:`ase_denoise.training.losses`), from one forward pass."""
        inputs = loss_inputs(self.cfg.loss, batch, self.frames, self.physics.kT, self.residual, self.mixing,
                             self.level_weight)
        data = collate(
            inputs.positions, [self.frames[i] for i in inputs.frame_ids], len(self.model_config.atomic_numbers),
            self.model_config.r_max, self.dtype, self.device,
            neighbour_lists=[self.neighbour_lists[i] for i in inputs.frame_ids], update_lists=False,
            noise_std=inputs.noise_std if len(self.physics.noise_std) > 1 else None,
        )
        return squared_errors(model(data), inputs)

    def _term_weight(self, name: str) -> float:
        return term_weight(self.cfg.loss, name, self.cfg.force_weight)

    def _combine(self, terms: Dict[str, tuple]) -> torch.Tensor:
        """The loss: per-term means over all ranks' components, weighted (:func:`term_weight`).
        A term with no components anywhere contributes nothing."""
        loss = torch.zeros((), dtype=self.dtype, device=self.device)
        for name, (squared, count) in terms.items():
            total = float(self._all_reduce(torch.tensor(count, dtype=self.dtype, device=self.device)))
            if total == 0:
                continue
            loss = loss + self._term_weight(name) * squared / total
        return loss

    def _all_reduce(self, tensor: torch.Tensor) -> torch.Tensor:
        if self.distributed:
            torch.distributed.all_reduce(tensor)
        return tensor

    def train_step(self, batch: NoisyBatch) -> float:
        """One optimiser step; returns the loss (mean squared error per component, over all ranks)."""
        self.model.train()
        loss = self._combine(self._loss_terms(self.model, batch))
        global_loss = float(self._all_reduce(loss.detach().clone()))
        if not math.isfinite(global_loss):
            raise TrainingError(
                f"non-finite training loss ({global_loss}) at epoch {self.epoch} step {self.step}; "
                f"the last good checkpoint is kept in {self.output_dir} (try a lower learning rate)"
            )
        self.optimizer.zero_grad(set_to_none=False)
        loss.backward()
        if self.distributed:  # sum: the gradient of the mean over the union of the ranks' batches
            for p in self.model.parameters():
                if p.grad is None:
                    p.grad = torch.zeros_like(p)
                torch.distributed.all_reduce(p.grad)
        if self.cfg.grad_clip:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip)
        self.optimizer.step()
        self.scheduler.step()
        if self.ema is not None:
            self.ema.update_parameters(self.model)
        self.step += 1
        return global_loss

    def loss_gradient(self, batch: NoisyBatch) -> np.ndarray:
        """The gradient of the training loss of ``batch`` with respect to the current weights,
        flattened (float64 numpy), without a step and without clipping: what an optimiser step would
        see, e.g. to measure the gradient noise of a sampler setting (``benchmarks/gradient_noise.py``).
        The weights' ``.grad`` are cleared afterwards."""
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        self._combine(self._loss_terms(self.model, batch)).backward()
        grads = [p.grad.detach().reshape(-1) if p.grad is not None else torch.zeros(p.numel(), dtype=p.dtype)
                 for p in self.model.parameters() if p.requires_grad]
        self.optimizer.zero_grad(set_to_none=True)
        return torch.cat(grads).to(torch.float64).cpu().numpy()

    @torch.no_grad()
    def validate(self) -> Dict[str, float]:
        model = self.eval_model().eval()
        out: Dict[str, float] = {}
        if self.valid_batches:
            sums: Dict[str, List[float]] = {}
            for batch in self.valid_batches:
                for name, (squared, count) in self._loss_terms(model, batch).items():
                    acc = sums.setdefault(name, [0.0, 0.0])
                    acc[0] += float(squared)
                    acc[1] += count
            means = {name: sq / n for name, (sq, n) in sums.items() if n > 0}
            out["valid_loss"] = sum(self._term_weight(name) * v for name, v in means.items())
            if self.cfg.loss == "hybrid":
                out.update({f"valid_{name}_loss": v for name, v in means.items()})
        with_ref = [i for i in self.valid_ids if self.frames[i].ref_forces is not None]
        if with_ref:
            pred, ref = evaluate_forces(model, [self.frames[i] for i in with_ref], self.batch_size, self.device)
            m = force_metrics(pred, ref)
            out.update(force_rmse=m["rmse"], force_relative_rmse=m["relative_rmse"], force_cosine=m["cosine"])
        return out

    # ------------------------------------------------------------------ loop
    def fit(self, resume: bool = False) -> TrainResult:
        os.makedirs(self.output_dir, exist_ok=True)
        if resume:
            if not os.path.exists(self.state_path):
                raise FileNotFoundError(f"cannot resume: {self.state_path} does not exist")
            if self.is_main:  # what a killed process left half-written (its outputs are whole: atomic renames)
                for orphan in remove_orphans(self.output_dir, OUTPUT_FILES):
                    logger.info("removed %s, a temporary file of an interrupted save", orphan)
            self.load_state()
        elif os.path.exists(self.state_path):
            raise FileExistsError(
                f"{self.output_dir} already holds a training run ({STATE_FILE}); resume it or choose a new directory"
            )
        budget_s = self.cfg.max_minutes * 60.0 if self.cfg.max_minutes else math.inf  # per call of fit()
        if self.is_main and self.cfg.loss in ("denoising", "hybrid", "mixed") and self.step == 0:
            logger.info("the denoising loss per component is 1 for a model that predicts no noise and lower by "
                        "sigma^2 <|grad log rho_sigma|^2> / 3 for a perfect one: near 1 where the noise is small "
                        "against the structure's widths (liquids), lower where it is not (solids); judge a model "
                        "by its forces and structure, not by the loss")
        stopped = "epochs"
        clock = Clock(budget_s, self.step)
        start = clock.start - self.elapsed_s
        report = self._progress_reporter()
        try:
            while self.epoch < self.cfg.epochs:
                for batch in self.sampler.epoch(self.epoch, start_batch=self.batch):
                    with deferred_interrupts():  # the update and its counters: both or neither are saved
                        loss = self.train_step(batch)
                        self.batch += 1
                    self._running.append(loss)
                    self.elapsed_s = time.perf_counter() - start
                    if clock.plan_due(self.step):
                        self._plan_schedule(clock)
                    if report is not None:
                        report(self._progress(clock))
                    if self._agree(clock.spent()):
                        break
                if self.batch < len(self.sampler):  # time budget spent mid-epoch
                    stopped = "time_budget"
                    break
                if self._end_epoch():
                    stopped = "early_stopping"
                    break
                if math.isfinite(budget_s):
                    self._plan_schedule(clock)  # with the validation time now known
        except KeyboardInterrupt:
            self._save_state_if_main()
            logger.warning("interrupted: state saved to %s; resume to continue", self.state_path)
            raise
        finally:
            if report is not None and hasattr(report, "close"):
                report.close()
        self._save_state_if_main()
        if self.is_main and self.epoch == 0 and stopped == "time_budget":
            logger.warning("training stopped after %d of the %d steps of the first epoch (time budget of %g min): the "
                           "model written is the weights so far, never validated; give more time or fewer frames",
                           self.batch, len(self.sampler), self.cfg.max_minutes)
        if self.is_main and not os.path.exists(self.best_path):  # stopped before the first epoch ended
            for path in (self.best_path, self.last_path):
                save_model(self.eval_model(), path, training=self.training_summary(), overwrite=True)
        self._barrier()
        kept = kept_weights(self.cfg)
        path = self.last_path if kept == "last" else self.best_path
        return TrainResult(load_model_file(path), self.best_path, self.last_path, self.history, stopped, kept)

    def _plan_schedule(self, clock: Clock) -> None:
        """Fit the learning-rate cosine to the time budget: it ends where the budget does (at the pace of
        this call so far), not at the last of ``epochs`` epochs the budget cannot reach."""
        reachable = self._broadcast(clock.reachable(self.step))
        steps = min(self.total_steps, max(reachable, self.step + 1))
        if steps != self.schedule["steps"] and self.is_main:
            logger.info("learning-rate schedule planned for %d steps (%.2g s per step, %.1f of %g min left)",
                        steps, clock.per_step(self.step), clock.left_s() / 60, self.cfg.max_minutes)
        self.schedule["steps"] = steps

    def _progress(self, clock: Clock) -> Progress:
        return clock.progress(self.step, self.total_steps, self.epoch, self.cfg.epochs, float(np.mean(self._running[-50:])))

    def _progress_reporter(self) -> Optional[ProgressCallback]:
        """``progress``: a callback as given, or for ``True`` log lines (:func:`progress.log_lines`)."""
        if not self.progress or not self.is_main:
            return None
        return self.progress if callable(self.progress) else log_lines(logger)

    def _broadcast(self, value: int) -> int:
        """Rank 0's ``value`` on every rank."""
        if not self.distributed:
            return value
        t = torch.tensor([int(value)], device=self.device)
        torch.distributed.broadcast(t, 0)
        return int(t.item())

    def _end_epoch(self) -> bool:
        """Validate, log, checkpoint; return True when early stopping triggers."""
        metrics = self.validate()
        row = {
            "epoch": self.epoch, "step": self.step, "lr": self.scheduler.get_last_lr()[0],
            "train_loss": float(np.mean(self._running)) if self._running else float("nan"),
            "elapsed_s": self.elapsed_s, **metrics,
        }
        self.history.append(row)
        self._running = []
        self.epoch += 1
        self.batch = 0
        summary = self.training_summary()
        valid = metrics.get("valid_loss", row["train_loss"])
        improved = valid < self.best_valid
        if improved:
            self.best_valid, self.epochs_since_best = valid, 0
        else:
            self.epochs_since_best += 1
        if self.is_main:
            if improved:
                save_model(self.eval_model(), self.best_path, training=summary, metrics=row, overwrite=True)
            save_model(self.eval_model(), self.last_path, training=summary, metrics=row, overwrite=True)
            self._write_log()
            self.save_state()
        if self.is_main:
            logger.info("%s", epoch_line(row, self.cfg.epochs, improved))
        return bool(self.cfg.patience) and self.epochs_since_best >= self.cfg.patience

    def _agree(self, flag: bool) -> bool:
        """Rank 0's decision, on every rank (so all ranks stop at the same step)."""
        if not self.distributed:
            return flag
        t = torch.tensor([int(flag)], device=self.device)
        torch.distributed.broadcast(t, 0)
        return bool(t.item())

    def _barrier(self) -> None:
        if self.distributed:
            torch.distributed.barrier()

    def _save_state_if_main(self) -> None:
        if self.is_main:
            self.save_state()

    def _write_log(self) -> None:
        write_log(os.path.join(self.output_dir, "log.csv"), self.history)


def train(
    frames,
    output_dir: str,
    *,
    noise_std: Optional[Union[str, float, Sequence[float]]] = None,
    temperature_K: Optional[float] = None,
    train_config: Optional[TrainConfig] = None,
    priors: Sequence[Any] = (),
    resume: bool = False,
    progress: Union[bool, ProgressCallback] = False,
    rank: int = 0,
    world_size: int = 1,
    device: Union[str, torch.device] = "cpu",
    initial_model: Optional[DenoiserMACE] = None,
    default_forces: Optional[ForcesChoice] = None,
    **model_options: Any,
) -> TrainResult:
    """Train a denoiser on equilibrium ``frames`` sampled at ``temperature_K`` (K).

    ``noise_std``: sigma in Angstrom, a ladder of several levels (the model then takes sigma as an
    input and its calculator returns forces corrected to sigma -> 0), or ``"auto"`` (the default,
    ``None``: :func:`ase_denoise.training.suggest.suggest_settings`). ``train_config``: :class:`TrainConfig`
    (``n_duplicates``, epochs, loss...). ``priors``: :class:`ase_denoise.priors.Prior` objects or
    short forms (``"wall"``, ``"bonded"``, ``"ewald:Li=1,Cl=-1,eps=94"``...; :mod:`ase_denoise.priors.specs`),
    fitted to the frames (:func:`ase_denoise.training.prepare_data`). ``model_options``: :class:`ModelConfig` fields
    (``r_max``, which may be ``"auto"``, ``head``, ...). ``rank``/``world_size``/``device``: see
    :class:`Trainer`. ``default_forces``: what a ladder model's forces are by default
    (:class:`~ase_denoise.forces.ForcesChoice`: one trained level, or the extrapolation of a degree;
    default the extrapolation of degree ``min(levels - 1, 2)``), stored with it (:class:`PhysicsConfig`)
    and used by the validation forces and by every calculator of the model unless it asks for another.

    Fine-tuning: with ``initial_model`` training starts from its weights. The architecture is the
    model's, element table and ``avg_num_neighbors`` included (its weights depend on them): every
    element of ``frames`` must be in its table, and ``model_options`` may not change it.
    ``noise_std`` defaults to the model's; ``temperature_K`` to the frames' (else the model's).
    Returns a :class:`TrainResult` whose ``model`` holds the best EMA weights.
    """
    config, physics, converted = prepare_data(
        frames, noise_std=noise_std, temperature_K=temperature_K, priors=priors, initial_model=initial_model,
        skip_bonded_pairs=bool(train_config and train_config.smoothed_priors),
        default_forces=default_forces,
        **model_options,
    )
    trainer = Trainer(
        config, physics, converted, output_dir, train_config, progress=progress, rank=rank,
        world_size=world_size, device=device, initial_model=initial_model,
    )
    return trainer.fit(resume=resume)
