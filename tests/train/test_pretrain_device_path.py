"""The GPU-minded paths of the pretraining loop train exactly like the default one (on CPU)."""

from __future__ import annotations

import pandas as pd
import torch
from safetensors.torch import load_file
from torch.utils.data import Dataset

from rsdino.config import CropSettings, HeadSettings, OptimSettings, VariantConfig
from rsdino.tracking import NullTracker
from rsdino.train import pretrain

BANDS = [f"B{i:02d}" for i in range(1, 14)]


class _Scenes(Dataset):
    def __init__(self) -> None:
        self.images = torch.rand(16, 13, 24, 24, generator=torch.Generator().manual_seed(5)) * 3000 + 500

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> dict:
        return {"image": self.images[index]}


def _run(out_dir, **settings):  # noqa: ANN001, ANN202
    variant = VariantConfig(
        method="dino", backbone="vit_tiny_patch8", pretrain_data="synthetic", seed=3,
        backbone_kwargs={"embed_dim": 48, "depth": 2, "num_heads": 2},
        crops=CropSettings(global_size=16, local_size=8, n_global=2, n_local=2, blur_p=(1.0, 0.5, 0.5),
                           solarize_p=0.5, global_scale=(0.5, 1.0), local_scale=(0.2, 0.5)),
        head=HeadSettings(out_dim=32, hidden_dim=32, bottleneck_dim=16),
        optim=OptimSettings(epochs=2, batch_size=8, lr=0.005, warmup_epochs=1),
        **settings)
    tracker = NullTracker()
    weights = pretrain.run_pretraining("tiny", variant, _Scenes(), bands=BANDS,
                                       rgb_bands=["B04", "B03", "B02"], mean=[2000.0] * 13, std=[870.0] * 13,
                                       out_dir=out_dir, tracker=tracker, progress=False)
    return load_file(str(weights)), pd.read_csv(out_dir / "history.csv"), tracker.metrics


def test_device_views_and_block_reads_train_the_same_model(tmp_path) -> None:
    """``views_on: device`` + metrics read every 3 steps == per-sample views read every step, bitwise."""
    reference, history, logged = _run(tmp_path / "a")
    other, other_history, other_logged = _run(tmp_path / "b", views_on="device", read_metrics_every=3)
    assert reference.keys() == other.keys()
    assert all(torch.equal(reference[k], other[k]) for k in reference)
    pd.testing.assert_frame_equal(history, other_history)
    assert logged == other_logged and [step for step, _ in logged] == [0, 1, 2, 3]
