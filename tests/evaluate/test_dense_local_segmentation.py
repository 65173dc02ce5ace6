"""The segmentation protocol reads a ``local_segmentation`` folder through the task registry's reader."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from rsdino.config.datasets import DatasetConfig
from rsdino.data import prepare_dataset
from rsdino.data.extract import extract_archive
from rsdino.data.local_segmentation import LocalSegmentationDataset, make_fake
from rsdino.data.registry import resolve
from rsdino.evaluate import dense

torch.set_num_threads(1)
RGB = ["R", "G", "B"]


@pytest.fixture()
def prepared(tmp_path: Path) -> tuple[Path, Path]:
    make_fake(tmp_path / "seg.tar", n_images=4, size=32, n_classes=3)
    raw = extract_archive(tmp_path / "seg.tar", tmp_path / "raw")
    cfg = DatasetConfig(task="local_segmentation", source={"url": "file://seg.tar"}, bands=RGB, rgb_bands=RGB,
                        tile_sizes=[32, 16], split={"test_fraction": 0.5, "seed": 0})
    prepare_dataset(cfg, "mine", raw, tmp_path / "prepared", progress=False)
    return raw, tmp_path / "prepared"


def test_the_reader_is_the_prepared_folders_task(prepared: tuple[Path, Path]) -> None:
    raw, folder = prepared
    task = dense._task_of("segmentation", folder)
    assert task == "local_segmentation"
    reader = resolve(dense.READERS[task])
    assert reader is LocalSegmentationDataset
    assert dense._task_of("segmentation", folder / "missing") == "segmentation"  # the protocol's own
    assert dense._split_name(reader, raw, folder, "train", 16) == "train_16"
    item = dense._Prepared("segmentation", [0.0] * 3, [1.0] * 3, 16)(reader(raw, folder, "train_16")[0])
    assert item["image"].shape == (3, 16, 16) and item["mask"].shape == (16, 16)


def test_a_task_without_a_dense_reader_is_named(prepared: tuple[Path, Path],
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    _, folder = prepared
    monkeypatch.delitem(dense.READERS, "local_segmentation")
    with pytest.raises(NotImplementedError, match="no dataset reader for task 'local_segmentation'"):
        dense.run_dense_protocol("segmentation", None, folder, folder, folder, None)


def test_segmentation_protocol_end_to_end(prepared: tuple[Path, Path], tmp_path: Path) -> None:
    from rsdino.config.evaluations import SegmentationEvaluation
    from rsdino.models.backbones import backbone_spec, build_backbone, export_backbone
    from rsdino.tracking import NullTracker

    raw, folder = prepared
    torch.manual_seed(0)
    meta = {**backbone_spec("vit_tiny_patch8", 3, 16, depth=2), "bands": RGB, "mean": [128.0] * 3,
            "std": [64.0] * 3}
    export_backbone(build_backbone("vit_tiny_patch8", 3, 16, depth=2), tmp_path / "model", meta)
    settings = SegmentationEvaluation(protocol="segmentation", dataset="mine", variants=["v"], head="linear",
                                      image_size=16, epochs=1, lr=1e-2, train_batch_size=4)
    result = dense.run_dense_protocol("segmentation", settings, tmp_path / "model", raw, folder,
                                      NullTracker(), progress=False)
    assert 0.0 <= result["metrics"]["mIoU"] <= 100.0
