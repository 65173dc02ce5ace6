"""Read images as channel-first ``(C, H, W)`` numpy arrays in their native units and dtype.

GeoTIFFs are read with rasterio (every band); JPEG and PNG with Pillow (converted to RGB).

Missing-value rule: a pixel equal to its band's declared ``nodata`` value, and any NaN or infinite
value in a floating-point band, is replaced by 0. Models see 0 wherever the sensor gave nothing.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import rasterio
from PIL import Image, UnidentifiedImageError
from rasterio.enums import Resampling
from rasterio.errors import NotGeoreferencedWarning, RasterioError

from rsdino.errors import UserError

RASTER_EXTENSIONS = (".tif", ".tiff")
PIL_EXTENSIONS = (".jpg", ".jpeg", ".png")


class ImageReadError(UserError, OSError):
    """An image file is missing, corrupt, unreadable or of an unsupported kind."""

    hint = "download the dataset again (delete its folder under data/raw first)"


def read_image(path: Path) -> np.ndarray:
    """Read the image at ``path`` as a ``(C, H, W)`` array (native dtype, missing values set to 0).

    Raises:
        ImageReadError: naming the file, when it is missing, corrupt or has an unsupported suffix.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in RASTER_EXTENSIONS:
        return _read_raster(path)
    if suffix in PIL_EXTENSIONS:
        return _read_pil(path)
    raise ImageReadError(f"{path}: unsupported image suffix {path.suffix!r} "
                         f"(supported: {RASTER_EXTENSIONS + PIL_EXTENSIONS})")


def read_band_count(path: Path) -> int:
    """Return the number of bands of the image at ``path`` reading only its header."""
    path = Path(path)
    suffix = path.suffix.lower()
    try:
        if suffix in RASTER_EXTENSIONS:
            with _quiet(), rasterio.open(path) as src:
                return src.count
        if suffix in PIL_EXTENSIONS:
            with Image.open(path):
                return 3  # read_image always converts to RGB
    except (RasterioError, UnidentifiedImageError, OSError) as err:
        raise ImageReadError(f"{path}: cannot read image header ({err})") from err
    raise ImageReadError(f"{path}: unsupported image suffix {path.suffix!r}")


def read_band_files(paths: list[Path], size: int) -> np.ndarray:
    """Read one single-band GeoTIFF per band and resample each (bilinear) to a ``size`` x ``size`` grid.

    For products that store bands at several resolutions in separate files (BigEarthNet: 120, 60 and
    20 px). Returns a ``(len(paths), size, size)`` array; missing values follow the module rule.

    Raises:
        ValueError: if ``paths`` is empty.
        ImageReadError: naming the file that is unreadable or has more than one band.
    """
    if not paths:
        raise ValueError("read_band_files: no band files given")
    bands = []
    for path in map(Path, paths):
        try:
            with _quiet(), rasterio.open(path) as src:
                if src.count != 1:
                    raise ImageReadError(f"{path}: expected a single-band file, found {src.count} bands")
                band = src.read(1, out_shape=(size, size), resampling=Resampling.bilinear)
                bands.append(_zero_missing(band[None], src.nodatavals)[0])
        except RasterioError as err:
            raise ImageReadError(f"{path}: cannot read band file ({err})") from err
    return np.stack(bands)


def _read_raster(path: Path) -> np.ndarray:
    """Read every band of a GeoTIFF with rasterio."""
    try:
        with _quiet(), rasterio.open(path) as src:
            return _zero_missing(src.read(), src.nodatavals)
    except RasterioError as err:
        raise ImageReadError(f"{path}: cannot read raster ({err})") from err


def _read_pil(path: Path) -> np.ndarray:
    """Read a JPEG or PNG with Pillow as a ``(3, H, W)`` uint8 RGB array."""
    try:
        with Image.open(path) as image:
            rgb = np.asarray(image.convert("RGB"))
    except (UnidentifiedImageError, OSError) as err:
        raise ImageReadError(f"{path}: cannot read image ({err})") from err
    return np.ascontiguousarray(rgb.transpose(2, 0, 1))


def _zero_missing(array: np.ndarray, nodatavals: tuple[float | None, ...]) -> np.ndarray:
    """Set declared nodata values (per band) and non-finite floats of a ``(C, H, W)`` array to 0."""
    if np.issubdtype(array.dtype, np.floating):
        array[~np.isfinite(array)] = 0
    for band, nodata in zip(array, nodatavals, strict=True):
        if nodata is not None and not np.isnan(nodata):
            band[band == nodata] = 0
    return array


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence rasterio's warning about files without a geotransform (plain TIFF photos)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        yield
