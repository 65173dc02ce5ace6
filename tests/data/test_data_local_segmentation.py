"""Task ``local_segmentation``: a fake folder round trip through the registry, splits, classes, bad input."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from rsdino.config.datasets import DatasetConfig
from rsdino.data import open_dataset, prepare_dataset
from rsdino.data.extract import extract_archive
from rsdino.data.fake import FAKE_GENERATORS
from rsdino.data.local_segmentation import (
    LocalSegmentationDataset,
    SegmentationFolderError,
    import_folder,
    make_fake,
)
from rsdino.errors import UserError

torch.set_num_threads(1)
ROOT = Path(__file__).resolve().parents[2]
RGB = ["R", "G", "B"]


def _cfg(**update: object) -> DatasetConfig:
    settings = {"task": "local_segmentation", "source": {"url": "file://seg.tar"}, "bands": RGB,
                "rgb_bands": RGB, "tile_sizes": [16, 8], "split": {"test_fraction": 0.4, "seed": 0}}
    return DatasetConfig(**{**settings, **update})


def _folder(tmp_path: Path, **kwargs: object) -> Path:
    """A fake folder, extracted."""
    make_fake(tmp_path / "seg.tar", **kwargs)
    return extract_archive(tmp_path / "seg.tar", tmp_path / "raw")


def test_the_registered_generator_is_reproducible(tmp_path: Path) -> None:
    first = FAKE_GENERATORS["local_segmentation"](tmp_path / "a.tar", n_images=3, size=12)
    assert first == make_fake(tmp_path / "b.tar", n_images=3, size=12)
    assert (tmp_path / "a.tar").read_bytes() == (tmp_path / "b.tar").read_bytes()
    assert make_fake(tmp_path / "c.tar", n_images=3, size=12, seed=1) != first


def test_round_trip_through_the_registry(tmp_path: Path) -> None:
    raw = _folder(tmp_path, n_images=5, size=20, n_classes=3)
    summary = prepare_dataset(_cfg(), "mine", raw, tmp_path / "prep", progress=False)
    # 5 images of 20 px, seeded 3 train / 2 test; tiles of 16 px at x, y in {0, 4}: 4 per image
    assert summary == {"name": "mine", "n_train": 12, "n_test": 8, "n_classes": 3}
    train = open_dataset(_cfg(), raw, tmp_path / "prep", "train")
    assert isinstance(train, LocalSegmentationDataset) and len(train) == 12
    assert train.classes == ["0", "1", "2"]
    assert train.bands == RGB and len(train.stats["mean"]) == 3
    item = train[0]
    assert item["image"].shape == (3, 16, 16) and item["image"].dtype == torch.float32
    tile = train.tiles[0]
    expected = np.asarray(Image.open(raw / tile["mask"]))[tile["y"]:tile["y"] + 16, tile["x"]:tile["x"] + 16]
    assert torch.equal(item["mask"], torch.from_numpy(expected.astype(np.int64)))
    stems = {t["image"] for t in train.tiles} | {t["image"] for t in open_dataset(
        _cfg(), raw, tmp_path / "prep", "test").tiles}
    assert len(stems) == 5  # every image in one split
    assert open_dataset(_cfg(), raw, tmp_path / "prep", "test_8")[0]["mask"].shape == (8, 8)
    assert json.loads((tmp_path / "prep" / "dataset.json").read_text())["task"] == "local_segmentation"
    assert len(train.plot(0).axes) == 1


def test_list_files_classes_file_and_geotiffs(tmp_path: Path) -> None:
    raw = _folder(tmp_path, n_images=6, size=12, n_classes=2, image_format="tif", split_files=True,
                  class_file=True)
    cfg = _cfg(bands=["B1", "B2", "B3", "B4"], rgb_bands=[], tile_sizes=[8])
    summary = prepare_dataset(cfg, "mine", raw, tmp_path / "prep", progress=False)
    assert summary["n_classes"] == 2 and summary["n_test"] == 2 * 4  # test.txt: 2 images, 4 tiles each
    test = open_dataset(cfg, raw, tmp_path / "prep", "test")
    assert {t["image"] for t in test.tiles} == {"images/tile_4.tif", "images/tile_5.tif"}
    assert test.classes == ["class_0", "class_1"] and test[0]["image"].shape == (4, 8, 8)


def test_an_image_smaller_than_a_tile_is_padded_and_its_padding_ignored(tmp_path: Path) -> None:
    raw = _folder(tmp_path, n_images=2, size=6, n_classes=2)
    prepare_dataset(_cfg(tile_sizes=[8]), "mine", raw, tmp_path / "prep", progress=False)
    item = open_dataset(_cfg(tile_sizes=[8]), raw, tmp_path / "prep", "train")[0]
    assert item["mask"].shape == (8, 8)
    assert (item["mask"][6:] == 255).all() and (item["mask"][:, 6:] == 255).all()
    assert (item["mask"][:6, :6] != 255).sum() == 35  # the fake ignores one pixel per mask


def test_import_copies_a_checked_folder(tmp_path: Path) -> None:
    source = _folder(tmp_path, n_images=3, size=8, split_files=True)
    assert import_folder(source, tmp_path / "copy") == 3
    copied = sorted(p.name for p in (tmp_path / "copy").iterdir())
    assert copied == ["images", "masks", "test.txt", "train.txt"]
    with pytest.raises(SegmentationFolderError, match="list_file and resize"):
        import_folder(source, tmp_path / "other", resize=16)


def _raises_naming(path: Path | str, call, *args) -> str:  # noqa: ANN001
    with pytest.raises(UserError) as caught:
        call(*args)
    message = str(caught.value)
    assert "\n" not in message and message.startswith(str(path)), message
    return message


@pytest.mark.parametrize("damage", ["no_mask", "jpeg_mask", "mask_size", "rgb_mask", "index", "classes",
                                    "list_entry", "one_list", "corrupt", "bands"])
def test_bad_input_is_one_line_naming_the_file(tmp_path: Path, damage: str) -> None:
    raw = _folder(tmp_path, n_images=4, size=8, n_classes=3)
    masks = raw / "masks"
    expected: Path | str = masks / "tile_1.png"
    cfg = _cfg(tile_sizes=[8])
    if damage == "no_mask":
        (masks / "tile_1.png").unlink()
        expected = raw / "images" / "tile_1.png"
    elif damage == "jpeg_mask":
        shutil.move(masks / "tile_1.png", masks / "tile_1.jpg")
        expected = masks / "tile_1.jpg"
    elif damage == "mask_size":
        Image.fromarray(np.zeros((6, 8), np.uint8)).save(masks / "tile_1.png")
    elif damage == "rgb_mask":
        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(masks / "tile_1.png")
    elif damage == "index":  # 3 is no class of classes.txt (255 would be ignore)
        (raw / "classes.txt").write_text("a\nb\nc\n")
        Image.fromarray(np.full((8, 8), 3, np.uint8)).save(masks / "tile_1.png")
    elif damage == "classes":
        (raw / "classes.txt").write_text("a\nb\n")  # the masks hold 0..2: one of them is named
    elif damage == "list_entry":
        (raw / "train.txt").write_text("tile_0\n# comment\ntile_9\n")
        (raw / "test.txt").write_text("tile_1\n")
        expected = f"{raw / 'train.txt'}:3"
    elif damage == "one_list":
        (raw / "train.txt").write_text("tile_0\n")
        expected = raw / "test.txt"
    elif damage == "corrupt":
        (masks / "tile_1.png").write_bytes(b"not a png")
    elif damage == "bands":
        cfg = _cfg(bands=["R", "G", "B", "NIR"], rgb_bands=RGB, tile_sizes=[8])
        expected = raw / "images" / "tile_0.png"
    if damage == "classes":
        message = _raises_naming(masks, prepare_dataset, cfg, "mine", raw, tmp_path / "prep")
        assert "0..1 (classes.txt)" in message
        return
    _raises_naming(expected, prepare_dataset, cfg, "mine", raw, tmp_path / "prep")
    assert not (tmp_path / "prep").exists()


def test_a_folder_without_images_and_masks_is_named(tmp_path: Path) -> None:
    (tmp_path / "mine" / "images").mkdir(parents=True)
    _raises_naming(tmp_path / "mine" / "masks", import_folder, tmp_path / "mine", tmp_path / "out")


def _params_with(tmp_path: Path, entry: dict) -> Path:
    """The project's params.yaml with one more dataset, ``mine``."""
    import yaml

    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["datasets"]["mine"] = entry
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return path


def _error_line(err: str) -> str:
    """The one line ``rsdino download: error: ...`` of standard error (other tests' log handlers aside)."""
    lines = [line for line in err.splitlines() if line.startswith("rsdino download: error: ")]
    assert len(lines) == 1, err
    return lines[0]


def test_download_imports_a_local_folder_with_the_tasks_importer(tmp_path: Path, capsys,  # noqa: ANN001
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from rsdino.cli import main

    monkeypatch.chdir(tmp_path)  # the debug log of the failing step
    source = _folder(tmp_path, n_images=3, size=8)
    entry = {"task": "local_segmentation", "source": {"local": str(source)}, "bands": RGB, "tile_sizes": [8]}
    params = _params_with(tmp_path, entry)
    out = tmp_path / "out"
    assert main(["download", "--params", str(params), "--dataset", "mine", "--out", str(out)]) == 0
    assert sorted(p.name for p in (out / "masks").iterdir()) == [f"tile_{i}.png" for i in range(3)]
    (source / "masks" / "tile_2.png").unlink()
    code = main(["download", "--params", str(params), "--dataset", "mine", "--out", str(tmp_path / "again")])
    line = _error_line(capsys.readouterr().err)
    assert code == 2 and f"{source / 'images' / 'tile_2.png'}: no mask" in line


def test_an_unknown_task_in_params_is_one_line(tmp_path: Path, capsys,  # noqa: ANN001
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    from rsdino.cli import main

    monkeypatch.chdir(tmp_path)

    params = _params_with(tmp_path, {"task": "local_segmentaton", "source": {"local": "x"}, "bands": RGB})
    code = main(["download", "--params", str(params), "--dataset", "mine", "--out", str(tmp_path / "out")])
    line = _error_line(capsys.readouterr().err)
    assert code == 2 and "datasets.mine.task" in line and "unknown task 'local_segmentaton'" in line
    assert "(known: scene_classification, " in line and "local_segmentation" in line
