"""What a cached feature set was built from: its key, its record, and the check on read.

A feature cache entry is valid only for the exact inputs that produced it, so its key is a digest of
content, never of names:

- the weights: SHA-256 of ``model.safetensors``;
- the data: SHA-256 of every split, statistics and metadata file of the prepared folder (a split
  re-drawn with another seed, or a few train/test pairs swapped, gives another key), the item list
  of the dataset when it holds one in memory (``samples``), its length and band selection; a dataset
  with none of these (an in-memory dataset) is identified by the digest of every item it serves;
- the transform: resolution, per-band mean and standard deviation (the normalisation), band names;
- the feature variants and the branch.

``build_record`` returns that description as a dict (the record); ``cache_key`` is the first 16 hex
digits of the SHA-256 of its canonical JSON. Every file of the entry carries the record, and
``rsdino.evaluate.features.extract_feature_sets`` compares it on read: a mismatch is recomputed,
never reused.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rsdino.io import file_digest

#: The sidecar of a cache entry: its record, as indented JSON (for people; the check reads ``features.pt``).
RECORD_FILE = "built_from.json"


def weights_digest(checkpoint: Path | str) -> str:
    """SHA-256 of a model folder's ``model.safetensors`` (or of the weights file given)."""
    checkpoint = Path(checkpoint)
    return file_digest(checkpoint / "model.safetensors" if checkpoint.is_dir() else checkpoint)


def _prepared_files(dataset: Any) -> dict[str, str]:
    """``{relative path: sha256}`` of the prepared folder's own files (and of a named split's folder)."""
    folder = getattr(dataset, "prepared_dir", None)
    if folder is None or not Path(folder).is_dir():
        return {}
    folder = Path(folder)
    paths = [p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")]
    split = str(getattr(dataset, "split", ""))
    if "/" in split:  # a named split: splits/<name>/{train,test}.txt and its stats.json
        from rsdino.data.splits import NAMED_SPLITS_DIR

        named = folder / NAMED_SPLITS_DIR / split.split("/")[0]
        if named.is_dir():
            paths += [p for p in named.iterdir() if p.is_file() and not p.name.startswith(".")]
    return {p.relative_to(folder).as_posix(): file_digest(p) for p in sorted(paths)}


def _items_digest(dataset: Any) -> str:
    """SHA-256 over every item's tensors and label (for datasets without files to identify them)."""
    import torch

    digest = hashlib.sha256()
    for index in range(len(dataset)):
        item = dataset[index]
        for key in sorted(item) if isinstance(item, dict) else []:
            value = item[key]
            digest.update(key.encode())
            if isinstance(value, torch.Tensor):
                digest.update(str((tuple(value.shape), str(value.dtype))).encode())
                digest.update(value.detach().cpu().contiguous().numpy().tobytes())
            else:
                digest.update(repr(value).encode())
    return digest.hexdigest()


def _plain(value: Any) -> Any:
    """``value`` as JSON (a string, an int or a list of them), or None when it is not such a value."""
    if isinstance(value, str | int):
        return value
    if isinstance(value, Sequence) and not isinstance(value, bytes):
        try:
            return [v if isinstance(v, str) else int(v) for v in value]
        except (TypeError, ValueError):
            return None
    return None


def dataset_identity(dataset: Any) -> dict[str, Any]:
    """What identifies the items of ``dataset``: its files' digests, item list, length and band view.

    Wrappers that hold the real dataset in ``.dataset`` (``BandSelected``, ``Subset``) are followed,
    each adding its class name and band ``index`` (or subset ``indices``).
    """
    layers: list[dict[str, Any]] = []
    current = dataset
    while True:
        layer: dict[str, Any] = {"class": type(current).__name__, "length": len(current)}
        for name in ("index", "names", "indices", "split"):
            value = _plain(getattr(current, name, None))
            if value is not None:
                layer[name] = value
        samples = getattr(current, "samples", None)
        if isinstance(samples, Sequence):
            listed = json.dumps([list(s) if isinstance(s, tuple) else s for s in samples], default=str)
            layer["samples"] = hashlib.sha256(listed.encode()).hexdigest()
        files = _prepared_files(current)
        if files:
            layer["files"] = files
        layers.append(layer)
        inner = getattr(current, "dataset", None)
        if inner is None or inner is current:
            break
        current = inner
    if not any("files" in layer or "samples" in layer for layer in layers):
        layers[-1]["items"] = _items_digest(dataset)
    return {"layers": layers}


def build_record(*, checkpoint: Path | str, dataset: Any, dataset_name: str, split: str,
                 resolution: int | None, mean: Sequence[float], std: Sequence[float],
                 variants: Sequence[str], teacher: bool = True) -> dict[str, Any]:
    """The record of one cache entry: every input its features depend on (module docstring)."""
    return {"weights": weights_digest(checkpoint), "dataset": dataset_name, "split": split,
            "data": dataset_identity(dataset), "bands": list(getattr(dataset, "bands", None) or []),
            "transform": {"resolution": resolution, "mean": [float(v) for v in mean],
                          "std": [float(v) for v in std]},
            "variants": sorted(variants), "teacher": teacher}


def canonical(record: dict[str, Any]) -> str:
    """The record as canonical JSON (sorted keys, no spaces): what is hashed and compared."""
    return json.dumps(record, sort_keys=True, separators=(",", ":"))


def cache_key(record: dict[str, Any]) -> str:
    """``sha256(canonical(record))[:16]``: the folder name's digest."""
    return hashlib.sha256(canonical(record).encode()).hexdigest()[:16]
