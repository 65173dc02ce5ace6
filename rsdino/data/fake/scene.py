"""A generic tiny fake scene-classification dataset: one folder per class, in any real layout.

Each class gets its own mean colour (or per-band level for multispectral TIFFs) and a class-specific
stripe frequency, plus noise, so a classifier can tell classes apart. Members are written under
``class_root/<class>/<file name>``, the file name following ``pattern`` (a ``str.format`` template
with ``cls`` (class name), ``flat`` (class name without ``_``), ``lower`` (lower case) and ``n``).
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath

import numpy as np

from rsdino.data.fake.common import geotiff_bytes, pil_bytes, write_archive

PIL_FORMATS = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG"}


def render_scene(class_index: int, n_bands: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """A ``(n_bands, size, size)`` float image in [0, 1] for class ``class_index``."""
    levels = np.random.default_rng(class_index).uniform(0.2, 0.8, n_bands)
    y, x = np.mgrid[0:size, 0:size] / max(size, 1)
    angle = rng.uniform(0, np.pi)
    stripes = 0.5 + 0.5 * np.sin(2 * np.pi * (class_index + 1) * (x * np.cos(angle) + y * np.sin(angle)))
    image = levels[:, None, None] * (0.7 + 0.3 * stripes)[None] + rng.normal(0, 0.03, (n_bands, size, size))
    return np.clip(image, 0.0, 1.0)


def make_fake_scene_folders(out_archive: Path, *, classes: list[str], pattern: str = "{cls}_{n}.jpg",
                            class_root: str = ".", n_per_class: int = 3, size: int = 16, n_bands: int = 3,
                            first_index: int = 1, parents: dict[str, str] | None = None,
                            seed: int = 0) -> str:
    """Write a fake folder-per-class dataset archive and return its sha256 (byte-reproducible).

    ``.jpg``/``.png`` members are 8-bit RGB (``n_bands`` must be 3); ``.tif`` members are uncompressed
    GeoTIFFs, uint8 when ``n_bands`` is 3 (as UC Merced or SIRI-WHU) and uint16 DN otherwise.

    Args:
        out_archive: ``.zip``, ``.tar`` or ``.tar.gz`` path.
        classes: class folder names.
        pattern: file name template (see the module docstring); its suffix picks the format.
        class_root: folder inside the archive holding the class folders.
        n_per_class: images per class.
        size: image side in pixels.
        n_bands: bands per image.
        first_index: ``n`` of the first image of a class.
        parents: parent folder of each class folder (RSI-CB128's ``<parent>/<class>/``), if any.
        seed: seed of every random draw.
    """
    suffix = PurePosixPath(pattern).suffix.lower()
    if suffix in PIL_FORMATS and n_bands != 3:
        raise ValueError(f"make_fake_scene_folders: {suffix} images must have 3 bands, not {n_bands}")
    if suffix not in PIL_FORMATS and suffix not in (".tif", ".tiff"):
        raise ValueError(f"make_fake_scene_folders: unsupported image suffix {suffix!r}")
    root = PurePosixPath(class_root)
    members: dict[str, bytes] = {}
    for c, cls in enumerate(classes):
        for n in range(first_index, first_index + n_per_class):
            image = render_scene(c, n_bands, size, np.random.default_rng([seed, c, n]))
            name = pattern.format(cls=cls, flat=cls.replace("_", ""), lower=cls.lower(), n=n)
            if suffix in PIL_FORMATS:
                rgb = np.rint(image * 255).astype(np.uint8).transpose(1, 2, 0)
                data = pil_bytes(rgb, PIL_FORMATS[suffix])
            elif n_bands == 3:
                data = geotiff_bytes(np.rint(image * 255).astype(np.uint8))
            else:
                data = geotiff_bytes(np.rint(image * 10000).astype(np.uint16))
            members[(root / (parents or {}).get(cls, "") / cls / name).as_posix()] = data
    return write_archive(Path(out_archive), members)
