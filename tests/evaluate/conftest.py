"""Shared fixtures of the evaluation tests: an exported tiny ViT and in-memory scene datasets."""

from __future__ import annotations

import pytest
import torch

from rsdino.models.backbones import backbone_spec, build_backbone, export_backbone

torch.set_num_threads(1)


@pytest.fixture
def tiny_vit_dir(tmp_path):
    """An exported 1-block ViT (patch 8, 16 px, 3 bands) and its folder."""
    torch.manual_seed(1)
    model = build_backbone("vit_tiny_patch8", 3, 16, depth=2)
    meta = {**backbone_spec("vit_tiny_patch8", 3, 16, depth=2), "bands": ["R", "G", "B"],
            "method": "dino", "variant": "t", "mean": [1.5] * 3, "std": [1.6] * 3}
    export_backbone(model, tmp_path / "model", meta)
    return tmp_path / "model"
