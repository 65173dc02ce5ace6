"""fMoW-RGB on a tiny generated tree: CSV preparation, the prepared folder of task ``fmow``, its items."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch
from PIL import Image

from rsdino.config.datasets import DatasetConfig
from rsdino.config.views import CropSettings
from rsdino.data import open_dataset, prepare_dataset
from rsdino.data.fmow import (
    CATEGORIES,
    COLUMNS,
    LABELS,
    FmowMetadataError,
    make_fake_fmow,
    prepare_fmow_csv,
)
from rsdino.data.fmow_dataset import context_box
from rsdino.views.builder import build_views

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


# ------------------------------------------------------------------ task `fmow`: prepared folder and items


def _fmow_cfg(**overrides) -> DatasetConfig:
    return DatasetConfig(task="fmow", source={"manual": "copy fMoW-RGB"}, bands=["R", "G", "B"],
                         rgb_bands=["R", "G", "B"], gsd=1.0, native_size=12, **overrides)


@pytest.fixture(scope="module")
def prepared_fmow(fake_fmow: tuple[Path, dict], tmp_path_factory: pytest.TempPathFactory) -> tuple:
    root, _ = fake_fmow
    out = tmp_path_factory.mktemp("fmow_prepared")
    summary = prepare_dataset(_fmow_cfg(), "fmow_fake", root, out, progress=False)
    return root, out, summary


def _meta(root: Path, rel: str) -> dict:
    return json.loads((root / rel).with_suffix(".json").read_text())


def test_csv_has_location_timestamp_and_box(fake_fmow: tuple[Path, dict], tmp_path: Path) -> None:
    root, _ = fake_fmow
    prepare_fmow_csv(root, tmp_path)
    for row in _read_csv(tmp_path / "train.csv"):
        meta = _meta(root, row["image_path"])
        boxes = meta["bounding_boxes"]
        box = boxes if isinstance(boxes, dict) else boxes[0]
        assert row["box"] == " ".join(str(v) for v in box["box"])
        assert row["location"] == row["id"].rsplit("_", 1)[0]
        assert row["timestamp"][:19] == meta["timestamp"][:19]


def test_prepare_task_fmow_writes_the_folder(prepared_fmow: tuple) -> None:
    _, out, summary = prepared_fmow
    assert summary["n_train"] == 24 and summary["n_test"] == 24 and summary["n_classes"] == 63
    assert sorted(p.name for p in out.iterdir()) == ["classes.json", "dataset.json", "locations.json",
                                                      "stats.json", "train.csv", "val.csv"]
    assert json.loads((out / "classes.json").read_text()) == list(LABELS)
    assert json.loads((out / "dataset.json").read_text())["task"] == "fmow"


def test_items_carry_their_metadata_gsd_label_time_and_location(prepared_fmow: tuple) -> None:
    root, out, _ = prepared_fmow
    train = open_dataset(_fmow_cfg(), root, out, "train")
    assert len(train) == 24 and train.classes == list(LABELS)
    gsds = set()
    for index in range(len(train)):
        item = train[index]
        meta = _meta(root, item["path"])
        assert item["image"].shape == (3, 12, 12) and item["image"].dtype == torch.float32
        assert item["gsd"] == meta["gsd"]
        assert LABELS[item["label"]] == item["path"].split("/")[1] and item["label"] > 0
        assert item["location"] == Path(item["path"]).parent.name
        assert item["timestamp"][:19] == meta["timestamp"][:19]
        gsds.add(item["gsd"])
    assert len(gsds) > 1  # the fake's GSDs vary, so a constant could not pass
    assert train.labels == [train[i]["label"] for i in range(len(train))]
    test, val = open_dataset(_fmow_cfg(), root, out, "test"), open_dataset(_fmow_cfg(), root, out, "val")
    assert [r["id"] for r in test.rows] == [r["id"] for r in val.rows]
    with pytest.raises(ValueError, match="unknown split"):
        open_dataset(_fmow_cfg(), root, out, "satdino/train")


def test_series_holds_other_timestamps_of_the_location(prepared_fmow: tuple) -> None:
    root, out, _ = prepared_fmow
    plain = open_dataset(_fmow_cfg(), root, out, "train")
    dated = open_dataset(_fmow_cfg(), root, out, "train", series=3)
    torch.manual_seed(0)
    item = dated[5]
    assert "series" not in plain[5]
    assert item["series"].shape == (3, 3, 12, 12) and torch.equal(item["series"][0], item["image"])
    assert item["series_timestamps"][0] == item["timestamp"]
    for image, gsd, stamp in zip(item["series"][1:], item["series_gsd"][1:], item["series_timestamps"][1:],
                                 strict=True):
        other = plain[next(i for i, r in enumerate(plain.rows) if r["timestamp"] == stamp
                           and r["location"] == item["location"])]
        assert other["path"] != item["path"] and torch.equal(image, other["image"])
        assert gsd.item() == pytest.approx(other["gsd"])
    assert item["series_gsd"][0].item() == pytest.approx(item["gsd"])


@pytest.mark.parametrize(("box", "size", "expected"), [
    ((10, 20, 60, 60), (100, 100), (6, 16, 74, 84)),    # >= half the image: margin 0.15, int(4.5) a side
    ((40, 40, 8, 8), (100, 100), (32, 32, 56, 56)),     # < 0.1 of the image: margin 2, 8 a side
    ((0, 0, 30, 15), (100, 100), (0, 0, 34, 22)),       # width 0.3: 0.3 (4 a side); height 0.15: 1 (7)
    ((95, 95, 5, 5), (100, 100), (90, 90, 100, 100)),   # clipped at the far edges
])
def test_context_box(box: tuple, size: tuple, expected: tuple) -> None:
    assert context_box(box, *size) == expected


def test_two_items_with_different_metadata_gsd_give_different_targets(prepared_fmow: tuple) -> None:
    """The GSD target of the SatDINO views is the item's metadata GSD scaled by the crop, not a constant."""
    root, out, _ = prepared_fmow
    train = open_dataset(_fmow_cfg(), root, out, "train")
    first = train[0]
    second = next(train[i] for i in range(1, len(train)) if train[i]["gsd"] != first["gsd"])
    crops = CropSettings(global_size=8, local_size=4, n_local=2, scale_bins=True)
    views = build_views(crops, bands=train.bands, rgb_bands=train.bands, mean=train.stats["mean"],
                        std=train.stats["std"], gsd=1.0, patch_size=4)
    targets = []
    for item in (first, second):
        torch.manual_seed(7)  # the same boxes for both: only the metadata GSD differs
        targets.append(views(item))
    ratio = second["gsd"] / first["gsd"]
    for key in ("global_gsd", "local_gsd"):
        assert not torch.allclose(targets[0][key], targets[1][key])
        torch.testing.assert_close(targets[1][key], targets[0][key] * ratio)
