"""Read a published ``.pth`` checkpoint with torch's safe unpickler only.

``torch.load(weights_only=True)`` rebuilds tensors, containers and numbers and refuses every other
Python object, so a checkpoint cannot run code while it is read. Published training checkpoints
(facebookresearch/dino and the methods built on it) also pickle the ``argparse.Namespace`` of their
command line; that class, and nothing else, is added to the allow-list (``ALLOWED_GLOBALS``). A file
that needs anything more is refused with one line naming the file and the objects it asks for.
"""

from __future__ import annotations

import argparse
import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch

#: Python classes a checkpoint may contain besides what ``weights_only=True`` accepts by itself.
ALLOWED_GLOBALS: tuple[type, ...] = (argparse.Namespace,)


class UnsafeCheckpointError(ValueError):
    """A checkpoint that needs objects outside the allow-list (or cannot be read at all)."""


def _unsafe_globals(path: Path) -> list[str]:
    """The globals the checkpoint's pickle asks for that torch's safe unpickler does not allow."""
    try:
        return list(torch.serialization.get_unsafe_globals_in_checkpoint(path))
    except (RuntimeError, ValueError, OSError, zipfile.BadZipFile, pickle.UnpicklingError):
        return []


def safe_load(path: Path | str) -> Any:
    """The object stored in ``path`` (on the CPU), read without running any pickled code.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        UnsafeCheckpointError: the file needs globals outside ``ALLOWED_GLOBALS`` or is unreadable.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: checkpoint not found")
    try:
        with torch.serialization.safe_globals(list(ALLOWED_GLOBALS)):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        allowed = {f"{cls.__module__}.{cls.__qualname__}" for cls in ALLOWED_GLOBALS}
        wanted = [name for name in _unsafe_globals(path) if name not in allowed]
        what = ", ".join(wanted) if wanted else "objects the safe unpickler refuses"
        raise UnsafeCheckpointError(f"{path}: refused: the checkpoint needs {what}, outside the allow-list "
                                    "(argparse.Namespace, tensors, containers, numbers); it is never "
                                    "fully unpickled") from None
    except Exception as error:  # noqa: BLE001 - any unreadable file gets one line
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise UnsafeCheckpointError(f"{path}: cannot read the checkpoint ({first})") from None
