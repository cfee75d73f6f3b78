"""Writing files so that nothing a user had is lost: one temporary file, then one rename."""

from __future__ import annotations

import contextlib
import os
import tempfile
from typing import Callable, Union

PathLike = Union[str, os.PathLike]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def check_writable(path: PathLike, overwrite: bool) -> str:
    """Fail now, before any work, if ``path`` cannot be written.

    Raises ``FileExistsError`` if ``path`` exists and ``overwrite`` is false, and
    ``FileNotFoundError``/``PermissionError`` naming the directory if it is missing or not writable.
    Returns ``path`` as a string.
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        why = "is a file, not a directory" if os.path.exists(directory) else "does not exist"
        raise FileNotFoundError(f"cannot write {path!r}: directory {directory!r} {why}")
    if not os.access(directory, os.W_OK):
        raise PermissionError(f"cannot write {path!r}: directory {directory!r} is not writable")
    if os.path.exists(path) and not overwrite:
        raise FileExistsError(f"{path!r} already exists; refusing to overwrite it (pass overwrite=True)")
    return path


@contextlib.contextmanager
def atomic_output(path: PathLike, overwrite: bool, keep_partial: Callable[[BaseException], bool] = lambda exc: False):
    """Yield a temporary path next to ``path``; when the block ends, move it to ``path`` in one rename.

    If the block raises, ``path`` is left as it was, unless ``keep_partial(exc)`` says the partial
    output is worth keeping (e.g. an MD trajectory up to the step that failed). No temporary file is
    left behind either way. The new file gets the permissions of an ordinary new file (``0o666``
    less the umask). Errors as :func:`check_writable`, before the block runs.
    """
    path = check_writable(path, overwrite)
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=os.path.basename(path), dir=directory)
    os.close(fd)

    def commit() -> None:
        with open(tmp, "rb+") as fh:  # on disk before the rename: a power cut cannot leave an empty file
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)

    try:
        try:
            yield tmp
        except BaseException as exc:
            if keep_partial(exc) and os.path.getsize(tmp) > 0:
                commit()
            raise
        commit()
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def atomic_write(path: PathLike, write: Callable[[str], None], overwrite: bool) -> str:
    """Call ``write(tmp_path)`` then move the result to ``path`` in one rename (:func:`atomic_output`):
    an interruption leaves ``path`` as it was. Returns the path."""
    with atomic_output(path, overwrite) as tmp:
        write(tmp)
    return os.fspath(path)
