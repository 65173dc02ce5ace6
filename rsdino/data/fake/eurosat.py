"""A tiny fake EuroSAT-MS in the real layout: 13-band uint16 Sentinel-2 GeoTIFFs in an uncompressed tar.

Archive members: ``ds/images/remote_sensing/otherDatasets/sentinel_2/tif/<Class>/<Class>_<n>.tif``
(``n`` from 1, no padding), the ten real class names, band order ``B01 ... B12, B8A`` (B8A last),
L1C top-of-atmosphere reflectance x 10000, EPSG:32632 with a 10 m pixel.

Each class is a base material overlaid with one or two materials through a class-specific spatial
pattern (stripes, orchard dots, blobs, building blocks, a road or a river). The materials carry
plausible Sentinel-2 spectra. Pairs of classes share their materials and differ only in texture
(AnnualCrop / PermanentCrop, Pasture / HerbaceousVegetation, Residential / Industrial), so mean
spectra alone do not separate them. Every image draws its own phase, orientation, frequency,
spectral jitter, gain, offset and noise.

Difficulty knobs (keywords of ``make_fake_eurosat_ms``):

- ``noise``: per-pixel Gaussian noise, as a fraction of the pixel value.
- ``signature_overlap``: 0 keeps each material's spectrum, 1 makes every material the mean spectrum
  (then only texture separates classes).
- ``jitter``: spread of the per-image gain (log-normal), per-band gain and per-material spectrum.
- ``illumination``: an extra per-image brightness factor shared by all bands (uniform in log).
"""

from __future__ import annotations

import io
import tarfile
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np
import rasterio
from rasterio.crs import CRS
from rasterio.io import MemoryFile

from rsdino.data.download import file_digest
from rsdino.io import atomic_path

ROOT = "ds/images/remote_sensing/otherDatasets/sentinel_2/tif"
BANDS = ["B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B09", "B10", "B11", "B12", "B8A"]
GSD = 10.0

#            B01   B02   B03   B04   B05   B06   B07   B08   B09  B10   B11   B12   B8A
MATERIALS = {
    "water": [1350, 1050, 850, 600, 500, 450, 430, 400, 150, 10, 150, 100, 380],
    "forest": [1250, 950, 800, 550, 900, 1900, 2300, 2400, 700, 15, 1300, 600, 2600],
    "crop": [1300, 1000, 950, 700, 1200, 2300, 2800, 3000, 900, 15, 1800, 900, 3200],
    "grass": [1300, 1050, 1000, 900, 1300, 2000, 2300, 2400, 800, 15, 2000, 1200, 2600],
    "shrub": [1350, 1100, 1100, 1150, 1500, 1900, 2100, 2250, 750, 15, 2400, 1700, 2350],
    "soil": [1450, 1250, 1300, 1500, 1800, 2000, 2200, 2300, 800, 20, 2900, 2300, 2450],
    "roof": [1700, 1550, 1500, 1600, 1750, 1850, 2000, 2050, 700, 20, 2400, 2000, 2150],
    "asphalt": [1500, 1300, 1200, 1200, 1250, 1300, 1350, 1400, 500, 15, 1600, 1400, 1450],
}

Mask = Callable[[int, np.random.Generator], np.ndarray]


def _coords(size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Pixel coordinates rotated by a random angle and shifted by a random phase."""
    y, x = np.mgrid[0:size, 0:size].astype(np.float64)
    angle = rng.uniform(0, np.pi)
    u = x * np.cos(angle) + y * np.sin(angle) + rng.uniform(0, 100)
    v = -x * np.sin(angle) + y * np.cos(angle) + rng.uniform(0, 100)
    return u, v


def _soft(signed: np.ndarray, sharpness: float = 3.0) -> np.ndarray:
    """Map a signed distance-like field to a soft mask in [0, 1]."""
    return 1.0 / (1.0 + np.exp(-sharpness * signed))


def stripes(size: int, rng: np.random.Generator, *, period: float) -> np.ndarray:
    """Parallel field stripes of random orientation, period ``period`` px (+-15 %)."""
    u, _ = _coords(size, rng)
    return _soft(np.sin(2 * np.pi * u / (period * rng.uniform(0.85, 1.15))))


def dots(size: int, rng: np.random.Generator, *, period: float, radius: float) -> np.ndarray:
    """Tree crowns on a rotated square lattice (orchards, vineyards)."""
    u, v = _coords(size, rng)
    period *= rng.uniform(0.85, 1.15)
    du = (u % period) - period / 2
    dv = (v % period) - period / 2
    return _soft(radius - np.hypot(du, dv), sharpness=2.0)


def blobs(size: int, rng: np.random.Generator, *, scale: float, fraction: float) -> np.ndarray:
    """Smoothed random field thresholded to cover about ``fraction`` of the image."""
    fy = np.fft.fftfreq(size)[:, None]
    fx = np.fft.fftfreq(size)[None, :]
    sigma = scale * rng.uniform(0.8, 1.25)
    kernel = np.exp(-2 * (np.pi * sigma) ** 2 * (fx**2 + fy**2))
    field = np.fft.ifft2(np.fft.fft2(rng.standard_normal((size, size))) * kernel).real
    field = (field - field.mean()) / (field.std() + 1e-12)
    return _soft(field - np.quantile(field, 1 - fraction), sharpness=4.0)


def blocks(size: int, rng: np.random.Generator, *, period: float, fill: float) -> np.ndarray:
    """Rectangular buildings on a rotated grid: each cell is built over ``fill`` of its side."""
    u, v = _coords(size, rng)
    period_u = period * rng.uniform(0.8, 1.25)
    period_v = period * rng.uniform(0.8, 1.25)
    inside_u = fill * period_u / 2 - np.abs((u % period_u) - period_u / 2)
    inside_v = fill * period_v / 2 - np.abs((v % period_v) - period_v / 2)
    return _soft(np.minimum(inside_u, inside_v))


def band_line(size: int, rng: np.random.Generator, *, width: float, meander: float) -> np.ndarray:
    """One line across the image (road or river), ``width`` px wide, bending by ``meander`` px."""
    u, v = _coords(size, rng)
    u, v = u - u.mean(), v - v.mean()
    offset = rng.uniform(-size / 4, size / 4)
    wavelength = size * rng.uniform(0.7, 1.5)
    centre = offset + meander * np.sin(2 * np.pi * u / wavelength + rng.uniform(0, 2 * np.pi))
    return _soft(width * rng.uniform(0.8, 1.25) / 2 - np.abs(v - centre), sharpness=2.0)


# class name -> (base material, [(overlay material, mask function), ...]) composited in order
CLASSES: dict[str, tuple[str, list[tuple[str, Mask]]]] = {
    "AnnualCrop": ("soil", [("crop", partial(stripes, period=5.0))]),
    "Forest": ("forest", [("grass", partial(blobs, scale=1.0, fraction=0.25))]),
    "HerbaceousVegetation": ("shrub", [("grass", partial(blobs, scale=1.2, fraction=0.5))]),
    "Highway": ("grass", [("crop", partial(blobs, scale=4.0, fraction=0.4)),
                          ("asphalt", partial(band_line, width=3.0, meander=0.0))]),
    "Industrial": ("asphalt", [("roof", partial(blocks, period=14.0, fill=0.7))]),
    "Pasture": ("shrub", [("grass", partial(blobs, scale=5.0, fraction=0.5))]),
    "PermanentCrop": ("soil", [("crop", partial(dots, period=6.0, radius=1.8))]),
    "Residential": ("grass", [("roof", partial(blocks, period=5.0, fill=0.55)),
                              ("asphalt", partial(stripes, period=15.0))]),
    "River": ("grass", [("forest", partial(blobs, scale=3.0, fraction=0.3)),
                        ("water", partial(band_line, width=6.0, meander=4.0))]),
    "SeaLake": ("water", [("grass", partial(blobs, scale=6.0, fraction=0.08))]),
}


def render_image(
    class_name: str,
    size: int,
    rng: np.random.Generator,
    *,
    noise: float = 0.04,
    signature_overlap: float = 0.3,
    jitter: float = 0.1,
    illumination: float = 0.0,
) -> np.ndarray:
    """Return one fake ``(13, size, size)`` uint16 image of ``class_name`` (see the module docstring)."""
    spectra = {name: np.asarray(values, dtype=np.float64) for name, values in MATERIALS.items()}
    mean_spectrum = np.mean(list(spectra.values()), axis=0)
    base, overlays = CLASSES[class_name]

    def spectrum(name: str) -> np.ndarray:
        blended = (1 - signature_overlap) * spectra[name] + signature_overlap * mean_spectrum
        return blended * np.exp(rng.normal(0, jitter / 2, len(BANDS)))

    image = np.broadcast_to(spectrum(base)[:, None, None], (len(BANDS), size, size)).copy()
    for material, mask_fn in overlays:
        mask = mask_fn(size, rng)[None]
        image = image * (1 - mask) + spectrum(material)[:, None, None] * mask
    gain = np.exp(rng.normal(0, jitter)) * np.exp(rng.normal(0, jitter / 3, len(BANDS)))
    if illumination > 0:  # one more brightness factor for all bands (sun angle, haze)
        gain = gain * np.exp(rng.uniform(-illumination, illumination))
    image = image * gain[:, None, None] + rng.normal(0, 100 * jitter)
    image = image * (1 + noise * rng.standard_normal(image.shape))
    return np.clip(np.rint(image), 0, 10000).astype(np.uint16)


def _geotiff_bytes(image: np.ndarray, x0: float, y0: float) -> bytes:
    """Encode a ``(C, H, W)`` uint16 array as an uncompressed GeoTIFF in EPSG:32632."""
    count, height, width = image.shape
    with MemoryFile() as memory:
        with memory.open(driver="GTiff", height=height, width=width, count=count, dtype="uint16",
                         crs=CRS.from_epsg(32632), transform=rasterio.Affine(GSD, 0, x0, 0, -GSD, y0)) as dst:
            dst.write(image)
        return bytes(memory.getbuffer())


def _tar_info(name: str, size: int | None) -> tarfile.TarInfo:
    """A reproducible tar header: mtime 0, root owner without names, fixed mode."""
    info = tarfile.TarInfo(name)
    info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
    if size is None:
        info.type, info.mode = tarfile.DIRTYPE, 0o755
    else:
        info.size, info.mode = size, 0o644
    return info


def make_fake_eurosat_ms(
    out_archive: Path,
    *,
    n_per_class: int = 30,
    size: int = 32,
    seed: int = 0,
    noise: float = 0.04,
    signature_overlap: float = 0.3,
    jitter: float = 0.1,
    illumination: float = 0.0,
) -> str:
    """Write a fake EuroSAT-MS tar to ``out_archive`` (atomically) and return its sha256.

    The same arguments always give a byte-identical archive.

    Args:
        out_archive: path of the uncompressed ``.tar`` to write.
        n_per_class: images per class.
        size: image side in pixels (the real dataset has 64).
        seed: seed of every random draw.
        noise: per-pixel noise as a fraction of the value.
        signature_overlap: how far every material spectrum is pulled towards the mean one (0 to 1).
        jitter: spread of per-image gain and per-material spectra.
        illumination: half-width of a uniform log-brightness factor per image, the same for all
            bands (0: none; 0.5: brightness from x0.61 to x1.65), which changes what a randomly
            initialised network sees but not the class.
    """
    members: dict[str, bytes | None] = {}
    parts = ROOT.split("/")
    for depth in range(1, len(parts) + 1):
        members["/".join(parts[:depth])] = None
    for class_index, class_name in enumerate(CLASSES):
        members[f"{ROOT}/{class_name}"] = None
        for n in range(1, n_per_class + 1):
            rng = np.random.default_rng([seed, class_index, n])
            image = render_image(class_name, size, rng, noise=noise,
                                 signature_overlap=signature_overlap, jitter=jitter,
                                 illumination=illumination)
            x0 = 300_000 + GSD * size * ((class_index * n_per_class + n) % 500)
            members[f"{ROOT}/{class_name}/{class_name}_{n}.tif"] = _geotiff_bytes(image, x0, 5_000_000.0)
    with atomic_path(out_archive) as tmp, tarfile.open(tmp, "w", format=tarfile.USTAR_FORMAT) as tar:
        for name in sorted(members):
            data = members[name]
            tar.addfile(_tar_info(name, None if data is None else len(data)),
                        None if data is None else io.BytesIO(data))
    return file_digest(Path(out_archive), "sha256")
