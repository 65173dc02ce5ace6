"""The chipped training store: a prepared split decoded once into numpy memory maps.

A pretraining step reads every image of its batch; decoding 13-band 16-bit GeoTIFFs file by file
with rasterio costs far more than the views themselves. ``build_chip_store`` (called by ``rsdino
prepare`` for datasets with ``store: chips``) reads the training split once and writes, for every
tensor of the items (``image``, ``series``, ``s1``, ...), one ``.npy`` file ``(N, *shape)`` that
workers open as a read-only memory map: an item is then one contiguous slice, no decoding, no file
opening, and the page cache shares it between workers.

Storage type, per key, the narrowest that holds every value exactly: ``uint8`` (8-bit photos),
``uint16`` / ``int16`` (Sentinel-2 DN, integer reflectance), ``float16`` when every value
round-trips through it, else ``float32`` (dB backscatter). The views consume native units and
standardise per band at their end (``rsdino.views.builder``), so no scaling is baked in: the store
gives back, bit for bit, the tensors the per-file path gives (same dtype, same values), and a run
trains the same whichever path fed it. Other item values (``label``, ``path``, ``gsd``) are kept in
``index.json``.

Why numpy memory maps: fixed-size patches, random access by index (the sampler's seeded
permutation), no new dependency; WebDataset/LitData shards are made for sequential streaming from
object stores and would change the sampling, zarr adds chunk decoding the memmap does not need.

Layout: ``<prepared>/chips/index.json`` + ``<prepared>/chips/<key>.npy``. The per-file path stays
for evaluation and small data; ``chipped(dataset, prepared_dir)`` swaps it for the store when there
is one of the same length.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from rsdino.io import atomic_directory, write_json

log = logging.getLogger(__name__)

CHIPS_DIR = "chips"
INDEX_FILE = "index.json"
#: Candidate storage types, narrowest first.
_CANDIDATES = (np.uint8, np.int8, np.uint16, np.int16, np.float16, np.float32)
_CHUNK = 1024  # items per copy in pass 2
_TORCH_DTYPES = {str(d).removeprefix("torch."): d for d in (torch.uint8, torch.int8, torch.int16, torch.int32,
                                                            torch.int64, torch.float16, torch.bfloat16,
                                                            torch.float32, torch.float64, torch.bool)}


def _exact_types(values: np.ndarray, candidates: list[np.dtype]) -> list[np.dtype]:
    """The ``candidates`` that hold every value of ``values`` exactly."""
    kept = []
    for dtype in candidates:
        if np.issubdtype(dtype, np.integer) and values.size:
            info = np.iinfo(dtype)
            if values.min() < info.min or values.max() > info.max:
                continue
        with np.errstate(over="ignore", invalid="ignore"):
            if np.array_equal(values.astype(dtype).astype(values.dtype), values, equal_nan=True):
                kept.append(dtype)
    return kept


def build_chip_store(dataset: Dataset, out_dir: Path, *, name: str = "", progress: bool = True) -> dict:
    """Decode every item of ``dataset`` once into ``out_dir`` (written atomically); return a summary.

    Every tensor key must have the same shape in every item (fixed-size patches).

    Returns:
        ``{"n_items", "bytes", "dtypes": {key: storage dtype}}``.

    Raises:
        ValueError: naming the dataset and item whose tensor shape differs from the first item's.
    """
    out_dir = Path(out_dir)
    n = len(dataset)  # type: ignore[arg-type]
    if n == 0:
        raise ValueError(f"dataset {name}: the training split is empty, no chip store to build")
    first = dataset[0]
    tensors = {k: v for k, v in first.items() if isinstance(v, torch.Tensor)}
    others = [k for k in first if k not in tensors]
    with atomic_directory(out_dir) as tmp:
        # Pass 1: decode once into staging copies of the items' own type, noting which narrower
        # types hold every value; pass 2: copy, in chunks, into the narrowest of them.
        staging = {k: np.lib.format.open_memmap(tmp / f".{k}.staging.npy", mode="w+",
                                                dtype=v.numpy().dtype, shape=(n, *v.shape))
                   for k, v in tensors.items()}
        exact = {k: [np.dtype(d) for d in _CANDIDATES if np.dtype(d).itemsize < array.dtype.itemsize]
                 for k, array in staging.items()}
        extras: dict[str, list[Any]] = {k: [] for k in others}
        for i in tqdm(range(n), desc=f"chipping {name}", unit="item", disable=not progress):
            item = first if i == 0 else dataset[i]
            for key, array in staging.items():
                value = item[key]
                if tuple(value.shape) != array.shape[1:]:
                    raise ValueError(f"dataset {name}: item {i} has {key} of shape {tuple(value.shape)}, "
                                     f"item 0 {array.shape[1:]}; a chip store needs fixed-size patches "
                                     "(set store: files for this dataset)")
                array[i] = value.numpy()
                exact[key] = _exact_types(array[i], exact[key])
            for key in others:
                extras[key].append(_plain(item[key]))
        keys, total = {}, 0
        for key, array in staging.items():
            dtype = exact[key][0] if exact[key] else array.dtype
            final = np.lib.format.open_memmap(tmp / f"{key}.npy", mode="w+", dtype=dtype, shape=array.shape)
            for start in range(0, n, _CHUNK):
                final[start: start + _CHUNK] = array[start: start + _CHUNK]
            final.flush()
            total += final.nbytes
            keys[key] = {"storage": dtype.name, "dtype": str(tensors[key].dtype).removeprefix("torch."),
                         "shape": list(array.shape[1:])}
            del final, array
            (tmp / f".{key}.staging.npy").unlink()
        write_json(tmp / INDEX_FILE, {"n_items": n, "tensors": keys, "extras": extras,
                                      "items": items_signature(dataset)})
    summary = {"n_items": n, "bytes": total, "dtypes": {k: v["storage"] for k, v in keys.items()}}
    log.info("chip store of %s in %s: %s", name, out_dir, summary)
    return summary


def _plain(value: Any) -> Any:
    """A JSON-able copy of an item value (numpy scalars and arrays as Python numbers and lists)."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value


class ChipDataset(Dataset):
    """The items of a chip store, equal to those of the per-file ``files`` dataset it was built from.

    Attributes the store does not hold (``bands``, ``stats``, ``metadata``, ``plot``) come from
    ``files``. The memory maps are opened lazily in each process (DataLoader workers open their own).

    Args:
        store_dir: The ``chips`` folder.
        files: The per-file dataset of the same split (for its metadata and statistics).
    """

    def __init__(self, store_dir: Path, files: Dataset | None = None) -> None:
        self.store_dir = Path(store_dir)
        index_path = self.store_dir / INDEX_FILE
        if not index_path.is_file():
            raise FileNotFoundError(f"{index_path} is missing; run `rsdino prepare` again with store: chips")
        self.index = json.loads(index_path.read_text(encoding="utf-8"))
        self.files = files
        self._arrays: dict[str, np.ndarray] | None = None

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_arrays": None}  # workers map the files themselves

    def __getattr__(self, name: str) -> Any:
        files = self.__dict__.get("files")
        if files is None or name.startswith("__"):
            raise AttributeError(name)
        return getattr(files, name)

    def __len__(self) -> int:
        return int(self.index["n_items"])

    def arrays(self) -> dict[str, np.ndarray]:
        """The read-only memory maps, by key."""
        if self._arrays is None:
            self._arrays = {k: np.load(self.store_dir / f"{k}.npy", mmap_mode="r")
                            for k in self.index["tensors"]}
        return self._arrays

    def __getitem__(self, i: int) -> dict[str, Any]:
        item: dict[str, Any] = {k: values[i] for k, values in self.index["extras"].items()}
        for key, array in self.arrays().items():
            dtype = _TORCH_DTYPES[self.index["tensors"][key]["dtype"]]
            item[key] = torch.from_numpy(np.array(array[i])).to(dtype)
        return item


def items_signature(dataset: Any) -> str | None:
    """SHA-256 of the item list (``samples``: file names and labels) the dataset reads, or None.

    Wrappers holding the real dataset in ``.dataset`` are followed. The store fits a split only when
    its items are the split's: an edited split file then reads the files (and fails on a missing one).
    """
    current = dataset
    while current is not None:
        samples = getattr(current, "samples", None)
        if isinstance(samples, (list, tuple)):
            listed = json.dumps([list(s) if isinstance(s, tuple) else s for s in samples], default=str)
            return hashlib.sha256(listed.encode()).hexdigest()
        inner = getattr(current, "dataset", None)
        current = inner if inner is not current else None
    return None


def chipped(dataset: Dataset, prepared_dir: Path, needs: tuple[str, ...] = ("image",)) -> Dataset:
    """``dataset`` read from the chip store of ``prepared_dir`` when it has one that fits.

    It fits when it was built from the same item list (``items_signature``), has as many items and
    holds the tensors ``needs`` (a ``series`` drawn on
    request is not in a store). Else ``dataset`` itself (the per-file path), with a log line when
    a store exists but does not fit.
    """
    store = Path(prepared_dir) / CHIPS_DIR
    if not (store / INDEX_FILE).is_file():
        return dataset
    chips = ChipDataset(store, dataset)
    missing = [key for key in needs if key not in chips.index["tensors"]]
    listed = chips.index.get("items")
    if listed is not None and listed != items_signature(dataset):
        log.warning("%s was built from another item list than the split's (re-run `rsdino prepare`): "
                    "reading the files instead", store)
        return dataset
    if len(chips) != len(dataset) or missing:  # type: ignore[arg-type]
        log.warning("%s (%d items, tensors %s) does not fit the split (%d items, needs %s): reading the "
                    "files instead", store, len(chips), sorted(chips.index["tensors"]),
                    len(dataset), list(needs))  # type: ignore[arg-type]
        return dataset
    log.info("pretraining data from the chip store %s", store)
    return chips
