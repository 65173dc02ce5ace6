"""SeCo (Seasonal Contrast): index the dates of every location, split by location, serve time series.

Layout (DATASETS.md section 15)::

    <class_root>/<6-digit location>/<yyyymmddThhmmss>_<yyyymmddThhmmss>_T<tile>/<band>.tif

with one single-band GeoTIFF per band at mixed resolutions (10, 20, 60 m). ``prepare_temporal_dataset``
writes ``train.json`` / ``test.json`` (``[{"location": rel, "dates": [folder, ...]}, ...]``, dates newest
first, paths relative to the raw folder), ``index_report.json`` (locations dropped and why),
``stats.json`` (per band, training split), ``classes.json`` (``[]``) and ``dataset.json`` (with
``n_dates``, the series length every item has). ``TemporalSeriesDataset`` reads it.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib.figure import Figure
from tqdm import tqdm

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
STAMP_FORMAT = "%Y%m%dT%H%M%S"


def date_of(folder: str) -> datetime:
    """Acquisition time of a SeCo date folder (``20190803T154559_20190803T154611_T18QVG``)."""
    try:
        return datetime.strptime(folder[:15], STAMP_FORMAT)
    except ValueError as err:
        raise ValueError(f"{folder}: not a SeCo date folder (<yyyymmddThhmmss>_..._T<tile>)") from err


def index_seco(root: Path, bands: list[str], *, min_dates: int = 2, progress: bool = False) -> dict:
    """List the complete dates of every location under ``root``.

    A date counts when its folder name parses and every ``<band>.tif`` of ``bands`` is present; a
    location counts when it has at least ``min_dates`` such dates.

    Args:
        root: the folder holding the location folders (``seasonal_contrast_100k``).
        bands: band file stems every date must have.
        min_dates: fewest complete dates a location needs.
        progress: show a progress bar.

    Returns:
        ``{"locations": [{"location": name, "dates": [folder, ...] newest first}], "incomplete_dates":
        [{"path", "missing"}], "bad_names": [...], "short_locations": [{"location", "n_dates"}]}``.

    Raises:
        FileNotFoundError: ``root`` is missing or holds no location folder.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"SeCo folder {root} does not exist; download seco_100k.zip (Zenodo 4728033) "
                                "with `rsdino download` and extract it")
    wanted = {f"{band}.tif" for band in bands}
    report: dict[str, list] = {"locations": [], "incomplete_dates": [], "bad_names": [],
                               "short_locations": []}
    locations = sorted(entry.name for entry in os.scandir(root) if entry.is_dir())
    if not locations:
        raise FileNotFoundError(f"SeCo folder {root} holds no location folder")
    for location in tqdm(locations, desc="indexing SeCo", unit="loc", disable=not progress):
        dates = []
        for entry in sorted(os.scandir(root / location), key=lambda e: e.name):
            if not entry.is_dir():
                continue
            try:
                when = date_of(entry.name)
            except ValueError:
                report["bad_names"].append(f"{location}/{entry.name}")
                continue
            missing = sorted(wanted - set(os.listdir(entry.path)))
            if missing:
                report["incomplete_dates"].append({"path": f"{location}/{entry.name}", "missing": missing})
                continue
            dates.append((when, entry.name))
        if len(dates) < min_dates:
            report["short_locations"].append({"location": location, "n_dates": len(dates)})
            continue
        report["locations"].append({"location": location,
                                    "dates": [name for _, name in sorted(dates, reverse=True)]})
    return report


def prepare_temporal_dataset(raw_dir: Path, out_dir: Path, *, name: str, task: str,
                             class_root: str, bands: list[str],
                             rgb_bands: list[str], gsd: float, native_size: int, test_fraction: float,
                             seed: int, min_dates: int = 2, max_stats_items: int | None = 500,
                             progress: bool = True) -> dict:
    """Index, split (by location, seeded) and describe a SeCo-layout dataset; write ``out_dir`` atomically.

    Args:
        raw_dir: the extracted dataset folder; ``location`` paths are relative to it.
        out_dir: the prepared folder to (re)write.
        name: dataset name recorded in ``dataset.json``.
        task: its task name (``rsdino.data.registry``), recorded in ``dataset.json`` too.
        class_root: folder (relative to ``raw_dir``) holding the location folders.
        bands: band names = band file stems, in channel order.
        rgb_bands: bands of the RGB composite.
        gsd: ground sampling distance of the output grid in metres.
        native_size: side of the grid every band is resampled to.
        test_fraction: share of the locations held out.
        seed: seed of the location split and of the statistics subsample.
        min_dates: fewest complete dates a kept location needs.
        max_stats_items: locations (of the training split) the band statistics are computed on.
        progress: show progress bars.

    Returns:
        ``{"name", "n_train", "n_test", "n_dates", "n_dropped"}``.
    """
    raw_dir, out_dir = Path(raw_dir), Path(out_dir)
    report = index_seco(raw_dir / class_root, bands, min_dates=min_dates, progress=progress)
    prefix = Path(class_root).as_posix().strip("./")
    records = [{"location": f"{prefix}/{r['location']}" if prefix else r["location"], "dates": r["dates"]}
               for r in report["locations"]]
    if not records:
        raise FileNotFoundError(f"{raw_dir / class_root}: no location with {min_dates} complete dates "
                                f"(every date needs {', '.join(bands)}.tif)")
    n_dates = min(len(r["dates"]) for r in records)
    train_ids, _ = split_by_group([r["location"] for r in records], test_fraction, seed)
    train = [r for r in records if r["location"] in train_ids]
    test = [r for r in records if r["location"] not in train_ids]

    def read_location(record: dict) -> np.ndarray:  # all dates side by side: (C, H, T * W)
        series = read_series(raw_dir, record, bands, native_size, n_dates)
        return np.concatenate(list(series), axis=-1)

    stats = compute_band_stats(seeded_subset(train, max_stats_items, seed), reader=read_location,
                               progress=progress)
    metadata = {"name": name, "task": task, "bands": list(bands), "rgb_bands": list(rgb_bands),
                "gsd": gsd, "native_size": native_size, "n_dates": n_dates}
    dropped = {k: v for k, v in report.items() if k != "locations"}
    with atomic_directory(out_dir) as tmp:
        write_json(tmp / "train.json", train)
        write_json(tmp / "test.json", test)
        write_json(tmp / "index_report.json", dropped)
        write_json(tmp / "classes.json", [])
        write_json(tmp / "stats.json", {"bands": list(bands), **stats})
        write_json(tmp / "dataset.json", metadata)
    summary = {"name": name, "n_train": len(train), "n_test": len(test), "n_dates": n_dates,
               "n_dropped": len(report["short_locations"])}
    log.info("prepared %s in %s: %s", name, out_dir, summary)
    return summary


def read_series(raw_dir: Path, record: dict, bands: list[str], size: int, n_dates: int) -> np.ndarray:
    """Read the ``n_dates`` newest dates of a location as a ``(T, C, size, size)`` array."""
    location = Path(raw_dir) / record["location"]
    return np.stack([read_band_files([location / date / f"{band}.tif" for band in bands], size)
                     for date in record["dates"][:n_dates]])


Sample = dict[str, Any]


class TemporalSeriesDataset(PreparedDataset):
    """Locations of one split of a prepared SeCo-layout dataset, each as a time series.

    Args:
        raw_dir: the extracted dataset folder.
        prepared_dir: the folder written by ``prepare_temporal_dataset``.
        split: ``"train"`` or ``"test"``.
        transform: called on each sample dict; its return value is the item.

    An item (before ``transform``) is ``{"image": float32 (C, H, W), "series": float32 (T, C, H, W),
    "dates": [iso date-time, ...], "gsd": float, "path": str}``: ``series`` holds the ``T = n_dates``
    newest dates, newest first, all bands resampled (bilinear) to ``native_size``; ``image`` is
    ``series[0]`` (the reference date). Values are in native units (SeCo: uint8 reflectance x 255).
    """

    def __init__(self, raw_dir: Path, prepared_dir: Path, split: str,
                 transform: Callable[[Sample], Any] | None = None) -> None:
        super().__init__(raw_dir, prepared_dir, transform)
        self.split = self.check_split(split, [p.stem for p in self.prepared_dir.glob("*.json")
                                              if p.stem in ("train", "test", "val")])
        self.records: list[dict] = read_prepared_json(self.prepared_dir, f"{split}.json")

    @property
    def n_dates(self) -> int:
        """Length ``T`` of every item's series."""
        return int(self.metadata["n_dates"])

    def __len__(self) -> int:
        """Number of locations in the split."""
        return len(self.records)

    def load(self, index: int) -> Sample:
        """Return item ``index`` without the transform."""
        record = self.records[index]
        series = torch.from_numpy(read_series(self.raw_dir, record, self.bands, self.metadata["native_size"],
                                              self.n_dates).astype(np.float32))
        dates = [date_of(folder).isoformat() for folder in record["dates"][: self.n_dates]]
        return {"image": series[0].clone(), "series": series, "dates": dates,
                "gsd": float(self.metadata["gsd"]), "path": record["location"]}

    def plot(self, index: int) -> Figure:
        """A figure of the reference date's RGB composite, titled with the location and its date."""
        sample = self.load(index)
        return rgb_figure(sample["image"], self.bands, self.metadata["rgb_bands"],
                          f"{sample['path']}  {sample['dates'][0]}  (T={self.n_dates})")
