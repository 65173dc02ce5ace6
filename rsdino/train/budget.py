"""How long pretraining runs and on which images: epochs, steps or wall-clock minutes; a data fraction.

``variant.budget`` (``rsdino.config.variants.BudgetSettings``) picks the unit:

- nothing set: ``optim.epochs`` epochs of ``S`` steps, ``T = epochs * S`` steps;
- ``steps: N``: ``T = N`` steps (the last epoch may end early, or the run may stop inside one);
- ``minutes: M``: steps until ``M`` minutes of training have passed (counted over resumes too).

The schedules (``rsdino.train.schedules.Schedules``) are computed for ``T`` planned steps. For a
time budget ``T`` is the epoch plan (``optim.epochs * S``), used as the resolution of the schedule,
and step ``s`` at elapsed time ``t`` reads the schedule at index ``min(T - 1, floor(t / (60 M) * T))``:
the warm-up and the cosine span the time budget, whatever the speed of the machine.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import torch
from torch.utils.data import Dataset, Subset

from rsdino.config.variants import VariantConfig
from rsdino.train import distributed


def data_subset(dataset: Dataset, fraction: float, seed: int) -> Dataset:
    """The first ``round(fraction * n)`` items (at least one) of a permutation seeded by ``seed``.

    The subset keeps index order.

    ``fraction == 1`` returns ``dataset`` itself.
    """
    if fraction >= 1.0:
        return dataset
    n = len(dataset)  # type: ignore[arg-type]
    keep = max(1, round(fraction * n))
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return Subset(dataset, sorted(perm[:keep].tolist()))


class Budget:
    """The planned steps of a run and when it is done.

    Args:
        variant: Its ``budget`` and ``optim.epochs``.
        steps_per_epoch: ``S``, full global batches per epoch.
        elapsed_s: Training seconds of earlier runs (a resumed time budget).
        clock: ``time.monotonic``; a test passes its own.
    """

    def __init__(self, variant: VariantConfig, steps_per_epoch: int, *, elapsed_s: float = 0.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        budget = variant.budget
        self.steps_per_epoch = steps_per_epoch
        self.seconds = budget.minutes * 60.0 if budget.minutes is not None else None
        epochs_plan = variant.optim.epochs * steps_per_epoch
        self.total_steps = budget.steps if budget.steps is not None else epochs_plan
        self.earlier_s, self.clock, self.started = elapsed_s, clock, clock()

    @property
    def epochs(self) -> int:
        """Epochs the schedules span (the last one possibly partial): ``ceil(T / S)``."""
        return -(-self.total_steps // self.steps_per_epoch)

    def elapsed_s(self) -> float:
        """Training seconds so far, this run and the earlier ones."""
        return self.earlier_s + self.clock() - self.started

    def remaining_s(self) -> float:
        """Seconds left of a time budget (``inf`` for a budget of steps or epochs)."""
        return float("inf") if self.seconds is None else max(self.seconds - self.elapsed_s(), 0.0)

    def done(self, step: int) -> bool:
        """Whether the run stops before step ``step`` (0-based; ``step`` steps are done)."""
        if self.seconds is not None:  # every rank stops at the same step: as soon as one is over time
            over = float(step > 0 and self.elapsed_s() >= self.seconds)
            return distributed.mean_over_ranks({"over": over})["over"] > 0
        return step >= self.total_steps

    def schedule_index(self, step: int) -> int:
        """The index into the per-step schedules for step ``step``."""
        if self.seconds is None:
            return step
        return min(self.total_steps - 1, int(self.elapsed_s() / self.seconds * self.total_steps))
