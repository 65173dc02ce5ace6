"""Task ``fmow``: the prepared fMoW-RGB folder and ``FmowDataset``, its labelled, dated, per-GSD images.

``prepare_fmow_dataset`` writes, atomically, ``train.csv`` / ``val.csv`` and ``locations.json``
(``rsdino.data.fmow.prepare_fmow_csv``: per image its path, split, category, metadata GSD,
timestamp, location and labelled box), ``classes.json`` (the 63 ``LABELS``, ``false_detection`` =
0), ``stats.json`` (per-band statistics of the crops of a seeded subset of training images) and
``dataset.json``.

An image is what the fMoW baseline (and so SatDINO) trains on: the labelled bounding box with a
context margin, resized to ``native_size`` squared (``context_box``). Its ``gsd`` is the metadata GSD
of the full image, SatDINO's base of the GSD target (``rsdino.views.boxes.view_gsd`` scales it by
each view's crop); the resize of the box to ``native_size`` is not folded in, as in SatDINO, whose
224 px crops carry the metadata GSD unchanged.

fMoW ships its own ``train`` and ``val`` splits; its ``test`` split has no labels, so ``val`` is the
evaluation split and ``test`` opens it too.
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import torch
from matplotlib.figure import Figure
from PIL import Image, UnidentifiedImageError

from rsdino.data.fmow import LABELS, SPLITS, prepare_fmow_csv
from rsdino.data.prepared import PreparedDataset, read_prepared_json, rgb_figure, seeded_subset
from rsdino.data.readers import ImageReadError
from rsdino.data.stats import compute_band_stats
from rsdino.io import atomic_directory, write_json

log = logging.getLogger(__name__)

Sample = dict[str, Any]
#: Reader split -> CSV file: ``test`` is fMoW's labelled ``val``.
SPLIT_FILES = {"train": "train.csv", "val": "val.csv", "test": "val.csv"}
# Context margin (share of the box side, split over both sides) by box side / image side, as the fMoW
# baseline: smaller objects get more context. (upper bound of the ratio, margin), checked in order.
_CONTEXT = ((0.1, 2.0), (0.2, 1.0), (0.3, 0.5), (0.4, 0.3), (0.5, 0.2), (float("inf"), 0.15))


def _margin(side: float, image_side: int) -> float:
    ratio = side / image_side
    return next(margin for bound, margin in _CONTEXT if ratio < bound)


def context_box(box: tuple[int, int, int, int], width: int, height: int) -> tuple[int, int, int, int]:
    """``(left, top, right, bottom)`` of bounding box ``box`` = ``(x, y, w, h)`` with its context margin.

    Each side grows by ``int(w * m_w / 2)`` (``int(h * m_h / 2)``), where the margin ``m`` is 0.15
    for a box at least half the image side, 0.2, 0.3, 0.5, 1 below 0.5, 0.4, 0.3, 0.2 of it, and 2
    below 0.1 (the fMoW baseline; it compares the box width with the image height, here each side
    with its own axis). Clipped to the image; at least one pixel.
    """
    x, y, w, h = box
    pad_w = int(w * _margin(w, width) / 2)
    pad_h = int(h * _margin(h, height) / 2)
    left, top = max(0, x - pad_w), max(0, y - pad_h)
    right, bottom = min(width, x + w + pad_w), min(height, y + h + pad_h)
    return left, top, max(right, left + 1), max(bottom, top + 1)


def read_fmow_crop(path: Path, box: tuple[int, int, int, int], size: int) -> np.ndarray:
    """The context crop of ``box`` in the JPEG at ``path``, bilinearly resized to ``(3, size, size)`` uint8.

    Raises:
        ImageReadError: naming the file, when it is missing or unreadable.
    """
    try:
        with Image.open(path) as image:
            rgb = image.convert("RGB")
            crop = rgb.crop(context_box(box, rgb.width, rgb.height)).resize((size, size), Image.BILINEAR)
            return np.ascontiguousarray(np.asarray(crop).transpose(2, 0, 1))
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as err:
        raise ImageReadError(f"{path}: cannot read fMoW image ({err})") from err


def read_rows(path: Path) -> list[dict[str, Any]]:
    """The rows of a ``train.csv`` / ``val.csv`` with typed ``category_idx``, ``gsd`` and ``box``."""
    with open(path, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    for number, row in enumerate(rows, start=2):
        try:
            row["category_idx"] = int(row["category_idx"])
            row["gsd"] = float(row["gsd"])
            row["box"] = tuple(int(v) for v in row["box"].split())
        except (KeyError, ValueError, AttributeError) as err:
            raise ValueError(f"{path}:{number}: malformed fMoW row ({err}); "
                             "run `rsdino prepare` again") from err
        if len(row["box"]) != 4:
            raise ValueError(f"{path}:{number}: box {row['box']} is not x y w h; run `rsdino prepare` again")
    return rows


def prepare_fmow_dataset(raw_dir: Path, out_dir: Path, *, name: str, task: str,
                         class_root: str, bands: list[str],
                         rgb_bands: list[str], gsd: float, native_size: int,
                         max_stats_items: int | None = 500, seed: int = 0, progress: bool = True) -> dict:
    """Write the prepared folder of task ``fmow`` (see the module docstring) for ``raw_dir/class_root``.

    ``gsd`` is the dataset's nominal GSD (recorded; each image has its own). ``seed`` draws the
    ``max_stats_items`` training images the statistics are computed on.

    Returns:
        ``{"name", "n_train", "n_test" (val images), "n_classes", "missing_images"}``.

    Raises:
        FileNotFoundError: ``train`` or ``val`` is missing under ``raw_dir/class_root``.
        FmowMetadataError: naming the JSON file that is malformed or lacks a needed field.
    """
    raw_dir, out_dir = Path(raw_dir), Path(out_dir)
    root = raw_dir / class_root
    metadata = {"name": name, "task": task, "bands": list(bands), "rgb_bands": list(rgb_bands), "gsd": gsd,
                "native_size": native_size, "class_root": PurePosixPath(class_root).as_posix()}
    with atomic_directory(out_dir) as tmp:
        summary = prepare_fmow_csv(root, tmp, splits=SPLITS)
        train = read_rows(tmp / "train.csv")
        if not train:
            raise FileNotFoundError(f"{root / 'train'}: no fMoW image with its metadata JSON found")
        chosen = seeded_subset(train, max_stats_items, seed)
        stats = compute_band_stats(list(range(len(chosen))), progress=progress,
                                   reader=lambda i: read_fmow_crop(root / chosen[i]["image_path"],
                                                                   chosen[i]["box"], native_size))
        write_json(tmp / "classes.json", list(LABELS))
        write_json(tmp / "stats.json", {"bands": list(bands), **stats})
        write_json(tmp / "dataset.json", metadata)
    result = {"name": name, "n_train": summary["counts"]["train"], "n_test": summary["counts"]["val"],
              "n_classes": len(LABELS), "missing_images": summary["missing_images"]}
    log.info("prepared %s in %s: %s (%d images without a JPEG)", name, out_dir,
             {k: v for k, v in result.items() if k != "missing_images"}, len(result["missing_images"]))
    return result


class FmowDataset(PreparedDataset):
    """One split of a prepared fMoW-RGB folder.

    Args:
        raw_dir: the extracted dataset folder (``class_root`` of ``dataset.json`` below it).
        prepared_dir: the folder written by ``prepare_fmow_dataset``.
        split: ``"train"``, ``"val"`` or ``"test"`` (= ``"val"``).
        transform: called on each sample dict; its return value is the item.
        series: when above 0, every item also carries ``series`` ``(T, 3, S, S)`` with ``T =
            series``: the item's own image first, then images of the same location at other
            timestamps drawn at random (torch's global generator, with replacement; the image itself
            when its location has no other), with ``series_gsd`` ``(T,)`` and ``series_timestamps``.
            For temporal views (``crops.temporal``).

    An item (before ``transform``) is ``{"image": float32 (3, S, S) (S = native_size), "label": int
    (index in ``LABELS``), "gsd": float metres per pixel (metadata), "location": str, "timestamp":
    str (ISO 8601, UTC), "path": str}``.
    """

    def __init__(self, raw_dir: Path, prepared_dir: Path, split: str,
                 transform: Callable[[Sample], Any] | None = None, series: int = 0) -> None:
        super().__init__(raw_dir, prepared_dir, transform)
        self.split = self.check_split(split, list(SPLIT_FILES))
        path = self.prepared_dir / SPLIT_FILES[split]
        if not path.is_file():
            raise FileNotFoundError(f"{path} is missing; run `rsdino prepare` again")
        self.rows = read_rows(path)
        self.root = self.raw_dir / self.metadata.get("class_root", ".")
        self.size = int(self.metadata["native_size"])
        self._classes: list[str] = read_prepared_json(self.prepared_dir, "classes.json")
        if series < 0:
            raise ValueError(f"series must be 0 (off) or a number of timestamps, got {series}")
        self.series = int(series)
        by_location: dict[str, list[int]] = {}
        for index, row in enumerate(self.rows):
            by_location.setdefault(row["location"], []).append(index)
        self._others = [[i for i in by_location[row["location"]] if i != index] or [index]
                        for index, row in enumerate(self.rows)]

    @property
    def classes(self) -> list[str]:
        """The 63 label names; a label indexes this list."""
        return self._classes

    @property
    def labels(self) -> list[int]:
        """The label of every item, in dataset order (no image is read)."""
        return [row["category_idx"] for row in self.rows]

    def __len__(self) -> int:
        """Number of images in the split."""
        return len(self.rows)

    def _image(self, index: int) -> torch.Tensor:
        row = self.rows[index]
        return torch.from_numpy(read_fmow_crop(self.root / row["image_path"], row["box"], self.size)
                                .astype(np.float32))

    def load(self, index: int) -> Sample:
        """Return item ``index`` without the transform."""
        row = self.rows[index]
        sample = {"image": self._image(index), "label": row["category_idx"], "gsd": row["gsd"],
                  "location": row["location"], "timestamp": row["timestamp"], "path": row["image_path"]}
        if self.series:
            others = self._others[index]
            drawn = torch.randint(len(others), (self.series - 1,)).tolist()
            chosen = [index, *(others[k] for k in drawn)]
            sample["series"] = torch.stack([sample["image"], *(self._image(i) for i in chosen[1:])])
            sample["series_gsd"] = torch.tensor([self.rows[i]["gsd"] for i in chosen], dtype=torch.float32)
            sample["series_timestamps"] = [self.rows[i]["timestamp"] for i in chosen]
        return sample

    def plot(self, index: int) -> Figure:
        """A figure of item ``index``: its RGB crop titled with its class, GSD and time."""
        sample = self.load(index)
        title = (f"{self.classes[sample['label']]}  {sample['gsd']:.2f} m  {sample['timestamp']}\n"
                 f"{sample['path']}")
        return rgb_figure(sample["image"], self.bands, self.metadata["rgb_bands"], title)
