"""Load and validate ``params.yaml``, the one source of settings, and write resolved settings.

``load_params(path, scale)`` returns a validated ``Params``. Any problem (YAML syntax, unknown key,
wrong type, a reference to an undefined dataset, variant, evaluation or table) raises
``ParamsError`` whose message has one line per problem, each naming the file and the key path, e.g.::

    params.yaml: variants.demo_dino.optim.lrr: unknown key (extra inputs are not permitted)

Only the command-line layer and the Snakefile call ``load_params``; the library receives the
validated objects.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from rsdino.models.catalog import BACKBONES, METHODS


class ParamsError(ValueError):
    """Invalid settings; the message names the file and the key path of every problem."""


class StrictModel(BaseModel):
    """A settings block that refuses unknown keys."""

    model_config = ConfigDict(extra="forbid")


# --------------------------------------------------------------------------------------------- data


class SourceSettings(StrictModel):
    """Where a dataset comes from.

    ``url`` is ``http(s)://``, or ``file://<path>`` with a path relative to the project root (or
    absolute with ``file:///``). ``generator`` names a fake-data generator (``rsdino make-demo``)
    that writes the archive the ``file://`` url points to. ``manual`` is the instruction printed
    for datasets that cannot be downloaded automatically.
    """

    url: str | None = None
    filename: str | None = None
    sha256: str | None = None
    md5: str | None = None
    generator: str | None = None
    generator_kwargs: dict[str, Any] = Field(default_factory=dict)
    manual: str | None = None

    @model_validator(mode="after")
    def _check(self) -> SourceSettings:
        if self.manual is None and self.url is None:
            raise ValueError("a source needs a url, or a 'manual' instruction")
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


class DatasetConfig(StrictModel):
    """One dataset: source, layout, bands, split."""

    task: Literal["scene_classification", "unlabelled_images", "temporal_series", "s1s2_pairs",
                  "multilabel", "change_detection", "segmentation"] = "scene_classification"
    description: str = ""
    source: SourceSettings
    class_root: str = "."
    extensions: list[str] = Field(default_factory=lambda: [".tif"])
    bands: list[str]
    rgb_bands: list[str] = Field(default_factory=list)
    gsd: float = Field(10.0, gt=0)
    native_size: int = Field(64, gt=0)
    split: SplitSettings = Field(default_factory=SplitSettings)
    published_name: str | None = None
    citation: str = ""

    @model_validator(mode="after")
    def _rgb_in_bands(self) -> DatasetConfig:
        unknown = [b for b in self.rgb_bands if b not in self.bands]
        if unknown:
            raise ValueError(f"rgb_bands {unknown} are not in bands {self.bands}")
        return self


# ------------------------------------------------------------------------------------- pretraining


class CropSettings(StrictModel):
    """Multi-crop views (DINO defaults)."""

    global_size: int = Field(224, gt=0)
    local_size: int = Field(96, gt=0)
    n_global: int = Field(2, ge=1)
    n_local: int = Field(8, ge=0)
    global_scale: tuple[float, float] = (0.4, 1.0)
    local_scale: tuple[float, float] = (0.05, 0.4)
    # Band-aware photometric rule (rsdino.data.views): probability, brightness and contrast
    # spreads shared by all bands, and a small independent per-band offset (in std units).
    color_p: float = Field(0.8, ge=0, le=1)
    brightness: float = Field(0.4, ge=0, lt=1)
    contrast: float = Field(0.4, ge=0, lt=1)
    band_jitter: float = Field(0.05, ge=0)
    # Gaussian blur probability for the first global, the other globals and the locals (DINO:
    # 1.0, 0.1, 0.5), and its sigma range in output pixels (DINO's is meant for 224 px crops:
    # scale it down with the crop size, or textures of small images are wiped out).
    blur_p: tuple[float, float, float] = (1.0, 0.1, 0.5)
    blur_sigma: tuple[float, float] = (0.1, 2.0)


class HeadSettings(StrictModel):
    """DINO projection head: MLP hidden-hidden-bottleneck, L2 norm, weight-normed prototypes."""

    out_dim: int = Field(65536, gt=0)
    hidden_dim: int = Field(2048, gt=0)
    bottleneck_dim: int = Field(256, gt=0)
    n_layers: int = Field(3, ge=1)
    norm_last_layer: bool = True


class OptimSettings(StrictModel):
    """Optimisation schedule (DINO recipe defaults; lr is per 256 images, scaled linearly)."""

    epochs: int = Field(100, ge=1)
    batch_size: int = Field(64, ge=1)
    optimizer: Literal["adamw", "sgd"] = "adamw"
    lr: float = Field(5e-4, gt=0)
    min_lr: float = Field(1e-6, ge=0)
    warmup_epochs: int = Field(10, ge=0)
    weight_decay: float = Field(0.04, ge=0)
    weight_decay_end: float = Field(0.4, ge=0)
    clip_grad: float = Field(3.0, ge=0)
    freeze_last_layer_epochs: int = Field(1, ge=0)
    momentum_teacher: float = Field(0.996, ge=0, le=1)


class DinoLossSettings(StrictModel):
    """DINO loss temperatures and centring."""

    student_temp: float = Field(0.1, gt=0)
    warmup_teacher_temp: float = Field(0.04, gt=0)
    teacher_temp: float = Field(0.07, gt=0)
    warmup_teacher_temp_epochs: int = Field(30, ge=0)
    center_momentum: float = Field(0.9, ge=0, le=1)


class ResourceSettings(StrictModel):
    """Compute for one pretraining job (used by the cluster profile)."""

    nodes: int = Field(1, ge=1)
    gpus_per_node: int = Field(0, ge=0)
    cpus_per_task: int = Field(2, ge=1)
    mem_mb: int = Field(8000, ge=1)
    runtime_min: int = Field(60, ge=1)


class PublishedKey(StrictModel):
    """How a variant is named in the seeds' published tables (``seed_tables.csv``)."""

    model: str
    arch: str
    pretrain_data: str


class VariantConfig(StrictModel):
    """One model variant: method x backbone x pretraining data, with its hyper-parameters."""

    method: str
    backbone: str
    backbone_kwargs: dict[str, Any] = Field(default_factory=dict)
    pretrain_data: str
    crops: CropSettings = Field(default_factory=CropSettings)
    head: HeadSettings = Field(default_factory=HeadSettings)
    optim: OptimSettings = Field(default_factory=OptimSettings)
    loss: DinoLossSettings = Field(default_factory=DinoLossSettings)
    drop_path: float = Field(0.1, ge=0, lt=1)
    seed: int = 0
    num_workers: int = Field(0, ge=0)
    launcher: Literal["local", "submitit"] = "local"
    resources: ResourceSettings = Field(default_factory=ResourceSettings)
    published: PublishedKey | None = None
    description: str = ""

    @field_validator("method")
    @classmethod
    def _known_method(cls, value: str) -> str:
        if value not in METHODS:
            raise ValueError(f"unknown method {value!r}; known: {', '.join(METHODS)}")
        return value

    @field_validator("backbone")
    @classmethod
    def _known_backbone(cls, value: str) -> str:
        if value not in BACKBONES:
            raise ValueError(f"unknown backbone {value!r}; known: {', '.join(BACKBONES)}")
        return value


# -------------------------------------------------------------------------------------- evaluation


class FrozenFeatureEvaluation(StrictModel):
    """What every evaluation on frozen backbone features shares.

    Features are extracted ``batch_size`` images at a time, resized to ``image_size`` (default:
    the model's own size). With ``random_baseline`` the same evaluation runs on a randomly
    initialised backbone of the same architecture (seeded by ``seed``) and is recorded beside the
    pretrained number.
    """

    dataset: str
    variants: list[str]
    batch_size: int = Field(64, ge=1)
    image_size: int | None = None
    random_baseline: bool = True
    seed: int = 0


class KnnEvaluation(FrozenFeatureEvaluation):
    """Weighted kNN on L2-normalised frozen CLS features (DINO protocol)."""

    protocol: Literal["knn"]
    ks: list[int] = Field(default_factory=lambda: [10, 20, 100, 200])
    temperature: float = Field(0.07, gt=0)
    published_protocol: str = "knn_weighted_k20"

    @field_validator("ks")
    @classmethod
    def _positive_ks(cls, value: list[int]) -> list[int]:
        if not value or any(k < 1 for k in value):
            raise ValueError("ks must be a non-empty list of positive integers")
        return value


class LinearEvaluation(FrozenFeatureEvaluation):
    """Logistic-regression linear probe on frozen, standardised CLS features (DINOv2-RS table).

    ``c`` is the inverse L2 regularisation strength (scikit-learn's ``C``).
    """

    protocol: Literal["linear_logistic"]
    c: float = Field(1.0, gt=0)
    max_iter: int = Field(1000, ge=1)
    published_protocol: str = "linear_logistic_90_10"


EvaluationConfig = Annotated[KnnEvaluation | LinearEvaluation, Field(discriminator="protocol")]


# ------------------------------------------------------------------------------------------ tables


class TableConfig(StrictModel):
    """A results table: rows are variants, columns are datasets, one metric."""

    title: str
    evaluations: list[str]
    metric: str = "top1_k20"
    published_table: str | None = None
    published_metric: str = "top1"
    caption: str = ""


# ------------------------------------------------------------------------------------------- top


class ScaleConfig(StrictModel):
    """What one scale (demo or full) runs: the variants, evaluations and tables it selects."""

    description: str = ""
    variants: list[str]
    evaluations: list[str]
    tables: list[str]
    extra_datasets: list[str] = Field(default_factory=list)


class PathSettings(StrictModel):
    """Where outputs go, relative to the project root."""

    data: str = "data"
    models: str = "models"
    results: str = "results"


class MlflowSettings(StrictModel):
    """MLflow experiment; the tracking URI defaults to a sqlite file in the project."""

    experiment: str = "rsdino"
    tracking_uri: str = "sqlite:///mlflow.db"
    artifact_location: str = "mlartifacts"


class DvcSettings(StrictModel):
    """DVC tracking of downloaded raw data."""

    track_raw: bool = True
    remote: str | None = "local"
    push: bool = True


class Params(StrictModel):
    """The whole ``params.yaml``."""

    scale: str = "demo"
    scales: dict[str, ScaleConfig]
    paths: PathSettings = Field(default_factory=PathSettings)
    mlflow: MlflowSettings = Field(default_factory=MlflowSettings)
    dvc: DvcSettings = Field(default_factory=DvcSettings)
    datasets: dict[str, DatasetConfig]
    variants: dict[str, VariantConfig]
    evaluations: dict[str, EvaluationConfig]
    tables: dict[str, TableConfig]

    @model_validator(mode="after")
    def _check_references(self) -> Params:
        problems: list[str] = []

        def need(path: str, name: str, defined: dict[str, Any], kind: str) -> None:
            if name not in defined:
                problems.append(f"{path}: unknown {kind} {name!r} (defined: {', '.join(defined) or 'none'})")

        if self.scale not in self.scales:
            need("scale", self.scale, self.scales, "scale")
        for name, variant in self.variants.items():
            need(f"variants.{name}.pretrain_data", variant.pretrain_data, self.datasets, "dataset")
        for name, evaluation in self.evaluations.items():
            need(f"evaluations.{name}.dataset", evaluation.dataset, self.datasets, "dataset")
            for i, variant in enumerate(evaluation.variants):
                need(f"evaluations.{name}.variants.{i}", variant, self.variants, "variant")
        for name, table in self.tables.items():
            for i, evaluation in enumerate(table.evaluations):
                need(f"tables.{name}.evaluations.{i}", evaluation, self.evaluations, "evaluation")
        for name, scale in self.scales.items():
            for field, defined, kind in (("variants", self.variants, "variant"),
                                         ("evaluations", self.evaluations, "evaluation"),
                                         ("tables", self.tables, "table"),
                                         ("extra_datasets", self.datasets, "dataset")):
                for i, item in enumerate(getattr(scale, field)):
                    need(f"scales.{name}.{field}.{i}", item, defined, kind)
        if problems:
            raise ValueError("\n".join(problems))
        return self

    # ----------------------------------------------------------------------- what a scale selects

    @property
    def selected(self) -> ScaleConfig:
        """The scale chosen by ``scale``."""
        return self.scales[self.scale]

    def selected_variants(self) -> list[str]:
        """Variants of the chosen scale, plus every variant its evaluations need."""
        names = list(self.selected.variants)
        for evaluation in self.selected.evaluations:
            names += [v for v in self.evaluations[evaluation].variants if v not in names]
        return names

    def selected_evaluations(self) -> list[str]:
        """Evaluations of the chosen scale, plus those its tables need."""
        names = list(self.selected.evaluations)
        for table in self.selected.tables:
            names += [e for e in self.tables[table].evaluations if e not in names]
        return names

    def selected_datasets(self) -> list[str]:
        """Datasets the chosen scale needs (pretraining and evaluation data)."""
        names: list[str] = []
        for variant in self.selected_variants():
            names.append(self.variants[variant].pretrain_data)
        for evaluation in self.selected_evaluations():
            names.append(self.evaluations[evaluation].dataset)
        names += self.selected.extra_datasets
        return list(dict.fromkeys(names))

    # ------------------------------------------------------------------- resolved settings subsets

    def resolved_for(self, *, dataset: str | None = None, variant: str | None = None,
                     evaluation: str | None = None, table: str | None = None) -> dict[str, Any]:
        """The settings one output depends on, fully resolved (defaults filled in)."""
        out: dict[str, Any] = {"scale": self.scale}
        if variant is not None:
            cfg = self.variants[variant]
            out["variant"] = {variant: cfg.model_dump(mode="json")}
            dataset = dataset or cfg.pretrain_data
        if evaluation is not None:
            cfg_e = self.evaluations[evaluation]
            out["evaluation"] = {evaluation: cfg_e.model_dump(mode="json")}
            dataset = dataset or cfg_e.dataset
        if table is not None:
            out["table"] = {table: self.tables[table].model_dump(mode="json")}
        if dataset is not None:
            out["dataset"] = {dataset: self.datasets[dataset].model_dump(mode="json")}
        return out


def settings_digest(settings: dict[str, Any]) -> str:
    """A short stable digest of a settings dict (Snakemake uses it to re-run what changed)."""
    text = json.dumps(settings, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _format_errors(path: Path, error: ValidationError) -> str:
    lines = []
    for item in error.errors():
        loc = ".".join(str(part) for part in item["loc"])
        message = item["msg"]
        if message.startswith("Value error, "):
            message = message[len("Value error, "):]
        if item["type"] == "extra_forbidden":
            message = "unknown key (not allowed here; check its spelling)"
        for part in message.split("\n"):
            lines.append(f"{path}: {loc}: {part}" if loc else f"{path}: {part}")
    return "\n".join(lines)


def parse_params(raw: dict[str, Any], *, source: Path = Path("params.yaml"),
                 scale: str | None = None) -> Params:
    """Validate an already-loaded settings mapping (``scale`` overrides the file's choice)."""
    if not isinstance(raw, dict):
        raise ParamsError(f"{source}: the top level must be a mapping of settings")
    if scale is not None:
        raw = {**raw, "scale": scale}
    try:
        return Params.model_validate(raw)
    except ValidationError as error:
        raise ParamsError(_format_errors(source, error)) from None


def load_params(path: str | Path = "params.yaml", scale: str | None = None) -> Params:
    """Read and validate the settings file; ``scale`` (e.g. ``full``) overrides its ``scale`` key."""
    path = Path(path)
    if not path.is_file():
        raise ParamsError(f"{path}: settings file not found")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        raise ParamsError(f"{path}: not valid YAML: {error}") from None
    return parse_params(raw, source=path, scale=scale)


def dump_resolved(settings: dict[str, Any]) -> str:
    """YAML text of resolved settings, written beside the outputs they produced."""
    return yaml.safe_dump(settings, sort_keys=False, default_flow_style=False)
