"""The backbone catalogue: our names -> timm model names and keyword arguments.

Pure data (no torch import), so that the settings validator and the Snakemake DAG can check names
without loading torch. ``rsdino.models.backbones.build_backbone`` turns an entry into a model.
Every entry is built with ``pretrained=False``; ``in_chans`` and image size come from the data.
"""

from __future__ import annotations

from typing import Any

#: name -> {"timm_name": str, "kwargs": dict, "family": "vit" | "cnn" | "swin", "patch_size": int | None}
BACKBONES: dict[str, dict[str, Any]] = {
    # A tiny ViT for the CPU demo and the tests (timm's ViT-Ti with 8 px patches, 4 blocks).
    "vit_tiny_patch8": {"timm_name": "vit_tiny_patch16_224",
                        "kwargs": {"patch_size": 8, "depth": 4}, "family": "vit", "patch_size": 8},
    "vit_small_patch16": {"timm_name": "vit_small_patch16_224", "kwargs": {}, "family": "vit",
                          "patch_size": 16},
    "vit_small_patch8": {"timm_name": "vit_small_patch8_224", "kwargs": {}, "family": "vit",
                         "patch_size": 8},
    "vit_base_patch16": {"timm_name": "vit_base_patch16_224", "kwargs": {}, "family": "vit",
                         "patch_size": 16},
    "vit_large_patch16": {"timm_name": "vit_large_patch16_224", "kwargs": {}, "family": "vit",
                          "patch_size": 16},
    # ViT-S with a convolutional stem (DINOv2-RS's ConvViT-S, trained with DINO v1).
    "convvit_small": {"timm_name": "vit_small_patch16_224", "kwargs": {"conv_stem": True},
                      "family": "vit", "patch_size": 16},
    "resnet50": {"timm_name": "resnet50", "kwargs": {}, "family": "cnn", "patch_size": None},
    "wide_resnet50_2": {"timm_name": "wide_resnet50_2", "kwargs": {}, "family": "cnn",
                        "patch_size": None},
    "swin_tiny": {"timm_name": "swin_tiny_patch4_window7_224", "kwargs": {}, "family": "swin",
                  "patch_size": 4},
}
