"""Parameter groups: no decay on biases and norms, layer-wise lr decay, patch-embedding multiplier."""

from __future__ import annotations

import pytest
import torch

from rsdino.config import HeadSettings, VariantConfig
from rsdino.train.meta_arch import Branch
from rsdino.train.methods import loss_plan
from rsdino.train.param_groups import param_groups, vit_layer_id


def _branch(backbone: str = "vit_tiny_patch8") -> Branch:
    variant = VariantConfig(method="dino", backbone=backbone, pretrain_data="x",
                            head=HeadSettings(out_dim=16, hidden_dim=16, bottleneck_dim=8))
    return Branch(variant, 3, 0.0, loss_plan(variant))


def _multipliers(groups: list[dict], model: torch.nn.Module) -> dict[str, tuple[float, float, bool]]:
    by_id = {id(p): (g["lr_multiplier"], g["wd_multiplier"], g["is_last_layer"])
             for g in groups for p in g["params"]}
    return {name: by_id[id(p)] for name, p in model.named_parameters() if p.requires_grad}


def test_vit_layer_ids() -> None:
    assert vit_layer_id("patch_embed.proj.weight", 4) == 0
    assert vit_layer_id("cls_token", 4) == 0 and vit_layer_id("pos_embed", 4) == 0
    assert vit_layer_id("blocks.0.attn.qkv.weight", 4) == 1
    assert vit_layer_id("blocks.3.mlp.fc2.bias", 4) == 4
    assert vit_layer_id("norm.weight", 4) == 5


def test_layer_decay_and_patch_embedding_multiplier() -> None:
    model = _branch()  # 4 blocks
    mult = _multipliers(param_groups(model, layer_decay=0.5, patch_embed_lr_mult=0.2), model)
    assert mult["backbone.blocks.3.attn.qkv.weight"][0] == pytest.approx(0.5)
    assert mult["backbone.blocks.0.attn.qkv.weight"][0] == pytest.approx(0.5 ** 4)
    assert mult["backbone.cls_token"][0] == pytest.approx(0.5 ** 5)
    assert mult["backbone.patch_embed.proj.weight"][0] == pytest.approx(0.5 ** 5 * 0.2)
    assert mult["backbone.norm.weight"][0] == 1.0 and mult["dino_head.mlp.0.weight"][0] == 1.0


def test_no_weight_decay_on_biases_norms_and_weight_norm_magnitudes() -> None:
    model = _branch()
    mult = _multipliers(param_groups(model), model)
    assert mult["backbone.blocks.0.attn.qkv.bias"][1] == 0.0
    assert mult["backbone.blocks.0.norm1.weight"][1] == 0.0
    assert mult["backbone.blocks.0.attn.qkv.weight"][1] == 1.0
    assert mult["dino_head.last_layer.parametrizations.weight.original1"] == (1.0, 1.0, True)
    assert "dino_head.last_layer.parametrizations.weight.original0" not in mult  # frozen (norm_last_layer)


def test_every_trainable_parameter_is_in_exactly_one_group() -> None:
    model = _branch("resnet50")
    groups = param_groups(model, layer_decay=0.9)
    ids = [id(p) for g in groups for p in g["params"]]
    assert len(ids) == len(set(ids)) == sum(1 for p in model.parameters() if p.requires_grad)
    assert all(g["lr_multiplier"] == 1.0 for g in groups)  # no layer decay outside ViTs
