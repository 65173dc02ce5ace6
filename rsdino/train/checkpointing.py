"""A model folder survives kill -9: one writer at a time, no debris, two checkpoints to resume from.

- ``output_lock(folder)``: an exclusive ``fcntl.flock`` on ``folder/.rsdino.lock``, held for the
  run; a second process writing the same folder gets ``OutputFolderBusy`` (a one-line user error)
  instead of racing the first. Re-entrant inside one process (the CLI and the loop both take it).
  The kernel drops the lock when its holder dies, so a killed run never blocks the next one.
- ``remove_stale_temporaries(folder)``: the temporary files of atomic writes (``.<name>.*.tmp``)
  left by a killed run of the same folder; called under the lock, so none belongs to a live writer.
- ``save_rotating(path, state)``: writes ``last.pt`` atomically and keeps the one before it as
  ``previous.pt``; ``load_latest(path)`` reads ``last.pt`` and falls back to ``previous.pt`` with a
  warning when it is missing or unreadable (truncated by a full disk, say), so a damaged checkpoint
  costs at most one checkpoint interval, never a crash on every re-run.

Test hook: with ``RSDINO_TEST_CHECKPOINT_PAUSE_S`` set, ``save_rotating`` writes half of the
checkpoint, sleeps that many seconds, then the rest, so a test's kill lands inside a write.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import io
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from rsdino.errors import UserError
from rsdino.stable_files import dump_torch
from rsdino.train.checkpoint import load_checkpoint

log = logging.getLogger(__name__)

LOCK_FILE = ".rsdino.lock"
PREVIOUS = "previous.pt"
PAUSE_ENV = "RSDINO_TEST_CHECKPOINT_PAUSE_S"
_HELD: dict[Path, int] = {}  # folder -> pid of the process holding its lock (a fork inherits the dict)


class OutputFolderBusy(UserError):
    """Another process holds the lock of the output folder."""


@contextlib.contextmanager
def output_lock(folder: str | os.PathLike[str], step: str = "pretrain") -> Iterator[Path]:
    """Hold the exclusive lock of ``folder`` (created if missing) while the block runs.

    Raises:
        OutputFolderBusy: another process holds it (the message names the folder and its pid).
    """
    folder = Path(folder).resolve()
    if _HELD.get(folder) == os.getpid():  # this process holds it already (not a fork of the holder)
        yield folder
        return
    folder.mkdir(parents=True, exist_ok=True)
    handle = open(folder / LOCK_FILE, "a+", encoding="utf-8")  # noqa: SIM115 - held beyond this block
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        unsupported = None
    except BlockingIOError:
        handle.seek(0)
        owner = handle.read().strip() or "unknown"
        handle.close()
        raise OutputFolderBusy(f"{folder}: another `rsdino {step}` (pid {owner}) is writing this folder "
                               f"(wait for it to finish, or choose another --out)") from None
    except OSError as error:  # a file system without flock (some Lustre mounts): run unlocked
        unsupported = error
    if unsupported is not None:
        log.warning("%s: cannot lock the folder (%s); running without the one-writer check", folder,
                    unsupported)
        handle.close()
        yield folder
        return
    handle.truncate(0)
    handle.write(str(os.getpid()))
    handle.flush()
    _HELD[folder] = os.getpid()
    try:
        yield folder
    finally:
        del _HELD[folder]
        handle.truncate(0)  # an empty file once released: the folder's bytes do not depend on a pid
        handle.close()  # closing releases the lock


def holds_output_folder(function: Callable[..., Any]) -> Callable[..., Any]:
    """Run ``function(..., out_dir=...)`` holding ``output_lock(out_dir)``, after removing stale temporaries.

    Only the main process (``RANK`` 0 or unset) writes the folder, so only it takes the lock.
    """

    @functools.wraps(function)
    def wrapper(*args: Any, out_dir: str | os.PathLike[str], **kwargs: Any) -> Any:
        if int(os.environ.get("RANK", "0")) != 0:
            return function(*args, out_dir=out_dir, **kwargs)
        with output_lock(out_dir):
            remove_stale_temporaries(out_dir)
            return function(*args, out_dir=out_dir, **kwargs)

    return wrapper


def remove_stale_temporaries(folder: str | os.PathLike[str]) -> list[Path]:
    """Delete the temporary files and folders of interrupted atomic writes under ``folder``.

    They are named ``.<destination>.<random>[suffix].tmp`` (``rsdino.io.atomic_path`` and
    ``atomic_directory``). Call this only while holding ``output_lock(folder)``. Returns what was removed.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    stale = sorted(p for p in folder.rglob(".*.tmp") if p.name != LOCK_FILE)
    for path in stale:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
    if stale:
        log.warning("%s: removed %d temporary file(s) of an interrupted run: %s", folder, len(stale),
                    ", ".join(p.name for p in stale))
    return stale


def _write(handle: Any, state: dict[str, Any]) -> None:
    pause = float(os.environ.get(PAUSE_ENV, "0") or 0)
    if pause <= 0:
        dump_torch(state, handle)
        return
    buffer = io.BytesIO()
    dump_torch(state, buffer)
    blob = buffer.getvalue()
    handle.write(blob[: len(blob) // 2])
    handle.flush()
    time.sleep(pause)
    handle.write(blob[len(blob) // 2:])


def save_rotating(path: str | os.PathLike[str], state: dict[str, Any]) -> Path:
    """Write ``state`` to ``path`` (``last.pt``) atomically; the file it replaces becomes ``previous.pt``.

    Order: the new checkpoint is written and fsynced under a temporary name, ``last.pt`` is renamed
    to ``previous.pt``, the temporary file to ``last.pt``. A kill at any point leaves at least one
    complete checkpoint under one of the two names (and perhaps a temporary file that the next
    start-up removes). The bytes depend only on ``state`` (``rsdino.stable_files.dump_torch``).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".pt.tmp", dir=path.parent)
    tmp = Path(name)
    try:
        with os.fdopen(fd, "wb") as handle:
            _write(handle, state)
            handle.flush()
            os.fsync(handle.fileno())
        mask = os.umask(0)
        os.umask(mask)
        os.chmod(tmp, 0o666 & ~mask)
        if path.exists():
            os.replace(path, path.with_name(PREVIOUS))
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def load_latest(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The checkpoint at ``path`` (``last.pt``), else ``previous.pt`` beside it, else None (no file).

    A file that cannot be read (truncated, not a checkpoint) is skipped with a warning naming it when
    the other one reads; when neither reads, the first one's error is raised (one line: a run never
    silently starts over beside a damaged checkpoint). A checkpoint the safe unpickler refuses (it
    would run code) is always an error.
    """
    path = Path(path)
    errors: list[ValueError] = []
    for candidate in (path, path.with_name(PREVIOUS)):
        if not candidate.is_file():
            continue
        try:
            checkpoint = load_checkpoint(candidate)
        except ValueError as error:
            if "Unsupported global" in str(error):  # it would run code: never skipped
                raise
            errors.append(error)
            continue
        for error in errors:
            log.warning("%s; falling back to the previous checkpoint", error)
        return checkpoint
    if errors:
        error = errors[0]
        if hasattr(error, "hint"):
            error.hint = "delete it to train from scratch, or restore it"
        raise error
    return None
