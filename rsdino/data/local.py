"""Bring a folder of your own images into the pipeline (``source: {local: <folder>}``).

``import_local`` copies the images of ``<folder>`` into ``data/raw/<dataset>/<class>/<file>``, the
layout of a scene-classification dataset (``class_root: .``), so that ``rsdino prepare`` splits it
like any downloaded dataset:

- class folders: every image under ``<folder>/<class>/`` (any depth below it) is of that class;
- a list file (``list_file``, a path inside ``<folder>``): one image per line, ``<relative path>
  <class>`` separated by whitespace or a comma; blank lines and lines starting with ``#`` skipped.

JPEG and PNG are read with Pillow and GeoTIFFs with rasterio; with ``resize: S`` each image is
resampled (bilinear) to ``S x S`` pixels and written in its own format (a GeoTIFF keeps its dtype and
band count, a JPEG/PNG becomes RGB), else it is copied byte for byte. Files of other kinds are skipped;
no image at all, an unknown list entry or an unreadable image stops with one line naming the file.
"""

from __future__ import annotations

import re
import shutil
import warnings
from pathlib import Path

import rasterio
from PIL import Image
from rasterio.enums import Resampling
from rasterio.errors import NotGeoreferencedWarning, RasterioError

from rsdino.data.readers import PIL_EXTENSIONS, RASTER_EXTENSIONS

IMAGE_EXTENSIONS = (*PIL_EXTENSIONS, *RASTER_EXTENSIONS)


class LocalSourceError(ValueError):
    """A local image folder or list file that cannot be imported; the message names the file."""


def list_images(folder: Path, list_file: str | None = None) -> list[tuple[Path, str]]:
    """``(image path, class)`` of every image of ``folder`` (class folders, or the list file)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise LocalSourceError(f"{folder}: the local dataset folder does not exist")
    if list_file:
        return _from_list(folder, folder / list_file)
    items = [(path, path.relative_to(folder).parts[0]) for path in sorted(folder.rglob("*"))
             if path.is_file() and path.suffix.lower() in IMAGE_EXTENSIONS
             and len(path.relative_to(folder).parts) > 1]
    if not items:
        raise LocalSourceError(f"{folder}: no images in class folders (<folder>/<class>/*.jpg|png|tif); "
                               "or set source.list_file")
    return items


def _from_list(folder: Path, list_path: Path) -> list[tuple[Path, str]]:
    if not list_path.is_file():
        raise LocalSourceError(f"{list_path}: list file not found")
    items = []
    for number, line in enumerate(list_path.read_text().splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = [p for p in re.split(r"[,\s]+", line) if p]
        if len(parts) != 2:
            raise LocalSourceError(f"{list_path}:{number}: expected '<relative path> <class>', got {line!r}")
        path = folder / parts[0]
        if not path.is_file():
            raise LocalSourceError(f"{list_path}:{number}: {path} not found")
        items.append((path, parts[1]))
    if not items:
        raise LocalSourceError(f"{list_path}: lists no images")
    return items


def _resize_raster(source: Path, dest: Path, size: int) -> None:
    """Resample every band to ``size x size``; the georeference (if any) scaled to the new grid."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)  # plain TIFF photos
        with rasterio.open(source) as src:
            data = src.read(out_shape=(src.count, size, size), resampling=Resampling.bilinear)
            profile = {"driver": "GTiff", "height": size, "width": size, "count": src.count,
                       "dtype": src.dtypes[0], "nodata": src.nodata}
            if src.crs is not None:
                profile.update(crs=src.crs, transform=src.transform * src.transform.scale(src.width / size,
                                                                                          src.height / size))
        with rasterio.open(dest, "w", **profile) as dst:
            dst.write(data)


def _resize_pil(source: Path, dest: Path, size: int) -> None:
    with Image.open(source) as image:
        image.convert("RGB").resize((size, size), Image.Resampling.BILINEAR).save(dest)


def import_local(folder: Path, out: Path, *, list_file: str | None = None, resize: int | None = None) -> int:
    """Copy (or resize) the images of ``folder`` into ``out/<class>/``; return how many.

    Two images of one class with the same file name get the second one's path folded into its name.
    """
    items = list_images(folder, list_file)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for source, label in items:
        if not re.fullmatch(r"[\w.\- ]+", label):
            raise LocalSourceError(f"{source}: class name {label!r} must be a plain folder name")
        dest = out / label / source.name
        if dest.exists():
            dest = out / label / "_".join(source.relative_to(folder).parts)
        dest.parent.mkdir(parents=True, exist_ok=True)
        try:
            if resize is None:
                shutil.copy2(source, dest)
            elif source.suffix.lower() in RASTER_EXTENSIONS:
                _resize_raster(source, dest, resize)
            else:
                _resize_pil(source, dest, resize)
        except (OSError, RasterioError) as error:
            raise LocalSourceError(f"{source}: cannot read or write this image ({error})") from error
    return len(items)


__all__ = ["IMAGE_EXTENSIONS", "LocalSourceError", "import_local", "list_images"]
