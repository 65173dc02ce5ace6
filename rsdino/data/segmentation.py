"""Semantic-segmentation tiles (LoveDA, ISPRS Potsdam and Vaihingen) with their masks.

``prepare_segmentation_dataset`` pairs every image with its mask (a layout of ``SEG_LAYOUTS``, by the
dataset's ``layout``), keeps the official train / test split, and indexes non-overlapping square
tiles of each size in ``tile_sizes`` (the last row and column of tiles are shifted inwards so they
stay whole; images smaller than a tile give one tile, padded when read). It writes
``<split>_<size>.json`` (``[{"image", "mask", "x", "y"}, ...]``, paths relative to the raw folder),
``<split>.json`` (the first size), ``classes.json``, ``stats.json`` and ``dataset.json``. Tiles are
read with windowed reads (rasterio for GeoTIFF, a crop for PNG).

Masks come back as int64 class indices with 255 = ignore: LoveDA stores ``0`` no-data and ``1..7``
classes (index = value - 1); ISPRS stores colours (``ISPRS_COLOURS``; black boundary pixels and any
unknown colour are ignored).
"""

from __future__ import annotations

import logging
import re
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import torch
from matplotlib.figure import Figure
from PIL import Image
from rasterio.windows import Window

from rsdino.data.prepared import (
    TiledDataset,
    rgb_figure,
    seeded_subset,
)
from rsdino.data.stats import compute_band_stats
from rsdino.io import atomic_directory, write_json

log = logging.getLogger(__name__)
IGNORE = 255
LOVEDA_CLASSES = ["background", "building", "road", "water", "barren", "forest", "agriculture"]
ISPRS_CLASSES = ["impervious_surfaces", "building", "low_vegetation", "tree", "car", "clutter"]
ISPRS_COLOURS = [(255, 255, 255), (0, 0, 255), (0, 255, 255), (0, 255, 0), (255, 255, 0), (255, 0, 0)]
#: Official tiles of the test split (torchgeo = mmseg); all other tiles are training tiles.
POTSDAM_TEST = {"5_15", "6_15", "6_13", "3_13", "4_14", "6_14", "5_14", "2_13", "4_15", "2_14", "5_13",
                "4_13", "3_14", "7_13"}
VAIHINGEN_TEST = {"2", "4", "6", "8", "10", "12", "14", "16", "20", "22", "24", "27", "29", "31", "33", "35",
                  "38"}

Pairs = dict[str, list[tuple[str, str]]]


def _rel(raw_dir: Path, path: Path) -> str:
    return path.relative_to(raw_dir).as_posix()


def pair_loveda(raw_dir: Path) -> Pairs:
    """``{Train,Val}/{Urban,Rural}/images_png/<id>.png`` + ``masks_png/<id>.png``; Val is the test split."""
    pairs: Pairs = {"train": [], "test": []}
    for split, folder in (("train", "Train"), ("test", "Val")):
        for image in sorted((raw_dir / folder).glob("*/images_png/*.png")):
            mask = image.parent.parent / "masks_png" / image.name
            if mask.is_file():
                pairs[split].append((_rel(raw_dir, image), _rel(raw_dir, mask)))
    return pairs


def _pair_isprs(raw_dir: Path, image_re: str, label_re: str, test: set[str]) -> Pairs:
    images, labels = {}, {}
    for path in sorted(raw_dir.rglob("*.tif")):
        if m := re.fullmatch(image_re, path.name):
            images.setdefault(m.group(1), path)
        elif m := re.fullmatch(label_re, path.name):
            labels.setdefault(m.group(1), path)
    pairs: Pairs = {"train": [], "test": []}
    for tile in sorted(images.keys() & labels.keys()):
        split = "test" if tile in test else "train"
        pairs[split].append((_rel(raw_dir, images[tile]), _rel(raw_dir, labels[tile])))
    return pairs


def pair_potsdam(raw_dir: Path) -> Pairs:
    """``top_potsdam_<tile>_RGB.tif`` with ``top_potsdam_<tile>_label_noBoundary.tif``; official split."""
    return _pair_isprs(raw_dir, r"top_potsdam_(\d+_\d+)_RGB\.tif",
                       r"top_potsdam_(\d+_\d+)_label_noBoundary\.tif", POTSDAM_TEST)


def pair_vaihingen(raw_dir: Path) -> Pairs:
    """``top/top_mosaic_09cm_area<N>.tif`` + the same name outside ``top/`` (ground truth); official split."""
    images, labels = {}, {}
    for path in sorted(raw_dir.rglob("top_mosaic_09cm_area*.tif")):
        area = re.fullmatch(r"top_mosaic_09cm_area(\d+)\.tif", path.name)
        if area:
            (images if path.parent.name == "top" else labels).setdefault(area.group(1), path)
    pairs: Pairs = {"train": [], "test": []}
    for area in sorted(images.keys() & labels.keys(), key=int):
        split = "test" if area in VAIHINGEN_TEST else "train"
        pairs[split].append((_rel(raw_dir, images[area]), _rel(raw_dir, labels[area])))
    return pairs


def decode_loveda(mask: np.ndarray) -> np.ndarray:
    """LoveDA values ``0`` (no-data) .. ``7`` -> class index ``value - 1``, no-data -> 255."""
    values = mask[0].astype(np.int64)
    return np.where((values >= 1) & (values <= len(LOVEDA_CLASSES)), values - 1, IGNORE)


def decode_isprs(mask: np.ndarray) -> np.ndarray:
    """ISPRS colour-coded ``(3, H, W)`` labels -> class index (``ISPRS_COLOURS``), others -> 255."""
    out = np.full(mask.shape[1:], IGNORE, dtype=np.int64)
    for index, colour in enumerate(ISPRS_COLOURS):
        out[np.all(mask[:3] == np.asarray(colour)[:, None, None], axis=0)] = index
    return out


#: layout name -> (pairing function, mask decoder, class names)
SEG_LAYOUTS: dict[str, tuple[Callable[[Path], Pairs], Callable[[np.ndarray], np.ndarray], list[str]]] = {
    "loveda": (pair_loveda, decode_loveda, LOVEDA_CLASSES),
    "potsdam": (pair_potsdam, decode_isprs, ISPRS_CLASSES),
    "vaihingen": (pair_vaihingen, decode_isprs, ISPRS_CLASSES),
}


def image_size(path: Path) -> tuple[int, int]:
    """``(height, width)`` of an image from its header."""
    if path.suffix.lower() in (".tif", ".tiff"):
        with rasterio.open(path) as src:
            return src.height, src.width
    with Image.open(path) as image:
        return image.height, image.width


def read_window(path: Path, x: int, y: int, size: int) -> np.ndarray:
    """Read the ``size`` x ``size`` window at ``(x, y)`` as ``(C, size, size)``, zero-padded past the edge."""
    if path.suffix.lower() in (".tif", ".tiff"):
        with warnings.catch_warnings(), rasterio.open(path) as src:
            warnings.simplefilter("ignore", PendingDeprecationWarning)  # rasterio's boundless-read internals
            data = src.read(window=Window(x, y, size, size), boundless=True, fill_value=0)
    else:
        with Image.open(path) as image:
            data = np.asarray(image.crop((x, y, x + size, y + size)))
        data = data[None] if data.ndim == 2 else data.transpose(2, 0, 1)
    return np.ascontiguousarray(data)


def tile_origins(length: int, size: int) -> list[int]:
    """Non-overlapping tile starts along one axis, the last one moved inwards to end at ``length``."""
    if length <= size:
        return [0]
    starts = list(range(0, length - size + 1, size))
    if starts[-1] + size < length:
        starts.append(length - size)
    return starts


def prepare_segmentation_dataset(raw_dir: Path, out_dir: Path, *, name: str, task: str, layout: str | None,
                                 bands: list[str], rgb_bands: list[str], gsd: float, tile_sizes: list[int],
                                 seed: int, max_stats_items: int | None = 200, progress: bool = True,
                                 **_: Any) -> dict:
    """Pair, split (official) and tile a segmentation dataset; write ``out_dir`` atomically.

    Returns:
        ``{"name", "n_train", "n_test", "n_classes"}`` counted in tiles of the first size.

    Raises:
        ValueError: ``layout`` is not in ``SEG_LAYOUTS``.
        FileNotFoundError: no image/mask pair was found.
    """
    if layout not in SEG_LAYOUTS:
        raise ValueError(f"dataset {name}: segmentation layout {layout!r} unknown "
                         f"(known: {', '.join(SEG_LAYOUTS)})")
    pair, _, classes = SEG_LAYOUTS[layout]
    raw_dir, out_dir = Path(raw_dir), Path(out_dir)
    pairs = pair(raw_dir)
    if not pairs["train"]:
        raise FileNotFoundError(f"{raw_dir}: no {layout} image/mask pair found; "
                                "download and extract the dataset first")
    sizes = {rel: image_size(raw_dir / rel) for split in pairs.values() for rel, _ in split}
    index = {}
    for split, items in pairs.items():
        for tile in tile_sizes:
            index[f"{split}_{tile}"] = [{"image": img, "mask": mask, "x": x, "y": y}
                                        for img, mask in items
                                        for y in tile_origins(sizes[img][0], tile)
                                        for x in tile_origins(sizes[img][1], tile)]
    first = tile_sizes[0]
    sampled = seeded_subset(index[f"train_{first}"], max_stats_items, seed)
    stats = compute_band_stats([Path(f"{t['image']}|{t['x']}|{t['y']}") for t in sampled],
                               reader=lambda key: _read_tile_key(raw_dir, str(key), first),
                               progress=progress)
    metadata = {"name": name, "task": task, "layout": layout, "bands": list(bands),
                "rgb_bands": list(rgb_bands), "gsd": gsd, "native_size": first,
                "tile_sizes": list(tile_sizes)}
    summary = write_tiled_folder(out_dir, index, list(pairs), classes=classes,
                                 stats={"bands": list(bands), **stats}, metadata=metadata)
    log.info("prepared %s in %s: %s", name, out_dir, summary)
    return summary


def _read_tile_key(raw_dir: Path, key: str, size: int) -> np.ndarray:
    rel, x, y = key.rsplit("|", 2)
    return read_window(raw_dir / rel, int(x), int(y), size)


Sample = dict[str, Any]


def write_tiled_folder(out_dir: Path, index: dict[str, list[dict]], splits: list[str], *, classes: list[str],
                       stats: dict, metadata: dict) -> dict:
    """Write a prepared folder of tiles at once (atomically) and return its summary.

    ``index`` maps ``"<split>_<size>"`` to its tiles (one JSON file each); ``<split>.json`` repeats the
    first tile size of ``metadata["tile_sizes"]``; then ``classes.json``, ``stats.json`` and
    ``dataset.json`` (``metadata``). The summary: ``name``, ``n_train``, ``n_test``, ``n_classes``.
    """
    first = metadata["tile_sizes"][0]
    with atomic_directory(out_dir) as tmp:
        for key, tiles in index.items():
            write_json(tmp / f"{key}.json", tiles)
        for split in splits:
            write_json(tmp / f"{split}.json", index[f"{split}_{first}"])
        write_json(tmp / "classes.json", classes)
        write_json(tmp / "stats.json", stats)
        write_json(tmp / "dataset.json", metadata)
    return {"name": metadata["name"], "n_train": len(index[f"train_{first}"]),
            "n_test": len(index[f"test_{first}"]), "n_classes": len(classes)}


class MaskTileDataset(TiledDataset):
    """Tiles whose items carry a class ``mask`` (``IGNORE`` = 255): what every segmentation task plots."""

    def plot(self, index: int) -> Figure:
        """A figure of tile ``index``: its RGB composite with the mask drawn over it."""
        sample = self.load(index)
        figure = rgb_figure(sample["image"], self.bands, self.metadata["rgb_bands"], sample["path"])
        mask = np.ma.masked_equal(sample["mask"].numpy(), IGNORE)
        figure.axes[0].imshow(mask, cmap="tab10", alpha=0.35, vmin=0, vmax=9, interpolation="nearest")
        return figure


class SegmentationTileDataset(MaskTileDataset):
    """Tiles of one split (and tile size) of a prepared segmentation dataset.

    Args:
        raw_dir: the extracted dataset folder.
        prepared_dir: the folder written by ``prepare_segmentation_dataset``.
        split: ``"train"`` / ``"test"`` (first tile size) or ``"<split>_<size>"`` (``"train_512"``).
        transform: called on each sample dict; its return value is the item.

    An item (before ``transform``) is ``{"image": float32 (C, S, S) native units, "mask": int64 (S, S)
    class indices with 255 = ignore, "path": str}``.
    """

    def __init__(self, raw_dir: Path, prepared_dir: Path, split: str,
                 transform: Callable[[Sample], Any] | None = None) -> None:
        super().__init__(raw_dir, prepared_dir, split, transform)
        self._decode = SEG_LAYOUTS[self.metadata["layout"]][1]

    def load(self, index: int) -> Sample:
        """Return item ``index`` without the transform."""
        tile = self.tiles[index]
        size = self.tile_size
        image = read_window(self.raw_dir / tile["image"], tile["x"], tile["y"], size)[: len(self.bands)]
        mask = self._decode(read_window(self.raw_dir / tile["mask"], tile["x"], tile["y"], size))
        return {"image": torch.from_numpy(image.astype(np.float32)), "mask": torch.from_numpy(mask),
                "path": f"{tile['image']}@{tile['x']},{tile['y']}"}
