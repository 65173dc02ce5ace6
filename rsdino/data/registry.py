"""Prepare and open any dataset by its task's record (``rsdino.data.tasks``).

``prepare_dataset`` and ``open_dataset`` are the one entry point per step for any dataset. Every
opened dataset exposes ``bands``, ``stats`` (``{"mean": [...], "std": [...]}`` per band, from the
training split), ``__len__``, ``load`` and ``plot``; its items are dicts holding at least ``"image"``
(float32 ``(C, H, W)``, native units). ``dataset_cfg`` is a ``rsdino.config.datasets.DatasetConfig``.
The task records are re-exported here (``TASKS``, ``resolve``...).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rsdino.data.tasks import DEFAULT_TASK, TASKS, DataTask, Labels, check_task, resolve, tasks_where

if TYPE_CHECKING:
    from torch.utils.data import Dataset

__all__ = ["DEFAULT_TASK", "TASKS", "DataTask", "Labels", "check_task", "open_dataset", "prepare_dataset",
           "resolve", "tasks_where"]


def _task(cfg: Any) -> DataTask:
    if cfg.task not in TASKS:
        raise NotImplementedError(f"datasets with task {cfg.task!r} cannot be prepared or opened yet "
                                  f"(supported: {', '.join(TASKS)})")
    return TASKS[cfg.task]


def prepare_dataset(dataset_cfg: Any, name: str, raw_dir: Path, out_dir: Path, *,
                    progress: bool = True) -> dict:
    """Prepare the extracted dataset ``raw_dir`` into ``out_dir`` according to its task; return a summary.

    Raises:
        NotImplementedError: no record for ``dataset_cfg.task``.
        FileNotFoundError: ``raw_dir`` is missing or empty (the message says how to get the data).
    """
    from rsdino.data.catalog import require_data
    from rsdino.data.chips import CHIPS_DIR, build_chip_store

    task = _task(dataset_cfg)
    require_data(name, dataset_cfg, Path(raw_dir))
    summary = resolve(task.prepare)(dataset_cfg, name, Path(raw_dir), Path(out_dir), progress)
    if dataset_cfg.store == "chips":  # the pretraining split, decoded once (rsdino.data.chips)
        train = resolve(task.dataset)(Path(raw_dir), Path(out_dir), "train")
        summary["chips"] = build_chip_store(train, Path(out_dir) / CHIPS_DIR, name=name, progress=progress)
    return summary


def open_dataset(dataset_cfg: Any, raw_dir: Path, prepared_dir: Path, split: str,
                 transform: Callable[[dict], Any] | None = None, *, series: int = 0) -> Dataset:
    """Open one split of a prepared dataset as a torch dataset (see the module docstring).

    ``series`` (temporal views): items also carry a ``series`` of that many dates of their location
    (tasks with ``series="on_request"``); tasks whose items always carry one ignore it.

    Items by task: ``scene_classification`` -> ``{"image", "label", "path"}``; ``temporal_series`` ->
    ``{"image" (C,H,W), "series" (T,C,H,W), "dates", "gsd", "path"}``; ``s1s2_pairs`` -> ``{"image"
    (2+13,H,W) S1 then S2, "s1", "s2", "path"}``; ``multilabel`` -> ``{"image", "label" (19,) multi-hot,
    "path"}``; ``segmentation`` and ``local_segmentation`` -> ``{"image" (C,S,S), "mask" (S,S) int64
    (255 ignore), "path"}`` with ``split`` ``"train"``/``"test"`` or ``"train_512"`` etc. for another
    tile size; ``change_detection`` -> ``{"image" (C,S,S) date 1, "image2" date 2, "mask" (S,S) int64
    1 = change, "path"}``; ``unlabelled_images`` -> ``{"image" (C,H,W) (sizes vary), "path"}``; ``fmow``
    -> ``{"image" (3,S,S) context crop of the labelled box, "label" (63 classes, false_detection = 0),
    "gsd" (m, from the image's metadata), "location", "timestamp", "path"}`` with ``split`` ``"train"``
    or ``"val"`` (= ``"test"``).

    Raises:
        NotImplementedError: no record for ``dataset_cfg.task``.
        FileNotFoundError: ``prepared_dir`` is missing (run ``rsdino prepare``).
        ValueError: ``split`` is not a split of the prepared folder.
    """
    task = _task(dataset_cfg)
    dataset = resolve(task.dataset)
    if series and task.series == "on_request":
        return dataset(Path(raw_dir), Path(prepared_dir), split, transform=transform, series=series)
    return dataset(Path(raw_dir), Path(prepared_dir), split, transform=transform)
