"""Run a catalogue backbone on a batch and return its tokens by role (CLS, registers, patches).

iBOT / DINOv2 masking replaces the patch embeddings where ``masks`` is true by a learnable
``mask_token`` before the position embeddings are added and the blocks run (DINOv2's
``prepare_tokens_with_masks``). timm's ViT has no such input, so ``encode`` runs its stages
itself: ``patch_embed`` -> masking -> ``_pos_embed`` -> ``patch_drop`` -> ``norm_pre`` -> ``blocks``
-> ``norm``; without masks this is exactly ``forward_features``. CNNs and Swin give only a pooled
image embedding (no patch tokens, no masking).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from timm.models.vision_transformer import VisionTransformer
from torch import nn


@dataclass
class Encoded:
    """The outputs of one backbone forward on ``B`` images.

    Attributes:
        cls: ``(B, D)`` image embedding (CLS token; pooled features for CNNs and Swin).
        patches: ``(B, N, D)`` patch tokens, or ``None`` for backbones without tokens.
        registers: ``(B, R, D)`` register tokens (``R`` may be 0), or ``None``.
    """

    cls: torch.Tensor
    patches: torch.Tensor | None = None
    registers: torch.Tensor | None = None


def encode(backbone: nn.Module, x: torch.Tensor, masks: torch.Tensor | None = None,
           mask_token: torch.Tensor | None = None) -> Encoded:
    """Tokens of ``backbone`` on ``x (B, C, H, W)``.

    Args:
        backbone: A model from ``rsdino.models.backbones.build_backbone``.
        x: Input images.
        masks: ``(B, H/p, W/p)`` or ``(B, N)`` boolean, true where a patch is replaced by ``mask_token``
            (ViTs only).
        mask_token: ``(1, D)`` or ``(D,)`` learnable embedding used where ``masks`` is true.
    """
    if not isinstance(backbone, VisionTransformer):
        if masks is not None:
            raise ValueError(f"masked inputs need a ViT backbone, not {type(backbone).__name__}")
        return Encoded(cls=backbone.forward_head(backbone.forward_features(x), pre_logits=True))
    tokens = backbone.patch_embed(x)  # (B, h, w, D) with dynamic_img_size, else (B, N, D)
    if masks is not None:
        if mask_token is None:
            raise ValueError("masks given without a mask_token")
        masks = masks.reshape(tokens.shape[:-1])
        tokens = torch.where(masks.unsqueeze(-1), mask_token.reshape(-1).to(tokens.dtype), tokens)
    tokens = backbone._pos_embed(tokens)
    tokens = backbone.patch_drop(tokens)
    tokens = backbone.norm_pre(tokens)
    tokens = backbone.blocks(tokens)
    tokens = backbone.norm(tokens)
    n_prefix = backbone.num_prefix_tokens
    first_register = 1 if backbone.has_class_token else 0
    patches = tokens[:, n_prefix:]
    cls = tokens[:, 0] if backbone.has_class_token else patches.mean(dim=1)
    return Encoded(cls=cls, patches=patches, registers=tokens[:, first_register:n_prefix])
