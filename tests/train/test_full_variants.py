"""Every variant of the full scale builds and encodes its own crop sizes (a cheap check of params.yaml)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from rsdino.config import load_params
from rsdino.config.methods import METHODS
from rsdino.train.meta_arch import SelfDistillation
from rsdino.train.methods import loss_plan
from rsdino.train.pretrain import check_variant

PARAMS = load_params(Path(__file__).parents[2] / "params.yaml", "full")
#: The first full-scale variant of each method (building all 21 models takes minutes on 2 cores).
ONE_PER_METHOD = list({PARAMS.variants[name].method: name for name in reversed(PARAMS.selected_variants())}
                      .values())


@pytest.mark.parametrize("name", PARAMS.selected_variants())
def test_full_variant_settings_are_trainable(name: str) -> None:
    variant = PARAMS.variants[name]
    check_variant(variant)
    loss_plan(variant)


@pytest.mark.slow
@pytest.mark.parametrize("name", ONE_PER_METHOD)
def test_full_variant_builds_and_encodes_every_crop_size(name: str) -> None:
    variant = PARAMS.variants[name]
    small_head = variant.model_copy(update={"head": variant.head.model_copy(update={"out_dim": 64})})
    n_bands = len(PARAMS.datasets[variant.pretrain_data].bands) if variant.input_bands is None \
        else len(variant.input_bands)
    model = SelfDistillation(small_head, n_bands).eval()
    crops = variant.crops
    with torch.no_grad():
        for size in {crops.global_size, *crops.local_sizes_or_default()}:
            encoded = model.student.encode(torch.randn(1, n_bands, size, size))
            assert encoded.cls.shape[0] == 1 and torch.isfinite(encoded.cls).all()
    if METHODS[variant.method].multimodal:
        assert model.student.fusion is not None


#: The methods of the seeds' tables; a registered method beyond them (``ibot``) is in the demo only.
SEED_METHODS = {"dino", "dino_mc", "dino_tp", "satdino", "dinov2", "dinov2_multimodal"}


def test_full_scale_declares_every_method_of_the_seeds() -> None:
    declared = {PARAMS.variants[name].method for name in PARAMS.selected_variants()}
    assert declared == SEED_METHODS <= set(METHODS)
