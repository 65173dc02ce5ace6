"""A tiny fake BigEarthNet v1.0 archive (S2 or S1) in the real layout, with multi-label metadata.

Members (DATASETS.md section 19)::

    BigEarthNet-v1.0/<P>/<P>_<band>.tif, <P>_labels_metadata.json          # S2: 12 uint16 bands
    BigEarthNet-S1-v1.0/<Q>/<Q>_VV.tif, <Q>_VH.tif, <Q>_labels_metadata.json  # S1: float32 dB

S2 bands are stored at their native resolution (10 m: ``size``; 20 m: ``size // 2``; 60 m:
``size // 6``). Labels are one to three 43-class CORINE names; the band levels follow the labels.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from rsdino.data.bigearthnet import LABELS_43
from rsdino.data.fake.common import geotiff_bytes, write_archive

S2_SIDE = {"B01": 6, "B09": 6, "B05": 2, "B06": 2, "B07": 2, "B8A": 2, "B11": 2, "B12": 2}


def make_fake_bigearthnet(out_archive: Path, *, sensor: str = "s2", n_patches: int = 6, size: int = 12,
                          seed: int = 0) -> str:
    """Write a fake BigEarthNet archive (``sensor`` ``"s2"`` or ``"s1"``) and return its sha256.

    Args:
        out_archive: ``.tar.gz``, ``.tar`` or ``.zip`` path.
        sensor: ``"s2"`` (12 bands) or ``"s1"`` (VV, VH).
        n_patches: number of patch folders.
        size: side of the 10 m grid (the real data has 120).
        seed: seed of every random draw (byte-reproducible archive).
    """
    if sensor not in ("s1", "s2"):
        raise ValueError(f"make_fake_bigearthnet: sensor must be 's1' or 's2', got {sensor!r}")
    root = "BigEarthNet-v1.0" if sensor == "s2" else "BigEarthNet-S1-v1.0"
    bands = (["B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B11", "B12"]
             if sensor == "s2" else ["VV", "VH"])
    members: dict[str, bytes] = {}
    for i in range(n_patches):
        rng = np.random.default_rng([seed, i])
        row, col = 40 + i // 4, 30 + i % 4
        name = (f"S2A_MSIL2A_20170613T101031_{row}_{col}" if sensor == "s2"
                else f"S1A_IW_GRDH_1SDV_20170613T165043_33UUP_{row}_{col}")
        labels = sorted(LABELS_43[int(k)] for k in rng.choice(len(LABELS_43), int(rng.integers(1, 4)),
                                                              replace=False))
        x0, y0 = 500_000.0 + 1200.0 * col, 6_000_000.0 - 1200.0 * row
        for b, band in enumerate(bands):
            side = max(1, size // S2_SIDE.get(band, 1))
            level = 300 + 200 * ((b + len(labels[0])) % 7)
            if sensor == "s2":
                data = np.clip(rng.normal(level, 50, (1, side, side)), 0, 10000).astype(np.uint16)
            else:
                data = rng.normal(-12.0 - 6 * b, 2.0, (1, side, side)).astype(np.float32)
            members[f"{root}/{name}/{name}_{band}.tif"] = geotiff_bytes(data, gsd=10.0 * size / side,
                                                                        x0=x0, y0=y0, epsg=32633)
        meta = {"labels": labels, "coordinates": {"ulx": x0, "uly": y0, "lrx": x0 + 1200, "lry": y0 - 1200},
                "projection": "EPSG:32633", "acquisition_date": "2017-06-13 10:10:31"}
        if sensor == "s1":
            meta["corresponding_s2_patch"] = f"S2A_MSIL2A_20170613T101031_{row}_{col}"
        members[f"{root}/{name}/{name}_labels_metadata.json"] = json.dumps(meta).encode()
    return write_archive(Path(out_archive), members)
