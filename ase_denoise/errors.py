"""The errors ase_denoise raises on purpose, under one base: ``except AseDenoiseError`` catches them all.

Each class also derives from the built-in error it stands for (``ValueError`` for bad input,
``RuntimeError``, ``OSError``), so a handler written for those keeps working. Every message names
the problem and, where there is one, the way out.
"""

from __future__ import annotations


class AseDenoiseError(Exception):
    """Base of every error ase_denoise raises on purpose."""


class DataError(AseDenoiseError, ValueError):
    """Input data the library cannot use (frames, structures, files of frames); the message names the problem."""


class CheckpointError(AseDenoiseError, ValueError):
    """A model file that cannot be loaded: corrupt, foreign, pickled, from a newer version, or mismatched."""


class UntrustedPickleError(CheckpointError):
    """A pickled model file was passed without ``trust_pickle=True``; nothing was unpickled."""


class MaceAdapterError(AseDenoiseError, ValueError):
    """The object is not a MACE model the adapter can read, or uses a feature it cannot map."""


class ZooError(AseDenoiseError, ValueError):
    """A zoo problem: unknown model name, missing or malformed registry, missing model file."""


class ChecksumError(ZooError):
    """A zoo file whose size or sha256 differs from the registry: it is refused, not loaded."""


class TrainingError(AseDenoiseError, RuntimeError):
    """Training cannot go on (e.g. a non-finite loss, or a resume with other settings); the last good
    checkpoint is kept."""


class TrajectoryWriteError(AseDenoiseError, OSError):
    """Writing an MD trajectory failed (e.g. the disk is full); an existing file was kept."""


class NonFiniteForcesError(AseDenoiseError, ArithmeticError):
    """A model returned NaN or infinite forces (or energies): raised instead of passing them to an
    optimizer, a dynamics or an engine."""
