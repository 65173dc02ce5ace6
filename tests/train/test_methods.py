"""Every method x a representative backbone: two optimisation steps on CPU through the real loop."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file
from torch.utils.data import Dataset

from rsdino.config import CropSettings, HeadSettings, OptimSettings, VariantConfig
from rsdino.config.methods import METHODS
from rsdino.tracking import NullTracker
from rsdino.train import pretrain
from rsdino.train.checkpoint import load_checkpoint
from rsdino.train.meta_arch import SelfDistillation, compile_blocks
from rsdino.train.methods import loss_plan
from rsdino.train.schedules import Schedules

S1 = ["VV", "VH"]
S2 = [f"B{i:02d}" for i in range(1, 14)]


class Scenes(Dataset):
    """4 random images of ``bands`` bands (a 3-date series for temporal methods)."""

    def __init__(self, n_bands: int, temporal: bool = False) -> None:
        generator = torch.Generator().manual_seed(5)
        self.series = torch.rand(4, 3, n_bands, 32, 32, generator=generator) * 1000 + 100
        self.temporal = temporal

    def __len__(self) -> int:
        return len(self.series)

    def __getitem__(self, index: int) -> dict:
        item = {"image": self.series[index, 0], "gsd": 10.0}
        if self.temporal:
            item["series"] = self.series[index]
        return item


def _variant(method: str, backbone: str, **updates) -> VariantConfig:
    crops = {"global_size": 32, "local_size": 16, "n_global": 2, "n_local": 2, "global_scale": (0.5, 1.0),
             "local_scale": (0.2, 0.5)}
    if METHODS[method].ibot_weight > 0:  # masked global crops for the iBOT term
        crops["mask_p"] = 0.5
    recipe_crops = {"dino_mc": {"local_sizes": [24, 16], "local_jitter": (0.8, 0.8, 0.8, 0.2)},
                    "dino_tp": {"temporal": True, "n_global": 3}, "satdino": {"scale_bins": True},
                    "dinov2": {"mask_spread": "batch"}, "dinov2_multimodal": {"mask_spread": "batch"},
                    "ibot": {"n_local": 0}}
    crops.update(recipe_crops.get(method, {}))
    return VariantConfig(method=method, backbone=backbone, pretrain_data="synthetic", drop_path=0.1, seed=3,
                         crops=CropSettings(**crops), head=HeadSettings(out_dim=32, hidden_dim=32,
                                                                        bottleneck_dim=16),
                         optim=OptimSettings(epochs=1, batch_size=2, lr=0.01, warmup_epochs=0,
                                             freeze_last_layer_epochs=0, momentum_teacher=0.9),
                         **updates)


#: Settings a method's case changes besides its crops (every registered method gets a tiny-ViT case).
CASE_UPDATES = {"dinov2": {"backbone_kwargs": {"reg_tokens": 2}}}
CASES = [(method, "vit_tiny_patch8", CASE_UPDATES.get(method, {})) for method in METHODS] + [
    ("dino", "resnet50", {}),
    ("dinov2_multimodal", "vit_tiny_patch8", {"multimodal": {"fusion": "cross_attention",
                                                             "cross_attention_layers": 1}})]


@pytest.mark.parametrize(("method", "backbone", "updates"), CASES,
                         ids=[f"{m}-{b}-{i}" for i, (m, b, _) in enumerate(CASES)])
def test_two_steps_with_finite_losses_and_an_ema_teacher(tmp_path, method, backbone, updates) -> None:
    torch.set_num_threads(1)
    variant = _variant(method, backbone, **updates)
    bands = S1 + S2 if METHODS[method].multimodal else S2
    tracker = NullTracker()
    pretrain.run_pretraining(method, variant, Scenes(len(bands), METHODS[method].temporal),
                             bands=bands, rgb_bands=[], mean=[500.0] * len(bands), std=[300.0] * len(bands),
                             out_dir=tmp_path, tracker=tracker, progress=False)
    assert [step for step, _ in tracker.metrics] == [0, 1]
    plan = loss_plan(variant)
    expected_terms = {f"loss_{t}" for t, on in (("dino", plan.dino_weight > 0), ("ibot", plan.ibot),
                                                ("koleo", plan.koleo), ("gsd", plan.gsd)) if on}
    for _, metrics in tracker.metrics:
        assert {k for k in metrics if k.startswith("loss_")} == expected_terms
        assert all(torch.isfinite(torch.tensor(v)) for v in metrics.values())
    torch.manual_seed(variant.seed)
    initial = SelfDistillation(variant, len(bands)).state_dict()
    final = load_checkpoint(tmp_path / "checkpoints" / "last.pt")["model"]
    teacher_keys = [k for k in final if k.startswith("teacher.backbone.") and final[k].is_floating_point()]
    moved = [k for k in teacher_keys if not torch.equal(final[k], initial[k])]
    assert moved, "the EMA did not move the teacher"
    student = {k[len("student."):]: v for k, v in final.items() if k.startswith("student.")}
    assert any(not torch.equal(final[k], student[k[len("teacher."):]]) for k in moved)
    saved = load_file(str(tmp_path / "teacher.safetensors"))  # the whole teacher, heads included
    assert all(torch.equal(saved[k], final[f"teacher.{k}"]) for k in saved)
    assert ("gsd_head.weight" in saved) == plan.gsd
    assert any(k.startswith("fusion.") for k in saved) == METHODS[method].multimodal
    meta = json.loads((tmp_path / "model.json").read_text())
    assert meta["in_chans"] == len(S2) and meta["bands"] == S2  # the S2 backbone of multimodal models


def test_input_bands_train_on_a_subset_of_the_data(tmp_path) -> None:
    variant = _variant("dinov2", "vit_tiny_patch8", input_bands=S2[:3])
    pretrain.run_pretraining("subset", variant, Scenes(len(S1 + S2)), bands=S1 + S2, rgb_bands=["B04"],
                             mean=[500.0] * 15, std=[300.0] * 15, out_dir=tmp_path, tracker=NullTracker(),
                             progress=False)
    assert json.loads((tmp_path / "model.json").read_text())["bands"] == S2[:3]
    with pytest.raises(ValueError, match="not bands"):
        pretrain.run_pretraining("subset", _variant("dino", "vit_tiny_patch8", input_bands=["B99"]),
                                 Scenes(13), bands=S2, rgb_bands=[], mean=[1.0] * 13, std=[1.0] * 13,
                                 out_dir=tmp_path / "x", tracker=NullTracker(), progress=False)


def test_method_defaults_and_explicit_weights() -> None:
    assert loss_plan(_variant("dinov2", "vit_tiny_patch8")).koleo_weight == 0.1
    assert loss_plan(_variant("dinov2", "vit_tiny_patch8")).centering == "sinkhorn_knopp"
    assert loss_plan(_variant("satdino", "vit_tiny_patch8")).gsd_weight == 0.1
    off = _variant("dinov2", "vit_tiny_patch8", loss={"koleo_weight": 0.0, "centering": "centering"})
    assert not loss_plan(off).koleo and loss_plan(off).centering == "centering"
    plain = loss_plan(_variant("dino", "vit_tiny_patch8"))
    assert not (plain.ibot or plain.koleo or plain.gsd)


def test_ibot_without_masks_is_refused() -> None:
    variant = _variant("dinov2", "vit_tiny_patch8")
    variant = variant.model_copy(update={"crops": variant.crops.model_copy(update={"mask_p": 0.0})})
    with pytest.raises(ValueError, match="mask_p"):
        loss_plan(variant)


def test_token_methods_need_a_vit() -> None:
    with pytest.raises(ValueError, match="needs a ViT"):
        _variant("dinov2", "resnet50")


def _masked_batch(images: int, bands: int) -> dict:
    """Random 2 x 32 px global and 2 x 16 px local crops with iBOT masks (a DINOv2 batch)."""
    return {"global": [torch.randn(images, bands, 32, 32) for _ in range(2)],
            "local": [torch.randn(images, bands, 16, 16) for _ in range(2)],
            "masks": torch.rand(images, 2, 4, 4) < 0.4}


def test_bf16_autocast_step_matches_float32_closely() -> None:
    """The GPU path's bf16 autocast, exercised on CPU: same loss to bf16 precision, finite update."""
    torch.set_num_threads(1)
    variant = _variant("dinov2", "vit_tiny_patch8")
    batch = _masked_batch(4, 13)
    losses = {}
    for autocast in (False, True):
        torch.manual_seed(0)
        model = SelfDistillation(variant, 13)
        optimizer = pretrain.build_optimizer(model, variant)
        metrics = pretrain.train_step(model, optimizer, batch, 0, Schedules.of(variant, 1), variant,
                                      freeze_last_layer=False, autocast=autocast)
        losses[autocast] = metrics["loss"]
        assert all(torch.isfinite(p).all() for p in model.student.parameters())
    assert losses[True] == pytest.approx(losses[False], rel=0.02)


@pytest.mark.slow
def test_compiled_blocks_train_like_eager_ones() -> None:
    """``compile: true``: the same names and state, and one step gives the loss and weights of eager."""
    torch.set_num_threads(1)
    variant = _variant("dinov2", "vit_tiny_patch8").model_copy(update={"drop_path": 0.0})
    batch = _masked_batch(2, 3)
    results = {}
    for compiled in (False, True):
        torch.manual_seed(0)
        model = SelfDistillation(variant, 3)
        keys = list(model.state_dict())
        if compiled:
            blocks = len(model.student.backbone.blocks)
            assert model.student.ibot_head is None  # dinov2 shares the DINO head for patch tokens
            assert compile_blocks(model) == 2 * (blocks + 1)  # per branch: every block and the head
            assert list(model.state_dict()) == keys
        optimizer = pretrain.build_optimizer(model, variant)
        metrics = pretrain.train_step(model, optimizer, batch, 0, Schedules.of(variant, 1), variant,
                                      freeze_last_layer=False)
        results[compiled] = metrics["loss"], model.state_dict()
    assert results[True][0] == pytest.approx(results[False][0], rel=1e-5)
    # Adam's first step moves every weight by about lr = 1e-2: 1e-4 is 1 % of an update
    for name, value in results[False][1].items():
        torch.testing.assert_close(results[True][1][name], value, rtol=1e-4, atol=1e-4,
                                   msg=lambda m, name=name: f"{name}: {m}")
