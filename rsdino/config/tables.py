"""Settings of one results table (``tables.<name>`` in params.yaml)."""

from __future__ import annotations

from rsdino.config.base import StrictModel


class TableConfig(StrictModel):
    """A results table: rows are variants, columns are datasets, one metric."""

    title: str
    evaluations: list[str]
    metric: str = "top1_k20"
    published_table: str | None = None
    published_metric: str = "top1"
    caption: str = ""
