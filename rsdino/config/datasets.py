"""Settings of one dataset (``datasets.<name>`` in params.yaml)."""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from rsdino.config.base import StrictModel
from rsdino.data.tasks import DEFAULT_TASK, TASKS, check_task, tasks_where


class ExtraFile(StrictModel):
    """One more archive of a dataset (labels, another split), extracted into the same folder."""

    url: str
    filename: str | None = None
    sha256: str | None = None
    md5: str | None = None

    @model_validator(mode="after")
    def _check(self) -> ExtraFile:
        if self.url.startswith(("http://", "https://")) and not (self.sha256 or self.md5):
            raise ValueError("an http(s) extra file needs a sha256 or md5 checksum")
        return self


class SourceSettings(StrictModel):
    """Where a dataset comes from.

    ``url`` is ``http(s)://``, or ``file://<path>`` with a path relative to the project root (or
    absolute with ``file:///``). ``generator`` names a fake-data generator (``rsdino make-demo``)
    that writes the archive the ``file://`` url points to. ``manual`` is the instruction printed
    for datasets that cannot be downloaded automatically. ``extra`` lists further archives (OSCD's
    label archives, LoveDA's other splits) downloaded and extracted into the same folder.
    ``local`` is a folder of images already on disk (relative to the project root, or absolute),
    which ``rsdino download`` copies into ``data/raw/<dataset>/`` with its task's ``import_local``
    (``rsdino.data.tasks``). For a scene-classification dataset: one sub-folder per class, or any
    layout with a ``list_file`` inside it (lines ``<relative path> <class>``); JPEG, PNG and GeoTIFF,
    copied into ``data/raw/<dataset>/<class>/`` (``rsdino.data.local``), every image resized to
    ``resize`` x ``resize`` pixels when set. For ``local_segmentation``: ``images/`` and ``masks/``
    (``rsdino.data.local_segmentation``).
    """

    url: str | None = None
    filename: str | None = None
    sha256: str | None = None
    md5: str | None = None
    generator: str | None = None
    generator_kwargs: dict[str, Any] = Field(default_factory=dict)
    manual: str | None = None
    extra: list[ExtraFile] = Field(default_factory=list)
    local: str | None = None
    list_file: str | None = None
    resize: int | None = Field(None, gt=0)

    @model_validator(mode="after")
    def _check(self) -> SourceSettings:
        if self.manual is None and self.url is None and self.local is None:
            raise ValueError("a source needs a url, a local folder, or a 'manual' instruction")
        if self.local is not None and self.url is not None:
            raise ValueError("a source is a url or a local folder, not both")
        if (self.list_file or self.resize) and self.local is None:
            raise ValueError("list_file and resize are settings of a local source (source.local)")
        if self.url and self.url.startswith(("http://", "https://")) and not (self.sha256 or self.md5):
            raise ValueError("an http(s) source needs a sha256 or md5 checksum")
        if self.generator and not (self.url or "").startswith("file://"):
            raise ValueError("a generated source must have a file:// url (where the generator writes)")
        return self

    @property
    def archive_name(self) -> str:
        """File name of the downloaded archive."""
        if self.filename:
            return self.filename
        if not self.url:
            raise ValueError("manual source has no archive")
        return self.url.rstrip("/").split("/")[-1].split("?")[0]


class SplitSettings(StrictModel):
    """Seeded stratified split of a scene-classification dataset."""

    test_fraction: float = Field(0.1, gt=0, lt=1)
    seed: int = 0


#: The name of a dataset's own split (``split``); other names are the keys of ``splits``.
DEFAULT_SPLIT = "default"


class DatasetConfig(StrictModel):
    """One dataset: task, source, layout, bands, split.

    ``task``: what the dataset holds and how it is prepared and read, a name of
    ``rsdino.data.tasks.TASKS`` (an unknown name is refused with the list of known ones).
    ``class_depth``: folder levels below ``class_root`` holding the class folders (RSI-CB128: 2).
    ``layout``: the layout-specific indexer of a segmentation, change-detection or image-list
    dataset (``loveda``, ``potsdam``, ``vaihingen``, ``oscd``, ``millionaid``, ``skyscript``, ...).
    ``tile_sizes``: tile sides a segmentation dataset is cut into (one index per size).
    ``split``: the ``default`` split (its files keep the plain names ``train.txt``/``test.txt``);
    ``splits``: further named splits of a scene-classification dataset (SatDINO's 80/20:
    ``splits: {satdino: {test_fraction: 0.2}}``), written beside it and chosen by an evaluation's
    ``split``.
    """

    task: str = DEFAULT_TASK
    description: str = ""
    source: SourceSettings
    class_root: str = "."
    class_depth: int = Field(1, ge=1, le=4)
    layout: str | None = None
    tile_sizes: list[int] = Field(default_factory=lambda: [224, 512])
    extensions: list[str] = Field(default_factory=lambda: [".tif"])
    bands: list[str]
    # What a band name of this dataset means in another's spelling, e.g. EuroSAT-RGB {R: B04, G: B03,
    # B: B02}: bands match by name between training and evaluation data (rsdino.data.bands).
    band_aliases: dict[str, str] = Field(default_factory=dict)
    rgb_bands: list[str] = Field(default_factory=list)
    gsd: float = Field(10.0, gt=0)
    native_size: int = Field(64, gt=0)
    split: SplitSettings = Field(default_factory=SplitSettings)
    splits: dict[str, SplitSettings] = Field(default_factory=dict)
    published_name: str | None = None
    citation: str = ""
    # How pretraining reads the training split: "files" (decode each file per item) or "chips"
    # (`rsdino prepare` also decodes it once into memory maps, rsdino.data.chips; fixed-size items).
    store: Literal["files", "chips"] = "files"

    @field_validator("task")
    @classmethod
    def _known_task(cls, task: str) -> str:
        return check_task(task)

    @model_validator(mode="after")
    def _local_extensions(self) -> DatasetConfig:
        # a folder of your own: every image kind unless the entry narrows it
        if self.source.local is not None and "extensions" not in self.model_fields_set:
            self.extensions = [".jpg", ".jpeg", ".png", ".tif", ".tiff"]
        return self

    @model_validator(mode="after")
    def _rgb_in_bands(self) -> DatasetConfig:
        unknown = [b for b in self.rgb_bands if b not in self.bands]
        if unknown:
            raise ValueError(f"rgb_bands {unknown} are not in bands {self.bands}")
        unknown = [b for b in self.band_aliases if b not in self.bands]
        if unknown:
            raise ValueError(f"band_aliases name {unknown}, which are not in bands {self.bands}")
        if self.splits and not TASKS[self.task].named_splits:
            made_for = " and ".join(tasks_where(named_splits=True))
            raise ValueError(f"splits: named splits are made for {made_for} datasets only, "
                             f"not for task {self.task!r}")
        bad = [name for name in self.splits if name == DEFAULT_SPLIT or not re.fullmatch(r"[a-z0-9_]+", name)]
        if bad:
            raise ValueError(f"splits: names {bad} are not allowed (lower-case letters, digits and _; "
                             f"{DEFAULT_SPLIT!r} is the dataset's own `split`)")
        return self

    def split_settings(self, name: str) -> SplitSettings:
        """The settings of split ``name`` (``default``: ``split``); a ``ValueError`` naming the known ones."""
        if name == DEFAULT_SPLIT:
            return self.split
        if name not in self.splits:
            raise ValueError(f"unknown split {name!r} (defined: {', '.join([DEFAULT_SPLIT, *self.splits])})")
        return self.splits[name]
