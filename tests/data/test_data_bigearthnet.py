"""BigEarthNet v1.0 patch readers and label nomenclatures, on the real samples when present."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from rsdino.data.bigearthnet import (
    LABEL_43_TO_19,
    LABELS_19,
    LABELS_43,
    S1_BANDS,
    S2_BANDS,
    BigEarthNetError,
    labels_to_multihot,
    read_s1_patch,
    read_s2_patch,
)
from rsdino.data.readers import ImageReadError

TINY = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "bigearthnet_tiny"
needs_tiny = pytest.mark.skipif(not TINY.is_dir(), reason=f"real BigEarthNet samples absent ({TINY})")


def _patches(sensor: str) -> list[Path]:
    return sorted(p for p in (TINY / sensor).iterdir() if p.is_dir())


def test_nomenclatures() -> None:
    assert len(LABELS_43) == 43 and len(set(LABELS_43)) == 43
    assert len(LABELS_19) == 19 and len(set(LABELS_19)) == 19
    assert set(LABEL_43_TO_19) == set(LABELS_43)
    dropped = {name for name, index in LABEL_43_TO_19.items() if index is None}
    assert dropped == {"Road and rail networks and associated land", "Port areas", "Airports",
                       "Mineral extraction sites", "Dump sites", "Construction sites", "Green urban areas",
                       "Sport and leisure facilities", "Bare rock", "Burnt areas", "Intertidal flats"}
    assert set(LABEL_43_TO_19.values()) - {None} == set(range(19))
    assert S2_BANDS.index("B8A") == 8 and "B10" not in S2_BANDS and len(S2_BANDS) == 12
    assert S1_BANDS == ("VV", "VH")


def test_multihot_by_hand() -> None:
    labels = ["Discontinuous urban fabric", "Continuous urban fabric", "Rice fields", "Airports",
              "Sea and ocean"]
    target_19 = labels_to_multihot(labels, 19)
    assert target_19.dtype == np.float32 and target_19.shape == (19,)
    assert np.flatnonzero(target_19).tolist() == [0, 2, 18]  # urban fabric, arable land, marine waters
    target_43 = labels_to_multihot(labels, 43)
    assert np.flatnonzero(target_43).tolist() == [0, 1, 5, 13, 42]
    assert labels_to_multihot(["Airports"], 19).sum() == 0
    with pytest.raises(ValueError, match="unknown BigEarthNet label"):
        labels_to_multihot(["Glaciers and perpetual snow"])
    with pytest.raises(ValueError, match="43 or 19"):
        labels_to_multihot([], 10)


@needs_tiny
def test_real_s2_patches() -> None:
    patches = _patches("S2")
    assert len(patches) == 11
    for folder in patches:
        sample = read_s2_patch(folder)
        image = sample["image"]
        assert image.shape == (12, 120, 120) and image.dtype == np.uint16
        assert sample["bands"] == list(S2_BANDS)
        assert sample["crs"] is not None and sample["crs"].startswith("EPSG:326")
        assert sample["transform"][0] == 10.0  # the 10 m grid
        meta = json.loads((folder / f"{folder.name}_labels_metadata.json").read_text())
        assert sample["labels"] == meta["labels"] and sample["labels"]
        assert sample["label_43"].sum() == len(meta["labels"])
        assert 1 <= sample["label_19"].sum() <= len(meta["labels"])
        assert 0 < image.mean() < 10000 and (image > 0).mean() > 0.99


@needs_tiny
def test_real_s1_patches() -> None:
    patches = _patches("S1")
    assert len(patches) == 3
    for folder in patches:
        sample = read_s1_patch(folder)
        assert sample["image"].shape == (2, 120, 120) and sample["image"].dtype == np.float32
        assert sample["bands"] == ["VV", "VH"] and sample["crs"].startswith("EPSG:")
        assert -60 < sample["image"].min() and sample["image"].max() < 30  # sigma0 in dB
        assert sample["metadata"]["corresponding_s2_patch"].startswith("S2")
        assert sample["label_43"].sum() == len(sample["labels"])


@needs_tiny
def test_band_order_matches_files() -> None:
    import rasterio

    folder = _patches("S2")[0]
    image = read_s2_patch(folder)["image"]
    for index in (1, 3, 7):  # B02, B04, B08 are native 120 px: no resampling
        with rasterio.open(folder / f"{folder.name}_{S2_BANDS[index]}.tif") as src:
            np.testing.assert_array_equal(image[index], src.read(1))


@needs_tiny
def test_incomplete_or_corrupt_patch(tmp_path: Path) -> None:
    source = _patches("S2")[0]
    folder = tmp_path / source.name
    shutil.copytree(source, folder)
    (folder / f"{folder.name}_B8A.tif").write_bytes(b"broken")
    with pytest.raises(ImageReadError, match="B8A"):
        read_s2_patch(folder)
    (folder / f"{folder.name}_B8A.tif").unlink()
    with pytest.raises(FileNotFoundError, match="B8A"):
        read_s2_patch(folder)
    shutil.copy(source / f"{source.name}_B8A.tif", folder)
    (folder / f"{folder.name}_labels_metadata.json").write_text("{broken")
    with pytest.raises(BigEarthNetError, match="labels_metadata.json"):
        read_s2_patch(folder)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_s1_patch(tmp_path / "absent")
