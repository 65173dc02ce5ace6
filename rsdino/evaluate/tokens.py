"""Token-level outputs of a timm backbone: CLS of the last n blocks, patch tokens, CLS attention.

Written on top of timm's ``VisionTransformer`` (``get_intermediate_layers``, the blocks' ``attn``
modules) so that ``rsdino.models.backbones`` stays a build/export/load module. A CNN or Swin
backbone has no CLS token: its "CLS" is the pooled feature map and its patch tokens are the last
feature map's positions.

Feature variants (names used in the cache and by the linear protocols):

* ``cls``: the CLS token of the last block, after the final norm (``backbone_features``).
* ``patch_mean``: the mean of the last block's patch tokens (prefix tokens excluded).
* ``cls_n<n>``: the CLS tokens of the last n blocks (each normed), concatenated, ``n * D``.
* ``cls_n<n>_avgpool``: ``cls_n<n>`` followed by the mean patch token of the last block.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

_VARIANT = re.compile(r"^(cls|patch_mean|cls_n(\d+)(_avgpool)?)$")


def is_vit(model: nn.Module) -> bool:
    """Whether ``model`` is a timm ``VisionTransformer`` (has blocks and patch embedding)."""
    from timm.models.vision_transformer import VisionTransformer

    return isinstance(model, VisionTransformer)


def check_variants(variants: Sequence[str]) -> list[str]:
    """Validate feature-variant names (see the module docstring); returns them as a list."""
    bad = [v for v in variants if not _VARIANT.match(v)]
    if bad or not variants:
        raise ValueError(f"unknown feature variants {bad or '[]'}; use cls, patch_mean, cls_n<n> or "
                         "cls_n<n>_avgpool")
    return list(variants)


def _n_blocks(variants: Sequence[str]) -> int:
    return max([int(m.group(2)) for v in variants if (m := _VARIANT.match(v)) and m.group(2)] or [1])


def _grid(model: nn.Module, x: Tensor) -> tuple[int, int]:
    """Patch grid (h, w) of a ViT for the image batch ``x``."""
    patch = model.patch_embed.patch_size
    return int(x.shape[-2]) // int(patch[0]), int(x.shape[-1]) // int(patch[1])


def last_blocks(model: nn.Module, x: Tensor, n: int) -> list[Tensor]:
    """Normed token sequences ``(B, T, D)`` of the last ``n`` blocks of a ViT, oldest first."""
    n = min(n, len(model.blocks))
    x = model.patch_embed(x)
    x = model._pos_embed(x)
    x = model.patch_drop(x)
    x = model.norm_pre(x)
    kept: list[Tensor] = []
    first = len(model.blocks) - n
    for i, block in enumerate(model.blocks):
        x = block(x)
        if i >= first:
            kept.append(model.norm(x))
    return kept


def patch_tokens(model: nn.Module, x: Tensor) -> tuple[Tensor, tuple[int, int]]:
    """Last-block patch tokens ``(B, h * w, D)`` (normed, prefix tokens dropped) and the grid (h, w).

    For a CNN the last feature map ``(B, D, h, w)`` is flattened the same way.
    """
    if is_vit(model):
        tokens = last_blocks(model, x, 1)[0][:, model.num_prefix_tokens:]
        return tokens, _grid(model, x)
    fmap = model.forward_features(x)
    if fmap.ndim == 4 and fmap.shape[1] != getattr(model, "num_features", fmap.shape[1]):
        fmap = fmap.permute(0, 3, 1, 2)  # NHWC (Swin) -> NCHW
    if fmap.ndim != 4:
        raise ValueError(f"{type(model).__name__}: expected a (B, D, h, w) feature map")
    return fmap.flatten(2).transpose(1, 2), (int(fmap.shape[2]), int(fmap.shape[3]))


def token_features(model: nn.Module, x: Tensor, variants: Sequence[str]) -> dict[str, Tensor]:
    """Every requested feature variant of a batch, ``{variant: (B, D_v)}`` (module docstring)."""
    variants = check_variants(variants)
    if not is_vit(model):
        fmap_tokens, _ = patch_tokens(model, x)
        pooled = fmap_tokens.mean(dim=1)
        return {v: pooled if not v.endswith("_avgpool") else torch.cat([pooled, pooled], dim=1)
                for v in variants}
    blocks = last_blocks(model, x, _n_blocks(variants))
    prefix = model.num_prefix_tokens
    last = blocks[-1]
    cls_last = last[:, 0] if model.has_class_token else last[:, prefix:].mean(dim=1)
    mean_patch = last[:, prefix:].mean(dim=1)
    out: dict[str, Tensor] = {}
    for v in variants:
        match = _VARIANT.match(v)
        assert match is not None
        if v == "cls":
            out[v] = cls_last
        elif v == "patch_mean":
            out[v] = mean_patch
        else:
            n = int(match.group(2))
            cls = [b[:, 0] if model.has_class_token else b[:, prefix:].mean(dim=1) for b in blocks[-n:]]
            parts = cls + ([mean_patch] if match.group(3) else [])
            out[v] = torch.cat(parts, dim=1)
    return out


def cls_attention(model: nn.Module, x: Tensor) -> tuple[Tensor, tuple[int, int]]:
    r"""Attention of the CLS token to every patch in the last block, per head.

    :math:`A_h = \mathrm{softmax}(q_\text{cls} K^\top / \sqrt{d_h})` restricted to the patch tokens,
    recomputed from the last block's ``attn.qkv`` on its (normed) input.

    Returns:
        ``(attention (B, heads, h, w), grid (h, w))``; each head's map sums to at most 1.
    """
    if not is_vit(model) or not model.has_class_token:
        raise ValueError(f"{type(model).__name__}: CLS attention maps need a ViT with a class token")
    gh, gw = _grid(model, x)
    x = model.patch_embed(x)
    x = model._pos_embed(x)
    x = model.norm_pre(x)
    for block in model.blocks[:-1]:
        x = block(x)
    block = model.blocks[-1]
    attn = block.attn
    h = block.norm1(x)
    b, t, d = h.shape
    qkv = attn.qkv(h).reshape(b, t, 3, attn.num_heads, d // attn.num_heads).permute(2, 0, 3, 1, 4)
    q, k = attn.q_norm(qkv[0]), attn.k_norm(qkv[1])
    weights = F.softmax((q[:, :, :1] @ k.transpose(-2, -1)) * attn.scale, dim=-1)[:, :, 0]  # (B, H, T)
    patches = weights[:, :, model.num_prefix_tokens:]
    return patches.reshape(b, attn.num_heads, gh, gw), (gh, gw)
