"""Training: from frames to a denoiser.

* :mod:`ase_denoise.training.prepare` - check the frames and derive a model's settings from them
  (:func:`prepare_data`: element table, temperature, periodicity, priors fitted to the data);
* :mod:`ase_denoise.training.suggest` - the noise ladder and cutoff read off the data (``"auto"``);
* :mod:`ase_denoise.training.sampler` - the duplication sampler: **where the noise is drawn**;
* :mod:`ase_denoise.training.losses` - what the network is trained to output (targets, loss terms);
* :mod:`ase_denoise.training.progress` - the time budget, the learning-rate schedule that fits it,
  and the progress reports a bar or a log line is drawn from;
* :mod:`ase_denoise.training.ema` - the moving average of the weights that is validated and saved
  (floats averaged, integer buffers copied);
* :mod:`ase_denoise.training.result` - what a run returns: which checkpoint is kept, :class:`TrainResult`;
* :mod:`ase_denoise.training.trainer` - the loop (:class:`Trainer`, :func:`train`): AdamW, EMA, schedule,
  validation, checkpoints, resume, data parallelism.
"""

from .prepare import prepare_data
from .suggest import suggest_settings
from .progress import Progress
from .result import TrainResult
from .trainer import STATE_FILE, Trainer, train

__all__ = ["STATE_FILE", "Progress", "TrainResult", "Trainer", "prepare_data", "suggest_settings", "train"]



