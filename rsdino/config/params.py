"""Load and validate ``params.yaml``, the one source of settings, and write resolved settings.

``load_params(path, scale)`` returns a validated ``Params``. Any problem (YAML syntax, unknown key,
wrong type, a reference to an undefined dataset, variant, evaluation or table) raises
``ParamsError`` whose message has one line per problem, each naming the file and the key path, e.g.::

    params.yaml: variants.demo_dino.optim.lrr: unknown key (not allowed here; check its spelling)

Only the command-line layer and the Snakefile call ``load_params``; the library receives the
validated objects.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, ValidationError, model_validator

from rsdino.config.base import ParamsError, StrictModel
from rsdino.config.datasets import DEFAULT_SPLIT, DatasetConfig
from rsdino.config.extraction import ExtractionSettings
from rsdino.config.overlays import origin
from rsdino.config.protocols import EvaluationConfig
from rsdino.config.scales import resolve_scale
from rsdino.config.tables import TableConfig
from rsdino.config.variants import VariantConfig
from rsdino.io import write_text


class EvaluationResources(StrictModel):
    """What each evaluation job of a scale asks the scheduler for (Snakemake ``resources``).

    ``gpus`` GPUs, ``threads`` cores, ``mem_mb`` memory, ``runtime_min`` minutes
    (``training_runtime_min`` for the protocols that train a network: fine-tuning, dense heads).
    The defaults fit a CPU machine; a GPU cluster scale sets its own. The device itself is the
    scale's ``device`` (``auto``: CUDA when the job's machine has a GPU, else CPU).
    """

    gpus: int = Field(default=0, ge=0)
    threads: int = Field(default=1, ge=1)
    mem_mb: int = Field(default=8000, ge=1)
    runtime_min: int = Field(default=30, ge=1)
    training_runtime_min: int | None = Field(default=None, ge=1)


class ScaleConfig(StrictModel):
    """What one scale (demo, full, mini) runs: the variants, evaluations and tables it selects.

    ``like``, ``fake_data`` and ``overrides`` make a scale another one in miniature
    (``rsdino.config.scales``; applied before validation). ``device`` is where its evaluations run
    (``auto``: CUDA when the job's machine has a GPU, else the CPU; ``cpu``; ``cuda``), resolved by
    each job (``rsdino.devices``); ``evaluation_resources`` is what each evaluation job asks for.
    """

    description: str = ""
    variants: list[str] = Field(default_factory=list)
    evaluations: list[str] = Field(default_factory=list)
    tables: list[str] = Field(default_factory=list)
    extra_datasets: list[str] = Field(default_factory=list)
    like: str | None = None
    fake_data: bool = False
    overrides: dict[str, Any] = Field(default_factory=dict)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    evaluation_resources: EvaluationResources = Field(default_factory=EvaluationResources)


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
    """DVC tracking of raw data (downloaded datasets, and manual ones once placed in data/raw/)."""

    track_raw: bool = True
    remote: str | None = "local"
    push: bool = True


class ProgressSettings(StrictModel):
    """How long steps report progress off a terminal (``rsdino.progress``).

    A log line at the end of every epoch, and one every ``every_s`` seconds inside an epoch (0: per
    epoch only).
    """

    every_s: float = Field(default=300.0, ge=0)


class Params(StrictModel):
    """The whole ``params.yaml``, its overlays merged (``recipes`` is gone after that; see ``overlays``)."""

    scale: str = "demo"
    scales: dict[str, ScaleConfig]
    paths: PathSettings = Field(default_factory=PathSettings)
    mlflow: MlflowSettings = Field(default_factory=MlflowSettings)
    dvc: DvcSettings = Field(default_factory=DvcSettings)
    progress: ProgressSettings = Field(default_factory=ProgressSettings)
    extraction: ExtractionSettings = Field(default_factory=ExtractionSettings)
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
            if variant.probe is not None:
                need(f"variants.{name}.probe.dataset", variant.probe.dataset, self.datasets, "dataset")
        for name, evaluation in self.evaluations.items():
            need(f"evaluations.{name}.dataset", evaluation.dataset, self.datasets, "dataset")
            split = getattr(evaluation, "split", DEFAULT_SPLIT)
            if split != DEFAULT_SPLIT and evaluation.dataset in self.datasets:
                need(f"evaluations.{name}.split", split, self.datasets[evaluation.dataset].splits,
                     f"split of dataset {evaluation.dataset!r}")
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
            if self.variants[variant].probe is not None:
                names.append(self.variants[variant].probe.dataset)
        for evaluation in self.selected_evaluations():
            names.append(self.evaluations[evaluation].dataset)
        names += self.selected.extra_datasets
        return list(dict.fromkeys(names))

    # ------------------------------------------------------------------- resolved settings subsets

    def resolved_for(self, *, dataset: str | None = None, variant: str | None = None,
                     evaluation: str | None = None, table: str | None = None) -> dict[str, Any]:
        """The settings one output depends on, fully resolved (defaults filled in).

        ``dataset`` holds the given dataset, else the variant's pretraining data and the evaluation's
        dataset (both, when an evaluation runs on other data than the model was pretrained on).
        """
        out: dict[str, Any] = {"scale": self.scale}
        datasets = [dataset] if dataset is not None else []
        if variant is not None:
            cfg = self.variants[variant]
            out["variant"] = {variant: cfg.model_dump(mode="json")}
            datasets += [] if dataset is not None else [cfg.pretrain_data]
        if evaluation is not None:
            cfg_e = self.evaluations[evaluation]
            out["evaluation"] = {evaluation: cfg_e.model_dump(mode="json")}
            datasets += [] if dataset is not None else [cfg_e.dataset]
        if table is not None:
            out["table"] = {table: self.tables[table].model_dump(mode="json")}
        if datasets:
            out["dataset"] = {name: self.datasets[name].model_dump(mode="json")
                              for name in dict.fromkeys(datasets)}
        return out


def settings_digest(settings: dict[str, Any]) -> str:
    """A short stable digest of a settings dict (Snakemake uses it to re-run what changed)."""
    text = json.dumps(settings, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _format_errors(path: Path, error: ValidationError, written: dict[str, Any]) -> str:
    """One line per problem, naming its key path.

    A problem merged into several entries by ``like`` (``rsdino.config.overlays``) is one line: at
    the first entry that has it, naming where it was written and the other entries that have it.
    """
    problems: dict[tuple[str, str, str], list[tuple[str, ...]]] = {}  # (written in, key, message) -> locs
    for item in error.errors():
        loc = tuple(str(part) for part in item["loc"])
        message = item["msg"]
        if message.startswith("Value error, "):
            message = message[len("Value error, "):]
        if item["type"] == "extra_forbidden":
            message = "unknown key (not allowed here; check its spelling)"
        written_in = origin(written, loc) or ".".join(loc[:2])
        problems.setdefault((written_in, ".".join(loc[2:]), message), []).append(loc)
    lines = []
    for (written_in, _, message), locs in problems.items():
        first = ".".join(locs[0])
        notes = [f"written in {written_in}"] if written_in != ".".join(locs[0][:2]) else []
        if len(locs) > 1:
            notes.append("the same in " + ", ".join(".".join(loc[:2]) for loc in locs[1:]))
        for i, part in enumerate(message.split("\n")):
            text = part + (f" ({'; '.join(notes)})" if notes and i == 0 else "")
            lines.append(f"{path}: {first}: {text}" if first else f"{path}: {text}")
    return "\n".join(lines)


def parse_params(raw: dict[str, Any], *, source: Path = Path("params.yaml"),
                 scale: str | None = None, preflight_checks: bool = True) -> Params:
    """Validate an already-loaded settings mapping (``scale`` overrides the file's choice).

    Entries written as overlays (``like:``, ``recipes:``; ``rsdino.config.overlays``) are merged
    first, then the scale's ``like`` and ``overrides`` (``rsdino.config.scales``) apply. Then, with
    ``preflight_checks``, run the preflight of the selected scale
    (``rsdino.config.preflight``): what would only fail after pretraining fails here.
    """
    if not isinstance(raw, dict):
        raise ParamsError(f"{source}: the top level must be a mapping of settings")
    if scale is not None:
        raw = {**raw, "scale": scale}
    written = raw
    try:
        raw = resolve_scale(raw, str(raw.get("scale", "demo")))
    except ValueError as error:
        raise ParamsError("\n".join(f"{source}: {line}" for line in str(error).splitlines())) from None
    try:
        params = Params.model_validate(raw)
    except ValidationError as error:
        raise ParamsError(_format_errors(source, error, written)) from None
    if preflight_checks:
        from rsdino.config.preflight import preflight

        problems = preflight(params)
        if problems:
            raise ParamsError("\n".join(f"{source}: {problem}" for problem in problems))
    return params


#: libyaml's safe loader where PyYAML has it (parses params.yaml about ten times faster), else PyYAML's.
_SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def load_params(path: str | Path = "params.yaml", scale: str | None = None, *,
                preflight_checks: bool = True) -> Params:
    """Read and validate the settings file; ``scale`` (e.g. ``full``) overrides its ``scale`` key."""
    path = Path(path)
    if not path.is_file():
        raise ParamsError(f"{path}: settings file not found")
    try:
        raw = yaml.load(path.read_text(encoding="utf-8"), Loader=_SAFE_LOADER)
    except yaml.YAMLError as error:
        raise ParamsError(f"{path}: not valid YAML: {error}") from None
    return parse_params(raw, source=path, scale=scale, preflight_checks=preflight_checks)


def dump_resolved(settings: dict[str, Any]) -> str:
    """YAML text of resolved settings, written beside the outputs they produced."""
    return yaml.safe_dump(settings, sort_keys=False, default_flow_style=False)


def write_resolved(settings: dict[str, Any], path: Path) -> Path:
    """Write resolved settings (YAML, ``dump_resolved``) atomically beside the outputs they produced."""
    return write_text(path, dump_resolved(settings))
