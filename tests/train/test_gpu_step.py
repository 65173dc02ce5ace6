"""What the GPU step relies on, checked on CPU: fused attention, fp32 loss terms and master weights."""

from __future__ import annotations

import torch

from rsdino.config import CropSettings, HeadSettings, OptimSettings, VariantConfig
from rsdino.train import pretrain
from rsdino.train.meta_arch import SelfDistillation


def _model() -> tuple[VariantConfig, SelfDistillation]:
    variant = VariantConfig(method="dinov2", backbone="vit_tiny_patch8", pretrain_data="synthetic", seed=1,
                            backbone_kwargs={"embed_dim": 48, "depth": 2, "num_heads": 2},
                            crops=CropSettings(global_size=16, local_size=8, n_global=2, n_local=2,
                                               mask_p=0.5),
                            head=HeadSettings(out_dim=32, hidden_dim=32, bottleneck_dim=16),
                            optim=OptimSettings(epochs=1, batch_size=2, warmup_epochs=0))
    torch.manual_seed(0)
    return variant, SelfDistillation(variant, 3)


def test_attention_is_the_fused_sdpa_kernel() -> None:
    _, model = _model()
    attention = [m for m in model.modules() if hasattr(m, "fused_attn")]
    assert len(attention) == 4 and all(m.fused_attn for m in attention)  # 2 blocks x student, teacher


def test_bf16_autocast_keeps_loss_terms_centres_and_weights_in_fp32() -> None:
    """As DINO/dinov2: the heads' softmaxes, the centring and the loss reductions run in float32."""
    variant, model = _model()
    batch = {"global": [torch.randn(2, 3, 16, 16) for _ in range(2)],
             "local": [torch.randn(2, 3, 8, 8) for _ in range(2)], "masks": torch.rand(2, 2, 2, 2) < 0.5}
    batch["masks"][:, :, 0, 0] = True
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model.losses(batch, 0.04)
    assert {k: v.dtype for k, v in out.items()} == {k: torch.float32 for k in out}
    assert {"dino", "ibot", "koleo"} <= out.keys()
    assert model.dino_loss.center.dtype == torch.float32
    optimizer = pretrain.build_optimizer(model, variant)
    assert not optimizer.defaults.get("fused")  # fused AdamW is for CUDA parameters only
    pretrain.train_step(model, optimizer, batch, 0, pretrain.Schedules.of(variant, 1), variant,
                        freeze_last_layer=False, autocast=True)
    assert all(p.dtype == torch.float32 for p in model.parameters())  # fp32 master weights
