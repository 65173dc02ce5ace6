"""The uniform ``prepare(cfg, name, raw_dir, out_dir, progress) -> summary`` of each built-in task.

Each adapts one module's ``prepare_*`` function to the signature ``rsdino.data.registry.DataTask.prepare``
names, taking its keyword arguments from the dataset's settings (and passing the task's name, which the
prepared folder's ``dataset.json`` records).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rsdino.config.datasets import DatasetConfig
from rsdino.data.change import prepare_change_dataset
from rsdino.data.filelist import prepare_image_list
from rsdino.data.fmow_dataset import prepare_fmow_dataset
from rsdino.data.multilabel import prepare_multilabel_dataset
from rsdino.data.pairs import prepare_s1s2_dataset
from rsdino.data.prepare import prepare_scene_dataset
from rsdino.data.seco import prepare_temporal_dataset
from rsdino.data.segmentation import prepare_segmentation_dataset


def _common(cfg: DatasetConfig) -> dict[str, Any]:
    return {"class_root": cfg.class_root, "bands": cfg.bands, "rgb_bands": cfg.rgb_bands, "gsd": cfg.gsd,
            "native_size": cfg.native_size, "test_fraction": cfg.split.test_fraction, "seed": cfg.split.seed}


def prepare_scene(cfg: DatasetConfig, name: str, raw: Path, out: Path, progress: bool) -> dict:
    """Class folders: a seeded stratified split (and the named ``splits``) (``rsdino.data.prepare``)."""
    named = {split: (s.test_fraction, s.seed) for split, s in cfg.splits.items()}
    return prepare_scene_dataset(raw, out, name=name, extensions=tuple(cfg.extensions), progress=progress,
                                 class_depth=cfg.class_depth, named_splits=named, **_common(cfg))


def prepare_temporal(cfg: DatasetConfig, name: str, raw: Path, out: Path, progress: bool) -> dict:
    """SeCo locations and dates (``rsdino.data.seco``)."""
    return prepare_temporal_dataset(raw, out, name=name, task=cfg.task, progress=progress, **_common(cfg))


def prepare_pairs(cfg: DatasetConfig, name: str, raw: Path, out: Path, progress: bool) -> dict:
    """SEN12MS-CR-TS S1/S2 pairs (``rsdino.data.pairs``)."""
    return prepare_s1s2_dataset(raw, out, name=name, task=cfg.task, progress=progress, **_common(cfg))


def prepare_multilabel(cfg: DatasetConfig, name: str, raw: Path, out: Path, progress: bool) -> dict:
    """BigEarthNet patches (``rsdino.data.multilabel``)."""
    return prepare_multilabel_dataset(raw, out, name=name, task=cfg.task, progress=progress, **_common(cfg))


def prepare_segmentation(cfg: DatasetConfig, name: str, raw: Path, out: Path, progress: bool) -> dict:
    """LoveDA / Potsdam / Vaihingen tiles, by ``layout`` (``rsdino.data.segmentation``)."""
    return prepare_segmentation_dataset(raw, out, name=name, task=cfg.task, layout=cfg.layout,
                                        tile_sizes=cfg.tile_sizes, progress=progress, **_common(cfg))


def prepare_change(cfg: DatasetConfig, name: str, raw: Path, out: Path, progress: bool) -> dict:
    """OSCD city pairs, tiled (``rsdino.data.change``)."""
    return prepare_change_dataset(raw, out, name=name, task=cfg.task, tile_sizes=cfg.tile_sizes,
                                  progress=progress, **_common(cfg))


def prepare_fmow(cfg: DatasetConfig, name: str, raw: Path, out: Path, progress: bool) -> dict:
    """fMoW-RGB boxes and locations (``rsdino.data.fmow_dataset``)."""
    return prepare_fmow_dataset(raw, out, name=name, task=cfg.task, class_root=cfg.class_root,
                                bands=cfg.bands, rgb_bands=cfg.rgb_bands, gsd=cfg.gsd,
                                native_size=cfg.native_size, seed=cfg.split.seed, progress=progress)


def prepare_list(cfg: DatasetConfig, name: str, raw: Path, out: Path, progress: bool) -> dict:
    """Image lists (``rsdino.data.filelist``)."""
    return prepare_image_list(raw, out, name=name, task=cfg.task, extensions=tuple(cfg.extensions),
                              progress=progress, **_common(cfg))
