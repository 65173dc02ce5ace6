"""Task ``local_segmentation``: a segmentation folder of your own, with class-index masks.

The folder (``source: {local: <folder>}``, or an archive of it) holds::

    images/<stem>.png|jpg|jpeg|tif|tiff   the images (GeoTIFF: any band count and dtype)
    masks/<stem>.png|tif|tiff             one band of class indices per image, same height and width;
                                          255 = ignore (not scored)
    classes.txt                           optional: class names, one per line, line i = index i
    train.txt, test.txt                   optional, together: the split, one stem (or image file
                                          name) per line; blank lines and ``#`` lines skipped

Without ``classes.txt`` the classes are ``"0"`` .. the largest index found in the masks. Without
the list files the images are split by ``datasets.<name>.split`` (seeded, by image). JPEG masks are
refused (lossy compression changes class indices).

``import_folder`` copies the folder into ``data/raw/<dataset>/`` (``rsdino download``), checking it
first. ``prepare`` checks every pair (sizes, band count, mask values), then indexes non-overlapping
square tiles of each of ``tile_sizes`` like ``rsdino.data.segmentation`` (the last row and column
shifted inwards; an image smaller than a tile gives one tile, its image padded with 0 and its mask
with 255). It writes ``<split>_<size>.json`` (``[{"image", "mask", "x", "y", "height", "width"}, ...]``,
paths relative to the raw folder), ``<split>.json`` (the first size), ``classes.json``,
``stats.json`` (band statistics of up to 200 training tiles of the first size, drawn with the split's
seed) and ``dataset.json``. ``LocalSegmentationDataset`` reads them; ``make_fake`` writes a
tiny fake folder as an archive. Any bad file stops with one line naming it
(``SegmentationFolderError``).
"""

from __future__ import annotations

import logging
import shutil
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import torch
from PIL import Image
from rasterio.errors import NotGeoreferencedWarning, RasterioError

from rsdino.config.datasets import DatasetConfig
from rsdino.data.fake.common import geotiff_bytes, pil_bytes, write_archive
from rsdino.data.local import IMAGE_EXTENSIONS, LocalSourceError
from rsdino.data.prepared import seeded_subset, split_by_group
from rsdino.data.readers import RASTER_EXTENSIONS
from rsdino.data.segmentation import IGNORE, MaskTileDataset, read_window, tile_origins, write_tiled_folder
from rsdino.data.stats import compute_band_stats
from rsdino.errors import UserError

log = logging.getLogger(__name__)
MASK_EXTENSIONS = (".png", *RASTER_EXTENSIONS)
#: The optional files of the folder, beside ``images/`` and ``masks/``.
CLASSES_FILE, SPLIT_FILES = "classes.txt", ("train.txt", "test.txt")


class SegmentationFolderError(UserError, LocalSourceError):
    """A segmentation folder, image, mask or list file that cannot be used; the message names the file."""


def _read(path: Path) -> np.ndarray:
    """The whole image as ``(C, H, W)``."""
    try:
        if path.suffix.lower() in RASTER_EXTENSIONS:
            with warnings.catch_warnings(), rasterio.open(path) as src:
                warnings.simplefilter("ignore", NotGeoreferencedWarning)
                return src.read()
        with Image.open(path) as image:
            data = np.asarray(image)
    except (OSError, RasterioError) as error:
        raise SegmentationFolderError(path, f"cannot read this image ({error})") from None
    return data[None] if data.ndim == 2 else data.transpose(2, 0, 1)


def _header(path: Path) -> tuple[int, int, int]:
    """``(bands, height, width)`` of an image from its header."""
    try:
        if path.suffix.lower() in RASTER_EXTENSIONS:
            with warnings.catch_warnings(), rasterio.open(path) as src:
                warnings.simplefilter("ignore", NotGeoreferencedWarning)
                return src.count, src.height, src.width
        with Image.open(path) as image:
            return len(image.getbands()), image.height, image.width
    except (OSError, RasterioError) as error:
        raise SegmentationFolderError(path, f"cannot read this image ({error})") from None


def _by_stem(folder: Path, extensions: tuple[str, ...]) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if path.is_file() and path.suffix.lower() in extensions:
            if path.stem in found:
                raise SegmentationFolderError(path, f"two files with the stem {path.stem!r} "
                                                    f"(the other: {found[path.stem].name})")
            found[path.stem] = path
    return found


def pair_images(root: Path) -> dict[str, tuple[Path, Path]]:
    """``{stem: (image, mask)}`` of the folder ``root``, sorted by stem; every image needs its mask."""
    root = Path(root)
    for sub in ("images", "masks"):
        if not (root / sub).is_dir():
            raise SegmentationFolderError(root / sub, "folder not found (a segmentation folder holds "
                                                      "images/ and masks/ with matching file stems)")
    images = _by_stem(root / "images", IMAGE_EXTENSIONS)
    if not images:
        raise SegmentationFolderError(root / "images", "no PNG, JPEG or GeoTIFF image")
    jpeg_masks = [p for p in sorted((root / "masks").iterdir()) if p.suffix.lower() in (".jpg", ".jpeg")]
    if jpeg_masks:
        raise SegmentationFolderError(jpeg_masks[0], "a mask must be PNG or GeoTIFF "
                                                     "(JPEG compression changes class indices)")
    masks = _by_stem(root / "masks", MASK_EXTENSIONS)
    pairs = {}
    for stem, image in images.items():
        if stem not in masks:
            raise SegmentationFolderError(image, f"no mask masks/{stem}.png (or .tif)")
        pairs[stem] = (image, masks[stem])
    return pairs


def _read_list(path: Path, stems: dict[str, Any]) -> list[str]:
    listed = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        stem = Path(line).stem if Path(line).suffix.lower() in IMAGE_EXTENSIONS else line
        if stem not in stems:
            raise SegmentationFolderError(f"{path}:{number}", f"{line!r} is not an image of images/")
        listed.append(stem)
    if not listed:
        raise SegmentationFolderError(path, "lists no images")
    return listed


def split_stems(root: Path, stems: dict[str, Any], test_fraction: float, seed: int) -> dict[str, list[str]]:
    """``{"train": [...], "test": [...]}``: from ``train.txt`` + ``test.txt``, else seeded by image."""
    lists = [Path(root) / name for name in SPLIT_FILES]
    present = [path.is_file() for path in lists]
    if any(present) and not all(present):
        missing = lists[present.index(False)]
        raise SegmentationFolderError(missing, f"not found; {' and '.join(SPLIT_FILES)} come together")
    if all(present):
        split = {name: _read_list(path, stems) for name, path in zip(("train", "test"), lists, strict=True)}
        both = sorted(set(split["train"]) & set(split["test"]))
        if both:
            raise SegmentationFolderError(lists[1], f"{both[0]!r} is in train.txt too")
        return split
    if len(stems) < 2:
        raise SegmentationFolderError(Path(root) / "images", "needs at least 2 images to split")
    train, test = split_by_group(list(stems), test_fraction, seed)
    return {"train": sorted(train), "test": sorted(test)}


def _class_names(root: Path, pairs: dict[str, tuple[Path, Path]], n_bands: int) -> list[str]:
    """Check every pair (sizes, bands, mask values); return the class names."""
    named = None
    if (Path(root) / CLASSES_FILE).is_file():
        named = [line.strip() for line in (Path(root) / CLASSES_FILE).read_text(encoding="utf-8").splitlines()
                 if line.strip()]
    largest = -1
    for image, mask_path in pairs.values():
        bands, height, width = _header(image)
        if bands < n_bands:
            raise SegmentationFolderError(image, f"has {bands} band(s), the dataset declares {n_bands}")
        mask = _read(mask_path)
        if mask.shape[0] != 1:
            raise SegmentationFolderError(mask_path, f"has {mask.shape[0]} bands; a mask is one band of "
                                                     "class indices")
        if mask.shape[1:] != (height, width):
            raise SegmentationFolderError(mask_path, f"is {mask.shape[2]} x {mask.shape[1]} px, its image "
                                                     f"{image.name} is {width} x {height}")
        values = np.unique(mask)
        values = values[values != IGNORE]
        bad = values[(values < 0) | (values >= (len(named) if named is not None else IGNORE))]
        if bad.size:
            limit = f"0..{len(named) - 1} ({CLASSES_FILE})" if named is not None else f"0..{IGNORE - 1}"
            raise SegmentationFolderError(mask_path, f"holds class index {bad[0]}, expected {limit} "
                                                     f"or {IGNORE} (ignore)")
        largest = max(largest, int(values.max()) if values.size else -1)
    if named is not None:
        return named
    if largest < 0:
        raise SegmentationFolderError(Path(root) / "masks", f"every mask pixel is {IGNORE} (ignore)")
    return [str(index) for index in range(largest + 1)]


def import_folder(folder: Path, out: Path, *, list_file: str | None = None, resize: int | None = None) -> int:
    """Check the segmentation folder ``folder`` and copy it into ``out``; return the number of images."""
    folder = Path(folder)
    if list_file or resize:
        raise SegmentationFolderError(folder, "list_file and resize are settings of class-folder sources; a "
                                              f"segmentation folder is split by {' and '.join(SPLIT_FILES)}")
    if not folder.is_dir():
        raise SegmentationFolderError(folder, "the local dataset folder does not exist")
    pairs = pair_images(folder)
    out = Path(out)
    for sub in ("images", "masks"):
        shutil.copytree(folder / sub, out / sub, dirs_exist_ok=True)
    for name in (CLASSES_FILE, *SPLIT_FILES):
        if (folder / name).is_file():
            shutil.copy2(folder / name, out / name)
    return len(pairs)


def prepare(cfg: DatasetConfig, name: str, raw_dir: Path, out_dir: Path, progress: bool) -> dict:
    """Check, split and tile the folder ``raw_dir``; write ``out_dir`` atomically (module docstring).

    Returns:
        ``{"name", "n_train", "n_test", "n_classes"}`` counted in tiles of the first size.
    """
    raw_dir, out_dir = Path(raw_dir), Path(out_dir)
    pairs = pair_images(raw_dir)
    split = split_stems(raw_dir, pairs, cfg.split.test_fraction, cfg.split.seed)
    classes = _class_names(raw_dir, pairs, len(cfg.bands))
    sizes = {stem: _header(pairs[stem][0])[1:] for stem in pairs}
    index = {}
    for part, stems in split.items():
        for tile in cfg.tile_sizes:
            index[f"{part}_{tile}"] = [
                {"image": pairs[stem][0].relative_to(raw_dir).as_posix(),
                 "mask": pairs[stem][1].relative_to(raw_dir).as_posix(), "x": x, "y": y,
                 "height": sizes[stem][0], "width": sizes[stem][1]}
                for stem in stems for y in tile_origins(sizes[stem][0], tile)
                for x in tile_origins(sizes[stem][1], tile)]
    first = cfg.tile_sizes[0]
    by_key = {f"{t['image']}|{t['x']}|{t['y']}": t for t in index[f"train_{first}"]}
    sampled = seeded_subset(sorted(by_key), 200, cfg.split.seed)
    stats = compute_band_stats(
        [Path(key) for key in sampled], progress=progress,
        reader=lambda key: read_window(raw_dir / by_key[str(key)]["image"], by_key[str(key)]["x"],
                                       by_key[str(key)]["y"], first)[: len(cfg.bands)])
    metadata = {"name": name, "task": cfg.task, "bands": list(cfg.bands),
                "rgb_bands": list(cfg.rgb_bands), "gsd": cfg.gsd, "native_size": first,
                "tile_sizes": list(cfg.tile_sizes),
                "split": "list files" if (raw_dir / SPLIT_FILES[0]).is_file() else "seeded"}
    summary = write_tiled_folder(out_dir, index, list(split), classes=classes,
                                 stats={"bands": list(cfg.bands), **stats}, metadata=metadata)
    log.info("prepared %s in %s: %s", name, out_dir, summary)
    return summary


class LocalSegmentationDataset(MaskTileDataset):
    """Tiles of one split (and tile size) of a prepared ``local_segmentation`` folder.

    Args:
        raw_dir: the imported (or extracted) folder.
        prepared_dir: the folder written by ``prepare``.
        split: ``"train"`` / ``"test"`` (first tile size) or ``"<split>_<size>"`` (``"train_512"``).
        transform: called on each sample dict; its return value is the item.

    An item (before ``transform``) is ``{"image": float32 (C, S, S) native units, "mask": int64 (S, S)
    class indices with 255 = ignore (also past the image's edge), "path": str}``.
    """

    def load(self, index: int) -> dict[str, Any]:
        """Return item ``index`` without the transform."""
        tile, size = self.tiles[index], self.tile_size
        x, y = tile["x"], tile["y"]
        image = read_window(self.raw_dir / tile["image"], x, y, size)[: len(self.bands)]
        mask = read_window(self.raw_dir / tile["mask"], x, y, size)[0].astype(np.int64)
        mask[max(tile["height"] - y, 0):, :] = IGNORE
        mask[:, max(tile["width"] - x, 0):] = IGNORE
        return {"image": torch.from_numpy(image.astype(np.float32)), "mask": torch.from_numpy(mask),
                "path": f"{tile['image']}@{x},{y}"}


def make_fake(out_archive: Path, *, n_images: int = 6, size: int = 20, n_classes: int = 3,
              image_format: str = "png", split_files: bool = False, class_file: bool = False,
              seed: int = 0) -> str:
    """Write a tiny segmentation folder as an archive (format by suffix); return its sha256.

    Args:
        out_archive: ``.zip``, ``.tar`` or ``.tar.gz`` path.
        n_images: images (and masks), named ``tile_<i>``.
        size: image side in pixels.
        n_classes: class indices drawn, in square blocks; each class has its own colour, plus noise.
        image_format: ``"png"``, ``"jpg"`` (RGB) or ``"tif"`` (4-band uint16 GeoTIFF).
        split_files: also write ``train.txt`` / ``test.txt`` (the last third is the test split).
        class_file: also write ``classes.txt`` (``class_<i>``).
        seed: seed of every random draw (byte-reproducible archive).
    """
    rng = np.random.default_rng(seed)
    colours = rng.integers(20, 236, size=(n_classes, 4))
    members: dict[str, bytes] = {}
    for i in range(n_images):
        block = max(size // 4, 1)
        coarse = rng.integers(0, n_classes, size=(-(-size // block), -(-size // block)))
        mask = np.kron(coarse, np.ones((block, block), dtype=np.int64))[:size, :size].astype(np.uint8)
        mask[0, 0] = IGNORE  # one ignored pixel per mask
        image = colours[mask.clip(0, n_classes - 1)] + rng.normal(0, 8, (size, size, 4))
        stem = f"tile_{i}"
        if image_format == "tif":
            members[f"images/{stem}.tif"] = geotiff_bytes((image * 16).clip(0, 4095).astype(np.uint16)
                                                          .transpose(2, 0, 1))
        else:
            fmt = "JPEG" if image_format == "jpg" else "PNG"
            members[f"images/{stem}.{image_format}"] = pil_bytes(image[..., :3].clip(0, 255).astype(np.uint8),
                                                                 fmt)
        members[f"masks/{stem}.png"] = pil_bytes(mask, "PNG")
    if split_files:
        n_test = max(n_images // 3, 1)
        members["train.txt"] = "".join(f"tile_{i}\n" for i in range(n_images - n_test)).encode()
        members["test.txt"] = "".join(f"tile_{i}\n" for i in range(n_images - n_test, n_images)).encode()
    if class_file:
        members[CLASSES_FILE] = "".join(f"class_{i}\n" for i in range(n_classes)).encode()
    return write_archive(Path(out_archive), members)
