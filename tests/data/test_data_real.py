"""Checks on the real samples in ``<repo>/../shared/data`` (skipped when that folder is absent)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch

from rsdino.config.datasets import DatasetConfig
from rsdino.data import open_dataset, prepare_dataset
from rsdino.data.bigearthnet import labels_to_multihot
from rsdino.data.readers import read_band_files, read_image
from rsdino.data.splits import list_scene_folder, stratified_split

REAL_DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"
BIGEARTHNET_BANDS = ["B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B09", "B11", "B12", "B8A"]

pytestmark = pytest.mark.skipif(not REAL_DATA.is_dir(), reason=f"no real data folder at {REAL_DATA}")


def test_ucmerced_lists_21_classes_and_splits_reproducibly():
    items, classes = list_scene_folder(REAL_DATA / "ucmerced", (".jpg",))
    assert len(classes) == 21 and "agricultural" in classes
    assert len(items) == 2100
    first = stratified_split(items, test_fraction=0.2, seed=0)
    assert stratified_split(items, test_fraction=0.2, seed=0) == first
    assert len(first[1]) == 21 * 20
    image = read_image(REAL_DATA / "ucmerced" / items[0][0])
    assert image.shape[0] == 3 and image.dtype == np.uint8


def test_bigearthnet_band_files_on_one_grid():
    patch = sorted(p for p in (REAL_DATA / "bigearthnet_tiny" / "S2").iterdir() if p.is_dir())[0]
    paths = [patch / f"{patch.name}_{band}.tif" for band in BIGEARTHNET_BANDS]
    stack = read_band_files(paths, size=120)
    assert stack.shape == (12, 120, 120)
    assert stack.dtype == np.uint16 and stack.max() > 0
    labels = json.loads((patch / f"{patch.name}_labels_metadata.json").read_text())
    assert labels["labels"]


def _config(**fields: object) -> DatasetConfig:
    return DatasetConfig(source={"url": "file://unused.zip"}, **fields)


def test_ucmerced_as_a_prepared_21_class_dataset(tmp_path: Path) -> None:
    """The real UC Merced, prepared through the registry: 21 classes, seeded stratified split."""
    cfg = _config(extensions=[".jpg"], bands=["R", "G", "B"], rgb_bands=["R", "G", "B"], gsd=0.3,
                  native_size=256, split={"test_fraction": 0.2, "seed": 3})
    summary = prepare_dataset(cfg, "ucmerced_real", REAL_DATA / "ucmerced", tmp_path / "a", progress=False)
    assert summary == {"name": "ucmerced_real", "n_train": 1680, "n_test": 420, "n_classes": 21}
    prepare_dataset(cfg, "ucmerced_real", REAL_DATA / "ucmerced", tmp_path / "b", progress=False)
    assert (tmp_path / "a" / "test.txt").read_bytes() == (tmp_path / "b" / "test.txt").read_bytes()
    other = cfg.model_copy(update={"split": cfg.split.model_copy(update={"seed": 4})})
    prepare_dataset(other, "ucmerced_real", REAL_DATA / "ucmerced", tmp_path / "c", progress=False)
    assert (tmp_path / "a" / "test.txt").read_bytes() != (tmp_path / "c" / "test.txt").read_bytes()
    test = open_dataset(cfg, REAL_DATA / "ucmerced", tmp_path / "a", "test")
    assert len(test.classes) == 21 and np.bincount(test.labels).tolist() == [20] * 21
    item = test[0]
    assert item["image"].shape[0] == 3 and 0 <= item["label"] < 21
    assert len(test.stats["mean"]) == 3 and all(0 < m < 255 for m in test.stats["mean"])


@pytest.mark.parametrize(("sensor", "bands", "count"), [
    ("S2", ["B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B11", "B12"], 11),
    ("S1", ["VV", "VH"], 3),
])
def test_bigearthnet_real_patches_as_multilabel_dataset(tmp_path: Path, sensor: str, bands: list[str],
                                                        count: int) -> None:
    """The real BigEarthNet patches through the multilabel dataset: one 120 px grid, 19-class targets."""
    raw = REAL_DATA / "bigearthnet_tiny"
    cfg = _config(task="multilabel", class_root=sensor, bands=bands, native_size=120,
                  split={"test_fraction": 0.3, "seed": 0})
    summary = prepare_dataset(cfg, "ben", raw, tmp_path / "prep", progress=False)
    assert summary["n_train"] + summary["n_test"] == count
    items = [open_dataset(cfg, raw, tmp_path / "prep", split)[i]
             for split in ("train", "test") for i in range(summary[f"n_{split}"])]
    for item in items:
        assert item["image"].shape == (len(bands), 120, 120) and item["label"].shape == (19,)
        folder = raw / item["path"]
        labels = json.loads((folder / f"{folder.name}_labels_metadata.json").read_text())["labels"]
        assert torch.equal(item["label"], torch.from_numpy(labels_to_multihot(labels, 19)))
        with rasterio.open(folder / f"{folder.name}_{bands[-1]}.tif") as src:
            assert src.crs is not None and src.crs.is_projected
    if sensor == "S1":
        assert all(item["image"].max() < 30 and item["image"].min() > -60 for item in items)  # dB
    else:
        assert all(item["image"].min() >= 0 and item["image"].max() > 100 for item in items)  # DN
