"""``SceneDataset``: the torch dataset over a prepared scene-classification folder.

The prepared folder (written by ``rsdino.data.prepare``) holds ``<split>.txt``, ``classes.json``,
``stats.json`` and ``dataset.json``; image paths in the split files are relative to the raw folder.
Images come back in native units (no normalisation: that is the transforms' job).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib.figure import Figure
from torch.utils.data import Dataset

from rsdino.data.readers import ImageReadError, read_image
from rsdino.data.splits import read_split_file

Sample = dict[str, Any]


class SceneDataset(Dataset):
    """Images of one split of a prepared dataset, as ``{"image", "label", "path"}`` dicts.

    Args:
        raw_dir: the extracted dataset folder that split-file paths are relative to.
        prepared_dir: the folder written by ``prepare_scene_dataset``.
        split: a split with a ``<split>.txt`` file in ``prepared_dir`` (``"train"``, ``"test"``).
        transform: called on each sample dict; its return value is the item.

    An item (before ``transform``) is ``{"image": float32 tensor (C, H, W) in native units,
    "label": int, "path": str}`` where ``path`` is the image path relative to ``raw_dir``.
    """

    def __init__(
        self,
        raw_dir: Path,
        prepared_dir: Path,
        split: str,
        transform: Callable[[Sample], Any] | None = None,
    ) -> None:
        self.raw_dir = Path(raw_dir)
        self.prepared_dir = Path(prepared_dir)
        if not self.prepared_dir.is_dir():
            raise FileNotFoundError(
                f"prepared dataset folder {self.prepared_dir} does not exist; run `rsdino prepare` first"
            )
        valid = sorted(p.stem for p in self.prepared_dir.glob("*.txt"))
        if split not in valid:
            raise ValueError(f"unknown split {split!r} for {self.prepared_dir}; valid splits: {valid}")
        self.split = split
        self.transform = transform
        self.samples = read_split_file(self.prepared_dir / f"{split}.txt")
        self.metadata: dict[str, Any] = self._read_json("dataset.json")
        self._classes: list[str] = self._read_json("classes.json")
        self._stats: dict[str, Any] | None = None

    def _read_json(self, name: str) -> Any:
        path = self.prepared_dir / name
        if not path.is_file():
            raise FileNotFoundError(f"{path} is missing; run `rsdino prepare` again")
        return json.loads(path.read_text(encoding="utf-8"))

    @property
    def classes(self) -> list[str]:
        """Class names; a label indexes this list."""
        return self._classes

    @property
    def bands(self) -> list[str]:
        """Band names, in the order of the image channels."""
        return self.metadata["bands"]

    @property
    def stats(self) -> dict[str, Any]:
        """Per-band ``mean`` and ``std`` of the training split (from ``stats.json``), read on first use."""
        if self._stats is None:
            self._stats = self._read_json("stats.json")
        return self._stats

    @property
    def labels(self) -> list[int]:
        """The label of every item, in dataset order."""
        return [label for _, label in self.samples]

    def __len__(self) -> int:
        """Number of images in the split."""
        return len(self.samples)

    def load(self, index: int) -> Sample:
        """Return item ``index`` without the transform."""
        rel, label = self.samples[index]
        path = self.raw_dir / rel
        image = read_image(path)
        if image.shape[0] != len(self.bands):
            raise ImageReadError(f"{path}: {image.shape[0]} bands, expected {len(self.bands)} ({self.bands})")
        return {"image": torch.from_numpy(image.astype(np.float32)), "label": label, "path": rel}

    def __getitem__(self, index: int) -> Any:
        """Return item ``index``, passed through ``transform`` when one is set."""
        sample = self.load(index)
        return self.transform(sample) if self.transform is not None else sample

    def plot(self, index: int) -> Figure:
        """Return a figure of item ``index``: the RGB composite (2-98 % stretch) titled with its class."""
        sample = self.load(index)
        rgb_index = [self.bands.index(band) for band in self.metadata["rgb_bands"]]
        rgb = sample["image"][rgb_index].numpy().astype(np.float64)
        low, high = np.percentile(rgb, [2, 98], axis=(1, 2), keepdims=True)
        rgb = np.clip((rgb - low) / np.maximum(high - low, 1e-12), 0.0, 1.0).transpose(1, 2, 0)
        figure = Figure(figsize=(4, 4))
        axes = figure.add_subplot()
        axes.imshow(rgb)
        axes.set_title(f"{self.classes[sample['label']]}  ({sample['path']})", fontsize=8)
        axes.axis("off")
        return figure
