"""Token-level features: CLS of the last n blocks, mean patch token, CLS attention, against timm."""

from __future__ import annotations

import pytest
import torch

from rsdino.evaluate.tokens import check_variants, cls_attention, patch_tokens, token_features
from rsdino.models.backbones import backbone_features, build_backbone

torch.set_num_threads(1)


@pytest.fixture
def vit():
    torch.manual_seed(0)
    return build_backbone("vit_tiny_patch8", 3, 32).eval()


@torch.no_grad()
def test_variants_match_timm_intermediate_layers(vit):
    x = torch.randn(2, 3, 32, 48)
    out = token_features(vit, x, ["cls", "patch_mean", "cls_n4", "cls_n2_avgpool"])
    layers = vit.get_intermediate_layers(x, n=4, norm=True, return_prefix_tokens=True)
    torch.testing.assert_close(out["cls"], backbone_features(vit, x))
    torch.testing.assert_close(out["cls_n4"], torch.cat([prefix[:, 0] for _, prefix in layers], dim=1))
    torch.testing.assert_close(out["patch_mean"], layers[-1][0].mean(dim=1))
    torch.testing.assert_close(out["cls_n2_avgpool"],
                               torch.cat([layers[2][1][:, 0], layers[3][1][:, 0], layers[3][0].mean(1)], 1))
    tokens, grid = patch_tokens(vit, x)
    assert grid == (4, 6) and tokens.shape == (2, 24, 192)


@torch.no_grad()
def test_cls_attention_is_the_softmax_row_of_the_cls_query(vit):
    x = torch.randn(1, 3, 32, 32)
    attention, grid = cls_attention(vit, x)
    assert attention.shape == (1, 3, 4, 4) and grid == (4, 4)
    captured = {}
    block = vit.blocks[-1]
    hook = block.norm1.register_forward_hook(lambda m, i, o: captured.setdefault("h", o))
    vit.forward_features(x)
    hook.remove()
    h = captured["h"]
    q, k, _ = block.attn.qkv(h).reshape(1, h.shape[1], 3, 3, 64).permute(2, 0, 3, 1, 4)
    expected = torch.softmax(q[:, :, 0:1] @ k.transpose(-2, -1) / 8.0, dim=-1)[:, :, 0, 1:]
    torch.testing.assert_close(attention.flatten(2), expected)


def test_unknown_variant_is_refused():
    with pytest.raises(ValueError, match="unknown feature variants"):
        check_variants(["cls", "cls_last4"])
