"""Tests for rsdino.data.prepare on the generated fake EuroSAT-MS."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from rsdino.data.fake.eurosat import BANDS, ROOT
from rsdino.data.prepare import BandCountError
from rsdino.data.readers import read_image
from rsdino.data.splits import read_split_file


def test_prepare_writes_expected_files_and_counts(fake_eurosat_raw, prepare_fake, tmp_path):
    out = tmp_path / "prepared"
    summary = prepare_fake(fake_eurosat_raw, out)
    assert summary == {"name": "fake_eurosat", "n_train": 40, "n_test": 10, "n_classes": 10}
    assert sorted(p.name for p in out.iterdir()) == ["classes.json", "dataset.json", "stats.json",
                                                      "test.txt", "train.txt"]
    classes = json.loads((out / "classes.json").read_text())
    assert classes[0] == "AnnualCrop" and len(classes) == 10
    train, test = read_split_file(out / "train.txt"), read_split_file(out / "test.txt")
    assert len(train) == 40 and len(test) == 10
    assert all(rel.startswith(ROOT + "/") and (fake_eurosat_raw / rel).is_file() for rel, _ in train + test)
    assert all(rel.split("/")[-2] == classes[label] for rel, label in train + test)
    assert sorted({label for _, label in test}) == list(range(10))
    metadata = json.loads((out / "dataset.json").read_text())
    assert metadata == {"name": "fake_eurosat", "bands": BANDS, "rgb_bands": ["B04", "B03", "B02"],
                        "gsd": 10.0, "native_size": 16}


def test_stats_come_from_the_train_split_only(fake_eurosat_prepared, fake_eurosat_raw):
    stats = json.loads((fake_eurosat_prepared / "stats.json").read_text())
    assert stats["bands"] == BANDS and stats["n_images"] == 40
    train = read_split_file(fake_eurosat_prepared / "train.txt")
    pixels = np.concatenate([read_image(fake_eurosat_raw / rel).reshape(13, -1) for rel, _ in train], axis=1)
    np.testing.assert_allclose(stats["mean"], pixels.mean(axis=1), rtol=1e-10)
    np.testing.assert_allclose(stats["std"], pixels.std(axis=1), rtol=1e-8)


def test_prepare_is_deterministic(fake_eurosat_raw, fake_eurosat_prepared, prepare_fake, tmp_path):
    prepare_fake(fake_eurosat_raw, tmp_path / "again")
    for name in ["train.txt", "test.txt", "stats.json", "classes.json", "dataset.json"]:
        assert (tmp_path / "again" / name).read_bytes() == (fake_eurosat_prepared / name).read_bytes()


def test_wrong_band_count_names_the_file_and_leaves_no_output(fake_eurosat_raw, prepare_fake, tmp_path):
    out = tmp_path / "prepared"
    with pytest.raises(BandCountError, match=r"AnnualCrop_1\.tif: 13 bands, expected 3"):
        prepare_fake(fake_eurosat_raw, out, bands=["B04", "B03", "B02"])
    assert not out.exists()


def test_rgb_bands_must_be_bands(fake_eurosat_raw, prepare_fake, tmp_path):
    with pytest.raises(ValueError, match="rgb_bands"):
        prepare_fake(fake_eurosat_raw, tmp_path / "p", rgb_bands=["R", "G", "B"])


def test_missing_raw_folder(prepare_fake, tmp_path):
    with pytest.raises(FileNotFoundError, match="download"):
        prepare_fake(tmp_path / "raw", tmp_path / "p")


def test_failure_keeps_previous_prepared_folder(fake_eurosat_prepared, fake_eurosat_raw, prepare_fake,
                                                tmp_path):
    out = tmp_path / "prepared"
    shutil.copytree(fake_eurosat_prepared, out)
    broken = tmp_path / "raw"
    shutil.copytree(fake_eurosat_raw, broken)
    (broken / ROOT / "Forest" / "Forest_2.tif").write_bytes(b"corrupt")
    with pytest.raises(OSError, match="Forest_2.tif"):
        prepare_fake(broken, out)
    assert (out / "train.txt").read_bytes() == (fake_eurosat_prepared / "train.txt").read_bytes()


def test_named_splits_beside_the_default_one(fake_eurosat_raw, fake_eurosat_prepared, prepare_fake, tmp_path):
    """A named split (SatDINO's 80/20) is written under splits/<name>/ with its own statistics; the
    default split keeps its file names and contents."""
    from rsdino.data.scene import SceneDataset

    out = tmp_path / "named"
    summary = prepare_fake(fake_eurosat_raw, out, test_fraction=0.1, named_splits={"satdino": (0.2, 0)})
    assert summary["n_test"] == 10 and summary["splits"] == {"satdino": {"n_train": 40, "n_test": 10}}
    assert sorted(p.name for p in (out / "splits" / "satdino").iterdir()) == ["stats.json", "test.txt",
                                                                             "train.txt"]
    default_train = SceneDataset(fake_eurosat_raw, out, "train")
    named_train = SceneDataset(fake_eurosat_raw, out, "satdino/train")
    named_test = SceneDataset(fake_eurosat_raw, out, "satdino/test")
    assert len(named_train) + len(named_test) == 50
    assert not {p for p, _ in named_train.samples} & {p for p, _ in named_test.samples}
    assert named_train.stats["n_images"] == len(named_train)
    images = [read_image(fake_eurosat_raw / rel).reshape(13, -1) for rel, _ in named_train.samples]
    pixels = np.concatenate(images, axis=1)
    np.testing.assert_allclose(named_train.stats["mean"], pixels.mean(axis=1), rtol=1e-10)
    assert default_train.stats == json.loads((out / "stats.json").read_text())
    prepare_fake(fake_eurosat_raw, tmp_path / "plain", test_fraction=0.1)
    for name in ["train.txt", "test.txt", "stats.json"]:  # the default split is untouched by named ones
        assert (out / name).read_bytes() == (tmp_path / "plain" / name).read_bytes()
    with pytest.raises(ValueError, match="unknown split 'other/train'"):
        SceneDataset(fake_eurosat_raw, out, "other/train")


def test_named_split_fraction_and_seed_are_its_own(fake_eurosat_raw, prepare_fake, tmp_path):
    out = tmp_path / "named"
    prepare_fake(fake_eurosat_raw, out, test_fraction=0.2, named_splits={"a": (0.4, 0), "b": (0.4, 1)})
    a = read_split_file(out / "splits" / "a" / "test.txt")
    b = read_split_file(out / "splits" / "b" / "test.txt")
    assert len(a) == len(b) == 20 and len(read_split_file(out / "test.txt")) == 10
    assert a != b  # another seed, another draw
