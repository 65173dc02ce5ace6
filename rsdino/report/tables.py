"""Results tables from the metrics JSON files, our number beside the seeds' published one.

For each table of the selected scale: rows are variants (plus a "random init" row per variant
from the metrics' ``baselines.random_init``), columns are the datasets of the table's evaluations,
a cell is our value of ``table.metric``. ``<table>.md`` holds the Markdown table with its caption
(metric, where the published numbers come from, the MLflow run of every cell), ``<table>.csv`` the
same cells in long format. The metrics files are the source of truth (docs/architecture.md).
"""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rsdino import io as rio
from rsdino.config import Params
from rsdino.report.published import SEED_TABLES, AmbiguousPublishedValue, PublishedValue, lookup_entry

CSV_COLUMNS = ("table", "variant", "method", "backbone", "dataset", "metric", "ours", "random_init",
               "published", "published_source", "mlflow_run_id")
NOT_RUN = "not run"
NOT_EVALUATED = "n/a"
DASH = "—"


class MetricsFileError(ValueError):
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

    variant: str
    evaluation: str
    dataset: str
    status: str  # "ok", NOT_RUN or NOT_EVALUATED
    ours: float | None = None
    random_init: float | None = None
    published: PublishedValue | None = None
    run_id: str | None = None


def _published(params: Params, table_name: str, variant: str, evaluation: str) -> PublishedValue | None:
    table = params.tables[table_name]
    key = params.variants[variant].published
    name = params.datasets[params.evaluations[evaluation].dataset].published_name
    if table.published_table is None or key is None or name is None:
        return None
    args = (table.published_table, key.model, key.arch, key.pretrain_data, name, table.published_metric)
    try:
        return lookup_entry(*args)
    except AmbiguousPublishedValue:
        protocol = getattr(params.evaluations[evaluation], "published_protocol", None)
        entry = lookup_entry(*args, protocol=protocol)
        if entry is None:
            raise ValueError(f"tables.{table_name}: several published values for variant {variant!r} on "
                             f"{name!r} and none with evaluations.{evaluation}.published_protocol "
                             f"{protocol!r}") from None
        return entry


def table_cells(params: Params, table_name: str,
                metrics: dict[tuple[str, str], dict[str, Any]]) -> tuple[list[str], list[list[Cell]]]:
    """Rows (variant names) and their cells, one per evaluation of the table."""
    table = params.tables[table_name]
    variants = list(dict.fromkeys(v for e in table.evaluations for v in params.evaluations[e].variants))
    rows: list[list[Cell]] = []
    for variant in variants:
        row = []
        for evaluation in table.evaluations:
            dataset = params.evaluations[evaluation].dataset
            if variant not in params.evaluations[evaluation].variants:
                row.append(Cell(variant, evaluation, dataset, NOT_EVALUATED))
                continue
            cell = Cell(variant, evaluation, dataset, NOT_RUN,
                        published=_published(params, table_name, variant, evaluation))
            data = metrics.get((evaluation, variant))
            if data is not None:
                cell.status = "ok"
                cell.ours = data["metrics"].get(table.metric)
                cell.random_init = data["baselines"].get("random_init", {}).get(table.metric)
                cell.run_id = (data.get("mlflow") or {}).get("run_id")
            row.append(cell)
        rows.append(row)
    return variants, rows


def _fmt(value: float | None) -> str:
    return DASH if value is None or math.isnan(value) else f"{value:.2f}"


def _md_cell(cell: Cell, random_init: bool) -> str:
    published = cell.published.value if cell.published else None
    if cell.status == NOT_RUN and published is not None and not random_init:
        return f"{NOT_RUN} / {_fmt(published)}"
    if cell.status != "ok":
        return cell.status
    if random_init:
        return _fmt(cell.random_init)
    return f"{_fmt(cell.ours)} / {_fmt(published)}"


def _markdown(params: Params, table_name: str, variants: list[str], rows: list[list[Cell]]) -> str:
    table = params.tables[table_name]
    datasets = [params.evaluations[e].dataset for e in table.evaluations]
    headers = [d if datasets.count(d) == 1 else f"{d} ({e})"
               for d, e in zip(datasets, table.evaluations, strict=True)]
    lines = [f"# {table.title}", "", "| variant | method | backbone | " + " | ".join(headers) + " |",
             "| --- | --- | --- | " + " | ".join("---:" for _ in headers) + " |"]
    for variant, row in zip(variants, rows, strict=True):
        cfg = params.variants[variant]
        lines.append(f"| {variant} | {cfg.method} | {cfg.backbone} | "
                     + " | ".join(_md_cell(c, False) for c in row) + " |")
        if any(c.random_init is not None for c in row):
            lines.append(f"| {variant} (random init) | {cfg.method} | {cfg.backbone} | "
                         + " | ".join(_md_cell(c, True) for c in row) + " |")
    lines += ["", *_caption(params, table_name, rows)]
    return "\n".join(lines) + "\n"


def _caption(params: Params, table_name: str, rows: list[list[Cell]]) -> list[str]:
    table = params.tables[table_name]
    cells = [c for row in rows for c in row]
    text = [table.caption.strip()] if table.caption.strip() else []
    text.append(f"Metric: `{table.metric}` (percent). Each cell: ours / published ({DASH}: no published "
                f"number); the \"random init\" rows are the same evaluation of a randomly initialised "
                f"backbone of the same architecture; `{NOT_RUN}`: no metrics file; `{NOT_EVALUATED}`: "
                "the variant is not part of that evaluation.")
    used = sorted({(c.published.source, c.published.protocol) for c in cells if c.published})
    if used:
        sources = "; ".join(f"seed `{source}` (protocol `{protocol}`)" for source, protocol in used)
        text.append(f"Published numbers: table `{table.published_table}`, metric `{table.published_metric}` "
                    f"of {sources}, as transcribed in `rsdino/report/data/{SEED_TABLES.name}`.")
    elif table.published_table:
        text.append(f"Published numbers: none of the rows has a published value in table "
                    f"`{table.published_table}`.")
    runs = [f"- {c.variant} on {c.dataset} ({c.evaluation}): `{c.run_id or 'unknown'}`"
            for c in cells if c.status == "ok"]
    return [" ".join(text), "", "MLflow runs:", *(runs or ["- none"])]


def _csv(params: Params, table_name: str, rows: list[list[Cell]]) -> str:
    table = params.tables[table_name]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for cell in (c for row in rows for c in row if c.status != NOT_EVALUATED):
        cfg = params.variants[cell.variant]
        writer.writerow({"table": table_name, "variant": cell.variant, "method": cfg.method,
                         "backbone": cfg.backbone, "dataset": cell.dataset, "metric": table.metric,
                         "ours": "" if cell.ours is None else cell.ours,
                         "random_init": "" if cell.random_init is None else cell.random_init,
                         "published": cell.published.value if cell.published else "",
                         "published_source": cell.published.source if cell.published else "",
                         "mlflow_run_id": cell.run_id or ""})
    return buffer.getvalue()


def build_tables(metrics_files: list[Path], params: Params, out_dir: Path) -> list[Path]:
    """Write ``<table>.md`` and ``<table>.csv`` for every table of the selected scale.

    Args:
        metrics_files: metrics JSON files (docs/architecture.md); a path that does not exist counts
            as not run, a malformed file raises ``MetricsFileError`` naming it.
        params: validated settings; ``params.selected.tables`` are built.
        out_dir: where the tables are written (atomically).

    Returns:
        The written paths, ``.md`` then ``.csv`` for each table.
    """
    metrics = load_metrics(metrics_files)
    written: list[Path] = []
    for name in params.selected.tables:
        variants, rows = table_cells(params, name, metrics)
        written.append(rio.write_text(Path(out_dir) / f"{name}.md", _markdown(params, name, variants, rows)))
        written.append(rio.write_text(Path(out_dir) / f"{name}.csv", _csv(params, name, rows)))
    return written


def write_summary(metrics_files: list[Path], out_path: Path) -> Path:
    """Write a flat ``{"<evaluation>/<variant>/<metric>": value}`` JSON (the DVC metrics file)."""
    summary = {f"{evaluation}/{variant}/{metric}": value
               for (evaluation, variant), data in sorted(load_metrics(metrics_files).items())
               for metric, value in sorted(data["metrics"].items())}
    return rio.write_json(out_path, summary)
