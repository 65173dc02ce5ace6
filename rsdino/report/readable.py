"""How a results table reads: sections by protocol, narrow rows, sources named by paper.

A seed's table puts one protocol (and metric) per block, as its paper does (kNN, then linear probe,
then fine-tuning ...). ``sections`` splits a table's columns the same way; within a section each row
is one (model, dataset) cell with our value, the published value, the random-init baseline and
ours minus random init side by side, so that no row grows with the number of datasets. A cell where
pretraining does not beat random init is marked ``NOT_ABOVE_RANDOM``.
"""

from __future__ import annotations

from collections.abc import Iterable

from rsdino.config.protocols import PROTOCOLS

#: The papers behind the seeds' published numbers: seed file -> (title, arXiv id, note).
PAPERS: dict[str, tuple[str, str, str]] = {
    "000_3c1603fd0c612d3c.txt": (
        "DINOv2: Learning Robust Visual Features without Supervision", "2304.07193",
        "numbers from the remote-sensing reimplementation's write-up (seed 000)"),
    "001_49444cfd8d3d6406.txt": (
        "DINO-MC: Self-supervised Contrastive Learning for Remote Sensing Imagery with Multi-sized "
        "Local Crops", "2303.06670", "seed 001"),
    "004_2176149f1fd477e5.txt": (
        "SatDINO: A Deep Dive into Self-Supervised Pretraining for Remote Sensing", "2508.21402",
        "seed 004"),
}

#: The mark of a cell where the pretrained model does not beat its random-init baseline.
NOT_ABOVE_RANDOM = "✗"


def cite(source: str) -> str:
    """A seed file named by its paper: ``"<title>" (arXiv:<id>; <note>, file <source>)``."""
    if source not in PAPERS:
        return f"seed `{source}`"
    title, arxiv, note = PAPERS[source]
    return f"\"{title}\" (arXiv:{arxiv}; {note}, file `{source}`)"


def protocol_name(protocol: str) -> str:
    """The heading name of a protocol: its record's ``title`` (``rsdino.config.protocols``), else its name."""
    record = PROTOCOLS.get(protocol)
    return record.title if record is not None else protocol


def beats_random_init(ours: float | None, random_init: float | None) -> bool | None:
    """Whether ``ours > random_init`` (None when either is missing)."""
    if ours is None or random_init is None or ours != ours or random_init != random_init:
        return None
    return ours > random_init


def margin(ours: float | None, random_init: float | None) -> str:
    """``ours - random_init`` signed, with ``NOT_ABOVE_RANDOM`` when it is not positive; "" if unknown."""
    beats = beats_random_init(ours, random_init)
    if beats is None:
        return ""
    text = f"{ours - random_init:+.2f}"  # type: ignore[operator]
    return text if beats else f"**{text} {NOT_ABOVE_RANDOM}**"


def sections(keys: Iterable[tuple[str, str, str | None]]) -> dict[tuple[str, str, str | None], list[int]]:
    """Column indices grouped by ``(protocol, metric, published table)``, in first-seen order."""
    out: dict[tuple[str, str, str | None], list[int]] = {}
    for i, key in enumerate(keys):
        out.setdefault(key, []).append(i)
    return out
