"""A kNN probe during pretraining: accuracy against step, the training curve that means something.

Loss and collapse signals say whether training runs; they do not say whether the features get
better. ``KnnProbe`` scores the teacher backbone every ``probe.every_steps`` steps (and at step 0,
which is the random-init baseline of the curve) on a small labelled set held out from the probe
dataset: the features (``rsdino.evaluate.features.extract_features``: per-band standardisation with
the probe data's training statistics, the CLS token or pooled map) of ``n_train`` training-split
images form the kNN memory, those of ``n_test`` test-split images are the queries, and the weighted
kNN of DINO (``rsdino.evaluate.knn.weighted_knn``),

    score(c) = sum_{i in N_k} 1[y_i = c] exp(s_i / T),   s_i = cos(z, z_i),

gives the top-1 accuracy in percent (``knn_probe_top1``). The images are chosen evenly spaced over
each split (no random draw) and read once.

The probe must not change training: it runs under ``torch.no_grad()`` with the backbone in eval
mode (every module's train/eval flag is restored afterwards), and inside ``torch.random.fork_rng``
with the numpy and ``random`` states saved and restored, so the training RNG and therefore the
trained weights are bitwise those of a run without probe (tests/train/test_probe.py checks it).
"""

from __future__ import annotations

import contextlib
import random
import time
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from rsdino.config.variants import ProbeSettings
from rsdino.evaluate.features import extract_features
from rsdino.evaluate.knn import weighted_knn

#: Column of ``history.csv`` and MLflow metric of the probe's top-1 accuracy (percent).
PROBE_METRIC = "knn_probe_top1"
#: ... and of the wall-clock seconds the probe took (its share of the training time).
PROBE_SECONDS = "knn_probe_seconds"


def spaced_indices(n_items: int, n: int) -> list[int]:
    """``min(n, n_items)`` indices evenly spaced over ``range(n_items)`` (deterministic, no RNG)."""
    if n_items <= 0:
        return []
    count = min(n, n_items)
    return sorted({int(i) for i in np.linspace(0, n_items - 1, count).round()})


class _Cached(Dataset):
    """The items of ``dataset`` at ``indices``, read once and kept in memory (image and label only)."""

    def __init__(self, dataset: Dataset, indices: Sequence[int]) -> None:
        self.items = []
        for i in indices:
            item = dataset[i]
            self.items.append({"image": torch.as_tensor(item["image"], dtype=torch.float32),
                               "label": int(item["label"])})

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.items[index]


@contextlib.contextmanager
def isolated(module: nn.Module, device: str) -> Iterator[None]:
    """Eval mode and no gradients for ``module``, every RNG state restored on exit.

    Restores torch's CPU (and, on CUDA, the current device's) generator, numpy's and ``random``'s
    states, and each submodule's ``training`` flag.
    """
    flags = {m: m.training for m in module.modules()}
    np_state, py_state = np.random.get_state(), random.getstate()
    devices = [torch.device(device)] if str(device).startswith("cuda") else []
    try:
        with torch.random.fork_rng(devices=devices), torch.no_grad():
            module.eval()
            yield
    finally:
        for m, flag in flags.items():
            m.training = flag
        np.random.set_state(np_state)
        random.setstate(py_state)


class KnnProbe:
    """Weighted-kNN top-1 accuracy of a backbone on a fixed small labelled set (module docstring).

    Args:
        settings: ``variant.probe``.
        train: the probe dataset's training split (items ``{"image", "label"}``): the kNN memory.
        test: its test split: the queries.
        mean, std: per-band statistics to standardise with (the probe data's training statistics).
        n_classes: number of classes (default: from ``train.classes`` or the labels).
        bands: the probe data's band names, checked against the model's by ``check_bands``.
    """

    def __init__(self, settings: ProbeSettings, train: Dataset, test: Dataset, *, mean: Sequence[float],
                 std: Sequence[float], n_classes: int | None = None,
                 bands: Sequence[str] | None = None) -> None:
        self.settings = settings
        self.train = _Cached(train, spaced_indices(len(train), settings.n_train))  # type: ignore[arg-type]
        self.test = _Cached(test, spaced_indices(len(test), settings.n_test))  # type: ignore[arg-type]
        if not len(self.train) or not len(self.test):
            raise ValueError(f"probe dataset {settings.dataset!r}: its train and test splits must not "
                             f"be empty ({len(self.train)} and {len(self.test)} images)")
        self.mean, self.std = list(mean), list(std)
        self.bands = list(bands) if bands is not None else None
        classes = getattr(train, "classes", None)
        labels = [item["label"] for item in self.train.items + self.test.items]
        self.n_classes = n_classes or (len(classes) if classes is not None else max(labels) + 1)

    def due(self, step: int) -> bool:
        """Whether the probe runs after ``step`` steps (0 and every ``every_steps``)."""
        return step % self.settings.every_steps == 0

    def check_bands(self, model_bands: Sequence[str]) -> None:
        """Refuse a probe dataset whose bands are not the backbone's (by name, in order)."""
        if self.bands is not None and list(model_bands) != self.bands:
            raise ValueError(f"probe dataset {self.settings.dataset!r} has bands {self.bands}, the "
                             f"backbone is trained on {list(model_bands)}: choose a probe dataset "
                             f"with the backbone's bands")

    def __call__(self, backbone: nn.Module, device: str = "cpu") -> dict[str, float]:
        """``{PROBE_METRIC: top-1 %, PROBE_SECONDS: s}`` of ``backbone``; training state, RNGs untouched."""
        s = self.settings
        start = time.perf_counter()
        with isolated(backbone, device):
            options = {"mean": self.mean, "std": self.std, "batch_size": s.batch_size, "device": device,
                       "progress": False}
            train_x, train_y = extract_features(backbone, self.train, **options)
            test_x, test_y = extract_features(backbone, self.test, **options)
        metrics = weighted_knn(train_x, train_y, test_x, test_y, ks=(s.k,), temperature=s.temperature,
                               n_classes=self.n_classes)
        return {PROBE_METRIC: metrics[f"top1_k{s.k}"], PROBE_SECONDS: time.perf_counter() - start}


def open_probe(settings: ProbeSettings, dataset_cfg: Any, raw_dir: Any, prepared_dir: Any) -> KnnProbe:
    """A ``KnnProbe`` on the train and test splits of the prepared probe dataset.

    ``dataset_cfg`` is ``params.datasets[settings.dataset]``; ``raw_dir``/``prepared_dir`` its
    downloaded and prepared folders. The images are standardised with the training split's statistics.
    """
    from rsdino.data.registry import open_dataset

    train = open_dataset(dataset_cfg, raw_dir, prepared_dir, "train")
    test = open_dataset(dataset_cfg, raw_dir, prepared_dir, "test")
    stats = train.stats  # type: ignore[attr-defined]
    return KnnProbe(settings, train, test, mean=stats["mean"], std=stats["std"],
                    bands=getattr(train, "bands", None) or dataset_cfg.bands)
