"""The seeds' published numbers (``data/seed_tables.csv``; see ``data/README.md`` for its sources).

A number is keyed by ``(table, model, arch, pretrain_data, dataset, metric)``, and, where one table
holds the same key under two protocols (DINO-MC's kNN and linear columns, SatDINO's segmentation at
224 and 512), by ``protocol`` too.
"""

from __future__ import annotations

import csv
import functools
from dataclasses import dataclass
from pathlib import Path

#: The CSV shipped with the package.
SEED_TABLES = Path(__file__).parent / "data" / "seed_tables.csv"
COLUMNS = ("source", "table", "model", "arch", "pretrain_data", "protocol", "dataset", "metric",
           "value", "note")
#: The columns that identify one published number (one row of the CSV).
KEY_COLUMNS = ("table", "model", "arch", "pretrain_data", "protocol", "dataset", "metric")


@dataclass(frozen=True)
class PublishedValue:
    """One published number and where it comes from."""

    value: float
    source: str
    protocol: str
    note: str = ""
    key: tuple[str, ...] = ()  # the row's KEY_COLUMNS values (``row_key``)


def row_key(row: dict[str, str]) -> tuple[str, ...]:
    """The identity of one published number: its ``KEY_COLUMNS`` values."""
    return tuple(row[column] for column in KEY_COLUMNS)


class AmbiguousPublishedValue(LookupError):
    """Several published numbers match a key; pass ``protocol`` to choose one."""


@functools.cache
def load_seed_tables(path: Path = SEED_TABLES) -> tuple[dict[str, str], ...]:
    """All rows of the published-numbers CSV (strings), checked for the expected columns."""
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        if tuple(reader.fieldnames or ()) != COLUMNS:
            raise ValueError(f"{path}: expected columns {', '.join(COLUMNS)}, got {reader.fieldnames}")
        return tuple(reader)


def lookup_entry(table: str, model: str, arch: str, pretrain_data: str, dataset: str, metric: str,
                 protocol: str | None = None, *, path: Path = SEED_TABLES) -> PublishedValue | None:
    """The published number for a key, or ``None`` when the seeds do not have it.

    Raises ``AmbiguousPublishedValue`` when several protocols match and ``protocol`` is not given.
    """
    key = {"table": table, "model": model, "arch": arch, "pretrain_data": pretrain_data,
           "dataset": dataset, "metric": metric}
    if protocol is not None:
        key["protocol"] = protocol
    rows = [row for row in load_seed_tables(path) if all(row[k] == v for k, v in key.items())]
    if not rows:
        return None
    if len(rows) > 1:
        protocols = ", ".join(row["protocol"] for row in rows)
        raise AmbiguousPublishedValue(f"{path}: {len(rows)} published values for {key} "
                                      f"(protocols {protocols}); choose one with protocol=")
    row = rows[0]
    return PublishedValue(float(row["value"]), row["source"], row["protocol"], row["note"], row_key(row))


def lookup(table: str, model: str, arch: str, pretrain_data: str, dataset: str, metric: str,
           protocol: str | None = None) -> tuple[float, str] | None:
    """``(value, source seed file)`` of a published number, or ``None``; see ``lookup_entry``."""
    entry = lookup_entry(table, model, arch, pretrain_data, dataset, metric, protocol)
    return None if entry is None else (entry.value, entry.source)
