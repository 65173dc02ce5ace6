"""Scales: what one run of the DAG selects, and how a scale can be another one in miniature.

A scale names the variants, evaluations and tables it runs. A scale may instead be ``like`` another
one: it selects exactly the other's entries and changes their settings with ``overrides`` before the
settings are validated, so that the miniature of the full scale (``mini``) has the full scale's
variants, evaluations and tables under their own names, shrunk::

    scales:
      mini:
        like: full
        fake_data: true                     # every dataset is its fake copy (rsdino.data.catalog)
        overrides:
          paths: {data: data/mini}          # a top-level section: merged as it is
          variants:                         # a named section: entries keyed by a selector
            "*": {optim: {epochs: 1}}
            vit_small_patch16: {backbone_kwargs: {embed_dim: 48, depth: 2}}
          evaluations:
            finetune: {epochs: 1}
            "satdino_seg_*_512": {image_size: 64}

A scale's ``like`` copies the other scale's selection only (its ``variants``, ``evaluations``,
``tables`` and ``extra_datasets``, where the scale sets none); the ``like`` of a dataset, variant,
evaluation or table entry is an overlay of that entry (``rsdino.config.overlays``), resolved first.
An override is deep-merged like an overlay (mappings merge key by key; lists and scalars are
replaced). In a named
section (``datasets``, ``variants``, ``evaluations``) each selector applies, in the order written, to
every selected entry it matches: ``*``; a dataset's ``task``, a variant's ``method`` or ``backbone``,
an evaluation's ``protocol``; or a glob on the entry's name. A selector that matches nothing is an
error (a misspelt name would otherwise shrink nothing). Only the entries the scale selects change.

This module works on the raw YAML mapping (before validation), so every override is then validated
like a hand-written setting.
"""

from __future__ import annotations

import fnmatch
from typing import Any

from rsdino.config.overlays import deep_merge, resolve_overlays
from rsdino.data.tasks import DEFAULT_TASK

#: Sections whose entries are keyed by name, and the fields an override selector may match there.
NAMED_SECTIONS: dict[str, tuple[str, ...]] = {
    "datasets": ("task",),
    "variants": ("method", "backbone"),
    "evaluations": ("protocol",),
}


#: What a field a selector matches holds when the entry does not set it.
FIELD_DEFAULTS: dict[str, str] = {"task": DEFAULT_TASK}


def _matches(selector: str, name: str, entry: dict[str, Any], fields: tuple[str, ...]) -> bool:
    if selector == "*" or fnmatch.fnmatchcase(name, selector):
        return True
    return any(entry.get(field, FIELD_DEFAULTS.get(field)) == selector for field in fields)


def _selection(raw: dict[str, Any], scale: dict[str, Any]) -> dict[str, list[str]]:
    """The variant, evaluation and dataset names a scale selects (``Params.selected_*``, on raw YAML)."""
    variants_, evaluations_ = raw.get("variants") or {}, raw.get("evaluations") or {}
    tables_ = raw.get("tables") or {}
    evaluations = list(scale.get("evaluations") or [])
    for table in scale.get("tables") or []:
        evaluations += [e for e in (tables_.get(table) or {}).get("evaluations", []) if e not in evaluations]
    variants = list(scale.get("variants") or [])
    for evaluation in evaluations:
        variants += [v for v in (evaluations_.get(evaluation) or {}).get("variants", []) if v not in variants]
    datasets = [(variants_.get(v) or {}).get("pretrain_data") for v in variants]
    datasets += [(evaluations_.get(e) or {}).get("dataset") for e in evaluations]
    datasets += list(scale.get("extra_datasets") or [])
    return {"variants": variants, "evaluations": evaluations,
            "datasets": [d for d in dict.fromkeys(datasets) if d]}


def resolve_scale(raw: dict[str, Any], name: str) -> dict[str, Any]:
    """The raw settings with scale ``name``'s ``like`` and ``overrides`` applied (see the module docstring).

    The entries written as overlays are merged first (``rsdino.config.overlays.resolve_overlays``): a
    scale selects, and its overrides match, the entries as they resolve.

    Raises:
        ValueError: a ``like`` chain that loops or names an unknown scale, or a selector that matches
            no selected entry (or a bad overlay); the message names the key path.
    """
    raw = resolve_overlays(raw)
    scales = raw.get("scales") or {}
    scale = scales.get(name)
    if not isinstance(scale, dict) or not any(scale.get(k) for k in ("like", "overrides", "fake_data")):
        return raw
    chain = [name]
    base = scale
    while base.get("like"):
        like = base["like"]
        if like in chain or like not in scales or not isinstance(scales[like], dict):
            raise ValueError(f"scales.{chain[-1]}.like: {like!r} is "
                             + ("a loop" if like in chain else "not a scale"))
        chain.append(like)
        base = scales[like]
    selected = {key: base.get(key, []) for key in ("variants", "evaluations", "tables", "extra_datasets")}
    out = dict(raw)
    out["scales"] = {**scales, name: {**scale, **{k: v for k, v in selected.items() if k not in scale}}}
    chosen = _selection(raw, out["scales"][name])
    overrides = scale.get("overrides") or {}
    if scale.get("fake_data"):
        data = deep_merge(raw.get("paths") or {}, overrides.get("paths") or {}).get("data", "data")
        out["datasets"] = with_fake_sources(out.get("datasets") or {}, chosen["datasets"], data)
    for section, override in overrides.items():
        if section in NAMED_SECTIONS:
            out[section] = _override_entries(out.get(section) or {}, override or {}, chosen[section],
                                             NAMED_SECTIONS[section], f"scales.{name}.overrides.{section}")
        else:
            out[section] = deep_merge(out.get(section) or {}, override)
    return out


def _override_entries(entries: dict[str, Any], override: dict[str, Any], names: list[str],
                      fields: tuple[str, ...], where: str) -> dict[str, Any]:
    entries = dict(entries)
    for selector, change in override.items():
        hits = [n for n in names if isinstance(entries.get(n), dict)
                and _matches(str(selector), n, entries[n], fields)]
        if not hits:
            raise ValueError(f"{where}.{selector}: matches no selected entry (a name, a glob, '*' or one of "
                             f"the entries' {' / '.join(fields)})")
        for n in hits:
            entries[n] = deep_merge(entries[n], change or {})
    return entries


def fake_archive_name(name: str, entry: dict[str, Any]) -> str:
    """``<dataset>.<the real archive's suffix>`` (``.zip`` for a dataset downloaded by hand)."""
    source = entry.get("source") or {}
    real = source.get("filename") or str(source.get("url") or "").rstrip("/").split("/")[-1].split("?")[0]
    for suffix in (".tar.gz", ".tgz", ".tar", ".zip"):
        if real.endswith(suffix):
            return f"{name}{suffix}"
    return f"{name}.zip"


def with_fake_sources(datasets: dict[str, Any], names: list[str], data: str) -> dict[str, Any]:
    """The datasets ``names`` with their source replaced by their catalogued fake copy.

    The fake archive (``rsdino.data.catalog``: the real on-disk layout, a few tiny files) is written by
    ``rsdino make-demo`` to ``<data>/demo/<dataset>.<real suffix>`` and downloaded from there through
    the same extraction path as the real archive.
    """
    datasets = dict(datasets)
    for name in names:
        entry = datasets.get(name)
        if not isinstance(entry, dict) or (entry.get("source") or {}).get("generator"):
            continue  # already generated (the demo datasets)
        datasets[name] = {**entry, "source": {"url": f"file://{data}/demo/{fake_archive_name(name, entry)}",
                                              "generator": "catalog"}}
    return datasets
