"""A tiny fake SeCo (Seasonal Contrast) archive in the real layout: several dates per location.

Archive members (DATASETS.md section 15)::

    seasonal_contrast_100k/<6-digit location id>/<start>_<end>_T<tile>/<band>.tif
    seasonal_contrast_100k/<6-digit location id>/<start>_<end>_T<tile>/metadata.json

One single-band uint8 GeoTIFF per band (reflectance x 255, as the SeCo downloader writes), 10 m bands
at ``size`` px, 20 m bands at ``size // 2`` and 60 m bands at ``size // 6``. Each location is one
land-cover scene of the fake EuroSAT generator; its dates share the spatial layout and differ by a
seasonal per-band gain (vegetation bands swing most) and fresh noise, so a model can learn that the
dates of one place belong together.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
from PIL import Image

from rsdino.data.fake.common import geotiff_bytes, write_archive
from rsdino.data.fake.eurosat import BANDS as EUROSAT_BANDS
from rsdino.data.fake.eurosat import CLASSES, render_image

ROOT = "seasonal_contrast_100k"
SECO_BANDS = ["B1", "B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B9", "B11", "B12"]
BAND_GSD = {"B1": 60, "B2": 10, "B3": 10, "B4": 10, "B5": 20, "B6": 20, "B7": 20, "B8": 10, "B8A": 20,
            "B9": 60, "B10": 60, "B11": 20, "B12": 20}
VEGETATION = {"B5", "B6", "B7", "B8", "B8A"}


def canonical_band(name: str) -> str:
    """``"B01"`` -> ``"B1"``, ``"B8A"`` -> ``"B8A"``: the Sentinel-2 band name without zero padding."""
    return "B" + name[1:].lstrip("0") if name[1:].isdigit() else name


def _resize(band: np.ndarray, side: int) -> np.ndarray:
    """Area-average a float band to ``side`` x ``side``."""
    if side == band.shape[0]:
        return band
    return np.asarray(Image.fromarray(band.astype(np.float32), mode="F").resize((side, side), Image.BOX))


def make_fake_seco(out_archive: Path, *, n_locations: int = 6, n_dates: int = 4, size: int = 32,
                   bands: list[str] | None = None, seed: int = 0, noise: float = 0.03,
                   mixed_resolution: bool = True) -> str:
    """Write a fake SeCo archive (``.tar``, ``.tar.gz`` or ``.zip``) to ``out_archive``; return its sha256.

    The same arguments always give a byte-identical archive.

    Args:
        out_archive: archive path; its suffix picks the format.
        n_locations: number of location folders (``000000`` ...).
        n_dates: dates per location, three months apart, newest first in time.
        size: side of the 10 m bands in pixels (the real data has 264).
        bands: band file names (default: the 12 real SeCo bands; ``B01``-style names are accepted).
        seed: seed of every random draw.
        noise: per-pixel noise as a fraction of the value, drawn afresh for every date.
        mixed_resolution: store 20 m and 60 m bands at 1/2 and 1/6 of ``size`` (as SeCo does).
    """
    bands = list(bands or SECO_BANDS)
    unknown = [b for b in bands if canonical_band(b) not in BAND_GSD]
    if unknown:
        raise ValueError(f"make_fake_seco: unknown Sentinel-2 bands {unknown}")
    source = {canonical_band(b): i for i, b in enumerate(EUROSAT_BANDS)}
    class_names = list(CLASSES)
    members: dict[str, bytes] = {}
    for loc in range(n_locations):
        rng = np.random.default_rng([seed, loc])
        class_name = class_names[int(rng.integers(len(class_names)))]
        layout = render_image(class_name, size, np.random.default_rng([seed, loc, 10**6]), noise=0.0)
        reference = datetime(2019, 8, 3, 10, 30) + timedelta(days=int(rng.integers(0, 20)))
        tile = f"T{int(rng.integers(10, 60))}{'QVGRSTU'[int(rng.integers(7))]}VG"
        for d in range(n_dates):
            when = reference - timedelta(days=91 * d)
            stamp = when.strftime("%Y%m%dT%H%M%S")
            folder = f"{ROOT}/{loc:06d}/{stamp}_{stamp}_{tile}"
            season = np.sin(2 * np.pi * when.timetuple().tm_yday / 365.0)
            for band in bands:
                name = canonical_band(band)
                gain = 1.0 + (0.35 if name in VEGETATION else 0.08) * season
                value = layout[source[name]] * gain * (1 + noise * rng.standard_normal((size, size)))
                side = max(1, size * 10 // BAND_GSD[name]) if mixed_resolution else size
                value = _resize(value, side)
                data = np.clip(np.rint(value / 10000.0 * 255.0), 0, 255).astype(np.uint8)[None]
                members[f"{folder}/{band}.tif"] = geotiff_bytes(data, gsd=10.0 * size / side, epsg=4326,
                                                                x0=-70.0 + loc, y0=18.0)
            meta = {"system:index": f"{stamp}_{stamp}_{tile}", "CLOUDY_PIXEL_PERCENTAGE": 0.0,
                    "fake_class": class_name}
            members[f"{folder}/metadata.json"] = json.dumps(meta, sort_keys=True).encode()
    return write_archive(Path(out_archive), members)
