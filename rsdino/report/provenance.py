"""Provenance columns of a table cell, read from its metrics file.

``PROVENANCE_COLUMNS`` are appended to every line (one per cell) of ``<table>.csv``: the git commit
the evaluation ran at, the version of the data it was evaluated on and of the data the model was
pretrained on (``"md5:<dvc hash>.dir"`` or ``"sha256:<content digest>"``, ``rsdino.data.version``).
With ``mlflow_run_id`` they say which code and which data made the number. A metrics file written
before these were recorded leaves them empty.
"""

from __future__ import annotations

from typing import Any

PROVENANCE_COLUMNS = ("git_commit", "data_version", "pretrain_data_version")


def _version(data: dict[str, Any], role: str) -> str:
    block = data.get("data_version") or {}
    entry = block.get(role) if isinstance(block, dict) else None
    if entry is None:
        return ""
    if not isinstance(entry, dict) or not isinstance(entry.get("version"), str):
        where = f"metrics of evaluation {data.get('evaluation')!r}, variant {data.get('variant')!r}"
        raise ValueError(f"{where}: 'data_version.{role}' must be a mapping with a string 'version'")
    return entry["version"]


def cell_provenance(data: dict[str, Any]) -> dict[str, str]:
    """``{column: text}`` for ``PROVENANCE_COLUMNS`` from one metrics record."""
    return {"git_commit": str(data.get("git_commit") or ""),
            "data_version": _version(data, "evaluation"),
            "pretrain_data_version": _version(data, "pretraining")}
