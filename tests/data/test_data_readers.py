"""Tests for rsdino.data.readers: GeoTIFF and Pillow paths, missing values, band files, errors."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
from PIL import Image

from rsdino.data.readers import ImageReadError, read_band_count, read_band_files, read_image


def _write_tif(path, array, nodata=None, res=10.0):
    count, height, width = array.shape
    transform = rasterio.Affine(res, 0, 500000, 0, -res, 5000000)
    with rasterio.open(path, "w", driver="GTiff", height=height, width=width, count=count, dtype=array.dtype,
                       crs="EPSG:32632", transform=transform, nodata=nodata) as dst:
        dst.write(array)
    return path


def test_read_geotiff_all_bands(tmp_path):
    array = np.arange(3 * 4 * 5, dtype=np.uint16).reshape(3, 4, 5) + 1
    image = read_image(_write_tif(tmp_path / "a.tif", array))
    assert image.dtype == np.uint16
    np.testing.assert_array_equal(image, array)
    assert read_band_count(tmp_path / "a.tif") == 3


def test_nodata_and_nan_become_zero(tmp_path):
    ints = np.full((2, 3, 3), 7, dtype=np.uint16)
    ints[1, 0, 0] = 65535
    image = read_image(_write_tif(tmp_path / "i.tif", ints, nodata=65535))
    assert image[1, 0, 0] == 0 and image[0, 0, 0] == 7

    floats = np.ones((1, 2, 2), dtype=np.float32)
    floats[0, 0, 0], floats[0, 0, 1], floats[0, 1, 0] = np.nan, np.inf, -9999
    image = read_image(_write_tif(tmp_path / "f.tif", floats, nodata=-9999))
    np.testing.assert_array_equal(image, [[[0, 0], [0, 1]]])


@pytest.mark.parametrize("suffix", [".png", ".jpg"])
def test_read_pil_image_channel_first(tmp_path, suffix):
    rgb = np.zeros((6, 8, 3), dtype=np.uint8)
    rgb[..., 0] = 200
    Image.fromarray(rgb).save(tmp_path / f"a{suffix}")
    image = read_image(tmp_path / f"a{suffix}")
    assert image.shape == (3, 6, 8) and image.dtype == np.uint8
    assert abs(int(image[0].mean()) - 200) < 5 and image[1].mean() < 5
    Image.fromarray(rgb[..., 0]).save(tmp_path / f"gray{suffix}")
    assert read_image(tmp_path / f"gray{suffix}").shape == (3, 6, 8)
    assert read_band_count(tmp_path / f"gray{suffix}") == 3


@pytest.mark.parametrize("name", ["bad.tif", "bad.jpg", "bad.png"])
def test_corrupt_file_error_names_the_file(tmp_path, name):
    (tmp_path / name).write_bytes(b"this is not an image")
    with pytest.raises(ImageReadError, match=name):
        read_image(tmp_path / name)
    with pytest.raises(ImageReadError, match=name):
        read_band_count(tmp_path / name)


def test_truncated_jpeg_and_missing_file(tmp_path):
    noise = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(noise).save(tmp_path / "a.jpg")
    data = (tmp_path / "a.jpg").read_bytes()
    (tmp_path / "a.jpg").write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageReadError, match="a.jpg"):
        read_image(tmp_path / "a.jpg")
    with pytest.raises(ImageReadError, match="missing.tif"):
        read_image(tmp_path / "missing.tif")


def test_unsupported_suffix(tmp_path):
    with pytest.raises(ImageReadError, match="unsupported"):
        read_image(tmp_path / "x.bmp")


def test_read_band_files_resamples_to_one_grid(tmp_path):
    fine = _write_tif(tmp_path / "B02.tif", np.full((1, 12, 12), 100, dtype=np.uint16), res=10)
    coarse = _write_tif(tmp_path / "B01.tif", np.full((1, 2, 2), 50, dtype=np.uint16), res=60)
    ramp = np.tile(np.arange(6, dtype=np.uint16) * 10, (6, 1))[None]
    medium = _write_tif(tmp_path / "B05.tif", ramp, res=20)
    stack = read_band_files([coarse, fine, medium], size=12)
    assert stack.shape == (3, 12, 12)
    assert (stack[0] == 50).all() and (stack[1] == 100).all()
    assert np.all(np.diff(stack[2].astype(int), axis=1) >= 0)  # bilinear keeps the ramp monotone
    assert stack[2].min() >= 0 and stack[2].max() <= 50


def test_read_band_files_refuses_multiband_and_empty(tmp_path):
    multi = _write_tif(tmp_path / "multi.tif", np.zeros((2, 4, 4), dtype=np.uint16))
    with pytest.raises(ImageReadError, match="multi.tif"):
        read_band_files([multi], size=4)
    with pytest.raises(ValueError):
        read_band_files([], size=4)
