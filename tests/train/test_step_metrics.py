"""Tests for rsdino.train.step_metrics and the run-long loader of rsdino.train.pretrain."""

from __future__ import annotations

import math

import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from rsdino.train.pretrain import GlobalBatchSampler, RunBatches, ViewsDataset
from rsdino.train.step_metrics import GPU_READ_EVERY, StepMetrics, read_interval


def test_pending_steps_are_read_in_one_block_in_order() -> None:
    pending = StepMetrics()
    for step in range(3):
        pending.add(step, {"loss": torch.tensor(1.5 + step), "loss_dino": torch.tensor(float(step)),
                           "lr": 0.1 * step})
    assert len(pending) == 3
    rows = pending.read()
    assert [s for s, _ in rows] == [0, 1, 2]
    assert [m["loss"] for _, m in rows] == [1.5, 2.5, 3.5]
    assert list(rows[2][1]) == ["loss", "loss_dino", "lr"]  # the order the step gave
    assert rows[1][1]["lr"] == pytest.approx(0.1) and len(pending) == 0 and pending.read() == []


def test_a_non_finite_loss_names_its_step_when_read() -> None:
    pending = StepMetrics()
    pending.add(7, {"loss": torch.tensor(1.0)})
    pending.add(8, {"loss": torch.tensor(math.nan)})
    with pytest.raises(FloatingPointError, match="loss is nan at step 8"):
        pending.read()
    assert len(pending) == 0


def test_steps_must_log_the_same_metrics() -> None:
    pending = StepMetrics()
    pending.add(0, {"loss": torch.tensor(1.0)})
    with pytest.raises(ValueError, match="step 1 logs"):
        pending.add(1, {"loss": torch.tensor(1.0), "loss_koleo": torch.tensor(0.0)})


def test_read_interval_auto_rule() -> None:
    assert read_interval(0, "cpu") == 1
    assert read_interval(0, "cuda:0") == GPU_READ_EVERY
    assert read_interval(5, "cpu") == 5


def test_run_batches_are_the_global_batches_of_every_epoch() -> None:
    want = [[(epoch, i) for i in batch] for epoch in range(3)
            for batch in GlobalBatchSampler(10, 4, seed=3, epoch=epoch, rank=1, world_size=2)]
    assert len(want) == 6
    for start in (0, 1, 2, 5, 6):  # resuming: from inside or at the boundary of an epoch, or done
        batches = RunBatches(10, 4, seed=3, epochs=3, rank=1, world_size=2, start=start)
        assert list(batches) == want[start:] and len(batches) == 6 - start
    with pytest.raises(ValueError, match="not divisible"):
        RunBatches(10, 3, seed=0, epochs=1, world_size=2)


class _Range(Dataset):
    def __len__(self) -> int:
        return 8

    def __getitem__(self, i: int) -> dict:
        return {"image": torch.full((1,), float(i))}


def _noisy(sample: dict) -> torch.Tensor:
    return sample["image"] + torch.rand(1)


def test_workers_draw_each_epochs_views() -> None:
    """Views seeded by (seed, epoch, index) through workers across epochs equal those of one process."""
    views = ViewsDataset(_Range(), _noisy, seed=0)
    batches = RunBatches(8, 4, seed=0, epochs=2)
    seen = {}
    for workers in (0, 2):
        seen[workers] = [b.flatten() for b in DataLoader(views, batch_sampler=batches, num_workers=workers)]
    assert all(torch.equal(a, b) for a, b in zip(seen[0], seen[2], strict=True))
    assert not torch.equal(torch.cat(seen[0][:2]).sort().values, torch.cat(seen[0][2:]).sort().values)
