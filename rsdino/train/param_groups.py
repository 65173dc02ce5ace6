"""Optimiser parameter groups: weight-decay and learning-rate multipliers per parameter.

- No weight decay on biases, 1-d parameters (norm weights, layer scales) and weight-norm magnitudes
  (DINO's ``get_params_groups``).
- Layer-wise lr decay for ViTs (DINOv2, BEiT): with ``n`` blocks, the patch embedding, position
  embedding and special tokens are layer 0, block ``i`` is layer ``i + 1`` and everything after the
  blocks (final norm, heads, fusion) layer ``n + 1``; a parameter of layer ``l`` gets
  ``lr_multiplier = layer_decay ** (n + 1 - l)``. Non-ViT backbones are not decayed.
- The patch embedding's ``lr_multiplier`` is further multiplied by ``patch_embed_lr_mult``.

Each group carries ``lr_multiplier``, ``wd_multiplier`` and ``is_last_layer`` (the prototype
layers that are frozen during the first epoch); the loop sets ``lr = lr_t * lr_multiplier`` and
``weight_decay = wd_t * wd_multiplier`` every step.
"""

from __future__ import annotations

import re
from typing import Any

from timm.models.vision_transformer import VisionTransformer
from torch import nn

_EMBEDDING = ("patch_embed", "pos_embed", "cls_token", "reg_token", "mask_token")


def vit_layer_id(name: str, n_blocks: int) -> int:
    """Layer index of a ViT parameter name relative to the backbone (see the module docstring)."""
    if name.startswith(_EMBEDDING):
        return 0
    match = re.match(r"blocks\.(\d+)\.", name)
    if match:
        return int(match.group(1)) + 1
    return n_blocks + 1


def _backbones(model: nn.Module) -> dict[str, nn.Module]:
    """Named ViT backbones of a branch (``backbone``, ``s1_backbone``) with their prefixes."""
    out = {}
    for prefix in ("backbone", "s1_backbone"):
        module = getattr(model, prefix, None)
        if isinstance(module, VisionTransformer):
            out[prefix + "."] = module
    return out


def param_groups(model: nn.Module, *, layer_decay: float = 1.0,
                 patch_embed_lr_mult: float = 1.0) -> list[dict[str, Any]]:
    """Parameter groups of ``model`` (a ``Branch``), grouped by equal multipliers."""
    backbones = _backbones(model)
    groups: dict[tuple[float, float, bool], dict[str, Any]] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        no_decay = param.ndim <= 1 or name.endswith(".bias") or name.endswith(".original0")
        lr_mult = 1.0
        for prefix, vit in backbones.items():
            if name.startswith(prefix):
                local = name[len(prefix):]
                n_blocks = len(vit.blocks)
                lr_mult = layer_decay ** (n_blocks + 1 - vit_layer_id(local, n_blocks))
                if local.startswith("patch_embed"):
                    lr_mult *= patch_embed_lr_mult
        if name == "mask_token" and "backbone." in backbones:  # the input layer of the S2 backbone
            lr_mult = layer_decay ** (len(backbones["backbone."].blocks) + 1)
        if name == "s1_mask_token" and "s1_backbone." in backbones:
            lr_mult = layer_decay ** (len(backbones["s1_backbone."].blocks) + 1)
        key = (lr_mult, 0.0 if no_decay else 1.0, ".last_layer." in name)
        group = groups.setdefault(key, {"params": [], "lr_multiplier": key[0], "wd_multiplier": key[1],
                                        "is_last_layer": key[2]})
        group["params"].append(param)
    return list(groups.values())
