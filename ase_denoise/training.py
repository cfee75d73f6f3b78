"""Training a denoiser: noisy frames in, ``-noise/sigma`` out (DESIGN.md sections 1 and 3).

The loss is the mean squared error between the network output ``eps_hat`` and the unit-variance
target ``-N/sigma`` (:func:`ase_denoise.model.denoising_target`); even a perfect model leaves about
1 per component. Model selection uses the denoising loss on *fixed* validation noise. When frames
carry reference forces, each epoch also reports the force error of ``kT * eps_hat / sigma`` at the
clean validation positions against them: that is the figure that matters.

Two other losses (``TrainConfig.loss``) use force labels instead of, or besides, the coordinates:

* ``"force_matching"``: the same network on *clean* coordinates, trained so that
  ``kT * eps_hat / sigma`` matches the per-atom labels ``F``: target ``sigma * F / kT``
  (:func:`force_target`). ``noise_std`` then only fixes the output scale; no noise is drawn. With
  instantaneous forces of a fine-grained system as labels this is the classic force-matching
  coarse-grained model (its optimum is the mean force).
* ``"hybrid"``: ``denoising + force_weight * force term``; each batch's frames that carry labels add
  their clean coordinates to the forward pass for the force term.

Both terms are per-component mean squared errors in units where the denoising target has unit
variance; model selection uses the same combination on the validation frames.

Output directory layout::

    best.safetensors      EMA weights of the epoch with the lowest validation loss
    last.safetensors      EMA weights after the last completed epoch
    training_state.pt     everything needed to resume (tensors and plain numbers only)
    log.csv               one row per epoch
"""

from __future__ import annotations

import csv
import logging
import math
import os
import pickle
import time
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Union

import numpy as np
import torch
from ase import Atoms

from .analysis import force_metrics
from .checkpoint import atomic_write, load_model, save_model
from .config import ModelConfig, TrainConfig
from .data import (
    DataError,
    Frame,
    SkinNeighbourList,
    average_num_neighbors,
    check_atoms,
    collate,
    data_pbc,
    data_temperature,
    read_frames,
    to_frame,
)
from .model import DenoiserMACE, build_model, denoising_target
from .sampler import DuplicationSampler, NoisyBatch, split_frames, validation_batches

logger = logging.getLogger(__name__)

STATE_FILE = "training_state.pt"
LOG_COLUMNS = [
    "epoch", "step", "lr", "train_loss", "valid_loss",
    "force_rmse", "force_relative_rmse", "force_cosine", "elapsed_s",
]


# Settings that define the split and the noise stream: a resumed run must keep them.
RESUME_FROZEN = ("seed", "valid_fraction", "valid_duplicates", "batch_size", "n_duplicates", "dtype", "loss", "force_weight")


class TrainingError(RuntimeError):
    """Training cannot go on (e.g. a non-finite loss); the last good checkpoint is kept."""


@dataclass
class TrainResult:
    model: DenoiserMACE  # best (EMA) weights, eval mode
    best_path: str
    last_path: str
    history: List[Dict[str, float]] = field(default_factory=list)
    stopped: str = "epochs"  # "epochs" | "early_stopping" | "time_budget"


def prepare_data(
    frames,
    *,
    noise_std: float,
    temperature_K: Optional[float] = None,
    **model_options: Any,
) -> tuple[ModelConfig, List[Frame]]:
    """Check frames and derive the model config (element table, pbc, temperature, avg neighbours).

    ``frames``: a path ASE can read, a list of ``Atoms`` or pymatgen structures.
    ``model_options``: any other :class:`ModelConfig` field (``r_max``, ``num_channels``, ``head``...).
    """
    atoms_list: List[Atoms] = read_frames(frames)
    temperature_K = data_temperature(atoms_list, temperature_K)
    pbc = data_pbc(atoms_list)
    r_max = float(model_options.get("r_max", ModelConfig.r_max))
    for i, atoms in enumerate(atoms_list):
        check_atoms(atoms, r_max=r_max, what=f"frame {i}")
    numbers = sorted({int(z) for a in atoms_list for z in a.numbers})
    options = dict(model_options)
    options.pop("avg_num_neighbors", None)
    config = ModelConfig(atomic_numbers=numbers, noise_std=noise_std, temperature_K=temperature_K, pbc=pbc, **options)
    converted = [to_frame(a, config.atomic_numbers) for a in atoms_list]
    config.avg_num_neighbors = float(model_options.get("avg_num_neighbors") or average_num_neighbors(converted, r_max))
    return config, converted


def force_target(forces: torch.Tensor, noise_std: float, kT: float) -> torch.Tensor:
    """Force-matching target ``sigma * F / kT`` for labels ``F`` (eV/A): the output ``eps`` for which
    :func:`ase_denoise.model.forces_from_output` (``kT * eps / sigma``) returns ``F``."""
    return forces * (noise_std / kT)


def neighbour_skin(noise_std: float) -> float:
    """Skin (Angstrom) of the per-frame neighbour lists: noisy copies reuse a frame's list unless an
    atom moved more than skin/2 = max(0.25 A, 5 sigma) (then that copy gets a fresh list)."""
    return max(0.5, 10.0 * noise_std)


def _lr_lambda(cfg: TrainConfig, total_steps: int):
    def fn(step: int) -> float:
        warm = min(1.0, (step + 1) / max(cfg.warmup_steps, 1))
        if cfg.lr_schedule == "constant":
            return warm
        progress = min(1.0, step / max(total_steps, 1))
        return warm * (0.02 + 0.98 * 0.5 * (1.0 + math.cos(math.pi * progress)))

    return fn


class Trainer:
    """Owns the model, optimiser, EMA, sampler and the files in ``output_dir``."""

    def __init__(
        self,
        model_config: ModelConfig,
        frames: Sequence[Frame],
        output_dir: str,
        train_config: Optional[TrainConfig] = None,
        *,
        progress: bool = False,
        rank: int = 0,
        world_size: int = 1,
        device: Union[str, torch.device] = "cpu",
        initial_model: Optional[DenoiserMACE] = None,
    ):
        """``initial_model``: start from these weights instead of a fresh initialisation (e.g. a model
        from :func:`ase_denoise.mace_adapter.denoiser_from_mace`). Its architecture (every
        :class:`ModelConfig` field but ``noise_std``, ``temperature_K`` and ``pbc``) must equal
        ``model_config``'s. A resumed run continues from its saved state instead.

        Data-parallel training: start one process per device (e.g. with ``torchrun``), initialise
        ``torch.distributed`` and pass ``rank``/``world_size``. Frames are sharded before duplication;
        gradients are summed across ranks so that a step equals a single-process step on the union
        of the ranks' batches (the loss is the mean over all atoms of that union). Rank 0 writes files.
        """
        self.cfg = train_config or TrainConfig()
        self.model_config = model_config
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
        self.sampler = DuplicationSampler(
            self.frames, self.train_ids, self.cfg.n_duplicates, model_config.noise_std,
            self.cfg.batch_size, self.cfg.seed, rank=rank, world_size=world_size,
        )
        # force matching sees clean coordinates: one copy of each validation frame is enough
        valid_copies = 1 if self.cfg.loss == "force_matching" else self.cfg.valid_duplicates
        self.valid_batches = validation_batches(
            self.frames, self.valid_ids, valid_copies, model_config.noise_std,
            self.cfg.batch_size, self.cfg.seed,
        )
        # one skin list per clean frame serves all its noisy copies (DESIGN.md section 4)
        self.neighbour_lists = [SkinNeighbourList(model_config.r_max, neighbour_skin(model_config.noise_std)) for _ in self.frames]
        for frame, nl in zip(self.frames, self.neighbour_lists):
            nl.edges(frame.positions, frame.cell, frame.pbc)
        torch.manual_seed(self.cfg.seed)
        self.model = build_model(model_config, dtype=self.dtype)
        self.initial_weights: Optional[Dict[str, Any]] = None
        if initial_model is not None:
            self._load_initial(initial_model)
        self.model.to(self.device)
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=self.cfg.lr, weight_decay=self.cfg.weight_decay)
        self.total_steps = self.cfg.epochs * len(self.sampler)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, _lr_lambda(self.cfg, self.total_steps))
        self.ema = None
        if self.cfg.ema_decay > 0:
            from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

            self.ema = AveragedModel(self.model, multi_avg_fn=get_ema_multi_avg_fn(self.cfg.ema_decay), use_buffers=True)
        self.epoch = 0  # next epoch to run
        self.batch = 0  # next batch within that epoch
        self.step = 0
        self.best_valid = math.inf
        self.epochs_since_best = 0
        self.elapsed_s = 0.0
        self.history: List[Dict[str, float]] = []
        self._running: List[float] = []

    def _check_labels(self) -> None:
        """Force-matching needs a label on every frame; hybrid on at least one training frame."""
        unlabelled = [i for i, f in enumerate(self.frames) if f.ref_forces is None]
        if self.cfg.loss == "force_matching" and unlabelled:
            raise DataError(
                f"loss='force_matching' needs per-atom force labels on every frame, but {len(unlabelled)} frames "
                f"(e.g. {unlabelled[:5]}) have none (atoms.arrays['ref_forces'] or calculator forces, eV/A)"
            )
        if self.cfg.loss == "hybrid" and all(self.frames[i].ref_forces is None for i in self.train_ids):
            raise DataError("loss='hybrid' needs force labels on some training frames, but none has any")

    def _load_initial(self, initial_model: DenoiserMACE) -> None:
        free = ("noise_std", "temperature_K", "pbc")
        ours = {k: v for k, v in self.model_config.to_dict().items() if k not in free}
        theirs = {k: v for k, v in initial_model.config.to_dict().items() if k not in free}
        differ = sorted(k for k in ours if ours[k] != theirs.get(k))
        if differ:
            raise ValueError(
                f"initial_model's architecture differs from model_config in {differ} "
                f"(initial {[theirs.get(k) for k in differ]}, config {[ours[k] for k in differ]})"
            )
        self.model.load_state_dict(initial_model.state_dict(), strict=True)  # cast to the training dtype
        self.initial_weights = dict(getattr(initial_model, "provenance", None) or {"initialised_from": "given model"})
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
            "temperature_K": self.model_config.temperature_K,
            "noise_std": self.model_config.noise_std,
            "train_config": self.cfg.to_dict(),
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
            "history": self.history,
            "model_config": self.model_config.to_dict(),
            "train_config": self.cfg.to_dict(),
        }
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
        if state["model_config"] != self.model_config.to_dict():
            raise TrainingError(
                f"{self.state_path} was written for a different model/data configuration; "
                "resume with the same data and options, or use a new output directory"
            )
        saved = TrainConfig.from_dict(state["train_config"]).to_dict()
        now = self.cfg.to_dict()
        changed = [k for k in RESUME_FROZEN if saved[k] != now[k]]
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
        logger.info("resumed from %s at epoch %d batch %d", self.state_path, self.epoch, self.batch)

    # ------------------------------------------------------------------ steps
    def _collate(self, batch: NoisyBatch) -> Dict[str, torch.Tensor]:
        frames = [self.frames[i] for i in batch.frame_ids]
        lists = [self.neighbour_lists[i] for i in batch.frame_ids]
        return collate(
            batch.positions, frames, len(self.model_config.atomic_numbers), self.model_config.r_max, self.dtype,
            self.device, neighbour_lists=lists, update_lists=False,
        )

    def _target(self, batch: NoisyBatch) -> torch.Tensor:
        noise = torch.as_tensor(np.concatenate(batch.noise), dtype=self.dtype, device=self.device)
        return denoising_target(noise, self.model_config.noise_std)

    def _loss_terms(self, model: DenoiserMACE, batch: NoisyBatch) -> Dict[str, tuple]:
        """Squared-error sums and component counts of this rank's share of the batch, per loss term:
        ``{"denoising": (sum, n), "forces": (sum, n)}`` (the terms the configured loss uses)."""
        mode = self.cfg.loss
        # noisy copies (denoising term) first, then the clean frames with labels (force term)
        noisy_ids = [] if mode == "force_matching" else list(batch.frame_ids)
        noisy_pos = [] if mode == "force_matching" else list(batch.positions)
        labelled = [] if mode == "denoising" else [
            i for i in dict.fromkeys(batch.frame_ids) if self.frames[i].ref_forces is not None
        ]
        n_noisy = sum(len(p) for p in noisy_pos)
        out = model(self._collate(NoisyBatch(noisy_ids + labelled, [], noisy_pos + [self.frames[i].positions for i in labelled])))
        terms: Dict[str, tuple] = {}
        if mode != "force_matching":
            target = self._target(batch)
            terms["denoising"] = (torch.sum((out[:n_noisy] - target) ** 2), float(target.numel()))
        if mode != "denoising":
            labels = torch.as_tensor(np.concatenate([self.frames[i].ref_forces for i in labelled]) if labelled else np.zeros((0, 3)),
                                     dtype=self.dtype, device=self.device)
            target = force_target(labels, self.model_config.noise_std, self.model_config.kT)
            terms["forces"] = (torch.sum((out[n_noisy:] - target) ** 2), float(target.numel()))
        return terms

    def _term_weight(self, name: str) -> float:
        """``force_weight`` for the force term of the hybrid loss, 1 otherwise."""
        return self.cfg.force_weight if (name == "forces" and self.cfg.loss == "hybrid") else 1.0

    def _combine(self, terms: Dict[str, tuple]) -> torch.Tensor:
        """The loss: per-term means over all ranks' components, the force term times ``force_weight``
        in hybrid mode. A term with no components anywhere contributes nothing."""
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
            pred, ref = evaluate_forces(model, [self.frames[i] for i in with_ref], self.cfg.batch_size, self.device)
            m = force_metrics(pred, ref)
            out.update(force_rmse=m["rmse"], force_relative_rmse=m["relative_rmse"], force_cosine=m["cosine"])
        return out

    # ------------------------------------------------------------------ loop
    def fit(self, resume: bool = False) -> TrainResult:
        os.makedirs(self.output_dir, exist_ok=True)
        if resume:
            if not os.path.exists(self.state_path):
                raise FileNotFoundError(f"cannot resume: {self.state_path} does not exist")
            self.load_state()
        elif os.path.exists(self.state_path):
            raise FileExistsError(
                f"{self.output_dir} already holds a training run ({STATE_FILE}); resume it or choose a new directory"
            )
        budget_s = self.cfg.max_minutes * 60.0 if self.cfg.max_minutes else math.inf  # per call of fit()
        stopped = "epochs"
        call_start = time.perf_counter()
        start = call_start - self.elapsed_s
        bar = None
        if self.progress and self.is_main:
            from tqdm.auto import tqdm

            bar = tqdm(total=self.total_steps, initial=self.step, desc="training", unit="step", dynamic_ncols=True)
        try:
            while self.epoch < self.cfg.epochs:
                for batch in self.sampler.epoch(self.epoch, start_batch=self.batch):
                    loss = self.train_step(batch)
                    self.batch += 1
                    self._running.append(loss)
                    self.elapsed_s = time.perf_counter() - start
                    if bar is not None:
                        bar.update(1)
                        bar.set_postfix(epoch=self.epoch, loss=f"{np.mean(self._running[-50:]):.4f}")
                    if self._agree(time.perf_counter() - call_start > budget_s):
                        break
                if self.batch < len(self.sampler):  # time budget spent mid-epoch
                    stopped = "time_budget"
                    break
                if self._end_epoch():
                    stopped = "early_stopping"
                    break
        except KeyboardInterrupt:
            self._save_state_if_main()
            logger.warning("interrupted: state saved to %s; resume to continue", self.state_path)
            raise
        finally:
            if bar is not None:
                bar.close()
        self._save_state_if_main()
        if self.is_main and not os.path.exists(self.best_path):  # stopped before the first epoch ended
            save_model(self.eval_model(), self.best_path, training=self.training_summary(), overwrite=True)
        self._barrier()
        return TrainResult(load_model(self.best_path), self.best_path, self.last_path, self.history, stopped)

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
        logger.info("epoch %d: %s", row["epoch"], {k: round(v, 5) for k, v in row.items() if isinstance(v, float)})
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
        def write(tmp: str) -> None:
            with open(tmp, "w", newline="") as fh:
                w = csv.DictWriter(fh, fieldnames=LOG_COLUMNS, extrasaction="ignore")
                w.writeheader()
                for row in self.history:
                    w.writerow({k: row.get(k, "") for k in LOG_COLUMNS})

        atomic_write(os.path.join(self.output_dir, "log.csv"), write, overwrite=True)


@torch.no_grad()
def evaluate_forces(
    model: DenoiserMACE, frames: Sequence[Frame], batch_size: int = 8, device: Union[str, torch.device] = "cpu"
):
    """Predicted forces (eV/A) at the clean positions of ``frames`` and their reference forces."""
    model.eval()
    dtype = next(model.parameters()).dtype
    pred, ref = [], []
    for start in range(0, len(frames), batch_size):
        chunk = frames[start : start + batch_size]
        data = collate([f.positions for f in chunk], chunk, len(model.config.atomic_numbers), model.config.r_max, dtype, device)
        pred.append(model.forces(data).double().cpu().numpy())
        ref.extend(f.ref_forces for f in chunk)
    return np.concatenate(pred), np.concatenate(ref)


def train(
    frames,
    output_dir: str,
    *,
    noise_std: float,
    temperature_K: Optional[float] = None,
    train_config: Optional[TrainConfig] = None,
    resume: bool = False,
    progress: bool = False,
    rank: int = 0,
    world_size: int = 1,
    device: Union[str, torch.device] = "cpu",
    initial_model: Optional[DenoiserMACE] = None,
    **model_options: Any,
) -> TrainResult:
    """Train a denoiser on equilibrium ``frames`` sampled at ``temperature_K`` (K).

    ``noise_std``: sigma in Angstrom. ``train_config``: :class:`TrainConfig` (``n_duplicates``,
    epochs, ...). ``model_options``: :class:`ModelConfig` fields (``r_max``, ``head``, ...).
    ``rank``/``world_size``/``device``/``initial_model``: see :class:`Trainer`; with ``initial_model``
    the architecture (and ``avg_num_neighbors``) defaults to that model's.
    Returns a :class:`TrainResult` whose ``model`` holds the best EMA weights.
    """
    if initial_model is not None:  # its architecture (incl. avg_num_neighbors) unless overridden
        free = ("atomic_numbers", "noise_std", "temperature_K", "pbc")
        inherited = {k: v for k, v in initial_model.config.to_dict().items() if k not in free}
        model_options = {**inherited, **model_options}
    config, converted = prepare_data(frames, noise_std=noise_std, temperature_K=temperature_K, **model_options)
    trainer = Trainer(
        config, converted, output_dir, train_config, progress=progress, rank=rank, world_size=world_size,
        device=device, initial_model=initial_model,
    )
    return trainer.fit(resume=resume)
