"""Tests for the fake EuroSAT-MS generator: determinism, real layout, GeoTIFF format, class structure."""

from __future__ import annotations

import tarfile

import numpy as np
import pytest
import rasterio

from rsdino.data.download import file_digest
from rsdino.data.fake import FAKE_GENERATORS
from rsdino.data.fake.eurosat import BANDS, CLASSES, ROOT, make_fake_eurosat_ms, render_image
from rsdino.data.readers import read_image

REAL_CLASSES = ["AnnualCrop", "Forest", "HerbaceousVegetation", "Highway", "Industrial", "Pasture",
                "PermanentCrop", "Residential", "River", "SeaLake"]


def test_registry():
    assert FAKE_GENERATORS["eurosat_ms"] is make_fake_eurosat_ms


def test_same_seed_same_bytes_other_seed_differs(tmp_path, fake_eurosat_tar):
    archive, sha256 = fake_eurosat_tar
    again = make_fake_eurosat_ms(tmp_path / "again.tar", n_per_class=5, size=16, seed=0)
    other = make_fake_eurosat_ms(tmp_path / "other.tar", n_per_class=5, size=16, seed=1)
    assert again == sha256 == file_digest(archive, "sha256")
    assert (tmp_path / "again.tar").read_bytes() == archive.read_bytes()
    assert other != sha256


def test_archive_is_deterministic_uncompressed_tar(fake_eurosat_tar):
    archive, _ = fake_eurosat_tar
    assert archive.read_bytes()[257:262] == b"ustar"  # an uncompressed tar, not gzip
    with tarfile.open(archive, "r:") as tar:
        members = tar.getmembers()
    names = [m.name for m in members]
    assert names == sorted(names)
    assert {(m.mtime, m.uid, m.gid, m.uname, m.gname) for m in members} == {(0, 0, 0, "", "")}
    files = [m for m in members if m.isfile()]
    assert len(files) == 10 * 5
    assert {m.mode for m in files} == {0o644}


def test_real_layout_and_geotiff_format(fake_eurosat_raw):
    root = fake_eurosat_raw / ROOT
    assert sorted(p.name for p in root.iterdir()) == REAL_CLASSES
    forest = sorted(p.name for p in (root / "Forest").iterdir())
    assert forest == sorted(f"Forest_{n}.tif" for n in range(1, 6))
    with rasterio.open(root / "River" / "River_1.tif") as src:
        assert src.count == 13
        assert src.dtypes == ("uint16",) * 13
        assert (src.width, src.height) == (16, 16)
        assert src.crs.to_epsg() == 32632
        assert src.res == (10.0, 10.0)
        assert src.compression is None
    assert BANDS[-1] == "B8A" and BANDS[9] == "B10" and len(BANDS) == 13


def test_class_signatures_are_plausible_and_shared_between_pairs():
    def class_mean(name, **knobs):
        images = [render_image(name, 32, np.random.default_rng([0, i]), **knobs) for i in range(20)]
        return np.mean([image.mean(axis=(1, 2)) for image in images], axis=0)

    means = {name: class_mean(name) for name in CLASSES}
    assert all(0 < m.min() and m.max() < 10000 for m in means.values())
    nir, red = BANDS.index("B08"), BANDS.index("B04")
    pure = {name: class_mean(name, signature_overlap=0.0) for name in ("Forest", "SeaLake")}
    assert pure["Forest"][nir] > 3 * pure["Forest"][red]  # vegetation: red edge
    assert pure["SeaLake"][nir] < pure["SeaLake"][red]  # water: dark in NIR
    assert means["Forest"][nir] > 2 * means["Forest"][red]  # still vegetation-like with the default overlap

    def distance(a, b):
        return np.abs(np.log(means[a]) - np.log(means[b])).mean()

    # texture pairs share materials, so their mean spectra are closer than unrelated classes
    assert distance("AnnualCrop", "PermanentCrop") < distance("AnnualCrop", "SeaLake") / 3
    assert distance("Pasture", "HerbaceousVegetation") < distance("Pasture", "Industrial") / 3


@pytest.mark.parametrize("knob", [{"noise": 0.3}, {"signature_overlap": 1.0}, {"jitter": 0.5}])
def test_difficulty_knobs_change_images(knob):
    easy = render_image("Residential", 16, np.random.default_rng(0))
    hard = render_image("Residential", 16, np.random.default_rng(0), **knob)
    assert easy.dtype == hard.dtype == np.uint16
    assert not np.array_equal(easy, hard)


def test_overlap_one_makes_pure_areas_spectrally_identical():
    a = render_image("SeaLake", 16, np.random.default_rng(0), signature_overlap=1.0, noise=0, jitter=0)
    b = render_image("Industrial", 16, np.random.default_rng(0), signature_overlap=1.0, noise=0, jitter=0)
    assert np.abs(a.astype(int) - b.astype(int)).max() <= 1


def test_generated_tif_reads_back(fake_eurosat_raw):
    image = read_image(fake_eurosat_raw / ROOT / "Highway" / "Highway_3.tif")
    assert image.shape == (13, 16, 16) and image.dtype == np.uint16
