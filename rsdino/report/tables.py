"""Results tables from the metrics JSON files, our number beside the seeds' published one.

For each table of the selected scale: rows are variants, columns are the table's columns (an
evaluation and a metric each, ``TableConfig.resolved_columns``), a cell is our value of the column's
metric beside the random-init baseline of the metrics' ``baselines.random_init``. The Markdown is laid
out to be read (``rsdino.report.readable``): one section per protocol and metric, as in the seeds'
papers, and one line per (model, dataset) with ours, published, random init and ours minus random
init side by side, marked where pretraining does not beat random init. Columns
of ``reference`` evaluations (another scale's) show the published number beside "not run". Every
model of the table's published tables that no variant of ours stands for (the seeds' comparison
rows, e.g. SatMAE in the SatDINO table) gets a published-only row: its published numbers beside
"not trained here". ``<table>.md`` holds the Markdown table with its caption
(metric, where the published numbers come from, the MLflow run of every cell), ``<table>.csv`` the
same cells in long format (column ``published_only``), one line per cell with its provenance (MLflow
run, git commit, versions of the evaluation and pretraining data: ``rsdino.report.provenance``), and
``coverage.json`` counts, per table, the published numbers shown beside ours, those in published-only
rows and those shown nowhere (``rsdino.report.coverage``). The metrics files are the source of truth
(docs/architecture.md).
"""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rsdino import io as rio
from rsdino.config import Params
from rsdino.config.tables import TableColumn
from rsdino.config.variants import PublishedKey
from rsdino.errors import UserError
from rsdino.report.coverage import COVERAGE_FILE, coverage
from rsdino.report.provenance import PROVENANCE_COLUMNS, cell_provenance
from rsdino.report.published import (
    SEED_TABLES,
    AmbiguousPublishedValue,
    PublishedValue,
    load_seed_tables,
    lookup_entry,
)
from rsdino.report.readable import NOT_ABOVE_RANDOM, beats_random_init, cite, margin, protocol_name, sections

CSV_COLUMNS = ("table", "variant", "method", "backbone", "dataset", "metric", "ours", "random_init",
               "published", "published_source", "mlflow_run_id", "evaluation", "published_only",
               *PROVENANCE_COLUMNS, "protocol", "beats_random_init")
NOT_RUN = "not run"
NOT_AT_SCALE = "not run at this scale"
NOT_EVALUATED = "n/a"
NOT_TRAINED = "not trained here"
PUBLISHED_ONLY = "(published only)"
DASH = "—"
RELEASED = "released weights"


class MetricsFileError(UserError, ValueError):
    """A metrics JSON file that cannot be read or does not follow the contract."""


def _numbers(path: Path, where: str, value: Any) -> dict[str, float]:
    if not isinstance(value, dict) or not all(
            isinstance(v, int | float) and not isinstance(v, bool) for v in value.values()):
        raise MetricsFileError(f"{path}: {where} must be a mapping of metric names to numbers")
    return {str(k): float(v) for k, v in value.items()}


def load_metrics_file(path: Path) -> dict[str, Any]:
    """Read and check one metrics file; errors name the file."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise MetricsFileError(f"{path}: not a readable JSON metrics file: {error}") from None
    if not isinstance(data, dict):
        raise MetricsFileError(f"{path}: the top level must be a JSON object")
    for key in ("evaluation", "variant"):
        if not isinstance(data.get(key), str) or not data[key]:
            raise MetricsFileError(f"{path}: missing or empty string key {key!r}")
    data["metrics"] = _numbers(path, "'metrics'", data.get("metrics"))
    baselines = data.get("baselines") or {}
    if not isinstance(baselines, dict):
        raise MetricsFileError(f"{path}: 'baselines' must be a mapping")
    data["baselines"] = {name: _numbers(path, f"'baselines.{name}'", values)
                         for name, values in baselines.items()}
    if not isinstance(data.get("mlflow") or {}, dict):
        raise MetricsFileError(f"{path}: 'mlflow' must be a mapping")
    return data


def load_metrics(metrics_files: list[Path]) -> dict[tuple[str, str], dict[str, Any]]:
    """``{(evaluation, variant): metrics}`` of the files that exist (a missing file = not run)."""
    found: dict[tuple[str, str], dict[str, Any]] = {}
    origin: dict[tuple[str, str], Path] = {}
    for path in map(Path, metrics_files):
        if not path.exists():
            continue
        data = load_metrics_file(path)
        key = (data["evaluation"], data["variant"])
        if key in found:
            raise MetricsFileError(f"{path}: evaluation {key[0]!r} of variant {key[1]!r} is also in "
                                   f"{origin[key]}")
        found[key], origin[key] = data, path
    return found


@dataclass
class Cell:
    """One (variant, evaluation) cell of a table."""

    variant: str  # the variant, or the label of a published-only row
    evaluation: str
    dataset: str
    status: str  # "ok", NOT_RUN, NOT_AT_SCALE, NOT_EVALUATED or NOT_TRAINED (published-only row)
    metric: str = ""
    ours: float | None = None
    random_init: float | None = None
    published: PublishedValue | None = None
    run_id: str | None = None
    provenance: dict[str, str] = field(default_factory=dict)  # PROVENANCE_COLUMNS of its metrics file


@dataclass
class Row:
    """One row of a table: a variant of ours, or (``variant`` None) a published-only row."""

    label: str
    method: str
    backbone: str
    cells: list[Cell]
    variant: str | None = None

    @property
    def published_only(self) -> bool:
        """A model of the seeds' table that rsdino does not train: published numbers only."""
        return self.variant is None


def _published(params: Params, table_name: str, key: PublishedKey | None, column: TableColumn,
               who: str) -> PublishedValue | None:
    """The published number of ``column`` for the model ``key`` (``who`` names it in errors)."""
    evaluation = column.evaluation
    name = (getattr(params.evaluations[evaluation], "published_dataset", None)
            or params.datasets[params.evaluations[evaluation].dataset].published_name)
    if column.published_table is None or key is None or name is None:
        return None
    args = (column.published_table, key.model, key.arch, key.pretrain_data, name,
            column.published_metric or "top1")
    try:
        return lookup_entry(*args)
    except AmbiguousPublishedValue:
        protocol = getattr(params.evaluations[evaluation], "published_protocol", None)
        entry = lookup_entry(*args, protocol=protocol)
        if entry is None:
            raise ValueError(f"tables.{table_name}: several published values for {who} on "
                             f"{name!r} and none with evaluations.{evaluation}.published_protocol "
                             f"{protocol!r}") from None
        return entry


def table_columns(params: Params, table_name: str) -> list[TableColumn]:
    """The resolved columns of a table; a reference to an undefined evaluation raises naming it."""
    table = params.tables[table_name]
    for i, name in enumerate(table.reference):
        if name not in params.evaluations:
            raise ValueError(f"tables.{table_name}.reference.{i}: unknown evaluation {name!r}")
    names = [*table.evaluations, *table.reference, *(c.evaluation for c in table.columns)]
    return table.resolved_columns({name: params.evaluations[name].protocol for name in names})


def table_cells(params: Params, table_name: str,
                metrics: dict[tuple[str, str], dict[str, Any]]) -> tuple[list[str], list[list[Cell]]]:
    """Rows (variant names) and their cells, one per column of the table."""
    columns = table_columns(params, table_name)
    variants = list(dict.fromkeys(v for c in columns for v in params.evaluations[c.evaluation].variants))
    rows: list[list[Cell]] = []
    for variant in variants:
        row = []
        for column in columns:
            evaluation, metric = column.evaluation, column.metric or ""
            dataset = params.evaluations[evaluation].dataset
            if variant not in params.evaluations[evaluation].variants:
                row.append(Cell(variant, evaluation, dataset, NOT_EVALUATED, metric))
                continue
            status = NOT_RUN if evaluation in params.tables[table_name].evaluations else NOT_AT_SCALE
            cell = Cell(variant, evaluation, dataset, status, metric,
                        published=_published(params, table_name, params.variants[variant].published,
                                             column, f"variant {variant!r}"))
            data = metrics.get((evaluation, variant))
            if data is not None:
                cell.status = "ok"
                cell.ours = data["metrics"].get(metric)
                cell.random_init = data["baselines"].get("random_init", {}).get(metric)
                cell.run_id = (data.get("mlflow") or {}).get("run_id")
                cell.provenance = cell_provenance(data)
            row.append(cell)
        rows.append(row)
    return variants, rows


def published_only_rows(params: Params, table_name: str, variants: list[str]) -> list[Row]:
    """A row for every model of the table's published tables that none of ``variants`` stands for.

    Models are ``(model, arch, pretrain_data)`` of ``seed_tables.csv``, in the order of the CSV; a
    model none of whose published numbers falls in a column of the table gets no row.
    """
    columns = table_columns(params, table_name)
    published_tables = {c.published_table for c in columns if c.published_table}
    ours = {(k.model, k.arch, k.pretrain_data) for k in (params.variants[v].published for v in variants) if k}
    models = dict.fromkeys((row["model"], row["arch"], row["pretrain_data"]) for row in load_seed_tables()
                           if row["table"] in published_tables)
    rows = []
    for model, arch, pretrain_data in (m for m in models if m not in ours):
        key = PublishedKey(model=model, arch=arch, pretrain_data=pretrain_data)
        label = f"{model} {arch} {PUBLISHED_ONLY}"
        cells = [Cell(label, c.evaluation, params.evaluations[c.evaluation].dataset, NOT_TRAINED,
                      c.metric or "", published=_published(params, table_name, key, c, f"model {label!r}"))
                 for c in columns]
        if any(cell.published for cell in cells):
            rows.append(Row(label, model, arch, cells))
    return rows


def table_rows(params: Params, table_name: str, metrics: dict[tuple[str, str], dict[str, Any]]) -> list[Row]:
    """The rows of a table: the variants of ours (``table_cells``), then the published-only rows.

    A variant that imports released weights (``weights:``) is labelled ``<variant> (released weights)``:
    the authors' weights evaluated here, beside the published number and our pretraining.
    """
    variants, cells = table_cells(params, table_name, metrics)
    ours = [Row(f"{v} ({RELEASED})" if params.variants[v].weights else v, params.variants[v].method,
                params.variants[v].backbone, row, variant=v)
            for v, row in zip(variants, cells, strict=True)]
    return ours + published_only_rows(params, table_name, variants)


def _fmt(value: float | None) -> str:
    return DASH if value is None or math.isnan(value) else f"{value:.2f}"


def _ours_text(cell: Cell) -> str:
    if cell.status == NOT_TRAINED:
        return NOT_TRAINED
    return _fmt(cell.ours) if cell.status == "ok" else cell.status


def _markdown(params: Params, table_name: str, rows: list[Row]) -> str:
    """The table as Markdown sections, one per (protocol, metric, published table), narrow rows."""
    table = params.tables[table_name]
    columns = table_columns(params, table_name)
    keys = [(params.evaluations[c.evaluation].protocol, c.metric or "", c.published_table) for c in columns]
    lines = [f"# {table.title}", ""]
    for (protocol, metric, published_table), index in sections(keys).items():
        heading = f"## {protocol_name(protocol)}: `{metric}`"
        lines += [heading + (f" (published table `{published_table}`)" if published_table else ""), "",
                  "| model | dataset | ours | published | random init | ours − random init |",
                  "| --- | --- | ---: | ---: | ---: | ---: |"]
        datasets = [params.evaluations[columns[i].evaluation].dataset for i in index]
        for row in rows:
            for i, dataset in zip(index, datasets, strict=True):
                cell = row.cells[i]
                if cell.status == NOT_EVALUATED or (row.published_only and cell.published is None):
                    continue
                where = columns[i].label or (dataset if datasets.count(dataset) == 1
                                             else f"{dataset} ({cell.evaluation})")
                published = _fmt(cell.published.value) if cell.published else DASH
                lines.append(f"| {row.label} | {where} | {_ours_text(cell)} | {published} | "
                             f"{_fmt(cell.random_init)} | {margin(cell.ours, cell.random_init) or DASH} |")
        lines.append("")
    lines += _caption(params, table_name, rows)
    return "\n".join(lines) + "\n"


def _caption(params: Params, table_name: str, rows: list[Row]) -> list[str]:
    table = params.tables[table_name]
    cells = [c for row in rows for c in row.cells]
    text = [table.caption.strip()] if table.caption.strip() else []
    metrics = sorted({c.metric for c in cells if c.metric})
    shown = "`, `".join(metrics) or table.metric
    text.append(f"Metric: `{shown}` (percent). One line per model and dataset: our value, the published "
                f"one ({DASH}: none), the same evaluation of a randomly initialised backbone of the same "
                f"architecture, and ours minus random init; **{NOT_ABOVE_RANDOM}** marks a line where "
                f"pretraining does not beat random init. `{NOT_RUN}`: no metrics file; "
                f"`{NOT_AT_SCALE}`: an evaluation of another scale (e.g. the full one), shown for its "
                f"published number.")
    if any(row.published_only for row in rows):
        text.append(f"Rows marked \"{PUBLISHED_ONLY}\" are models of the seeds' table that rsdino does not "
                    f"train (comparison rows): published numbers only.")
    used = sorted({(c.published.source, c.published.protocol) for c in cells if c.published})
    if used:
        sources = "; ".join(f"{cite(source)}, protocol `{protocol}`" for source, protocol in used)
        published = sorted({c.published_table for c in table_columns(params, table_name)
                            if c.published_table})
        text.append(f"Published numbers: table(s) `{'`, `'.join(published)}` of {sources}, as transcribed "
                    f"in `rsdino/report/data/{SEED_TABLES.name}`.")
    elif any(c.published_table for c in table_columns(params, table_name)):
        text.append("Published numbers: none of the rows has a published value in the seeds' tables.")
    models = [f"- {row.label}: {row.method}, {row.backbone}" for row in rows if not row.published_only]
    runs = list(dict.fromkeys(f"- {c.variant} on {c.dataset} ({c.evaluation}): `{c.run_id or 'unknown'}`"
                              for c in cells if c.status == "ok"))
    return [" ".join(text), "", "Models:", *(models or ["- none"]), "", "MLflow runs:", *(runs or ["- none"])]


def _csv(table_name: str, rows: list[Row], protocols: dict[str, str] | None = None) -> str:
    """The cells in long format; a published-only row contributes its cells with a published number."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        for cell in row.cells:
            if cell.status == NOT_EVALUATED or (row.published_only and cell.published is None):
                continue
            writer.writerow({"table": table_name, "variant": row.label, "method": row.method,
                             "backbone": row.backbone, "dataset": cell.dataset, "metric": cell.metric,
                             "ours": "" if cell.ours is None else cell.ours,
                             "random_init": "" if cell.random_init is None else cell.random_init,
                             "published": cell.published.value if cell.published else "",
                             "published_source": cell.published.source if cell.published else "",
                             "mlflow_run_id": cell.run_id or "", "evaluation": cell.evaluation,
                             "published_only": str(row.published_only).lower(),
                             **{k: cell.provenance.get(k, "") for k in PROVENANCE_COLUMNS},
                             "protocol": (protocols or {}).get(cell.evaluation, ""),
                             "beats_random_init": {None: "", True: "true", False: "false"}[
                                 beats_random_init(cell.ours, cell.random_init)]})
    return buffer.getvalue()


def build_tables(metrics_files: list[Path], params: Params, out_dir: Path) -> list[Path]:
    """Write ``<table>.md`` and ``<table>.csv`` for every table of the selected scale, and ``coverage.json``.

    Args:
        metrics_files: metrics JSON files (docs/architecture.md); a path that does not exist counts
            as not run, a malformed file raises ``MetricsFileError`` naming it.
        params: validated settings; ``params.selected.tables`` are built.
        out_dir: where the tables are written (atomically).

    Returns:
        The written paths, ``.md`` then ``.csv`` for each table, then ``coverage.json``
        (``rsdino.report.coverage.coverage`` of the tables).
    """
    metrics = load_metrics(metrics_files)
    written: list[Path] = []
    tables: dict[str, list[Row]] = {}
    for name in params.selected.tables:
        tables[name] = rows = table_rows(params, name, metrics)
        written.append(rio.write_text(Path(out_dir) / f"{name}.md", _markdown(params, name, rows)))
        protocols = {e: params.evaluations[e].protocol for e in {c.evaluation for r in rows for c in r.cells}}
        written.append(rio.write_text(Path(out_dir) / f"{name}.csv", _csv(name, rows, protocols)))
    written.append(rio.write_json(Path(out_dir) / COVERAGE_FILE, coverage(params, tables)))
    return written


def layout(params: Params) -> dict[str, list[Row]]:
    """The rows of every table of the selected scale without any metrics file (nothing run yet)."""
    return {name: table_rows(params, name, {}) for name in params.selected.tables}


def write_summary(metrics_files: list[Path], out_path: Path) -> Path:
    """Write a flat ``{"<evaluation>/<variant>/<metric>": value}`` JSON (the DVC metrics file)."""
    summary = {f"{evaluation}/{variant}/{metric}": value
               for (evaluation, variant), data in sorted(load_metrics(metrics_files).items())
               for metric, value in sorted(data["metrics"].items())}
    return rio.write_json(out_path, summary)
