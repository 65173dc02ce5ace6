"""Unlabelled image collections (Million-AID + SkyScript): file lists for pretraining.

``prepare_image_list`` lists every image with one of the dataset's extensions under ``class_root``
(recursively: Million-AID's ``train/<L1>/<L2>[/<L3>]/P*.jpg`` and flat ``test/P*.jpg``, SkyScript's
``images<k>/*.jpg``), drops hidden files, splits them (seeded) into ``train.txt`` / ``test.txt`` (one
path relative to the raw folder per line), and writes ``sources.json`` (images per top-level folder),
``classes.json`` (``[]``), ``stats.json`` (a seeded subsample of training images) and ``dataset.json``.
Images keep their own sizes; the pretraining crops make them uniform.
"""

from __future__ import annotations

import logging
import os
import random
from collections import Counter
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import torch
from matplotlib.figure import Figure

from rsdino.data.prepared import (
    PreparedDataset,
    rgb_figure,
    seeded_subset,
)
from rsdino.data.readers import read_image
from rsdino.data.stats import compute_band_stats
from rsdino.io import atomic_directory, write_json, write_text

log = logging.getLogger(__name__)


def list_images(root: Path, extensions: tuple[str, ...]) -> list[str]:
    """Every file under ``root`` whose suffix is in ``extensions`` (any case), relative and sorted.

    Hidden files and folders are skipped. Uses ``os.walk`` (fast on millions of files).
    """
    suffixes = tuple(e.lower() for e in extensions)
    found = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        rel = Path(folder).relative_to(root).as_posix()
        prefix = "" if rel == "." else rel + "/"
        found.extend(prefix + f for f in files if not f.startswith(".") and f.lower().endswith(suffixes))
    return sorted(found)


def prepare_image_list(
    raw_dir: Path,
    out_dir: Path,
    *,
    name: str,
    task: str,
    class_root: str,
    extensions: tuple[str, ...],
    bands: list[str],
    rgb_bands: list[str],
    gsd: float,
    native_size: int,
    test_fraction: float,
    seed: int,
    max_stats_items: int | None = 500,
    progress: bool = True,
) -> dict:
    """List, split and describe an unlabelled image collection; write ``out_dir`` atomically.

    Returns:
        ``{"name", "n_train", "n_test", "sources": {top folder: count}}``.

    Raises:
        FileNotFoundError: no image under ``raw_dir / class_root``.
    """
    raw_dir, out_dir = Path(raw_dir), Path(out_dir)
    root = raw_dir / class_root
    prefix = PurePosixPath(class_root)
    images = [(prefix / rel).as_posix() for rel in list_images(root, extensions)] if root.is_dir() else []
    if not images:
        raise FileNotFoundError(f"{root}: no {'/'.join(extensions)} image found; download the dataset first")
    order = list(images)
    random.Random(seed).shuffle(order)
    n_test = round(len(order) * test_fraction) if len(order) > 1 else 0
    test, train = sorted(order[:n_test]), sorted(order[n_test:])
    stats = compute_band_stats(
        [raw_dir / rel for rel in seeded_subset(train, max_stats_items, seed)], progress=progress
    )
    sources = dict(sorted(Counter(PurePosixPath(rel).relative_to(prefix).parts[0] for rel in images).items()))
    metadata = {
        "name": name,
        "task": task,
        "bands": list(bands),
        "rgb_bands": list(rgb_bands),
        "gsd": gsd,
        "native_size": native_size,
    }
    with atomic_directory(out_dir) as tmp:
        write_text(tmp / "train.txt", "".join(f"{rel}\n" for rel in train))
        write_text(tmp / "test.txt", "".join(f"{rel}\n" for rel in test))
        write_json(tmp / "sources.json", sources)
        write_json(tmp / "classes.json", [])
        write_json(tmp / "stats.json", {"bands": list(bands), **stats})
        write_json(tmp / "dataset.json", metadata)
    summary = {"name": name, "n_train": len(train), "n_test": len(test), "sources": sources}
    log.info("prepared %s in %s: %s", name, out_dir, summary)
    return summary


Sample = dict[str, Any]


class ImageListDataset(PreparedDataset):
    """Images of one split of a prepared unlabelled collection.

    Args:
        raw_dir: the extracted dataset folder.
        prepared_dir: the folder written by ``prepare_image_list``.
        split: ``"train"`` or ``"test"``.
        transform: called on each sample dict; its return value is the item.

    An item (before ``transform``) is ``{"image": float32 (C, H, W) native units (sizes vary), "path": str}``.
    """

    def __init__(
        self, raw_dir: Path, prepared_dir: Path, split: str, transform: Callable[[Sample], Any] | None = None
    ) -> None:
        super().__init__(raw_dir, prepared_dir, transform)
        self.split = self.check_split(split, ["train", "test"])
        path = self.prepared_dir / f"{split}.txt"
        if not path.is_file():
            raise FileNotFoundError(f"{path} is missing; run `rsdino prepare` again")
        self.paths = [line for line in path.read_text(encoding="utf-8").splitlines() if line]

    def __len__(self) -> int:
        """Number of images."""
        return len(self.paths)

    def load(self, index: int) -> Sample:
        """Return item ``index`` without the transform."""
        rel = self.paths[index]
        return {"image": torch.from_numpy(read_image(self.raw_dir / rel).astype(np.float32)), "path": rel}

    def plot(self, index: int) -> Figure:
        """A figure of image ``index``."""
        sample = self.load(index)
        return rgb_figure(sample["image"], self.bands, self.metadata["rgb_bands"], sample["path"])
