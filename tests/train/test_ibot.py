"""The ``ibot`` method (Zhou et al. 2022): DINO's CLS-token term and masked-patch self-distillation.

Its record switches the masked-patch term on beside the CLS term; ``loss: {dino_weight: 0}`` trains the
masked patches alone, and the gradient then still reaches the backbone and the mask token.
"""

from __future__ import annotations

import pytest
import torch

from rsdino.config import CropSettings, HeadSettings, OptimSettings, VariantConfig
from rsdino.config.methods import METHODS
from rsdino.train import pretrain
from rsdino.train.meta_architecture import build_meta_architecture
from rsdino.train.methods import loss_plan
from rsdino.train.schedules import Schedules

BANDS = 3


def _variant(**loss: float) -> VariantConfig:
    return VariantConfig(method="ibot", backbone="vit_tiny_patch8", pretrain_data="synthetic", seed=0,
                         backbone_kwargs={"embed_dim": 24, "depth": 2, "num_heads": 2}, drop_path=0.0,
                         crops=CropSettings(global_size=32, n_global=2, n_local=0, mask_p=0.5,
                                            mask_spread="batch"),
                         head=HeadSettings(out_dim=32, hidden_dim=32, bottleneck_dim=16),
                         optim=OptimSettings(epochs=1, batch_size=4, lr=0.01, warmup_epochs=0,
                                             freeze_last_layer_epochs=0, momentum_teacher=0.9),
                         loss=loss)


def _batch(images: int = 4) -> dict:
    generator = torch.Generator().manual_seed(1)
    masks = torch.rand(images, 2, 4, 4, generator=generator) < 0.4
    masks[:, :, 0, 0] = True  # at least one masked patch per crop
    return {"global": [torch.randn(images, BANDS, 32, 32, generator=generator) for _ in range(2)],
            "masks": masks}


def test_the_record_switches_the_patch_term_on_beside_the_cls_term() -> None:
    plan = loss_plan(_variant())
    record = METHODS["ibot"]
    assert plan.dino_weight == record.dino_weight > 0 and plan.ibot_weight == record.ibot_weight > 0
    assert not (plan.koleo or plan.gsd) and plan.centering == "centering"
    assert _variant().loss.dino_weight == 1.0  # resolved when the settings load (dumps, fingerprints)
    assert loss_plan(_variant(dino_weight=0.0)).dino_weight == 0.0  # an explicit weight still wins


def test_one_step_has_both_terms() -> None:
    torch.manual_seed(0)
    variant = _variant()
    model = build_meta_architecture(variant, BANDS)
    metrics = pretrain.train_step(model, pretrain.build_optimizer(model, variant), _batch(), 0,
                                  Schedules.of(variant, 4), variant, freeze_last_layer=False)
    plan = loss_plan(variant)
    assert {"loss_dino", "loss_ibot"} <= metrics.keys()
    assert metrics["loss"] == pytest.approx(plan.dino_weight * metrics["loss_dino"]
                                            + plan.ibot_weight * metrics["loss_ibot"])


def test_a_few_steps_train_on_the_masked_patches_alone() -> None:
    torch.set_num_threads(1)
    torch.manual_seed(0)
    variant = _variant(dino_weight=0.0)
    model = build_meta_architecture(variant, BANDS)
    optimizer = pretrain.build_optimizer(model, variant)
    schedules = Schedules.of(variant, 4)
    batch, plan, losses = _batch(), loss_plan(variant), []
    initial = {k: v.clone() for k, v in model.state_dict().items()}
    for step in range(4):
        metrics = pretrain.train_step(model, optimizer, batch, step, schedules, variant,
                                      freeze_last_layer=False)
        assert "loss_ibot" in metrics and "loss_dino" not in metrics
        assert metrics["loss"] == pytest.approx(plan.ibot_weight * metrics["loss_ibot"])
        losses.append(metrics["loss"])
        assert all(torch.isfinite(torch.tensor(v)) for v in metrics.values())
        student = model.trained_module()
        # The gradient reaches the backbone and the mask token (it replaces the masked patches).
        assert student.backbone.blocks[0].attn.qkv.weight.grad.abs().sum() > 0
        assert student.mask_token.grad.abs().sum() > 0
    assert losses[-1] < losses[0]  # the same batch, four steps: the student moves towards the teacher
    final = model.state_dict()
    assert not torch.equal(final["student.backbone.patch_embed.proj.weight"],
                           initial["student.backbone.patch_embed.proj.weight"])
    assert not torch.equal(final["teacher.backbone.patch_embed.proj.weight"],
                           initial["teacher.backbone.patch_embed.proj.weight"])  # the EMA follows
