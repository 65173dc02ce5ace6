"""A tiny fake OSCD archive in the real layout (images, train/test label folders; names with spaces).

Cities carry real names (two training, one test city). Each date is a 13-band uint16 stack of single
band files at ``size`` px; inside the changed blocks of the mask the second date differs strongly.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from rsdino.data.change import LABEL_FOLDERS
from rsdino.data.fake.common import geotiff_bytes, pil_bytes, write_archive

IMAGES = "Onera Satellite Change Detection dataset - Images"
BANDS = ["B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10", "B11", "B12"]
CITIES = {"train": ["aguasclaras", "bercy"], "test": ["brasilia"]}


def make_fake_oscd(out_archive: Path, *, size: int = 300, seed: int = 0) -> str:
    """Write a fake OSCD archive (images and both label folders) and return its sha256 (reproducible)."""
    members: dict[str, bytes] = {}
    rng = np.random.default_rng(seed)
    for split, cities in CITIES.items():
        members[f"{IMAGES}/{split}.txt"] = ",".join(cities).encode()
        for city in cities:
            cells = rng.random((size // 20 + 1, size // 20 + 1)) < 0.2
            change = np.kron(cells, np.ones((20, 20), dtype=bool))[:size, :size]
            levels = rng.uniform(500, 3000, len(BANDS))
            members[f"{IMAGES}/{city}/dates.txt"] = b"date_1: 20161130\ndate_2: 20170829\n"
            for date in (1, 2):
                for b, band in enumerate(BANDS):
                    value = levels[b] * (1 + 0.05 * rng.standard_normal((size, size)))
                    if date == 2:
                        value = np.where(change, value * 1.8, value)
                    data = np.clip(value, 0, 10000).astype(np.uint16)[None]
                    members[f"{IMAGES}/{city}/imgs_{date}_rect/{band}.tif"] = geotiff_bytes(data)
            members[f"{LABEL_FOLDERS[split]}/{city}/cm/cm.png"] = pil_bytes(
                change.astype(np.uint8) * 255, "PNG"
            )
    return write_archive(Path(out_archive), members)
