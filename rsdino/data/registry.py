"""The data tasks: one record per ``datasets.<name>.task``, the only place a task name is spelled.

``TASKS`` maps each task name to a frozen ``DataTask``: how its raw folder is prepared, which torch
dataset opens the prepared folder (for pretraining, the evaluations and the dense protocols of
``rsdino.evaluate.dense``), which generator writes a tiny fake copy of its raw layout, how a
``source.local`` folder becomes its raw folder, and what its items are labelled with (what
``rsdino.config.preflight`` checks against each protocol). Functions and classes are dotted paths,
imported on first use (``resolve``): this module imports neither torch nor a reader, so the settings
validation and the Snakefile can import it.

``prepare_dataset`` and ``open_dataset`` are the one entry point per step for any dataset. Every
opened dataset exposes ``bands``, ``stats`` (``{"mean": [...], "std": [...]}`` per band, from the
training split), ``__len__``, ``load`` and ``plot``; its items are dicts holding at least ``"image"``
(float32 ``(C, H, W)``, native units).

A new task is one record here and one module holding its prepare function, its torch dataset and its
fake generator (``rsdino.data.local_segmentation`` is an example).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from importlib import import_module
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from torch.utils.data import Dataset

    from rsdino.config.datasets import DatasetConfig

#: What the items of a task are labelled with: one class (``label``), a multi-hot ``label``, a per-pixel
#: class ``mask``, a change ``mask`` between ``image`` and ``image2``, or nothing.
Labels = Literal["class", "multi_label", "mask", "change", "none"]


@dataclass(frozen=True)
class DataTask:
    """One data task: how it is prepared, opened, faked and imported, and what its labels are.

    Attributes:
        name: the ``datasets.<name>.task`` value.
        labels: what its items are labelled with (``Labels``); the protocols ask for a kind.
        prepare: dotted path of ``f(cfg, name, raw_dir, out_dir, progress) -> summary dict``.
        dataset: dotted path of its torch dataset class, built as
            ``cls(raw_dir, prepared_dir, split, transform=...)``; also the reader of the dense protocols.
        fake: dotted path of ``f(out_archive, **kwargs) -> sha256``, writing a tiny fake copy of its raw
            layout (``rsdino.data.fake.FAKE_GENERATORS`` holds it under the task name too).
        import_local: dotted path of ``f(folder, out, *, list_file, resize) -> n``, copying a
            ``source.local`` folder into the raw folder.
        tiled: prepared as tiles of each of ``tile_sizes`` (splits ``"<split>_<size>"`` too).
        series: whether items carry a ``series`` of their location's dates: ``"always"``,
            ``"on_request"`` (when opened with ``series=T``, fMoW) or ``"never"``.
        s1s2: items are Sentinel-1 then Sentinel-2 bands of one place (the multimodal method).
        named_splits: takes further named splits (``datasets.<name>.splits``).
    """

    name: str
    labels: Labels
    prepare: str
    dataset: str
    fake: str
    import_local: str = "rsdino.data.local.import_local"
    tiled: bool = False
    series: Literal["always", "on_request", "never"] = "never"
    s1s2: bool = False
    named_splits: bool = False


def resolve(dotted: str) -> Any:
    """The object a dotted path ``package.module.attribute`` names, its module imported now."""
    module_name, attribute = dotted.rsplit(".", 1)
    return getattr(import_module(module_name), attribute)


_PREPARE = "rsdino.data.preparers"

TASKS: dict[str, DataTask] = {task.name: task for task in (
    DataTask("scene_classification", "class", f"{_PREPARE}.prepare_scene", "rsdino.data.scene.SceneDataset",
             "rsdino.data.fake.scene.make_fake_scene_folders", named_splits=True),
    DataTask("temporal_series", "none", f"{_PREPARE}.prepare_temporal",
             "rsdino.data.seco.TemporalSeriesDataset", "rsdino.data.fake.seco.make_fake_seco",
             series="always"),
    DataTask("s1s2_pairs", "none", f"{_PREPARE}.prepare_pairs", "rsdino.data.pairs.S1S2PairDataset",
             "rsdino.data.fake.sen12mscrts.make_fake_sen12mscrts_archive", s1s2=True),
    DataTask("multilabel", "multi_label", f"{_PREPARE}.prepare_multilabel",
             "rsdino.data.multilabel.MultiLabelPatchDataset",
             "rsdino.data.fake.bigearthnet.make_fake_bigearthnet"),
    DataTask("segmentation", "mask", f"{_PREPARE}.prepare_segmentation",
             "rsdino.data.segmentation.SegmentationTileDataset",
             "rsdino.data.fake.segmentation.make_fake_segmentation", tiled=True),
    DataTask("change_detection", "change", f"{_PREPARE}.prepare_change",
             "rsdino.data.change.ChangePairDataset", "rsdino.data.fake.oscd.make_fake_oscd", tiled=True),
    DataTask("unlabelled_images", "none", f"{_PREPARE}.prepare_list", "rsdino.data.filelist.ImageListDataset",
             "rsdino.data.fake.imagelists.make_fake_image_lists"),
    DataTask("fmow", "class", f"{_PREPARE}.prepare_fmow", "rsdino.data.fmow_dataset.FmowDataset",
             "rsdino.data.fake.fmow.make_fake_fmow_archive", series="on_request"),
    DataTask("local_segmentation", "mask", "rsdino.data.local_segmentation.prepare",
             "rsdino.data.local_segmentation.LocalSegmentationDataset",
             "rsdino.data.local_segmentation.make_fake", "rsdino.data.local_segmentation.import_folder",
             tiled=True),
)}

#: The task of a dataset entry that names none.
DEFAULT_TASK = next(iter(TASKS))


def tasks_where(**fields: Any) -> list[str]:
    """Names of the tasks whose record has every given field value, e.g. ``tasks_where(labels="mask")``."""
    return [name for name, task in TASKS.items()
            if all(getattr(task, field) == value for field, value in fields.items())]


def check_task(name: str) -> str:
    """``name`` if it is a registered task, else a ``ValueError`` listing the known ones."""
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r} (known: {', '.join(TASKS)})")
    return name


def _task(cfg: DatasetConfig) -> DataTask:
    if cfg.task not in TASKS:
        raise NotImplementedError(f"datasets with task {cfg.task!r} cannot be prepared or opened yet "
                                  f"(supported: {', '.join(TASKS)})")
    return TASKS[cfg.task]


def prepare_dataset(dataset_cfg: DatasetConfig, name: str, raw_dir: Path, out_dir: Path, *,
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


def open_dataset(dataset_cfg: DatasetConfig, raw_dir: Path, prepared_dir: Path, split: str,
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
