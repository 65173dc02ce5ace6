"""Multi-label patch datasets in the BigEarthNet layout: prepare an index and serve 19-class targets.

Layout: ``<class_root>/<P>/<P>_<band>.tif`` (one file per band, any resolution) and
``<P>_labels_metadata.json`` (43-class CORINE names in ``labels``). ``prepare_multilabel_dataset``
writes ``train.json`` / ``test.json`` (``[{"path": patch folder relative to the raw folder, "labels":
[...]}, ...]``; a seeded random split of the patches, since the official split CSVs are a separate
download), ``classes.json`` (the 19 class names), ``stats.json`` and ``dataset.json``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import torch
from matplotlib.figure import Figure
from tqdm import tqdm

from rsdino.data.bigearthnet import LABELS_19, labels_to_multihot, read_patch_metadata
from rsdino.data.prepared import (
    PreparedDataset,
    read_prepared_json,
    rgb_figure,
    seeded_subset,
    split_by_group,
)
from rsdino.data.readers import read_band_files
from rsdino.data.stats import compute_band_stats
from rsdino.io import atomic_directory, write_json

log = logging.getLogger(__name__)


def read_patch(raw_dir: Path, rel: str, bands: list[str], size: int) -> np.ndarray:
    """Read the band files of patch folder ``rel`` as a ``(len(bands), size, size)`` array on one grid."""
    folder = Path(raw_dir) / rel
    return read_band_files([folder / f"{folder.name}_{band}.tif" for band in bands], size)


def prepare_multilabel_dataset(raw_dir: Path, out_dir: Path, *, name: str, task: str,
                               class_root: str, bands: list[str],
                               rgb_bands: list[str], gsd: float, native_size: int, test_fraction: float,
                               seed: int, max_stats_items: int | None = 500, progress: bool = True) -> dict:
    """Index, split (seeded, by patch) and describe a BigEarthNet-layout folder; write ``out_dir`` atomically.

    Args:
        raw_dir: the extracted dataset folder.
        out_dir: the prepared folder to (re)write.
        name: dataset name recorded in ``dataset.json``.
        task: its task name (``rsdino.data.registry``), recorded in ``dataset.json`` too.
        class_root: folder (relative to ``raw_dir``) holding the patch folders.
        bands: band file suffixes, in channel order.
        rgb_bands: bands of the RGB composite.
        gsd: ground sampling distance in metres.
        native_size: side of the grid every band is resampled to.
        test_fraction: share of the patches held out.
        seed: seed of the split and of the statistics subsample.
        max_stats_items: training patches the band statistics are computed on.
        progress: show progress bars.

    Returns:
        ``{"name", "n_train", "n_test", "n_classes"}``.

    Raises:
        FileNotFoundError: no patch folder with a labels JSON under ``class_root``.
    """
    raw_dir, out_dir = Path(raw_dir), Path(out_dir)
    root = raw_dir / class_root
    folders = sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
    prefix = PurePosixPath(class_root)
    records = []
    for folder in tqdm(folders, desc="reading labels", unit="patch", disable=not progress):
        labels = read_patch_metadata(folder)["labels"]
        labels_to_multihot(labels, 19)  # fails early on an unknown label name
        records.append({"path": (prefix / folder.name).as_posix(), "labels": labels})
    if not records:
        raise FileNotFoundError(f"{root}: no BigEarthNet patch folder (<P>/<P>_<band>.tif and "
                                "<P>_labels_metadata.json); download and extract the dataset first")
    train_ids, _ = split_by_group([r["path"] for r in records], test_fraction, seed)
    train = [r for r in records if r["path"] in train_ids]
    test = [r for r in records if r["path"] not in train_ids]
    stats = compute_band_stats([Path(r["path"]) for r in seeded_subset(train, max_stats_items, seed)],
                               reader=lambda rel: read_patch(raw_dir, rel.as_posix(), bands, native_size),
                               progress=progress)
    metadata = {"name": name, "task": task, "bands": list(bands), "rgb_bands": list(rgb_bands),
                "gsd": gsd, "native_size": native_size}
    with atomic_directory(out_dir) as tmp:
        write_json(tmp / "train.json", train)
        write_json(tmp / "test.json", test)
        write_json(tmp / "classes.json", list(LABELS_19))
        write_json(tmp / "stats.json", {"bands": list(bands), **stats})
        write_json(tmp / "dataset.json", metadata)
    summary = {"name": name, "n_train": len(train), "n_test": len(test), "n_classes": len(LABELS_19)}
    log.info("prepared %s in %s: %s", name, out_dir, summary)
    return summary


Sample = dict[str, Any]


class MultiLabelPatchDataset(PreparedDataset):
    """Patches of one split of a prepared BigEarthNet-layout folder with 19-class multi-hot targets.

    Args:
        raw_dir: the extracted dataset folder.
        prepared_dir: the folder written by ``prepare_multilabel_dataset``.
        split: ``"train"`` or ``"test"``.
        transform: called on each sample dict; its return value is the item.

    An item (before ``transform``) is ``{"image": float32 (C, H, W) native units, "label": float32
    (19,) multi-hot (Sumbul et al. 2021 nomenclature), "path": str}``.
    """

    def __init__(self, raw_dir: Path, prepared_dir: Path, split: str,
                 transform: Callable[[Sample], Any] | None = None) -> None:
        super().__init__(raw_dir, prepared_dir, transform)
        self.split = self.check_split(split, ["train", "test"])
        self.records: list[dict] = read_prepared_json(self.prepared_dir, f"{split}.json")
        self.classes: list[str] = read_prepared_json(self.prepared_dir, "classes.json")

    def __len__(self) -> int:
        """Number of patches in the split."""
        return len(self.records)

    def load(self, index: int) -> Sample:
        """Return item ``index`` without the transform."""
        record = self.records[index]
        image = read_patch(self.raw_dir, record["path"], self.bands, self.metadata["native_size"])
        return {"image": torch.from_numpy(image.astype(np.float32)),
                "label": torch.from_numpy(labels_to_multihot(record["labels"], 19)), "path": record["path"]}

    def plot(self, index: int) -> Figure:
        """A figure of patch ``index`` (RGB composite, or the first band in grey) titled with its labels."""
        sample = self.load(index)
        names = [self.classes[i] for i in torch.nonzero(sample["label"]).flatten().tolist()]
        return rgb_figure(sample["image"], self.bands, self.metadata["rgb_bands"],
                          f"{PurePosixPath(sample['path']).name}\n{'; '.join(names)[:80]}")
