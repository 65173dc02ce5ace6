"""``SceneDataset``: the torch dataset over a prepared scene-classification folder.

The prepared folder (written by ``rsdino.data.prepare``) holds ``<split>.txt``, ``classes.json``,
``stats.json`` and ``dataset.json`` (and ``splits/<name>/`` for named splits, opened as
``"<name>/train"``); image paths in the split files are relative to the raw folder.
Images come back in native units (no normalisation: that is the transforms' job).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib.figure import Figure

from rsdino.data.prepared import PreparedDataset, read_prepared_json, rgb_figure
from rsdino.data.readers import ImageReadError, read_image
from rsdino.data.splits import NAMED_SPLITS_DIR, read_split_file

Sample = dict[str, Any]


class SceneDataset(PreparedDataset):
    """Images of one split of a prepared dataset, as ``{"image", "label", "path"}`` dicts.

    Args:
        raw_dir: the extracted dataset folder that split-file paths are relative to.
        prepared_dir: the folder written by ``prepare_scene_dataset``.
        split: a split with a ``<split>.txt`` file in ``prepared_dir`` (``"train"``, ``"test"``), or
            ``"<name>/train"`` for a part of the named split ``<name>`` (its own ``stats.json``).
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
        super().__init__(raw_dir, prepared_dir, transform)
        named = self.prepared_dir / NAMED_SPLITS_DIR
        valid = [p.stem for p in self.prepared_dir.glob("*.txt")]
        valid += [f"{p.parent.name}/{p.stem}" for p in named.glob("*/*.txt")] if named.is_dir() else []
        self.split = self.check_split(split, valid)
        if "/" in split:
            self.samples = read_split_file(named / f"{split}.txt")
            self.stats_file = f"{NAMED_SPLITS_DIR}/{split.split('/')[0]}/stats.json"
        else:
            self.samples = read_split_file(self.prepared_dir / f"{split}.txt")
        self._classes: list[str] = read_prepared_json(self.prepared_dir, "classes.json")

    @property
    def classes(self) -> list[str]:
        """Class names; a label indexes this list."""
        return self._classes

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

    def plot(self, index: int) -> Figure:
        """Return a figure of item ``index``: the RGB composite (2-98 % stretch) titled with its class."""
        sample = self.load(index)
        return rgb_figure(sample["image"], self.bands, self.metadata["rgb_bands"],
                          f"{self.classes[sample['label']]}  ({sample['path']})")
