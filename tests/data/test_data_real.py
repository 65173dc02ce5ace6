"""Checks on the real samples in ``<repo>/../shared/data`` (skipped when that folder is absent)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

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
