"""Co-registered Sentinel-1 / Sentinel-2 pairs (SEN12MS-CR-TS layout): prepare and serve them.

``prepare_s1s2_dataset`` pairs the files (``rsdino.data.sen12mscrts.index_sen12mscrts``, split by
ROI so no place is in two splits) and writes ``train_all.json`` / ``val_all.json`` (``[[s1, s2], ...]``
relative to the raw folder), ``pairing_report.json``, ``stats.json`` (15 bands: S1 then S2, training
split), ``classes.json`` (``[]``) and ``dataset.json``. ``S1S2PairDataset`` reads it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import torch
from matplotlib.figure import Figure

from rsdino.data.prepared import (
    PreparedDataset,
    read_prepared_json,
    rgb_figure,
    seeded_subset,
)
from rsdino.data.readers import ImageReadError, read_image
from rsdino.data.sen12mscrts import S1_BANDS, S2_BANDS, index_sen12mscrts, write_index
from rsdino.data.stats import compute_band_stats
from rsdino.io import atomic_directory, write_json

log = logging.getLogger(__name__)
PAIR_BANDS = [*S1_BANDS, *S2_BANDS]
SPLIT_FILES = {"train": "train_all.json", "val": "val_all.json", "test": "val_all.json"}


def read_pair(raw_dir: Path, s1_rel: str, s2_rel: str) -> np.ndarray:
    """Read one pair as a ``(2 + 13, H, W)`` float32 array: S1 (VV, VH) then S2 bands.

    Raises:
        ImageReadError: a file is unreadable, has the wrong band count, or the grids differ.
    """
    s1, s2 = read_image(Path(raw_dir) / s1_rel), read_image(Path(raw_dir) / s2_rel)
    if s1.shape[0] != len(S1_BANDS) or s2.shape[0] != len(S2_BANDS):
        raise ImageReadError(f"{raw_dir}: pair {s1_rel} / {s2_rel} has {s1.shape[0]} + {s2.shape[0]} bands, "
                             f"expected {len(S1_BANDS)} + {len(S2_BANDS)}")
    if s1.shape[1:] != s2.shape[1:]:
        raise ImageReadError(f"{raw_dir}: pair {s1_rel} / {s2_rel} is not on one grid "
                             f"({s1.shape[1:]} vs {s2.shape[1:]})")
    return np.concatenate([s1.astype(np.float32), s2.astype(np.float32)])


def prepare_s1s2_dataset(raw_dir: Path, out_dir: Path, *, name: str, task: str,
                         class_root: str, bands: list[str],
                         rgb_bands: list[str], gsd: float, native_size: int, test_fraction: float, seed: int,
                         max_stats_items: int | None = 500, progress: bool = True) -> dict:
    """Pair, split by ROI and describe a SEN12MS-CR-TS tree; write ``out_dir`` atomically.

    Args:
        raw_dir: the extracted dataset folder; index paths are relative to it.
        out_dir: the prepared folder to (re)write.
        name: dataset name recorded in ``dataset.json``.
        task: its task name (``rsdino.data.registry``), recorded in ``dataset.json`` too.
        class_root: folder (relative to ``raw_dir``) holding the ``ROIs<season>`` folders.
        bands: must be the 15 names VV, VH, B01 ... B12 (S1 then S2) in that order.
        rgb_bands: bands of the RGB composite.
        gsd: ground sampling distance in metres.
        native_size: patch side in pixels.
        test_fraction: share of the ROIs in the validation split.
        seed: seed of the ROI split and of the statistics subsample.
        max_stats_items: training pairs the band statistics are computed on.
        progress: show progress bars.

    Returns:
        ``{"name", "n_train", "n_test", "n_unpaired", "n_bad"}``.

    Raises:
        ValueError: ``bands`` is not the S1 + S2 band list.
        FileNotFoundError: the folder is missing or holds no pair.
    """
    if list(bands) != PAIR_BANDS:
        raise ValueError(f"dataset {name}: an s1s2_pairs dataset needs bands {PAIR_BANDS}, got {bands}")
    raw_dir, out_dir = Path(raw_dir), Path(out_dir)
    root = raw_dir / class_root
    report = index_sen12mscrts(root, val_fraction=test_fraction, seed=seed, check_bands=True)
    prefix = PurePosixPath(class_root)

    def rel(path: str) -> str:
        return (prefix / path).as_posix()

    for split in report.pairs:
        report.pairs[split] = [(rel(a), rel(b)) for a, b in report.pairs[split]]
    train = report.pairs["train"]
    if not train:
        raise FileNotFoundError(f"{root}: no S1/S2 pair found (expected ROIs<season>/<roi>/S1|S2/<t>/*.tif)")
    sampled = seeded_subset(train, max_stats_items, seed)
    stats = compute_band_stats([Path(a + "\n" + b) for a, b in sampled],
                               reader=lambda key: read_pair(raw_dir, *str(key).split("\n")),
                               progress=progress)
    metadata = {"name": name, "task": task, "bands": list(bands), "rgb_bands": list(rgb_bands),
                "gsd": gsd, "native_size": native_size}
    with atomic_directory(out_dir) as tmp:
        write_index(report, tmp)
        write_json(tmp / "classes.json", [])
        write_json(tmp / "stats.json", {"bands": list(bands), **stats})
        write_json(tmp / "dataset.json", metadata)
    summary = {"name": name, "n_train": len(train), "n_test": len(report.pairs["val"]),
               "n_unpaired": len(report.unpaired_s1) + len(report.unpaired_s2),
               "n_bad": len(report.bad_bands)}
    log.info("prepared %s in %s: %s", name, out_dir, summary)
    return summary


Sample = dict[str, Any]


class S1S2PairDataset(PreparedDataset):
    """Co-registered S1/S2 pairs of one split of a prepared SEN12MS-CR-TS folder.

    Bands: VV, VH, then the 13 S2 bands.

    Args:
        raw_dir: the extracted dataset folder.
        prepared_dir: the folder written by ``prepare_s1s2_dataset``.
        split: ``"train"``, or ``"val"`` (alias ``"test"``): the ROIs held out.
        transform: called on each sample dict; its return value is the item.

    An item (before ``transform``) is ``{"image": float32 (15, H, W) S1 (VV, VH in dB) then S2 (13
    bands, DN), "s1": (2, H, W), "s2": (13, H, W), "path": s2 path}`` in native units; ``s1`` and
    ``s2`` are views of ``image``.
    """

    def __init__(self, raw_dir: Path, prepared_dir: Path, split: str,
                 transform: Callable[[Sample], Any] | None = None) -> None:
        super().__init__(raw_dir, prepared_dir, transform)
        self.split = self.check_split(split, list(SPLIT_FILES))
        self.pairs: list[list[str]] = read_prepared_json(self.prepared_dir, SPLIT_FILES[split])

    def __len__(self) -> int:
        """Number of pairs in the split."""
        return len(self.pairs)

    def load(self, index: int) -> Sample:
        """Return item ``index`` without the transform."""
        s1_rel, s2_rel = self.pairs[index]
        image = torch.from_numpy(read_pair(self.raw_dir, s1_rel, s2_rel))
        n_s1 = len(S1_BANDS)
        return {"image": image, "s1": image[:n_s1], "s2": image[n_s1:], "path": s2_rel}

    def plot(self, index: int) -> Figure:
        """A figure of the S2 RGB composite of pair ``index``."""
        sample = self.load(index)
        return rgb_figure(sample["image"], self.bands, self.metadata["rgb_bands"] or ["B04", "B03", "B02"],
                          sample["path"])
