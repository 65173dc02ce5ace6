"""How many of the seeds' published numbers the results tables show, and where.

For one table, every number of its published tables (the ``published_table`` of its columns, rows
of ``seed_tables.csv``) is counted once as

- ``paired``: shown beside a cell of ours (``paired_measured`` of them have our value already);
- ``published_only``: shown in a published-only row (a model of the seeds' table we do not train);
- ``unplaced``: shown nowhere in the table (its model has no row there, or no column holds it).

At the full scale ``unplaced`` must be 0 for every table, and every row of the CSV must be shown by
some table (``seeds.placed == seeds.rows``); ``seeds.unclaimed`` lists the published tables no
selected table shows at all.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rsdino.report.published import load_seed_tables, row_key

if TYPE_CHECKING:
    from rsdino.config import Params
    from rsdino.report.tables import Row

#: Written beside the tables by ``rsdino.report.tables.build_tables``.
COVERAGE_FILE = "coverage.json"


def _key_text(key: tuple[str, ...]) -> str:
    return "/".join(key)


def table_coverage(published_tables: set[str], rows: list[Row]) -> dict[str, Any]:
    """The counts of the module docstring for one table's ``rows`` and ``published_tables``."""
    expected = {row_key(row) for row in load_seed_tables() if row["table"] in published_tables}
    ours = [c for row in rows if not row.published_only for c in row.cells if c.published]
    paired = {c.published.key for c in ours}
    measured = {c.published.key for c in ours if c.ours is not None}
    published_only = {c.published.key for row in rows if row.published_only for c in row.cells if c.published}
    unplaced = expected - paired - published_only
    return {"published_tables": sorted(published_tables), "published": len(expected),
            "paired": len(paired), "paired_measured": len(measured), "published_only": len(published_only),
            "unplaced": len(unplaced), "unplaced_numbers": sorted(map(_key_text, unplaced))}


def coverage(params: Params, tables: dict[str, list[Row]]) -> dict[str, Any]:
    """``{"tables": {name: table_coverage}, "seeds": {rows, placed, unplaced, unclaimed}}``.

    Args:
        params: validated settings (the tables' columns name their published tables).
        tables: the rows of each table (``rsdino.report.tables.table_rows``).
    """
    from rsdino.report.tables import table_columns

    per_table: dict[str, Any] = {}
    placed: set[tuple[str, ...]] = set()
    shown: set[str] = set()
    for name, rows in tables.items():
        published_tables = {c.published_table for c in table_columns(params, name) if c.published_table}
        shown |= published_tables
        per_table[name] = table_coverage(published_tables, rows)
        placed |= {c.published.key for row in rows for c in row.cells if c.published}
    all_rows = load_seed_tables()
    unclaimed: dict[str, int] = {}
    for row in all_rows:
        if row["table"] not in shown:
            unclaimed[row["table"]] = unclaimed.get(row["table"], 0) + 1
    missing = sorted(_key_text(row_key(row)) for row in all_rows if row_key(row) not in placed)
    return {"tables": per_table,
            "seeds": {"rows": len(all_rows), "placed": len(placed), "unplaced": len(missing),
                      "unplaced_numbers": missing, "unclaimed": dict(sorted(unclaimed.items()))}}


def coverage_lines(report: dict[str, Any]) -> list[str]:
    """One line per table and one for the seeds, for the report step's output."""
    lines = []
    for name, t in report["tables"].items():
        lines.append(f"{name}: {t['published']} published numbers: {t['paired']} beside ours "
                     f"({t['paired_measured']} measured), {t['published_only']} in published-only rows, "
                     f"{t['unplaced']} shown nowhere")
    seeds = report["seeds"]
    unclaimed = ", ".join(f"{k} ({v})" for k, v in seeds["unclaimed"].items()) or "none"
    lines.append(f"seed tables: {seeds['placed']}/{seeds['rows']} published numbers shown; "
                 f"published tables no table shows: {unclaimed}")
    return lines
