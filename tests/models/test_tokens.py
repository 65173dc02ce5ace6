"""Backbone tokens by role, iBOT masking, registers, and the S1/S2 fusion blocks."""

from __future__ import annotations

import pytest
import torch

from rsdino.models.backbones import build_backbone
from rsdino.models.fusion import CrossAttentionFusion, LinearFusion
from rsdino.models.tokens import encode


@pytest.mark.parametrize("reg_tokens", [0, 2, 4])
def test_vit_tokens_match_forward_features(reg_tokens: int) -> None:
    torch.manual_seed(0)
    model = build_backbone("vit_tiny_patch8", 13, 32, reg_tokens=reg_tokens).eval()
    x = torch.randn(2, 13, 32, 32)
    out = encode(model, x)
    tokens = model.forward_features(x)
    torch.testing.assert_close(out.cls, tokens[:, 0])
    assert out.patches.shape == (2, 16, model.embed_dim)
    assert out.registers.shape == (2, reg_tokens, model.embed_dim)
    torch.testing.assert_close(out.patches, tokens[:, 1 + reg_tokens:])


def test_masked_patches_are_replaced_by_the_mask_token() -> None:
    torch.manual_seed(0)
    model = build_backbone("vit_tiny_patch8", 3, 32).eval()
    x = torch.randn(1, 3, 32, 32)
    masks = torch.zeros(1, 4, 4, dtype=torch.bool)
    masks[0, 1, 2] = True
    token = torch.randn(1, model.embed_dim)
    other = x.clone()
    other[..., 8:16, 16:24] = 100.0  # change only the masked patch's pixels
    a, b = encode(model, x, masks, token), encode(model, other, masks, token)
    torch.testing.assert_close(a.cls, b.cls)  # the masked patch's pixels are invisible
    assert not torch.allclose(encode(model, x).cls, encode(model, other).cls)
    with pytest.raises(ValueError, match="mask_token"):
        encode(model, x, masks)


def test_cnn_gives_pooled_features_and_refuses_masks() -> None:
    model = build_backbone("resnet50", 2, 32).eval()
    out = encode(model, torch.randn(2, 2, 32, 32))
    assert out.cls.shape == (2, 2048) and out.patches is None
    with pytest.raises(ValueError, match="ViT"):
        encode(model, torch.randn(1, 2, 32, 32), torch.zeros(1, 1, dtype=torch.bool), torch.zeros(1, 2048))


def test_linear_fusion_is_the_specified_block() -> None:
    fusion = LinearFusion(4, 6, 8)
    layers = list(fusion.net)
    assert [type(layer).__name__ for layer in layers] == ["Linear", "LayerNorm", "GELU", "Linear"]
    assert (layers[0].in_features, layers[0].out_features, layers[3].out_features) == (10, 20, 8)
    assert fusion(torch.randn(2, 5, 4), torch.randn(2, 5, 6)).shape == (2, 5, 8)
    with pytest.raises(ValueError, match="aligned"):
        fusion(torch.randn(2, 5, 4), torch.randn(2, 4, 6))


def test_cross_attention_fusion_queries_come_from_s1() -> None:
    torch.manual_seed(0)
    fusion = CrossAttentionFusion(4, 6, 8, n_heads=4, n_layers=2).eval()
    s1, s2 = torch.randn(2, 5, 4), torch.randn(2, 7, 6)
    out = fusion(s1, s2)
    assert out.shape == (2, 5, 8) and len(fusion.layers.layers) == 2
    assert not torch.allclose(out, fusion(s1, torch.randn(2, 7, 6)))  # S2 keys/values matter
