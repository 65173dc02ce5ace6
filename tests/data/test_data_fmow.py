"""fMoW-RGB CSV preparation on a tiny generated tree."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from PIL import Image

from rsdino.data.fmow import (
    CATEGORIES,
    COLUMNS,
    LABELS,
    FmowMetadataError,
    make_fake_fmow,
    prepare_fmow_csv,
)

CATS = ("airport", "crop_field", "multi-unit_residential", "zoo")


@pytest.fixture(scope="module")
def fake_fmow(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("fmow")
    written = make_fake_fmow(root, categories=CATS, n_locations=2, n_times=3, size=8)
    return root, written


def _read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_labels() -> None:
    assert len(CATEGORIES) == 62 and len(LABELS) == 63 and len(set(LABELS)) == 63
    assert LABELS[0] == "false_detection" and LABELS[1] == "airport" and LABELS[-1] == "zoo"
    assert LABELS.index("multi-unit_residential") == 31


def test_prepare_writes_csvs(fake_fmow: tuple[Path, dict], tmp_path: Path) -> None:
    root, written = fake_fmow
    summary = prepare_fmow_csv(root, tmp_path)
    assert summary["counts"] == {"train": 24, "val": 24} and summary["missing_images"] == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["locations.json", "train.csv", "val.csv"]
    for split in ("train", "val"):
        with open(tmp_path / f"{split}.csv") as handle:
            assert handle.readline().strip() == ",".join(COLUMNS)
        rows = _read_csv(tmp_path / f"{split}.csv")
        assert sorted(r["id"] for r in rows) == sorted(written[split])
        for row in rows:
            assert row["split"] == split
            assert LABELS[int(row["category_idx"])] == row["category_name"]
            assert row["image_path"].startswith(f"{split}/{row['category_name']}/")
            with Image.open(root / row["image_path"]) as image:
                assert image.size == (8, 8)
            meta = json.loads((root / row["image_path"]).with_suffix(".json").read_text())
            assert float(row["gsd"]) == meta["gsd"]
            assert meta["timestamp"].startswith(f"{row['year']}-{int(row['month']):02d}")
            assert meta["timestamp"][11:13] == f"{int(row['hour']):02d}"


def test_single_dict_bounding_box_is_read(fake_fmow: tuple[Path, dict], tmp_path: Path) -> None:
    root, _ = fake_fmow
    meta = json.loads((root / "train/airport/airport_0/airport_0_0_rgb.json").read_text())
    assert isinstance(meta["bounding_boxes"], dict)
    rows = {r["id"]: r for r in _read_csv(Path(prepare_fmow_csv(root, tmp_path)["outputs"][0]))}
    assert rows["airport_0_0"]["category_name"] == "airport"


def test_locations_are_chronological(fake_fmow: tuple[Path, dict], tmp_path: Path) -> None:
    root, _ = fake_fmow
    prepare_fmow_csv(root, tmp_path)
    locations = json.loads((tmp_path / "locations.json").read_text())
    assert set(locations) == {"train", "val"}
    assert len(locations["train"]) == len(CATS) * 2
    # even locations were written with t in time order, odd ones in reverse
    assert locations["train"]["zoo_0"] == ["zoo_0_0", "zoo_0_1", "zoo_0_2"]
    assert locations["train"]["zoo_1"] == ["zoo_1_2", "zoo_1_1", "zoo_1_0"]
    assert locations["val"]["multi-unit_residential_1"][0] == "multi-unit_residential_1_2"


def _copy_tree(tmp_path: Path) -> Path:
    root = tmp_path / "raw"
    make_fake_fmow(root, categories=("zoo",), n_locations=1, n_times=2, splits=("train",), size=4)
    return root


def test_malformed_json_names_the_file(tmp_path: Path) -> None:
    root = _copy_tree(tmp_path)
    bad = root / "train/zoo/zoo_0/zoo_0_1_rgb.json"
    bad.write_text("{not json")
    with pytest.raises(FmowMetadataError, match="zoo_0_1_rgb.json"):
        prepare_fmow_csv(root, tmp_path / "out", splits=("train",))
    assert not (tmp_path / "out" / "train.csv").exists()


@pytest.mark.parametrize(("change", "message"), [
    ({"bounding_boxes": []}, "no bounding_boxes"),
    ({"bounding_boxes": [{"category": "volcano"}]}, "unknown category"),
    ({"timestamp": "yesterday"}, "bad gsd or timestamp"),
    ({"gsd": None}, "bad gsd or timestamp"),
])
def test_bad_fields_name_the_file(tmp_path: Path, change: dict, message: str) -> None:
    root = _copy_tree(tmp_path)
    path = root / "train/zoo/zoo_0/zoo_0_0_rgb.json"
    path.write_text(json.dumps(json.loads(path.read_text()) | change))
    with pytest.raises(FmowMetadataError, match=f"zoo_0_0_rgb.json.*{message}"):
        prepare_fmow_csv(root, tmp_path / "out", splits=("train",))


def test_missing_field_and_image_and_split(tmp_path: Path) -> None:
    root = _copy_tree(tmp_path)
    (root / "train/zoo/zoo_0/zoo_0_1_rgb.jpg").unlink()
    summary = prepare_fmow_csv(root, tmp_path / "out", splits=("train",))
    assert summary["counts"] == {"train": 1}
    assert summary["missing_images"] == ["train/zoo/zoo_0/zoo_0_1_rgb.jpg"]
    path = root / "train/zoo/zoo_0/zoo_0_0_rgb.json"
    meta = json.loads(path.read_text())
    del meta["timestamp"]
    path.write_text(json.dumps(meta))
    with pytest.raises(FmowMetadataError, match="missing field 'timestamp'"):
        prepare_fmow_csv(root, tmp_path / "out", splits=("train",))
    with pytest.raises(FileNotFoundError, match="fmow-rgb"):
        prepare_fmow_csv(root, tmp_path / "out")  # no val folder
