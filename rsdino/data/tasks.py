"""The data tasks: one record per ``datasets.<name>.task``, the only place a task name is spelled.

``TASKS`` maps each task name to a frozen ``DataTask``: how its raw folder is prepared, which torch
dataset opens the prepared folder (for pretraining, the evaluations and the dense protocols of
``rsdino.evaluate.dense``), which generator writes a tiny fake copy of its raw layout, how a
``source.local`` folder becomes its raw folder, and what its items are labelled with (what
``rsdino.config.preflight`` checks against each protocol's record). Functions and classes are dotted
paths, imported on first use (``resolve``): this module imports neither torch nor a reader nor any
other part of ``rsdino``, so the settings validation and the Snakefile can import it.
``rsdino.data.registry`` prepares and opens a dataset by its task's record.

A new task is one record here and one module holding its prepare function, its torch dataset and its
fake generator (``rsdino.data.local_segmentation`` is an example).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from rsdino.imports import import_object

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
    return import_object(dotted)


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
