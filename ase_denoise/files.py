"""Writing files so that nothing a user had is lost: one temporary file, then one rename."""

from __future__ import annotations

import contextlib
import glob
import os
import signal
import tempfile
import threading
from typing import Callable, Iterable, List, Union

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
    if (os.path.exists(path) or os.path.islink(path)) and not overwrite:  # a dangling symlink too
        raise FileExistsError(f"{path!r} already exists; refusing to overwrite it (pass overwrite=True)")
    return path


@contextlib.contextmanager
def atomic_output(path: PathLike, overwrite: bool, keep_partial: Callable[[BaseException], bool] = lambda exc: False):
    """Yield a temporary path next to ``path``; when the block ends, move it to ``path`` in one rename.

    If the block raises, ``path`` is left as it was, unless ``keep_partial(exc)`` says the partial
    output is worth keeping (e.g. an MD trajectory up to the step that failed). No temporary file is
    left behind either way. A new file gets the permissions of an ordinary new file (``0o666``
    less the umask); a file replaced keeps its own. Errors as :func:`check_writable`, before the block runs.
    """
    path = check_writable(path, overwrite)
    directory = os.path.dirname(os.path.abspath(path))
    # a file replaced keeps its permissions (a private 0600 model stays private); a new one gets 0666 less the umask
    mode = os.stat(path).st_mode & 0o7777 if os.path.isfile(path) else 0o666 & ~_umask()
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=os.path.basename(path), dir=directory)
    os.close(fd)

    def commit() -> None:
        with open(tmp, "rb+") as fh:  # on disk before the rename: a power cut cannot leave an empty file
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
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


def remove_orphans(directory: PathLike, names: Iterable[str]) -> List[str]:
    """Delete the temporary files that :func:`atomic_output` leaves when the process is killed outright
    (SIGKILL, a power cut: no ``finally`` runs) for the outputs ``names`` in ``directory``; the outputs
    themselves are never touched. Returns the paths removed."""
    removed = []
    for name in names:
        for tmp in glob.glob(os.path.join(glob.escape(os.fspath(directory)), ".tmp-*" + glob.escape(name))):
            if os.path.isfile(tmp) and not os.path.islink(tmp):
                os.unlink(tmp)
                removed.append(tmp)
    return removed


@contextlib.contextmanager
def deferred_interrupts():
    """Hold Ctrl-C (SIGINT) until the block ends, then raise ``KeyboardInterrupt``: an update and its
    bookkeeping (an optimiser step and the step counters, a checkpoint's files) happen all or not at
    all. The previous handler is put back either way. Off the main thread (where Python delivers no
    signals) the block simply runs."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: received.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if received:
        if callable(previous):
            previous(signal.SIGINT, None)
        raise KeyboardInterrupt
