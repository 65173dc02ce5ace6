"""Settings of one results table (``tables.<name>`` in params.yaml)."""

from __future__ import annotations

from pydantic import model_validator

from rsdino.config.base import StrictModel


class TableColumn(StrictModel):
    """One column of a table: an evaluation and the metric shown, with its published counterpart.

    Unset fields take the table's ``metric``, ``published_table`` and ``published_metric``; the
    header is ``label`` or the evaluation's dataset.
    """

    evaluation: str
    metric: str | None = None
    label: str | None = None
    published_table: str | None = None
    published_metric: str | None = None


class TableConfig(StrictModel):
    """A results table: rows are variants, columns are evaluations (one metric each).

    ``evaluations`` are run for the table (the DAG builds their metrics files). ``reference`` are
    evaluations of another scale that the table also shows, with their published numbers, without
    running them (their cells read "not run" unless a metrics file exists): the demo scale uses it
    to lay out the seeds' tables. By default there is one column per metric of each evaluation
    (then of each reference): the metric(s) of its protocol in ``metrics`` (a list gives several
    columns, e.g. OSCD precision / recall / F1), else ``metric``; the published table is
    ``published_tables[protocol]``, else ``published_table``; the published metric is
    ``published_metric`` for a ``top1...`` metric and the metric's own name otherwise. ``columns``
    replaces that list explicitly.
    """

    title: str
    evaluations: list[str]
    reference: list[str] = []
    columns: list[TableColumn] = []
    metric: str = "top1_k20"
    metrics: dict[str, str | list[str]] = {}
    published_table: str | None = None
    published_tables: dict[str, str] = {}
    published_metric: str = "top1"
    caption: str = ""

    @model_validator(mode="after")
    def _columns_use_known_evaluations(self) -> TableConfig:
        known = set(self.evaluations) | set(self.reference)
        unknown = [c.evaluation for c in self.columns if c.evaluation not in known]
        if unknown:
            raise ValueError(f"columns name evaluations that are neither in evaluations nor in reference: "
                             f"{', '.join(unknown)}")
        return self

    def resolved_columns(self, protocols: dict[str, str] | None = None) -> list[TableColumn]:
        """The columns with every unset field filled in (class docstring).

        Args:
            protocols: evaluation name -> protocol, for ``metrics`` and ``published_tables``.
        """
        protocols = protocols or {}
        columns = list(self.columns)
        if not columns:
            for evaluation in [*self.evaluations, *self.reference]:
                chosen = self.metrics.get(protocols.get(evaluation, ""), self.metric)
                for metric in [chosen] if isinstance(chosen, str) else chosen:
                    columns.append(TableColumn(evaluation=evaluation, metric=metric))
        out = []
        for c in columns:
            metric = c.metric or self.metric
            protocol = protocols.get(c.evaluation, "")
            out.append(TableColumn(
                evaluation=c.evaluation, metric=metric, label=c.label,
                published_table=(c.published_table
                                 or self.published_tables.get(protocol, self.published_table)),
                published_metric=c.published_metric or (self.published_metric if metric.startswith("top1")
                                                        else metric)))
        return out
