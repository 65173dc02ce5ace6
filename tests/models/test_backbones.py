"""Backbones: every catalogue name builds and runs; export and reload round-trip exactly."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from rsdino.models.backbones import (
    ConvStemPatchEmbed,
    backbone_features,
    backbone_spec,
    build_backbone,
    embed_dim,
    export_backbone,
    load_backbone,
)
from rsdino.models.catalog import BACKBONES


def _build_light(name: str, in_chans: int, size: int) -> nn.Module:
    """``build_backbone`` with cheap random values instead of timm's initialisation.

    The full initialisation of ViT-L takes about 10 s on two cores; building on the meta device and
    filling the parameters with uniform noise takes a fraction of that. Models with computed buffers
    other than BatchNorm statistics (Swin's relative position index and attention masks) cannot be
    refilled that way and are built normally.
    """
    with torch.device("meta"):
        model = build_backbone(name, in_chans, size)
    bn_buffers = {id(b) for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)
                  for b in m.buffers(recurse=False)}
    if any(id(b) not in bn_buffers for b in model.buffers()):
        return build_backbone(name, in_chans, size).eval()
    model = model.to_empty(device="cpu")
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for param in model.parameters():
            param.uniform_(-0.05, 0.05, generator=generator)
        for module in model.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.reset_running_stats()
    return model.eval()


@pytest.mark.parametrize("in_chans", [3, 13, 2])
@pytest.mark.parametrize("name", sorted(BACKBONES))
def test_every_backbone_builds_and_forwards(name: str, in_chans: int) -> None:
    model = _build_light(name, in_chans, 32)
    with torch.no_grad():
        features = backbone_features(model, torch.randn(2, in_chans, 32, 32))
    assert features.shape == (2, embed_dim(model))
    assert torch.isfinite(features).all()


@pytest.mark.parametrize("name", ["vit_tiny_patch8", "swin_tiny"])
def test_one_model_takes_global_and_local_sizes(name: str) -> None:
    model = _build_light(name, 13, 64)
    with torch.no_grad():
        for size in (64, 32):
            assert backbone_features(model, torch.randn(2, 13, size, size)).shape == (2, embed_dim(model))


def test_vit_features_are_the_cls_token() -> None:
    model = build_backbone("vit_tiny_patch8", 3, 32).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(backbone_features(model, x), model.forward_features(x)[:, 0])


def test_convvit_small_has_a_conv_stem_and_about_22m_parameters() -> None:
    model = build_backbone("convvit_small", 13, 32)
    assert isinstance(model.patch_embed, ConvStemPatchEmbed)
    assert sum(isinstance(m, nn.Conv2d) for m in model.patch_embed.modules()) == 5  # 4 strided + 1x1
    n_params = sum(p.numel() for p in model.parameters())
    assert 21e6 < n_params < 23.5e6
    with torch.no_grad():
        assert backbone_features(model.eval(), torch.randn(2, 13, 32, 32)).shape == (2, 384)


def test_conv_stem_refuses_a_patch_size_that_is_not_a_power_of_two() -> None:
    with pytest.raises(ValueError, match="power-of-two"):
        build_backbone("convvit_small", 3, 36, patch_size=12)


def test_unknown_backbone_is_named() -> None:
    with pytest.raises(ValueError, match="vit_huge"):
        build_backbone("vit_huge", 3, 32)


def _meta(name: str, in_chans: int, **overrides: object) -> dict:
    return {**backbone_spec(name, in_chans, 32, 0.0, **overrides), "method": "dino", "variant": "test",
            "bands": [f"B{i}" for i in range(in_chans)], "mean": [0.0] * in_chans, "std": [1.0] * in_chans}


@pytest.mark.parametrize(("name", "overrides"), [("vit_tiny_patch8", {}), ("convvit_small", {"depth": 1})])
def test_export_load_round_trip(tmp_path, name: str, overrides: dict) -> None:
    torch.manual_seed(0)
    model = build_backbone(name, 13, 32, **overrides)
    model.train()
    with torch.no_grad():  # move BatchNorm running statistics away from their initial values
        model(torch.randn(4, 13, 32, 32))
    weights = export_backbone(model, tmp_path, _meta(name, 13, **overrides))
    assert weights == tmp_path / "model.safetensors"
    loaded, meta = load_backbone(tmp_path)
    assert meta["timm_kwargs"] == {**BACKBONES[name].kwargs, **overrides}
    assert not loaded.training
    x = torch.randn(2, 13, 32, 32)
    with torch.no_grad():
        assert torch.equal(backbone_features(model.eval(), x), backbone_features(loaded, x))
    assert not list(tmp_path.glob(".*tmp"))


def test_export_needs_the_build_keys(tmp_path) -> None:
    with pytest.raises(ValueError, match="timm_name"):
        export_backbone(build_backbone("vit_tiny_patch8", 3, 32), tmp_path, {"backbone": "vit_tiny_patch8"})


@pytest.fixture
def exported(tmp_path):
    export_backbone(build_backbone("vit_tiny_patch8", 2, 32), tmp_path, _meta("vit_tiny_patch8", 2))
    return tmp_path


def test_corrupt_weights_error_names_the_file(exported) -> None:
    (exported / "model.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00not a header")
    with pytest.raises(ValueError, match="model.safetensors"):
        load_backbone(exported)


def test_missing_weights_error_names_the_file(exported) -> None:
    (exported / "model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="model.safetensors"):
        load_backbone(exported)


def test_weights_of_another_architecture_are_refused(exported) -> None:
    meta = json.loads((exported / "model.json").read_text())
    meta["timm_kwargs"]["depth"] = 5
    (exported / "model.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="model.safetensors.*do not fit"):
        load_backbone(exported)
