"""Continuing pretraining from an imported DINO training checkpoint (``init_from``)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from pydantic import ValidationError

from rsdino.config.variants import InitFrom, ReleasedWeights, VariantConfig
from rsdino.models.importers.released import write_demo_checkpoint
from rsdino.models.importers.safe_load import safe_load
from rsdino.train.init_from import initialise_from
from rsdino.train.meta_arch import SelfDistillation


def _variant(out_dim: int = 32, seed: int = 0) -> VariantConfig:
    return VariantConfig(method="dino", backbone="vit_tiny_patch8", pretrain_data="demo_eurosat", seed=seed,
                         crops={"global_size": 32, "local_size": 16},
                         head={"out_dim": out_dim, "hidden_dim": 16, "bottleneck_dim": 8})


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = write_demo_checkpoint(tmp_path_factory.mktemp("init") / "checkpoint.pth", _variant(seed=7), 3)
    state = safe_load(path)
    state["dino_loss"]["center"] = torch.randn(1, 32)
    torch.save(state, path)
    return path


def test_student_teacher_heads_and_centre_are_loaded(checkpoint: Path) -> None:
    model = SelfDistillation(_variant(seed=0), 3)
    loaded = initialise_from(model, InitFrom(format="dino", path=str(checkpoint)))
    stored = safe_load(checkpoint)
    assert {"student dino_head", "teacher dino_head", "centre"} <= set(loaded)
    torch.testing.assert_close(model.dino_loss.center, stored["dino_loss"]["center"])
    torch.testing.assert_close(model.student.backbone.pos_embed,
                               stored["student"]["module.backbone.pos_embed"])
    torch.testing.assert_close(model.teacher.backbone.cls_token, stored["teacher"]["backbone.cls_token"])
    torch.testing.assert_close(model.teacher.dino_head.last_layer.parametrizations.weight.original1,
                               stored["teacher"]["head.last_layer.weight_v"])
    assert not torch.equal(model.student.backbone.pos_embed, model.teacher.backbone.pos_embed)


def test_a_head_of_another_size_is_refused(checkpoint: Path) -> None:
    model = SelfDistillation(_variant(out_dim=64), 3)
    with pytest.raises(ValueError, match=f"{checkpoint}: does not fit the variant's student"):
        initialise_from(model, InitFrom(format="dino", path=str(checkpoint)))


def test_settings_validate_format_and_source() -> None:
    with pytest.raises(ValidationError, match="unknown checkpoint format 'dino3'"):
        InitFrom(format="dino3", path="x.pth")
    with pytest.raises(ValidationError, match="url with its published sha256"):
        ReleasedWeights(format="dino", url="https://example.org/w.pth")
    with pytest.raises(ValidationError, match="both mean and std"):
        ReleasedWeights(format="dino", path="w.pth", mean=[0.5])
    with pytest.raises(ValidationError, match="exclude each other"):
        VariantConfig(method="dino", backbone="vit_tiny_patch8", pretrain_data="d",
                      weights={"format": "dino", "path": "w.pth"},
                      init_from={"format": "dino", "path": "w.pth"})


def test_pretraining_starts_from_the_checkpoint(tmp_path: Path) -> None:
    """With teacher momentum 1 the EMA teacher never moves: it must leave as the checkpoint's teacher."""
    from safetensors.torch import load_file
    from torch.utils.data import TensorDataset

    from rsdino.tracking import NullTracker
    from rsdino.train.pretrain import run_pretraining

    class Scenes(TensorDataset):
        def __getitem__(self, index: int) -> dict:
            return {"image": self.tensors[0][index], "label": 0, "path": f"{index}.tif"}

    source = _variant(seed=3).model_copy(update={"head": _variant().head})
    path = write_demo_checkpoint(tmp_path / "release.pth", source, 13)
    variant = VariantConfig(**{**source.model_dump(), "seed": 11,
                               "init_from": {"format": "dino", "path": str(path)},
                               "crops": {"global_size": 32, "local_size": 16, "n_local": 2},
                               "optim": {"epochs": 1, "batch_size": 8, "warmup_epochs": 0,
                                         "momentum_teacher": 1.0}})
    images = torch.rand(8, 13, 32, 32, generator=torch.Generator().manual_seed(0)) * 3000
    run_pretraining("init", variant, Scenes(images), bands=[f"B{i:02d}" for i in range(1, 14)],
                    rgb_bands=["B04", "B03", "B02"], mean=[1500.0] * 13, std=[800.0] * 13,
                    out_dir=tmp_path / "model", tracker=NullTracker(), progress=False)
    exported = load_file(str(tmp_path / "model" / "model.safetensors"))
    stored = safe_load(path)["teacher"]
    for key in ("cls_token", "pos_embed", "blocks.0.attn.qkv.weight", "norm.weight"):
        torch.testing.assert_close(exported[key], stored[f"backbone.{key}"])
