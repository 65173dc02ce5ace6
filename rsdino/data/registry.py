"""One entry point per step for any dataset: ``prepare_dataset`` and ``open_dataset``, by task.

``TASKS`` maps a ``datasets.<name>.task`` of params.yaml to how its raw folder is prepared and how the
prepared folder is opened as a torch dataset. Every opened dataset exposes ``bands``, ``stats``
(``{"mean": [...], "std": [...]}`` per band, from the training split), ``__len__``, ``load`` and
``plot``; its items are dicts holding at least ``"image"`` (float32 ``(C, H, W)``, native units).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch.utils.data import Dataset

from rsdino.config.datasets import DatasetConfig
from rsdino.data.catalog import require_data
from rsdino.data.change import ChangePairDataset, prepare_change_dataset
from rsdino.data.chips import CHIPS_DIR, build_chip_store
from rsdino.data.filelist import ImageListDataset, prepare_image_list
from rsdino.data.fmow_dataset import FmowDataset, prepare_fmow_dataset
from rsdino.data.multilabel import MultiLabelPatchDataset, prepare_multilabel_dataset
from rsdino.data.pairs import S1S2PairDataset, prepare_s1s2_dataset
from rsdino.data.prepare import prepare_scene_dataset
from rsdino.data.scene import SceneDataset
from rsdino.data.seco import TemporalSeriesDataset, prepare_temporal_dataset
from rsdino.data.segmentation import SegmentationTileDataset, prepare_segmentation_dataset


@dataclass(frozen=True)
class TaskHandler:
    """How one task is prepared and opened.

    Attributes:
        prepare: ``f(cfg, name, raw_dir, out_dir, progress) -> summary dict``.
        dataset: the torch dataset class, built as ``cls(raw_dir, prepared_dir, split, transform=...)``.
        series_on_request: its items are single dated images that can carry a ``series`` of their
            location's other dates when opened with ``series=T`` (fMoW); datasets of task
            ``temporal_series`` always carry one.
    """

    prepare: Callable[[DatasetConfig, str, Path, Path, bool], dict]
    dataset: type[Dataset]
    series_on_request: bool = False


def _common(cfg: DatasetConfig) -> dict[str, Any]:
    return {"class_root": cfg.class_root, "bands": cfg.bands, "rgb_bands": cfg.rgb_bands, "gsd": cfg.gsd,
            "native_size": cfg.native_size, "test_fraction": cfg.split.test_fraction, "seed": cfg.split.seed}


def _prepare_scene(cfg: DatasetConfig, name: str, raw: Path, out: Path, progress: bool) -> dict:
    named = {split: (s.test_fraction, s.seed) for split, s in cfg.splits.items()}
    return prepare_scene_dataset(raw, out, name=name, extensions=tuple(cfg.extensions), progress=progress,
                                 class_depth=cfg.class_depth, named_splits=named, **_common(cfg))


def _prepare_temporal(cfg: DatasetConfig, name: str, raw: Path, out: Path, progress: bool) -> dict:
    return prepare_temporal_dataset(raw, out, name=name, progress=progress, **_common(cfg))


def _prepare_pairs(cfg: DatasetConfig, name: str, raw: Path, out: Path, progress: bool) -> dict:
    return prepare_s1s2_dataset(raw, out, name=name, progress=progress, **_common(cfg))


def _prepare_multilabel(cfg: DatasetConfig, name: str, raw: Path, out: Path, progress: bool) -> dict:
    return prepare_multilabel_dataset(raw, out, name=name, progress=progress, **_common(cfg))


def _prepare_segmentation(cfg: DatasetConfig, name: str, raw: Path, out: Path, progress: bool) -> dict:
    return prepare_segmentation_dataset(raw, out, name=name, layout=cfg.layout, tile_sizes=cfg.tile_sizes,
                                        progress=progress, **_common(cfg))


def _prepare_change(cfg: DatasetConfig, name: str, raw: Path, out: Path, progress: bool) -> dict:
    return prepare_change_dataset(raw, out, name=name, tile_sizes=cfg.tile_sizes, progress=progress,
                                  **_common(cfg))


def _prepare_fmow(cfg: DatasetConfig, name: str, raw: Path, out: Path, progress: bool) -> dict:
    return prepare_fmow_dataset(raw, out, name=name, class_root=cfg.class_root, bands=cfg.bands,
                                rgb_bands=cfg.rgb_bands, gsd=cfg.gsd, native_size=cfg.native_size,
                                seed=cfg.split.seed, progress=progress)


def _prepare_list(cfg: DatasetConfig, name: str, raw: Path, out: Path, progress: bool) -> dict:
    return prepare_image_list(raw, out, name=name, extensions=tuple(cfg.extensions), progress=progress,
                              **_common(cfg))


TASKS: dict[str, TaskHandler] = {
    "scene_classification": TaskHandler(_prepare_scene, SceneDataset),
    "temporal_series": TaskHandler(_prepare_temporal, TemporalSeriesDataset),
    "s1s2_pairs": TaskHandler(_prepare_pairs, S1S2PairDataset),
    "multilabel": TaskHandler(_prepare_multilabel, MultiLabelPatchDataset),
    "segmentation": TaskHandler(_prepare_segmentation, SegmentationTileDataset),
    "change_detection": TaskHandler(_prepare_change, ChangePairDataset),
    "unlabelled_images": TaskHandler(_prepare_list, ImageListDataset),
    "fmow": TaskHandler(_prepare_fmow, FmowDataset, series_on_request=True),
}


def _handler(cfg: DatasetConfig) -> TaskHandler:
    if cfg.task not in TASKS:
        raise NotImplementedError(f"datasets with task {cfg.task!r} cannot be prepared or opened yet "
                                  f"(supported: {', '.join(TASKS)})")
    return TASKS[cfg.task]


def prepare_dataset(dataset_cfg: DatasetConfig, name: str, raw_dir: Path, out_dir: Path, *,
                    progress: bool = True) -> dict:
    """Prepare the extracted dataset ``raw_dir`` into ``out_dir`` according to its task; return a summary.

    Raises:
        NotImplementedError: no handler for ``dataset_cfg.task``.
        FileNotFoundError: ``raw_dir`` is missing or empty (the message says how to get the data).
    """
    handler = _handler(dataset_cfg)
    require_data(name, dataset_cfg, Path(raw_dir))
    summary = handler.prepare(dataset_cfg, name, Path(raw_dir), Path(out_dir), progress)
    if dataset_cfg.store == "chips":  # the pretraining split, decoded once (rsdino.data.chips)
        train = handler.dataset(Path(raw_dir), Path(out_dir), "train")
        summary["chips"] = build_chip_store(train, Path(out_dir) / CHIPS_DIR, name=name, progress=progress)
    return summary


def open_dataset(dataset_cfg: DatasetConfig, raw_dir: Path, prepared_dir: Path, split: str,
                 transform: Callable[[dict], Any] | None = None, *, series: int = 0) -> Dataset:
    """Open one split of a prepared dataset as a torch dataset (see the module docstring).

    ``series`` (temporal views): items also carry a ``series`` of that many dates of their location
    (``TaskHandler.series_on_request``); tasks whose items always carry one ignore it.

    Items by task: ``scene_classification`` -> ``{"image", "label", "path"}``; ``temporal_series`` ->
    ``{"image" (C,H,W), "series" (T,C,H,W), "dates", "gsd", "path"}``; ``s1s2_pairs`` -> ``{"image"
    (2+13,H,W) S1 then S2, "s1", "s2", "path"}``; ``multilabel`` -> ``{"image", "label" (19,) multi-hot,
    "path"}``; ``segmentation`` -> ``{"image" (C,S,S), "mask" (S,S) int64 (255 ignore), "path"}`` with
    ``split`` ``"train"``/``"test"`` or ``"train_512"`` etc. for another tile size; ``change_detection``
    -> ``{"image" (C,S,S) date 1, "image2" date 2, "mask" (S,S) int64 1 = change, "path"}``;
    ``unlabelled_images`` -> ``{"image" (C,H,W) (sizes vary), "path"}``; ``fmow`` -> ``{"image"
    (3,S,S) context crop of the labelled box, "label" (63 classes, false_detection = 0), "gsd" (m,
    from the image's metadata), "location", "timestamp", "path"}`` with ``split`` ``"train"`` or
    ``"val"`` (= ``"test"``).

    Raises:
        NotImplementedError: no handler for ``dataset_cfg.task``.
        FileNotFoundError: ``prepared_dir`` is missing (run ``rsdino prepare``).
        ValueError: ``split`` is not a split of the prepared folder.
    """
    handler = _handler(dataset_cfg)
    if series and handler.series_on_request:
        return handler.dataset(Path(raw_dir), Path(prepared_dir), split, transform=transform, series=series)
    return handler.dataset(Path(raw_dir), Path(prepared_dir), split, transform=transform)
