"""Shared parts of the datasets over a prepared folder: JSON files, split subsampling, RGB plots."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib.figure import Figure
from torch.utils.data import Dataset

from rsdino.errors import UserError


class PreparedDataError(UserError, ValueError):
    """A prepared dataset folder lacks a split or holds an unreadable file."""

    hint = "run `rsdino prepare` for the dataset again"


def read_prepared_json(prepared_dir: Path, name: str) -> Any:
    """Read ``prepared_dir/name``; a missing file is a ``FileNotFoundError`` saying to prepare again.

    Raises:
        PreparedDataError: the file is not valid JSON (naming it).
    """
    path = Path(prepared_dir) / name
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing; run `rsdino prepare` again")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise PreparedDataError(path, f"not a readable JSON file ({error})") from None


def check_prepared_dir(prepared_dir: Path) -> Path:
    """Return ``prepared_dir`` as a Path, raising ``FileNotFoundError`` when it is not a folder."""
    prepared_dir = Path(prepared_dir)
    if not prepared_dir.is_dir():
        raise FileNotFoundError(f"prepared dataset folder {prepared_dir} does not exist; "
                                "run `rsdino prepare` first")
    return prepared_dir


def seeded_subset(items: list, limit: int | None, seed: int) -> list:
    """At most ``limit`` of ``items``, drawn without replacement with ``seed`` (all if ``limit`` is None)."""
    if limit is None or len(items) <= limit:
        return list(items)
    return random.Random(seed).sample(items, limit)


def split_by_group(groups: list[str], test_fraction: float, seed: int) -> tuple[set[str], set[str]]:
    """Shuffle the distinct ``groups`` with ``seed`` and hold out ``test_fraction`` of them (at least one).

    Returns ``(train_groups, test_groups)``; with a single group, everything is training.
    """
    distinct = sorted(set(groups))
    random.Random(seed).shuffle(distinct)
    n_test = round(len(distinct) * test_fraction)
    if len(distinct) > 1:
        n_test = min(max(n_test, 1), len(distinct) - 1)
    else:
        n_test = 0
    return set(distinct[n_test:]), set(distinct[:n_test])


def rgb_figure(image: torch.Tensor | np.ndarray, bands: list[str], rgb_bands: list[str],
               title: str) -> Figure:
    """A figure of the RGB composite of a ``(C, H, W)`` image, each channel stretched to its 2-98 %.

    Falls back to the first band in grey when ``rgb_bands`` is empty.
    """
    array = image.numpy() if isinstance(image, torch.Tensor) else np.asarray(image)
    index = [bands.index(band) for band in rgb_bands] or [0, 0, 0]
    rgb = array[index].astype(np.float64)
    low, high = np.percentile(rgb, [2, 98], axis=(1, 2), keepdims=True)
    rgb = np.clip((rgb - low) / np.maximum(high - low, 1e-12), 0.0, 1.0).transpose(1, 2, 0)
    figure = Figure(figsize=(4, 4))
    axes = figure.add_subplot()
    axes.imshow(rgb)
    axes.set_title(title, fontsize=8)
    axes.axis("off")
    return figure


class PreparedDataset(Dataset):
    """What every reader of a prepared folder shares.

    Folders, metadata (``dataset.json``), band names, statistics, the split check and transformed
    items.

    Subclasses call ``super().__init__`` first, then ``self.split = self.check_split(split, valid)``,
    and implement ``load(index)`` and ``__len__`` (``TiledDataset`` does all but ``load`` for tiles
    of large scenes).
    """

    def __init__(self, raw_dir: Path, prepared_dir: Path, transform: Any = None) -> None:
        self.raw_dir = Path(raw_dir)
        self.prepared_dir = check_prepared_dir(prepared_dir)
        self.metadata: dict[str, Any] = read_prepared_json(self.prepared_dir, "dataset.json")
        self.transform = transform
        #: The statistics file, relative to ``prepared_dir`` (a named split has its own).
        self.stats_file = "stats.json"
        self._stats: dict[str, Any] | None = None

    def check_split(self, split: str, valid: list[str]) -> str:
        """``split``, or a ``PreparedDataError`` (a ValueError) naming the folder and the valid splits."""
        if split not in valid:
            raise PreparedDataError(self.prepared_dir,
                                    f"unknown split {split!r}; valid splits: {sorted(valid)}")
        return split

    @property
    def bands(self) -> list[str]:
        """Band names, in channel order."""
        return self.metadata["bands"]

    @property
    def stats(self) -> dict[str, Any]:
        """Per-band ``mean`` and ``std`` of the training split (``stats_file``)."""
        if self._stats is None:
            self._stats = read_prepared_json(self.prepared_dir, self.stats_file)
        return self._stats

    def load(self, index: int) -> dict[str, Any]:
        """Item ``index`` without the transform."""
        raise NotImplementedError

    def __getitem__(self, index: int) -> Any:
        """Return item ``index``, passed through ``transform`` when one is set."""
        sample = self.load(index)
        return self.transform(sample) if self.transform is not None else sample


class TiledDataset(PreparedDataset):
    """A prepared folder of fixed-size tiles cut from large scenes, one list per split and tile size.

    ``split`` is ``"train"`` / ``"test"`` (the first tile size in ``dataset.json``) or
    ``"<split>_<size>"`` (``"train_512"``). Sets ``split``, ``tile_size``, ``tiles`` (the split's
    ``<split>.json``) and ``classes`` (``classes.json``); ``len`` is the number of tiles.
    """

    def __init__(self, raw_dir: Path, prepared_dir: Path, split: str, transform: Any = None) -> None:
        super().__init__(raw_dir, prepared_dir, transform)
        sizes = self.metadata["tile_sizes"]
        sized = [f"{part}_{size}" for part in ("train", "test") for size in sizes]
        self.split = self.check_split(split, ["train", "test", *sized])
        self.tile_size = int(split.rsplit("_", 1)[1]) if "_" in split else sizes[0]
        self.tiles: list[dict] = read_prepared_json(self.prepared_dir, f"{split}.json")
        self.classes: list[str] = read_prepared_json(self.prepared_dir, "classes.json")

    def __len__(self) -> int:
        """Number of tiles."""
        return len(self.tiles)
