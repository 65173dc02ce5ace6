"""One rank of the data-parallel test: two steps of a tiny DINO variant (run as a script).

Usage: ``python ddp_worker.py OUT_DIR`` with ``RANK``/``WORLD_SIZE``/``MASTER_ADDR``/``MASTER_PORT`` set
(or none of them for one process). Rank 0 writes the model folder and ``metrics.json``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
from torch.utils.data import Dataset

from rsdino.config import CropSettings, HeadSettings, OptimSettings, VariantConfig
from rsdino.tracking import NullTracker
from rsdino.train.pretrain import run_pretraining

BANDS = [f"B{i:02d}" for i in range(1, 14)]


class Images(Dataset):
    """8 fixed random 13-band images."""

    def __init__(self) -> None:
        self.images = torch.rand(8, 13, 32, 32, generator=torch.Generator().manual_seed(11)) * 1000 + 100

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> dict:
        return {"image": self.images[index]}


def variant(method: str = "dino") -> VariantConfig:
    """Tiny variant without stochastic depth (its random masks are per process by nature).

    SGD, not AdamW: some gradients are analytically zero (the attention key bias cannot change a
    softmax) and numerically ~1e-9 noise that differs with the batch split; Adam divides a gradient
    by its own magnitude, so it turns that noise into full-size steps of either sign. SGD keeps
    the comparison about the gradients, which is what data parallelism must get right.
    """
    crops = {"global_size": 32, "local_size": 16, "n_global": 2, "n_local": 2, "global_scale": (0.5, 1.0),
             "local_scale": (0.2, 0.5)}
    loss = {}
    if method == "dinov2":
        crops["mask_p"] = 0.5
        loss = {"koleo_weight": 0.0}  # KoLeo's neighbours are searched in the local batch only
    return VariantConfig(method=method, backbone="vit_tiny_patch8", pretrain_data="synthetic", drop_path=0.0,
                         seed=5, crops=CropSettings(**crops), loss=loss,
                         head=HeadSettings(out_dim=64, hidden_dim=32, bottleneck_dim=16),
                         optim=OptimSettings(epochs=1, batch_size=4, lr=0.5, warmup_epochs=0, optimizer="sgd",
                                             freeze_last_layer_epochs=0, momentum_teacher=0.9))


def main(out_dir: Path, method: str) -> None:
    """Train and, on rank 0, write ``metrics.json`` beside the model."""
    torch.set_num_threads(1)
    tracker = NullTracker()
    run_pretraining("ddp", variant(method), Images(), bands=BANDS, rgb_bands=[], mean=[600.0] * 13,
                    std=[300.0] * 13, out_dir=out_dir, tracker=tracker, progress=False)
    if tracker.metrics:
        (out_dir / "metrics.json").write_text(json.dumps([m for _, m in tracker.metrics]))


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2] if len(sys.argv) > 2 else "dino")
