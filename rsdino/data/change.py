"""OSCD change detection: bi-temporal 13-band image pairs of a city with their change masks, as tiles.

Layout (DATASETS.md section 20; names contain spaces)::

    <class_root>/train.txt, test.txt                 # one comma-separated line of city names
    <class_root>/<city>/imgs_1_rect/<band>.tif       # 13 single-band files, all at 10 m
    <class_root>/<city>/imgs_2_rect/<band>.tif
    Onera Satellite Change Detection dataset - {Train,Test} Labels/<city>/cm/cm.png   # nonzero = change

``prepare_change_dataset`` keeps the official city split and indexes non-overlapping tiles of each
size of ``tile_sizes`` (as ``rsdino.data.segmentation``), writing ``<split>_<size>.json`` /
``<split>.json`` (``[{"city", "mask", "x", "y"}, ...]``), ``classes.json`` (``["no_change",
"change"]``), ``stats.json`` (both dates of the training tiles) and ``dataset.json``.
"""

from __future__ import annotations

import logging
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import torch
from matplotlib.figure import Figure

from rsdino.data.prepared import (
    TiledDataset,
    rgb_figure,
    seeded_subset,
)
from rsdino.data.segmentation import image_size, read_window, tile_origins
from rsdino.data.stats import compute_band_stats
from rsdino.io import atomic_directory, write_json

log = logging.getLogger(__name__)
LABEL_FOLDERS = {
    "train": "Onera Satellite Change Detection dataset - Train Labels",
    "test": "Onera Satellite Change Detection dataset - Test Labels",
}


def read_city_tile(
    raw_dir: Path, images_root: str, city: str, date: int, bands: list[str], x: int, y: int, size: int
) -> np.ndarray:
    """Read one date (1 or 2) of a city tile as ``(len(bands), size, size)``."""
    folder = Path(raw_dir) / images_root / city / f"imgs_{date}_rect"
    return np.concatenate([read_window(folder / f"{band}.tif", x, y, size) for band in bands])


def prepare_change_dataset(
    raw_dir: Path,
    out_dir: Path,
    *,
    name: str,
    task: str,
    class_root: str,
    bands: list[str],
    rgb_bands: list[str],
    gsd: float,
    tile_sizes: list[int],
    seed: int,
    max_stats_items: int | None = 200,
    progress: bool = True,
    **_: Any,
) -> dict:
    """Index the cities of an OSCD folder as tiles with their change masks; write ``out_dir`` atomically.

    Returns:
        ``{"name", "n_train", "n_test", "n_missing_labels"}`` counted in tiles of the first size.

    Raises:
        FileNotFoundError: ``train.txt`` is missing, or no city has its images and change mask.
    """
    raw_dir, out_dir = Path(raw_dir), Path(out_dir)
    root = raw_dir / class_root
    index: dict[str, list[dict]] = {}
    missing = []
    for split in ("train", "test"):
        listing = root / f"{split}.txt"
        if not listing.is_file():
            raise FileNotFoundError(f"{listing} is missing; download and extract the OSCD images archive")
        cities = [
            c.strip() for c in listing.read_text(encoding="utf-8").replace("\n", ",").split(",") if c.strip()
        ]
        for tile in tile_sizes:
            index[f"{split}_{tile}"] = []
        for city in cities:
            mask = PurePosixPath(LABEL_FOLDERS[split]) / city / "cm" / "cm.png"
            reference = root / city / "imgs_1_rect" / f"{bands[0]}.tif"
            if not (raw_dir / mask).is_file() or not reference.is_file():
                missing.append(city)
                continue
            height, width = image_size(reference)
            for tile in tile_sizes:
                index[f"{split}_{tile}"].extend(
                    {"city": city, "mask": mask.as_posix(), "x": x, "y": y}
                    for y in tile_origins(height, tile)
                    for x in tile_origins(width, tile)
                )
    first = tile_sizes[0]
    if not index[f"train_{first}"]:
        raise FileNotFoundError(
            f"{root}: no training city with images and a change mask (missing: {missing})"
        )

    def read_both(key: Path) -> np.ndarray:
        city, x, y = str(key).split("|")
        return np.concatenate(
            [read_city_tile(raw_dir, class_root, city, d, bands, int(x), int(y), first) for d in (1, 2)],
            axis=-1,
        )

    sampled = seeded_subset(index[f"train_{first}"], max_stats_items, seed)
    stats = compute_band_stats(
        [Path(f"{t['city']}|{t['x']}|{t['y']}") for t in sampled], reader=read_both, progress=progress
    )
    metadata = {
        "name": name,
        "task": task,
        "images_root": class_root,
        "bands": list(bands),
        "rgb_bands": list(rgb_bands),
        "gsd": gsd,
        "native_size": first,
        "tile_sizes": list(tile_sizes),
    }
    with atomic_directory(out_dir) as tmp:
        for key, tiles in index.items():
            write_json(tmp / f"{key}.json", tiles)
        for split in ("train", "test"):
            write_json(tmp / f"{split}.json", index[f"{split}_{first}"])
        write_json(tmp / "classes.json", ["no_change", "change"])
        write_json(tmp / "stats.json", {"bands": list(bands), **stats})
        write_json(tmp / "dataset.json", metadata)
    summary = {
        "name": name,
        "n_train": len(index[f"train_{first}"]),
        "n_test": len(index[f"test_{first}"]),
        "n_missing_labels": len(missing),
    }
    log.info("prepared %s in %s: %s", name, out_dir, summary)
    return summary


Sample = dict[str, Any]


class ChangePairDataset(TiledDataset):
    """Bi-temporal tiles of one split of a prepared OSCD folder.

    Args:
        raw_dir: the extracted dataset folder.
        prepared_dir: the folder written by ``prepare_change_dataset``.
        split: ``"train"`` / ``"test"`` (first tile size) or ``"<split>_<size>"``.
        transform: called on each sample dict; its return value is the item.

    An item (before ``transform``) is ``{"image": float32 (C, S, S) first date, "image2": float32 (C, S, S)
    second date, "mask": int64 (S, S) 1 = change, 0 = no change, "path": str}`` in native units.
    """

    def load(self, index: int) -> Sample:
        """Return item ``index`` without the transform."""
        tile, size = self.tiles[index], self.tile_size
        before, after = (
            read_city_tile(
                self.raw_dir,
                self.metadata["images_root"],
                tile["city"],
                d,
                self.bands,
                tile["x"],
                tile["y"],
                size,
            ).astype(np.float32)
            for d in (1, 2)
        )
        mask = read_window(self.raw_dir / tile["mask"], tile["x"], tile["y"], size)[0] > 0
        return {
            "image": torch.from_numpy(before),
            "image2": torch.from_numpy(after),
            "mask": torch.from_numpy(mask.astype(np.int64)),
            "path": f"{tile['city']}@{tile['x']},{tile['y']}",
        }

    def plot(self, index: int) -> Figure:
        """A figure of the second date's RGB composite with the change mask drawn over it."""
        sample = self.load(index)
        figure = rgb_figure(sample["image2"], self.bands, self.metadata["rgb_bands"], sample["path"])
        figure.axes[0].imshow(
            np.ma.masked_equal(sample["mask"].numpy(), 0), cmap="autumn", alpha=0.5, interpolation="nearest"
        )
        return figure
