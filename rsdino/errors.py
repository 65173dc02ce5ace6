"""The errors a user can cause, and the one line each of them is reported as.

Every failure that comes from the user's side (settings, data files, archives, downloads,
checkpoints, the disk, the tracking store) is a ``UserError``. It carries *what* (the file or the
setting), the *problem*, and a *hint* (what to do about it); a subclass gives a default hint for its
kind. Library modules raise these types (their own error classes derive from ``UserError``), and
``rsdino.cli.main`` is the one place that reports them::

    rsdino <step>: error: <what>: <problem> (<what to do>)

on standard error, with exit status 2 and nothing else on the terminal; the traceback goes to the
step's debug log (``debug_log_path``) and to the terminal too with ``rsdino --debug``.
Warnings (``logging`` and ``warnings``) raised during a step are held (``HeldWarnings``): printed
after a step that succeeds, written to the debug log beside the traceback of one that fails.
``as_user_error`` maps the few exceptions raised by other packages that are the user's to fix: a
read-only, full or forbidden disk (``OSError`` EROFS, ENOSPC, EDQUOT, EACCES, EPERM) and a corrupt
MLflow database.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import re
from collections.abc import Iterator
from pathlib import Path

#: Folder (under the working directory) of the per-step debug logs holding the tracebacks.
DEBUG_LOG_DIR = Path("logs") / "debug"
#: errno -> what to do, for a disk the user has to fix.
DISK_HINTS = {
    errno.EROFS: "the folder is on a read-only file system: choose a writable output folder",
    errno.ENOSPC: "the disk is full: free space or choose another output folder",
    errno.EDQUOT: "the disk quota is exhausted: free space or choose another output folder",
    errno.EACCES: "no permission to write there: fix the folder's permissions or choose another",
    errno.EPERM: "no permission to write there: fix the folder's permissions or choose another",
}


class UserError(Exception):
    """A problem with the user's input, reported as one line without a traceback.

    ``UserError(message)`` (a message that already names the file) or
    ``UserError(what, problem, hint)``. ``hint`` defaults to the class attribute of the same name.
    """

    hint = ""

    def __init__(self, what: object, problem: str | None = None, hint: str | None = None) -> None:
        self.what = str(what)
        self.problem = problem
        if hint is not None:
            self.hint = hint
        super().__init__(self.message)

    @property
    def message(self) -> str:
        """``<what>: <problem>`` (or the message given alone)."""
        return self.what if self.problem is None else f"{self.what}: {self.problem}"

    def __str__(self) -> str:  # OSError subclasses would otherwise format their own way
        return self.message


class DiskError(UserError):
    """An output could not be written: read-only, full or forbidden file system."""


class TrackingStoreError(UserError):
    """The MLflow tracking store (``mlflow.db``) cannot be opened or written."""

    hint = "move the damaged database aside (or set mlflow.tracking_uri to another file) and run again"


class CheckpointError(UserError, ValueError):
    """A checkpoint or an exported weights file is truncated, corrupt or refused by the safe loader."""

    hint = "delete it and run the pretraining again"


def user_line(step: str, error: UserError) -> str:
    """The one line ``rsdino <step>: error: <what>: <problem> (<hint>)`` (newlines folded to ``; ``)."""
    text = _one_line(getattr(error, "message", None) or str(error))
    hint = getattr(error, "hint", "")
    if hint and not text.endswith(f"({hint})"):
        text += f" ({hint})"
    return f"rsdino {step}: error: {text}"


def _one_line(text: str) -> str:
    return re.sub(r"\s*\n\s*", "; ", text.strip())


def as_user_error(error: BaseException) -> UserError | None:
    """The ``UserError`` for an exception the user has to fix; ``None`` for anything else (a bug)."""
    if isinstance(error, UserError):
        return error
    if isinstance(error, (FileNotFoundError, FileExistsError)):
        return UserError(str(error))
    if isinstance(error, OSError) and error.errno in DISK_HINTS:
        where = error.filename or "output"
        return DiskError(where, os.strerror(error.errno), DISK_HINTS[error.errno])
    return tracking_store_error(error)


def tracking_store_error(error: BaseException, uri: str | None = None) -> TrackingStoreError | None:
    """A corrupt or unreadable sqlite tracking store (``uri``), from MLflow's or SQLAlchemy's exception."""
    import sqlite3

    chain, seen = [], error
    while seen is not None and len(chain) < 10:
        chain.append(seen)
        seen = seen.__cause__ or seen.__context__
    text = " ".join(str(item) for item in chain)
    names = {type(item).__name__ for item in chain}
    sqlite_failure = any(isinstance(item, sqlite3.DatabaseError) for item in chain) or \
        bool(names & {"DatabaseError", "OperationalError"}) or "file is not a database" in text
    if not sqlite_failure:
        return None
    uri = uri or os.environ.get("MLFLOW_TRACKING_URI") or _guess_store(text)
    if uri.startswith("sqlite:///"):
        uri = uri[len("sqlite:///"):]
    problem = "not a readable MLflow database" if "not a database" in text or "malformed" in text \
        else f"cannot use the tracking database ({_one_line(str(chain[-1]))[:200]})"
    return TrackingStoreError(uri, problem)


def _guess_store(text: str) -> str:
    match = re.search(r"sqlite:///\S+", text)
    return match.group(0).rstrip("'\").,") if match else "MLflow tracking store"


def debug_log_path(step: str) -> Path:
    """Where the traceback of a failed ``rsdino <step>`` is written: ``logs/debug/<step>.log``."""
    return DEBUG_LOG_DIR / f"{step}.log"


class HeldWarnings(logging.Handler):
    """Holds the WARNING-and-above records of one step (``warnings.warn`` included) until it ends."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def lines(self) -> list[str]:
        """The held messages, one string each (a multi-line warning keeps its lines)."""
        return [record.getMessage().rstrip() for record in self.records]


@contextlib.contextmanager
def held_warnings() -> Iterator[HeldWarnings]:
    """Collect the warnings of the body on the root logger instead of printing them as they come."""
    handler = HeldWarnings()
    root = logging.getLogger()
    root.addHandler(handler)
    logging.captureWarnings(True)
    try:
        yield handler
    finally:
        logging.captureWarnings(False)
        root.removeHandler(handler)


def write_debug_log(step: str, argv: list[str], traceback_text: str) -> Path | None:
    """Append the traceback to the step's debug log; the path, or None when it cannot be written."""
    import datetime

    path = debug_log_path(step)
    stamp = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a", encoding="utf-8") as handle:
            handle.write(f"--- {stamp} rsdino {' '.join(argv)}\n{traceback_text}\n")
    except OSError:
        return None
    return path
