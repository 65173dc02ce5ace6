"""Pretraining budgets: epochs, steps or wall-clock minutes, schedules spanning them, a data fraction."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pydantic import ValidationError
from torch.utils.data import Dataset

from rsdino.config.variants import BudgetSettings, OptimSettings, VariantConfig
from rsdino.train.budget import Budget, data_subset
from rsdino.train.schedules import Schedules, cosine_schedule, scaled_lr


def _variant(**budget) -> VariantConfig:
    return VariantConfig(method="dino", backbone="vit_tiny_patch8", pretrain_data="x",
                         optim=OptimSettings(epochs=4, batch_size=8, warmup_epochs=1),
                         budget=BudgetSettings(**budget))


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_epochs_by_default_and_a_step_cap() -> None:
    assert Budget(_variant(), 5).total_steps == 20
    capped = Budget(_variant(steps=7), 5)
    assert capped.total_steps == 7 and capped.epochs == 2
    assert [capped.done(s) for s in (0, 6, 7)] == [False, False, True]


def test_schedules_span_a_step_budget() -> None:
    variant = _variant(steps=7)
    schedules = Schedules.of(variant, 5, 7)
    peak = scaled_lr(variant.optim.lr, 8, variant.optim.lr_scaling)
    assert len(schedules.lr) == len(schedules.teacher_temp) == 7
    # 5 warm-up steps (one epoch of 5), then a cosine over the 2 remaining steps
    np.testing.assert_allclose(schedules.lr, cosine_schedule(peak, variant.optim.min_lr, 7, 1, 5))
    assert schedules.lr[4] == pytest.approx(peak) and schedules.lr[6] < peak
    # the default budget is exactly the epoch plan
    default = Schedules.of(_variant(), 5)
    np.testing.assert_array_equal(default.lr, cosine_schedule(peak, variant.optim.min_lr, 4, 5, 1))


def test_a_time_budget_indexes_the_schedule_by_the_time_spent() -> None:
    clock = Clock()
    budget = Budget(_variant(minutes=1), 5, clock=clock)
    assert budget.total_steps == 20 and not budget.done(0)
    clock.now = 30.0  # half the budget: the middle of the schedule
    assert budget.schedule_index(3) == 10 and not budget.done(3)
    assert budget.remaining_s() == 30.0 and Budget(_variant(), 5).remaining_s() == float("inf")
    clock.now = 60.0
    assert budget.done(4) and budget.schedule_index(4) == 19
    resumed = Budget(_variant(minutes=1), 5, elapsed_s=45.0, clock=clock)  # time of earlier runs counts
    assert resumed.schedule_index(0) == 15


def test_steps_and_minutes_together_are_refused() -> None:
    with pytest.raises(ValidationError, match="not both"):
        BudgetSettings(steps=3, minutes=1)
    with pytest.raises(ValidationError):
        BudgetSettings(data_fraction=0)


class Items(Dataset):
    def __len__(self) -> int:
        return 100

    def __getitem__(self, i: int) -> int:
        return i


def test_data_fraction_is_a_deterministic_subset() -> None:
    a, b = data_subset(Items(), 0.1, seed=3), data_subset(Items(), 0.1, seed=3)
    assert len(a) == 10 and list(a) == list(b) == sorted(set(a))
    assert list(data_subset(Items(), 0.1, seed=4)) != list(a)
    full = Items()
    assert data_subset(full, 1.0, seed=3) is full


@pytest.mark.parametrize(("budget", "check"), [
    ({"steps": 4, "data_fraction": 0.5}, lambda steps: steps == [0, 1, 2, 3]),  # 6 images: 3 steps an epoch
    ({"minutes": 1e-4}, lambda steps: 1 <= len(steps) < 30),  # 6 ms: stops long before 10 epochs of 6 steps
])
def test_pretraining_stops_at_its_budget(tmp_path, budget, check) -> None:
    from rsdino.config import CropSettings, DinoLossSettings, HeadSettings
    from rsdino.tracking import NullTracker
    from rsdino.train.pretrain import HISTORY_FILE, run_pretraining

    class Scenes(Dataset):
        images = torch.rand(12, 3, 16, 16, generator=torch.Generator().manual_seed(0)) * 3000

        def __len__(self) -> int:
            return 12

        def __getitem__(self, i: int) -> dict:
            return {"image": self.images[i], "label": 0, "path": f"{i}.tif"}

    variant = VariantConfig(
        method="dino", backbone="vit_tiny_patch8", pretrain_data="x",
        backbone_kwargs={"embed_dim": 24, "depth": 1, "num_heads": 2},
        crops=CropSettings(global_size=16, local_size=8, n_global=2, n_local=0),
        head=HeadSettings(out_dim=16, hidden_dim=16, bottleneck_dim=8),
        optim=OptimSettings(epochs=10, batch_size=2, warmup_epochs=0, freeze_last_layer_epochs=0),
        loss=DinoLossSettings(warmup_teacher_temp_epochs=0),
        budget=BudgetSettings(**budget))
    tracker = NullTracker()
    run_pretraining("tiny", variant, Scenes(), bands=["B02", "B03", "B04"], rgb_bands=["B04", "B03", "B02"],
                    mean=[1500.0] * 3, std=[800.0] * 3, out_dir=tmp_path, tracker=tracker, progress=False)
    steps = [step for step, _ in tracker.metrics]
    assert check(steps), steps
    assert (tmp_path / HISTORY_FILE).read_text().count("\n") == len(steps) + 1  # header + one row a step
    assert (tmp_path / "model.safetensors").is_file()
