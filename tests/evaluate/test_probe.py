"""The linear-probe evaluation job on an exported backbone and an in-memory scene dataset."""

import torch
from torch.utils.data import Dataset

from rsdino.config import LinearEvaluation
from rsdino.evaluate.probe import run_linear_evaluation
from rsdino.models.backbones import backbone_spec, build_backbone, export_backbone
from rsdino.tracking import NullTracker


class Blobs(Dataset):
    """Two classes of 3-band 16 px images: dark and bright, with noise."""

    classes = ["dark", "bright"]

    def __init__(self, n: int, seed: int) -> None:
        generator = torch.Generator().manual_seed(seed)
        self.labels = [i % 2 for i in range(n)]
        self.images = [torch.rand(3, 16, 16, generator=generator) + 3.0 * label for label in self.labels]

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> dict:
        return {"image": self.images[index], "label": self.labels[index], "path": f"{index}.tif"}


def test_linear_probe_job_scores_model_and_random_baseline(tmp_path):
    torch.manual_seed(1)
    model = build_backbone("vit_tiny_patch8", 3, 16, depth=1)
    meta = {**backbone_spec("vit_tiny_patch8", 3, 16, depth=1), "bands": ["R", "G", "B"],
            "method": "dino", "variant": "t", "mean": [1.5] * 3, "std": [1.6] * 3}
    export_backbone(model, tmp_path, meta)
    settings = LinearEvaluation(protocol="linear_logistic", dataset="d", variants=["t"], c=1.0,
                                batch_size=8)
    tracker = NullTracker()
    result = run_linear_evaluation(tmp_path, Blobs(24, 0), Blobs(12, 1), settings, tracker,
                                   progress=False)
    assert result["metrics"]["top1"] == 100.0  # brightness separates the classes linearly
    assert set(result["baselines"]["random_init"]) == {"top1", "train_top1"}
    logged = {key for _, metrics in tracker.metrics for key in metrics}
    assert {"top1", "random_init/top1"} <= logged
