"""SEN12MS-CR-TS pairing, ROI split and JSON index on tiny generated trees."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine

from rsdino.data.sen12mscrts import (
    NAME_RE,
    OFFICIAL_VAL_ROIS,
    index_sen12mscrts,
    make_fake_sen12mscrts,
    write_index,
)

ROIS = (("1158", "106"), ("1868", "17"), ("1970", "21"), ("2017", "8"), ("2017", "22"))


def _key(rel: str) -> tuple[str, ...]:
    groups = NAME_RE.match(rel.rsplit("/", 1)[1]).groups()
    return groups[1], groups[2], groups[3], groups[5]


def _roi(rel: str) -> str:
    return "/".join(rel.split("/")[:2])


def _all_pairs(report) -> list[tuple[str, str]]:
    return sorted(report.pairs["train"] + report.pairs["val"])


@pytest.fixture(scope="module")
def fake_tree(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("sen12mscrts")
    info = make_fake_sen12mscrts(root, rois=ROIS, n_times=2, n_patches=3, seed=1, size=4, shuffle=True,
                                 drop_s1=1, drop_s2=2)
    return root, info


def _empty_tree(root: Path, n_rois: int) -> None:
    """Zero-byte files: enough for pairing without band checks."""
    for roi in range(n_rois):
        for sensor in ("s1", "s2"):
            folder = root / f"ROIs1970/{roi}/{sensor.upper()}/0"
            folder.mkdir(parents=True)
            day = 1 if sensor == "s1" else 3
            (folder / f"{sensor}_ROIs1970_{roi}_ImgNo_0_2018-01-0{day}_patch_0.tif").touch()


def test_shuffled_tree_pairs_exactly(fake_tree: tuple[Path, dict]) -> None:
    root, info = fake_tree
    report = index_sen12mscrts(root, val_fraction=0.4, seed=0, check_bands=True)
    pairs = _all_pairs(report)
    assert pairs == info["pairs"]
    assert all(_key(s1) == _key(s2) and "/S1/" in s1 and "/S2/" in s2 for s1, s2 in pairs)
    assert report.unpaired_s1 == info["unpaired_s1"] and report.unpaired_s2 == info["unpaired_s2"]
    assert not report.misnamed and not report.misplaced and not report.bad_bands
    assert report.n_files == info["n_files"]


def test_split_is_by_roi_and_seeded(fake_tree: tuple[Path, dict]) -> None:
    root, info = fake_tree
    report = index_sen12mscrts(root, val_fraction=0.4, seed=3)
    train_rois = {_roi(s1) for s1, _ in report.pairs["train"]} | {_roi(s2) for _, s2 in report.pairs["train"]}
    val_rois = {_roi(s1) for s1, _ in report.pairs["val"]} | {_roi(s2) for _, s2 in report.pairs["val"]}
    assert not train_rois & val_rois
    assert train_rois | val_rois == set(info["rois"])
    assert sorted(val_rois) == report.rois["val"] and len(val_rois) == 2  # round(0.4 * 5)
    again = index_sen12mscrts(root, val_fraction=0.4, seed=3)
    assert again.pairs == report.pairs and again.rois == report.rois


def test_different_seeds_give_different_splits(tmp_path: Path) -> None:
    _empty_tree(tmp_path, 12)
    splits = {tuple(index_sen12mscrts(tmp_path, val_fraction=0.25, seed=s).rois["val"]) for s in range(5)}
    assert len(splits) > 1
    assert all(len(val) == 3 for val in splits)


def test_explicit_val_rois(tmp_path: Path) -> None:
    make_fake_sen12mscrts(tmp_path, rois=ROIS, n_times=1, n_patches=1, size=2)
    report = index_sen12mscrts(tmp_path, val_rois=OFFICIAL_VAL_ROIS)
    assert report.rois["val"] == ["ROIs1868/17", "ROIs2017/22"]
    assert all(_roi(s1) in report.rois["val"] for s1, _ in report.pairs["val"])


def test_problems_are_reported_not_raised(tmp_path: Path) -> None:
    info = make_fake_sen12mscrts(tmp_path, rois=ROIS[:2], n_times=2, n_patches=2, size=4)
    s1_rel, s2_rel = info["pairs"][0]
    # wrong band count: a 3-band file under an S2 name
    with rasterio.open(tmp_path / s2_rel, "w", driver="GTiff", width=4, height=4, count=3, dtype="uint16",
                       crs="EPSG:32632", transform=Affine(10, 0, 0, 0, -10, 0)) as dst:
        dst.write(np.zeros((3, 4, 4), dtype=np.uint16))
    # unreadable: garbage bytes under an S1 name
    corrupt_s1 = info["pairs"][1][0]
    (tmp_path / corrupt_s1).write_bytes(b"not a tiff")
    # misnamed and misplaced files
    (tmp_path / "ROIs1158/106/S1/0/notes.txt").write_text("x")
    (tmp_path / "ROIs1158/106/S1/0/s1_ROIs1158_106_ImgNo_0_patch_9.tif").touch()
    misplaced = "ROIs1158/106/S1/1/s1_ROIs1158_106_ImgNo_0_2018-01-01_patch_7.tif"
    (tmp_path / misplaced).touch()
    # duplicate key: the same S1 patch with a second date
    duplicate = s1_rel.replace("2018-01-01", "2018-01-02")
    (tmp_path / duplicate).touch()

    report = index_sen12mscrts(tmp_path, val_fraction=0.5, check_bands=True)
    assert {item["path"] for item in report.bad_bands} == {s2_rel, corrupt_s1}
    assert any("3 bands, expected 13" in item["error"] for item in report.bad_bands)
    assert report.misnamed == ["ROIs1158/106/S1/0/notes.txt",
                               "ROIs1158/106/S1/0/s1_ROIs1158_106_ImgNo_0_patch_9.tif"]
    assert report.misplaced == [misplaced]
    assert report.duplicates == [duplicate]
    pairs = _all_pairs(report)
    assert pairs == [p for p in info["pairs"] if p[0] not in (s1_rel, corrupt_s1)]
    # without band checks the same tree pairs fully (names only)
    assert len(_all_pairs(index_sen12mscrts(tmp_path, val_fraction=0.5))) == len(info["pairs"])


def test_write_index(fake_tree: tuple[Path, dict], tmp_path: Path) -> None:
    root, info = fake_tree
    report = index_sen12mscrts(root, val_fraction=0.4, seed=0)
    written = write_index(report, tmp_path / "index")
    assert sorted(p.name for p in (tmp_path / "index").iterdir()) == [
        "pairing_report.json", "train_all.json", "val_all.json"]  # no temporary files left behind
    train = json.loads(written["train"].read_text())
    val = json.loads(written["val"].read_text())
    assert train == sorted(train) and val == sorted(val)
    assert sorted(map(tuple, train + val)) == info["pairs"]
    for s1_rel, s2_rel in train + val:
        assert not Path(s1_rel).is_absolute() and "\\" not in s1_rel and (root / s1_rel).is_file()
        assert (root / s2_rel).is_file()
    saved = json.loads(written["report"].read_text())
    assert saved["summary"]["pairs_train"] == len(train)
    assert saved["unpaired_s1"] == info["unpaired_s1"]
    assert saved["rois"] == report.rois


def test_missing_root_and_bad_fraction(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="mediaTUM"):
        index_sen12mscrts(tmp_path / "absent")
    _empty_tree(tmp_path, 2)
    with pytest.raises(ValueError, match="val_fraction"):
        index_sen12mscrts(tmp_path, val_fraction=1.0)


def test_fake_files_have_real_bands(fake_tree: tuple[Path, dict]) -> None:
    root, info = fake_tree
    s1_rel, s2_rel = info["pairs"][0]
    with rasterio.open(root / s1_rel) as s1, rasterio.open(root / s2_rel) as s2:
        assert (s1.count, s1.dtypes[0], s2.count, s2.dtypes[0]) == (2, "float32", 13, "uint16")
        assert -25 <= s1.read().min() and s1.read().max() <= 0
        assert s2.read().max() <= 10000 and s1.crs == s2.crs
