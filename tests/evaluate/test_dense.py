"""Dense and multi-label protocols on tiny fake data: shapes, learning, and the metrics they report."""

from __future__ import annotations

import pytest
import torch

from rsdino.evaluate.dense import (
    Segmenter,
    SiameseChangeDetector,
    run_dense_protocol,
    train_change_detection,
    train_multilabel,
    train_segmentation,
)
from rsdino.models.backbones import build_backbone

torch.set_num_threads(1)


def vit():
    torch.manual_seed(0)
    return build_backbone("vit_tiny_patch8", 3, 16, depth=2)


class Items(torch.utils.data.Dataset):
    def __init__(self, items):
        self.items = items

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        return self.items[i]


def halves(n, seed):
    """Images whose left or right half is bright; the mask marks the bright half (class 1)."""
    gen = torch.Generator().manual_seed(seed)
    items = []
    for i in range(n):
        mask = torch.zeros(16, 16, dtype=torch.int64)
        mask[:, :8] = 1 if i % 2 else 0
        mask[:, 8:] = 0 if i % 2 else 1
        image = 0.1 * torch.randn(3, 16, 16, generator=gen) + 2.0 * mask
        items.append({"image": image, "mask": mask})
    return Items(items)


@pytest.mark.parametrize("head", ["linear", "upernet"])
def test_segmenter_shapes(head):
    logits = Segmenter(vit(), 5, head)(torch.randn(2, 3, 16, 16))
    assert logits.shape == (2, 5, 16, 16)


def test_linear_segmentation_learns_bright_halves():
    metrics = train_segmentation(vit(), halves(8, 0), halves(4, 1), n_classes=2, head="linear", epochs=15,
                                 lr=5e-2, batch_size=4, progress=False)
    assert metrics["mIoU"] > 90.0


@pytest.mark.parametrize(("head", "size"), [("linear", 8), ("upernet", 16)])
def test_a_last_training_batch_of_one_is_not_handed_to_batchnorm(head, size):
    # 4 * 2 + 1 images: the shuffled last batch would hold one image, whose 1x1 pyramid-pooling
    # map (UPerNet) or 1x1 token map (linear head on one 8 px patch) BatchNorm cannot normalise.
    def crop(dataset):
        return Items([{"image": item["image"][:, :size, :size], "mask": item["mask"][:size, :size]}
                      for item in dataset])

    metrics = train_segmentation(vit(), crop(halves(4 * 2 + 1, 0)), crop(halves(3, 1)), n_classes=2,
                                 head=head, epochs=1, batch_size=4, progress=False)
    assert 0.0 <= metrics["mIoU"] <= 100.0 and metrics["train_loss"] == metrics["train_loss"]


def test_change_detection_reports_change_class_scores():
    gen = torch.Generator().manual_seed(0)
    items = []
    for i in range(6):
        mask = torch.zeros(16, 16, dtype=torch.int64)
        mask[:8] = 1 if i % 2 else 0
        a = 0.1 * torch.randn(3, 16, 16, generator=gen)
        items.append({"image_a": a, "image_b": a + 2.0 * mask, "mask": mask})
    detector = SiameseChangeDetector(vit())
    assert detector(items[0]["image_a"][None], items[0]["image_b"][None]).shape == (1, 16, 16)
    metrics = train_change_detection(vit(), Items(items), Items(items), epochs=25, lr=1e-2, batch_size=6,
                                     freeze_backbone=True, progress=False)
    assert set(metrics) == {"precision", "recall", "f1", "train_loss"}
    assert metrics["f1"] > 80.0


def test_multilabel_reports_micro_ap():
    gen = torch.Generator().manual_seed(0)
    items = []
    for i in range(12):
        labels = torch.tensor([i % 2, (i // 2) % 2, 1], dtype=torch.float32)
        image = 0.1 * torch.randn(3, 16, 16, generator=gen)
        image[0] += 2 * labels[0]
        image[1] += 2 * labels[1]
        items.append({"image": image, "labels": labels})
    metrics = train_multilabel(vit(), Items(items), Items(items), n_labels=3, mode="linear", epochs=40,
                               lr=5e-2, batch_size=12, progress=False)
    assert metrics["mAP_micro"] > 95.0


def test_dense_runner_names_a_missing_reader(tmp_path, monkeypatch):
    from rsdino.evaluate import dense

    monkeypatch.setitem(dense.READERS, "change_detection", "rsdino.data.nothing.OSCDDataset")
    with pytest.raises(NotImplementedError, match="OSCDDataset"):
        run_dense_protocol("change_detection", None, tmp_path, tmp_path, tmp_path, None)


def test_segmentation_protocol_end_to_end_on_a_fake_loveda(tmp_path):
    from rsdino.config.evaluations import SegmentationEvaluation
    from rsdino.data.extract import extract_archive
    from rsdino.data.fake.segmentation import make_fake_segmentation
    from rsdino.data.segmentation import prepare_segmentation_dataset
    from rsdino.models.backbones import backbone_spec, export_backbone
    from rsdino.tracking import NullTracker

    archive = tmp_path / "loveda.zip"
    make_fake_segmentation(archive, layout="loveda", size=32, n_images=1)
    raw = extract_archive(archive, tmp_path / "raw")
    prepared = tmp_path / "prepared"
    prepare_segmentation_dataset(raw, prepared, name="loveda", task="segmentation", layout="loveda",
                                 bands=["R", "G", "B"], rgb_bands=["R", "G", "B"], gsd=0.3, tile_sizes=[16],
                                 seed=0, progress=False)
    meta = {**backbone_spec("vit_tiny_patch8", 3, 16, depth=2), "bands": ["R", "G", "B"],
            "mean": [128.0] * 3, "std": [64.0] * 3}
    export_backbone(vit(), tmp_path / "model", meta)
    settings = SegmentationEvaluation(protocol="segmentation", dataset="loveda", variants=["v"],
                                      head="linear", image_size=16, epochs=2, lr=1e-2, train_batch_size=4)
    tracker = NullTracker()
    result = run_dense_protocol("segmentation", settings, tmp_path / "model", raw, prepared, tracker,
                                progress=False)
    assert 0.0 <= result["metrics"]["mIoU"] <= 100.0
    assert tracker.metrics and "mIoU" in tracker.metrics[-1][1]
