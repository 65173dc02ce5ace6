"""What each step of a pretraining run reads: seeded batches of indices and reproducible views.

``RunBatches`` serves every epoch's global batches (``GlobalBatchSampler``: a seeded permutation per
epoch, sliced over the ranks) from one DataLoader iteration; ``ViewsDataset`` draws the views of
image ``i`` in epoch ``e`` from a generator seeded by ``(seed, e, i)``, so they depend neither on the
rank, nor on the number of workers, nor on where a run was resumed. ``select_bands`` restricts the
data to a variant's ``input_bands``.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler


class GlobalBatchSampler(Sampler[list[int]]):
    """The share of this rank in each global batch of a seeded per-epoch permutation.

    The permutation of epoch ``e`` comes from ``(seed, e)``; global batch ``j`` is
    ``perm[j*B : (j+1)*B]`` (incomplete last batch dropped) and rank ``r`` of ``W`` gets its ``r``-th
    of ``W`` equal slices. ``start`` skips the first batches (resuming inside an epoch).

    Args:
        n_items: Dataset length.
        batch_size: Global batch ``B`` (a multiple of ``world_size``).
        seed, epoch: The permutation's seed.
        rank, world_size: This process's slice.
        start: Global batches already done in this epoch.
    """

    def __init__(self, n_items: int, batch_size: int, *, seed: int, epoch: int, rank: int = 0,
                 world_size: int = 1, start: int = 0) -> None:
        if batch_size % world_size:
            raise ValueError(f"global batch {batch_size} is not divisible by {world_size} processes")
        self.n_items, self.batch_size, self.start = n_items, batch_size, start
        self.rank, self.world_size = rank, world_size
        self.generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)

    def __len__(self) -> int:
        return self.n_items // self.batch_size - self.start

    def __iter__(self) -> Iterator[list[int]]:
        perm = torch.randperm(self.n_items, generator=self.generator).tolist()
        share = self.batch_size // self.world_size
        for j in range(self.start, self.n_items // self.batch_size):
            begin = j * self.batch_size + self.rank * share
            yield perm[begin: begin + share]


class RunBatches(Sampler[list[tuple[int, int]]]):
    """``GlobalBatchSampler``'s batches of every epoch from step ``start`` on, as ``(epoch, index)`` pairs.

    One DataLoader iteration then serves the whole run (the workers prefetch across epoch
    boundaries), and each item still knows the epoch its views are seeded by (``ViewsDataset``).

    Args:
        n_items, batch_size, seed, rank, world_size: As in ``GlobalBatchSampler``.
        epochs: Epochs of the run.
        start: Steps already done (resuming).
    """

    def __init__(self, n_items: int, batch_size: int, *, seed: int, epochs: int, rank: int = 0,
                 world_size: int = 1, start: int = 0) -> None:
        self.args = {"n_items": n_items, "batch_size": batch_size, "seed": seed, "rank": rank,
                     "world_size": world_size}
        self.epochs, self.start = epochs, start
        self.steps = len(GlobalBatchSampler(**self.args, epoch=0))  # refuses a batch ranks cannot share

    def __len__(self) -> int:
        return self.steps * self.epochs - self.start

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        for epoch in range(self.start // self.steps, self.epochs):
            skip = self.start - epoch * self.steps if epoch == self.start // self.steps else 0
            for batch in GlobalBatchSampler(**self.args, epoch=epoch, start=skip):
                yield [(epoch, i) for i in batch]


class ViewsDataset(Dataset):
    """Items of ``dataset`` turned into views, reproducibly.

    The views of item ``i`` in epoch ``e`` are seeded by ``(seed, e, i)``; the global RNG is forked,
    so the training RNG is untouched. An index is ``(e, i)`` (``RunBatches``) or ``i`` (epoch
    ``self.epoch``).
    """

    def __init__(self, dataset: Dataset, views: Any, seed: int) -> None:
        self.dataset, self.views, self.seed, self.epoch = dataset, views, seed, 0

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: int | tuple[int, int]) -> dict:
        epoch, index = index if isinstance(index, tuple) else (self.epoch, index)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed((self.seed * 1_000_003 + epoch) * 10_000_019 + index)
            return self.views(self.dataset[index])


class BandSubset(Dataset):
    """Items of ``dataset`` with ``image`` (and ``series``) reduced to the bands at ``index``."""

    def __init__(self, dataset: Dataset, index: list[int]) -> None:
        self.dataset, self.index = dataset, index

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, i: int) -> dict:
        item = dict(self.dataset[i])
        item["image"] = item["image"][self.index]
        if "series" in item:
            item["series"] = item["series"][:, self.index]
        return item


def select_bands(dataset: Dataset, wanted: list[str], bands: list[str], rgb_bands: list[str],
                 mean: list[float], std: list[float]) -> tuple[Dataset, list[str], list[str], list[float],
                                                             list[float]]:
    """Restrict the data to the bands ``wanted`` (``variant.input_bands``), by name."""
    missing = [band for band in wanted if band not in bands]
    if missing:
        raise ValueError(f"input_bands {missing} are not bands of the pretraining data {bands}")
    index = [bands.index(band) for band in wanted]
    return (BandSubset(dataset, index), list(wanted), [b for b in rgb_bands if b in wanted],
            [mean[i] for i in index], [std[i] for i in index])


def seed_worker(worker_id: int) -> None:
    """A DataLoader worker's numpy and ``random`` seeds, from its torch seed."""
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)
