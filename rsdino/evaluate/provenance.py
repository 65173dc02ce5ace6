"""The data an evaluation read: the ``data_version`` block of its metrics file and MLflow tags.

``data_version`` of a metrics file (docs/architecture.md)::

    {"evaluation": {"dataset": <evaluation dataset>, "version": ..., "dvc_md5": ..., "content_sha256": ...,
                    "source": ...},
     "pretraining": <the same for the data the model was pretrained on, from its model.json> or null}

The evaluation data is versioned now (``rsdino.data.version.data_version`` of the raw folder); the
pretraining data as ``rsdino pretrain`` recorded it in ``model.json`` (``data_version``, written by
``record_model_data_version``) when it trained, which is what the weights came from. A model
without that record (an older export, an external checkpoint) has ``"pretraining": null``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rsdino.data.version import data_version, data_version_tags
from rsdino.io import write_json


def model_data_version(model_dir: Path) -> dict[str, Any] | None:
    """The ``data_version`` recorded in ``model_dir/model.json`` by ``rsdino pretrain``, or None."""
    from rsdino.models.backbones import META_FILE  # torch and timm: only when asked

    path = Path(model_dir) / META_FILE
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None  # the evaluation itself reports an unreadable model
    version = meta.get("data_version") if isinstance(meta, dict) else None
    if version is None:
        return None
    if not isinstance(version, dict) or not isinstance(version.get("version"), str):
        raise ValueError(f"{path}: 'data_version' must be a mapping with a string 'version'")
    return version


def record_model_data_version(model_dir: Path, version: dict[str, Any]) -> Path:
    """Add ``data_version`` (the pretraining data's) to ``model_dir/model.json``; return its path.

    ``rsdino pretrain`` calls it when training has finished (rank 0), so that hashing a large dataset
    does not keep the other ranks of a distributed job waiting; the data is read-only meanwhile.
    """
    from rsdino.models.backbones import META_FILE

    path = Path(model_dir) / META_FILE
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"{path}: not a readable model.json, cannot record the data version ({error})"
                         ) from None
    return write_json(path, {**meta, "data_version": version})


def evaluation_data_version(dataset: str, raw_dir: Path, model_dir: Path) -> dict[str, Any]:
    """The ``data_version`` block of a metrics file (module docstring)."""
    return {"evaluation": {"dataset": dataset, **data_version(raw_dir)},
            "pretraining": model_data_version(model_dir)}


def evaluation_tags(block: dict[str, Any]) -> dict[str, str]:
    """MLflow tags of an evaluation run.

    ``rsdino.data_version.<dataset>``: the data evaluated on; ``rsdino.pretrain_data_version.<dataset>``:
    the data the model was pretrained on (when its model.json says).
    """
    tags = data_version_tags("data_version", block["evaluation"]["dataset"], block["evaluation"])
    pretraining = block.get("pretraining")
    if pretraining:
        tags.update(data_version_tags("pretrain_data_version", str(pretraining.get("dataset")), pretraining))
    return tags
