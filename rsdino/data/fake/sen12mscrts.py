"""A tiny fake SEN12MS-CR-TS archive in the real layout, with co-registered S1 and S2 content.

Archive members (DATASETS.md section 17)::

    ROIs<season>/<roi>/S1/<t>/s1_ROIs<season>_<roi>_ImgNo_<t>_<date>_patch_<id>.tif   # 2 bands, float32 dB
    ROIs<season>/<roi>/S2/<t>/s2_ROIs<season>_<roi>_ImgNo_<t>_<date>_patch_<id>.tif   # 13 bands, uint16

Each patch is a land-cover scene of the fake EuroSAT generator; S2 carries its 13 bands (in the
SEN12MS order B01 ... B08, B8A, B09 ... B12), and S1 is derived from the same scene (VV backscatter
follows the near-infrared brightness, VH is about 6 dB lower) plus speckle, so the two sensors of a
pair show the same place. ``rsdino.data.sen12mscrts.make_fake_sen12mscrts`` writes random pixels
straight into a folder (for pairing tests); this module builds a downloadable archive.
"""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import numpy as np

from rsdino.data.fake.common import geotiff_bytes, write_archive
from rsdino.data.fake.eurosat import BANDS as EUROSAT_BANDS
from rsdino.data.fake.eurosat import CLASSES, render_image
from rsdino.data.sen12mscrts import S2_BANDS

DEFAULT_ROIS = (("1158", "106"), ("1868", "17"), ("1970", "21"), ("2017", "8"))


def make_fake_sen12mscrts_archive(out_archive: Path, *, rois: list[list[str]] | None = None, n_times: int = 2,
                                  n_patches: int = 4, size: int = 32, seed: int = 0) -> str:
    """Write a fake SEN12MS-CR-TS archive to ``out_archive`` and return its sha256 (byte-reproducible).

    Args:
        out_archive: ``.tar``, ``.tar.gz`` or ``.zip`` path.
        rois: ``[season, roi]`` pairs (default: one ROI of each of the four seasons).
        n_times: time points per ROI (the real data has 30).
        n_patches: patches per time point.
        size: patch side in pixels (the real data has 256).
        seed: seed of every random draw.
    """
    rois = [tuple(r) for r in (rois or DEFAULT_ROIS)]
    order = [EUROSAT_BANDS.index(b) for b in S2_BANDS]
    nir = EUROSAT_BANDS.index("B08")
    class_names = list(CLASSES)
    members: dict[str, bytes] = {}
    for r, (season, roi) in enumerate(rois):
        for patch in range(n_patches):
            rng = np.random.default_rng([seed, r, patch])
            class_name = class_names[int(rng.integers(len(class_names)))]
            layout = render_image(class_name, size, np.random.default_rng([seed, r, patch, 1]), noise=0.0)
            x0 = 300_000.0 + 10.0 * size * patch
            for t in range(n_times):
                s1_date = date(2018, 1, 1) + timedelta(days=12 * t)
                s2_date = s1_date + timedelta(days=1 + (r + t) % 3)
                stem = f"ROIs{season}_{roi}_ImgNo_{t}"
                s2 = layout[order] * (1 + 0.03 * rng.standard_normal((len(order), size, size)))
                s2 = np.clip(np.rint(s2), 0, 10000).astype(np.uint16)
                brightness = layout[nir] / 10000.0
                vv = 10 * np.log10(0.01 + 0.5 * brightness) + rng.normal(0, 0.8, (size, size))
                vh = vv - 6.0 + rng.normal(0, 0.8, (size, size))
                s1 = np.clip(np.stack([vv, vh]), -25.0, 0.0).astype(np.float32)
                base = f"ROIs{season}/{roi}"
                s1_name = f"{base}/S1/{t}/s1_{stem}_{s1_date.isoformat()}_patch_{patch}.tif"
                s2_name = f"{base}/S2/{t}/s2_{stem}_{s2_date.isoformat()}_patch_{patch}.tif"
                members[s1_name], members[s2_name] = geotiff_bytes(s1, x0=x0), geotiff_bytes(s2, x0=x0)
    return write_archive(Path(out_archive), members)
