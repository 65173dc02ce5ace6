"""Per-step schedules: DINO's cosine scheduler convention, teacher temperature, a variant's schedules.

Expected values are computed here from the closed forms with ``math``, step by step, independently
of the numpy implementation in ``rsdino.train.schedules``.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from rsdino.config import DinoLossSettings, OptimSettings, VariantConfig
from rsdino.train.schedules import Schedules, cosine_schedule, teacher_temp_schedule


def _closed_form(base: float, final: float, total: int, warmup: int, start: float = 0.0) -> list[float]:
    """DINO's convention: ``start + (base - start) s / (W - 1)`` for s < W, then
    ``final + (base - final) (1 + cos(pi j / N)) / 2`` for the N = T - W remaining steps."""
    values = []
    for s in range(total):
        if s < warmup:
            values.append(start if warmup == 1 else start + (base - start) * s / (warmup - 1))
        else:
            n_cosine = total - warmup
            values.append(final + (base - final) * (1 + math.cos(math.pi * (s - warmup) / n_cosine)) / 2)
    return values


def test_lr_schedule_of_dino_20_epochs_7_steps_3_warmup() -> None:
    base, final = 5e-4, 1e-6
    values = cosine_schedule(base, final, epochs=20, steps_per_epoch=7, warmup_epochs=3)
    assert values.dtype == np.float64 and values.shape == (140,)
    # W = 21 warm-up steps, N = 119 cosine steps
    assert values[0] == 0.0
    assert values[10] == pytest.approx(base * 10 / 20, rel=1e-12)
    assert values[20] == base  # the last warm-up step reaches the peak
    assert values[21] == base  # the cosine starts at the peak (cos 0 = 1)
    assert values[21 + 60] == pytest.approx(final + (base - final) * (1 + math.cos(math.pi * 60 / 119)) / 2,
                                            rel=1e-12)
    last = final + (base - final) * (1 - math.cos(math.pi / 119)) / 2  # cos(pi 118/119) = -cos(pi/119)
    assert values[-1] == pytest.approx(last, rel=1e-12)
    assert values[-1] > final  # the cosine stops one step short of final, as in DINO
    assert values.tolist() == pytest.approx(_closed_form(base, final, 140, 21), rel=1e-12, abs=1e-18)
    assert np.all(np.diff(values[:21]) > 0) and np.all(np.diff(values[21:]) < 0)


def test_momentum_and_weight_decay_schedules_without_warmup_rise_from_the_first_step() -> None:
    momentum = cosine_schedule(0.996, 1.0, epochs=2, steps_per_epoch=5)
    assert momentum[0] == 0.996
    assert momentum.tolist() == pytest.approx(_closed_form(0.996, 1.0, 10, 0), rel=1e-12)
    assert momentum[-1] == pytest.approx(1.0 - 0.004 * (1 + math.cos(math.pi * 9 / 10)) / 2, rel=1e-12)
    assert momentum[-1] < 1.0
    wd = cosine_schedule(0.04, 0.4, epochs=3, steps_per_epoch=4)
    assert wd.tolist() == pytest.approx(_closed_form(0.04, 0.4, 12, 0), rel=1e-12)
    assert np.all(np.diff(wd) > 0)


def test_warmup_from_a_start_value_and_a_one_step_warmup() -> None:
    values = cosine_schedule(1.0, 0.1, epochs=3, steps_per_epoch=4, warmup_epochs=1, start_warmup_value=0.2)
    assert values.tolist() == pytest.approx(_closed_form(1.0, 0.1, 12, 4, 0.2), rel=1e-12)
    assert values[0] == 0.2 and values[3] == 1.0 and values[4] == 1.0
    # W = 1: the single warm-up step holds the start value; the cosine then runs from base
    single = cosine_schedule(1.0, 0.5, epochs=3, steps_per_epoch=1, warmup_epochs=1, start_warmup_value=0.25)
    assert single.tolist() == pytest.approx([0.25, 1.0, 0.75], rel=1e-12)


def test_warmup_as_long_as_the_run_ends_at_base() -> None:
    values = cosine_schedule(1e-3, 1e-6, epochs=3, steps_per_epoch=5, warmup_epochs=3)
    assert values.tolist() == pytest.approx([1e-3 * s / 14 for s in range(15)], rel=1e-12, abs=1e-18)
    assert values[-1] == 1e-3


def test_warmup_longer_than_the_run_follows_the_planned_ramp() -> None:
    # W = 4 x 3 = 12 planned warm-up steps, only T = 2 x 3 = 6 of them run: no cosine step at all
    values = cosine_schedule(1.0, 0.0, epochs=2, steps_per_epoch=3, warmup_epochs=4)
    assert values.tolist() == pytest.approx([s / 11 for s in range(6)], rel=1e-12)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"epochs": 0, "steps_per_epoch": 5}, "at least one step"),
    ({"epochs": 2, "steps_per_epoch": 0}, "at least one step"),
    ({"epochs": 2, "steps_per_epoch": 5, "warmup_epochs": -1}, "warmup_epochs"),
])
def test_empty_runs_and_negative_warmups_are_refused(kwargs, message) -> None:
    with pytest.raises(ValueError, match=message):
        cosine_schedule(1.0, 0.0, **kwargs)


def test_teacher_temperature_warms_up_per_epoch() -> None:
    # DINO: linspace(warmup_temp, temp, warmup_epochs) then temp, one value per epoch
    values = teacher_temp_schedule(0.04, 0.07, warmup_epochs=3, epochs=5, steps_per_epoch=2)
    assert values.tolist() == pytest.approx([0.04, 0.04, 0.055, 0.055, 0.07, 0.07, 0.07, 0.07, 0.07, 0.07])
    assert teacher_temp_schedule(0.04, 0.07, warmup_epochs=0, epochs=2).tolist() == [0.07, 0.07]
    # a warm-up longer than the run keeps the planned per-epoch ramp
    ramp = teacher_temp_schedule(0.04, 0.07, warmup_epochs=4, epochs=2)
    assert ramp.tolist() == pytest.approx([0.04, 0.05])


def test_schedules_of_a_variant_follow_dino_main() -> None:
    variant = VariantConfig(
        method="dino", backbone="vit_tiny_patch8", pretrain_data="synthetic",
        optim=OptimSettings(epochs=4, batch_size=512, lr=5e-4, min_lr=1e-6, warmup_epochs=1,
                            weight_decay=0.04, weight_decay_end=0.4, momentum_teacher=0.996),
        loss=DinoLossSettings(warmup_teacher_temp=0.04, teacher_temp=0.07, warmup_teacher_temp_epochs=2))
    schedules = Schedules.of(variant, 3)
    peak = 5e-4 * 512 / 256
    assert schedules.lr.tolist() == pytest.approx(_closed_form(peak, 1e-6, 12, 3), rel=1e-12)
    assert schedules.wd.tolist() == pytest.approx(_closed_form(0.04, 0.4, 12, 0), rel=1e-12)
    assert schedules.momentum.tolist() == pytest.approx(_closed_form(0.996, 1.0, 12, 0), rel=1e-12)
    assert schedules.teacher_temp.tolist() == pytest.approx([0.04] * 3 + [0.07] * 9)
