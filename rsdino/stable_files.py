"""Byte-reproducible weight files: the same tensors and metadata always give the same bytes.

Two identical runs must give identical files, or DVC sees a new version of every model. Two writers
of the libraries are not byte-stable on their own:

- safetensors stores its ``__metadata__`` from a hash map, so the order of its keys (and so the
  file's bytes) changes from process to process; ``save_safetensors`` rewrites the header with the
  metadata keys sorted (the tensor entries and their offsets are untouched);
- ``torch.save`` to a path names every zip member after the file (``<stem>/data.pkl``), and an
  atomic write goes through a temporary file with a random name; ``dump_torch`` writes through a
  file object, whose members are always under ``archive/``;
- pickle's memo writes a second occurrence of the *same object* as a back-reference, so equal
  states pickle differently when their strings are shared differently (an optimizer state read
  back from a checkpoint holds its own copies of the key ``"step"``, a fresh one shares the
  interned literal); ``dump_torch`` pickles without the memo, so the bytes depend on the values only.

Both write atomically (``rsdino.io.atomic_path``).
"""

from __future__ import annotations

import json
import os
import pickle
import struct
import types
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save as safetensors_bytes

from rsdino.io import atomic_path


def sorted_safetensors_header(blob: bytes) -> bytes:
    """``blob`` (a safetensors file) with its ``__metadata__`` keys in sorted order.

    Layout: an 8-byte little-endian header length ``n``, ``n`` bytes of JSON (padded with spaces to
    a multiple of 8), then the tensor data that the header's ``data_offsets`` point into.
    """
    (length,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8:8 + length])
    if "__metadata__" in header:
        header["__metadata__"] = dict(sorted(header["__metadata__"].items()))
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + blob[8 + length:]


def save_safetensors(tensors: dict[str, torch.Tensor], path: str | os.PathLike[str],
                     metadata: dict[str, str] | None = None) -> Path:
    """Write ``tensors`` (contiguous, on the CPU) and ``metadata`` to ``path``: atomic, byte-stable."""
    blob = sorted_safetensors_header(safetensors_bytes(tensors, metadata=metadata))
    with atomic_path(path, suffix=".safetensors") as tmp, open(tmp, "wb") as handle:
        handle.write(blob)
    return Path(path)


class _ValuePickler(pickle.Pickler):
    """A pickler without the memo (``fast`` mode): shared objects are written once per occurrence."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fast = True


#: What ``torch.save`` needs of a pickle module (it subclasses ``Pickler`` and reads ``__name__``).
_VALUE_PICKLE = types.SimpleNamespace(__name__="pickle", Pickler=_ValuePickler, dump=pickle.dump)


def dump_torch(state: Any, handle: Any) -> None:
    """``torch.save(state)`` into the open binary file ``handle``, byte-stable (module docstring).

    ``state`` must not contain itself (fast-mode pickling refuses cycles); tensors sharing a storage
    still share it (torch writes storages by their own key, not through the memo).
    """
    torch.save(state, handle, pickle_module=_VALUE_PICKLE)


def save_torch(state: Any, path: str | os.PathLike[str]) -> Path:
    """``dump_torch(state)`` to ``path``: atomic, and the same bytes for the same state."""
    with atomic_path(path, suffix=".pt") as tmp, open(tmp, "wb") as handle:
        dump_torch(state, handle)
    return Path(path)
