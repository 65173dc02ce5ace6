"""Tiny fake segmentation datasets (LoveDA, ISPRS Potsdam, ISPRS Vaihingen) in their real layouts.

- LoveDA: ``{Train,Val}/{Urban,Rural}/images_png/<id>.png`` and ``masks_png/<id>.png`` (uint8 values
  0 = no-data, 1..7 classes).
- Potsdam: ``2_Ortho_RGB/top_potsdam_<tile>_RGB.tif`` (3-band uint8) and
  ``5_Labels_all_noBoundary/top_potsdam_<tile>_label_noBoundary.tif`` (colour-coded RGB).
- Vaihingen: ``top/top_mosaic_09cm_area<N>.tif`` (IR, R, G uint8) and the ground truth
  ``top_mosaic_09cm_area<N>.tif`` at the archive root (colour-coded RGB).

The masks are blocky class maps; each class has its own image colour, so image and mask agree.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from rsdino.data.fake.common import geotiff_bytes, pil_bytes, write_archive
from rsdino.data.segmentation import ISPRS_COLOURS

POTSDAM_TILES = {"2_10": "train", "2_11": "train", "2_13": "test"}
VAIHINGEN_AREAS = {"1": "train", "3": "train", "2": "test"}


def _class_map(size: int, n_classes: int, rng: np.random.Generator, block: int = 16) -> np.ndarray:
    """A ``size`` x ``size`` map of class indices made of random square blocks."""
    cells = rng.integers(0, n_classes, (size // block + 1, size // block + 1))
    return np.kron(cells, np.ones((block, block), dtype=np.int64))[:size, :size]


def _image(classes: np.ndarray, n_classes: int, rng: np.random.Generator) -> np.ndarray:
    """A ``(3, H, W)`` uint8 image whose colour follows the class map, with noise."""
    palette = np.random.default_rng(n_classes).integers(30, 226, (n_classes, 3))
    image = palette[classes].transpose(2, 0, 1) + rng.normal(0, 8, (3, *classes.shape))
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)


def make_fake_segmentation(out_archive: Path, *, layout: str, size: int = 300, n_images: int = 2,
                           seed: int = 0) -> str:
    """Write a fake ``layout`` (``loveda``, ``potsdam`` or ``vaihingen``) archive; return its sha256.

    Args:
        out_archive: ``.zip``, ``.tar`` or ``.tar.gz`` path.
        layout: which dataset's layout.
        size: image side in pixels.
        n_images: LoveDA images per split and domain (ISPRS: the fixed tiles listed in this module).
        seed: seed of every random draw (byte-reproducible archive).
    """
    members: dict[str, bytes] = {}
    rng = np.random.default_rng(seed)
    if layout == "loveda":
        ident = 0
        for split in ("Train", "Val"):
            for domain in ("Urban", "Rural"):
                for _ in range(n_images):
                    classes = _class_map(size, 8, rng)  # 0 = no-data
                    base = f"{split}/{domain}"
                    members[f"{base}/images_png/{ident}.png"] = pil_bytes(
                        _image(classes, 8, rng).transpose(1, 2, 0), "PNG")
                    members[f"{base}/masks_png/{ident}.png"] = pil_bytes(classes.astype(np.uint8), "PNG")
                    ident += 1
    elif layout in ("potsdam", "vaihingen"):
        colours = np.asarray(ISPRS_COLOURS + [(0, 0, 0)], dtype=np.uint8)  # black = boundary
        names = POTSDAM_TILES if layout == "potsdam" else VAIHINGEN_AREAS
        for tile in names:
            classes = _class_map(size, len(colours), rng)
            label = colours[classes].transpose(2, 0, 1)
            image = _image(classes, len(colours), rng)
            if layout == "potsdam":
                members[f"2_Ortho_RGB/top_potsdam_{tile}_RGB.tif"] = geotiff_bytes(image, gsd=0.05)
                members[f"5_Labels_all_noBoundary/top_potsdam_{tile}_label_noBoundary.tif"] = geotiff_bytes(
                    label, gsd=0.05)
            else:
                members[f"top/top_mosaic_09cm_area{tile}.tif"] = geotiff_bytes(image, gsd=0.09)
                members[f"top_mosaic_09cm_area{tile}.tif"] = geotiff_bytes(label, gsd=0.09)
    else:
        raise ValueError(f"make_fake_segmentation: unknown layout {layout!r}")
    return write_archive(Path(out_archive), members)
