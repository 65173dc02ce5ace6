"""Preflight: what would fail after pretraining, checked when the settings load (seconds, no torch).

A full-scale run pretrains for days before its evaluations start; a setting that makes an evaluation
fail must stop the plan instead. ``preflight(params)`` checks the selected scale's variants and
evaluations and returns one line per problem, naming the variant and/or the evaluation:

* bands, by name (``rsdino.data.bands``): a variant's ``input_bands`` exist in its pretraining data,
  and every evaluation dataset has every band each of its variants trains on;
* sizes: every crop of a ViT without ``dynamic_img_pad`` is a multiple of its patch, and so is the
  image size of every evaluation of it (and every tile size a dense evaluation uses);
* protocols against backbone kinds: a protocol whose record (``rsdino.config.protocols``) says
  ``vit_only`` (``analyses``: ViT attention and patch tokens; segmentation heads: a ViT's patch grid)
  needs a ViT;
* the data a method or protocol needs, read from each task's record (``rsdino.data.tasks``):
  temporal views (``crops.temporal``, DINO-TP) need items that always carry a date series, a
  multimodal method (its record in ``rsdino.config.methods``) S1/S2 pairs, an evaluation labels of
  the kind its protocol's record names (``labels``);
* batch sizes against split sizes, for the datasets already prepared with today's settings
  (``<data>/prepared/<name>``): a pretraining batch larger than the training split gives no step
  at all, and a network trained on one item meets BatchNorm with a batch of one.

``load_params`` runs it for the selected scale and raises ``ParamsError`` with these lines.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from rsdino.config.methods import METHODS
from rsdino.config.protocols import PROTOCOLS
from rsdino.data.bands import BandMismatchError, match_bands
from rsdino.data.tasks import TASKS, tasks_where
from rsdino.models.catalog import backbone_entry


def trained_bands(params: Any, variant_name: str) -> list[str]:
    """The bands a variant's exported backbone reads: its ``input_bands``, else its data's (S2 part)."""
    variant = params.variants[variant_name]
    bands = list(variant.input_bands or params.datasets[variant.pretrain_data].bands)
    if METHODS[variant.method].multimodal:
        bands = bands[variant.multimodal.s1_bands:]
    return bands


def _patch(variant: Any) -> tuple[int | None, bool]:
    """(patch size, whether crops must be multiples of it) of a variant's backbone."""
    entry = backbone_entry(variant.backbone)
    patch = variant.backbone_kwargs.get("patch_size", entry.patch_size)
    strict = entry.family == "vit" and not variant.backbone_kwargs.get("dynamic_img_pad", False)
    return patch, strict


def _split_sizes(params: Any, dataset: str) -> dict[str, int]:
    """``{split: items}`` of a prepared dataset (its ``<split>.txt`` lines or ``<split>.json`` list).

    Empty when the dataset is not prepared, or was prepared with other settings than today's (its
    ``params.resolved.yaml``): that folder is about to be prepared again.
    """
    import yaml

    folder = Path(params.paths.data) / "prepared" / dataset
    try:
        made_with = yaml.safe_load((folder / "params.resolved.yaml").read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return {}
    if not isinstance(made_with, dict) or \
            made_with.get("dataset") != params.resolved_for(dataset=dataset)["dataset"]:
        return {}
    sizes = {}
    for split in ("train", "test"):
        try:
            if (folder / f"{split}.txt").is_file():
                lines = (folder / f"{split}.txt").read_text(encoding="utf-8").splitlines()
                sizes[split] = sum(1 for line in lines if line.strip())
            elif (folder / f"{split}.json").is_file():
                items = json.loads((folder / f"{split}.json").read_text(encoding="utf-8"))
                if isinstance(items, list):
                    sizes[split] = len(items)
        except (OSError, ValueError):
            continue
    return sizes


def _variant_problems(params: Any, name: str) -> Iterator[str]:
    variant = params.variants[name]
    data = params.datasets[variant.pretrain_data]
    where = f"variants.{name}"
    if variant.input_bands is not None:
        try:
            match_bands(variant.input_bands, data.bands, available_aliases=data.band_aliases)
        except BandMismatchError:
            yield (f"{where}.input_bands: {variant.input_bands} are not all bands of its pretraining data "
                   f"{variant.pretrain_data} {data.bands}")
    if variant.weights is not None:  # released weights: imported, never trained (no crops, no batches)
        return
    patch, strict = _patch(variant)
    crops = variant.crops
    sizes = sorted({crops.global_size, *crops.local_sizes_or_default()})
    if strict and patch and any(size % patch for size in sizes):
        yield (f"{where}.crops: crop sizes {sizes} are not multiples of the patch size {patch} of "
               f"{variant.backbone} (or set backbone_kwargs.dynamic_img_pad: true)")
    if crops.temporal and TASKS[data.task].series != "always":
        yield (f"{where}.crops.temporal: temporal views need a {' or '.join(tasks_where(series='always'))} "
               f"dataset; {variant.pretrain_data} is {data.task}")
    if METHODS[variant.method].multimodal and not TASKS[data.task].s1s2:
        yield f"{where}: method {variant.method} needs S1/S2 pairs; {variant.pretrain_data} is {data.task}"
    n_train = _split_sizes(params, variant.pretrain_data).get("train")
    if n_train is not None and variant.optim.batch_size > n_train:
        yield (f"{where}.optim.batch_size: {variant.optim.batch_size} is larger than the training split of "
               f"{variant.pretrain_data} ({n_train} items): no full batch, no step")


def _evaluation_problems(params: Any, name: str) -> Iterator[str]:
    evaluation = params.evaluations[name]
    data = params.datasets[evaluation.dataset]
    where = f"evaluations.{name}"
    protocol = PROTOCOLS[evaluation.protocol]
    if TASKS[data.task].labels != protocol.labels:
        tasks = tasks_where(labels=protocol.labels)
        yield (f"{where}: protocol {evaluation.protocol} needs a {' or '.join(tasks)} dataset (labels); "
               f"{evaluation.dataset} is {data.task}")
    size = getattr(evaluation, "image_size", None)
    if protocol.tiled and size not in data.tile_sizes and TASKS[data.task].tiled:
        yield (f"{where}.image_size: {size} is not one of the tile sizes {data.tile_sizes} of "
               f"{evaluation.dataset} (datasets.{evaluation.dataset}.tile_sizes)")
    n_train = _split_sizes(params, evaluation.dataset).get("train")
    fraction = getattr(evaluation, "train_fraction", 1.0)
    if n_train is not None and protocol.trains and round(fraction * n_train) < 2:
        yield (f"{where}: trains a network on {round(fraction * n_train)} item(s) of {evaluation.dataset} "
               f"({fraction:g} of {n_train}); BatchNorm needs batches of at least 2")
    for variant_name in evaluation.variants:
        variant = params.variants[variant_name]
        pair = f"{where} on variants.{variant_name}"
        pretrain = params.datasets[variant.pretrain_data]
        try:
            match_bands(trained_bands(params, variant_name), data.bands, available_aliases=data.band_aliases,
                        trained_aliases=pretrain.band_aliases)
        except BandMismatchError as error:
            yield f"{pair}: {evaluation.dataset}: {error}"
        patch, strict = _patch(variant)
        if strict and patch and size and size % patch:
            yield (f"{pair}: image_size {size} is not a multiple of the patch size {patch} of "
                   f"{variant.backbone}")
        if protocol.vit_only and backbone_entry(variant.backbone).family != "vit":
            yield (f"{pair}: protocol {evaluation.protocol} needs a ViT (patch tokens), "
                   f"{variant.backbone} is a {backbone_entry(variant.backbone).family}")


def preflight(params: Any) -> list[str]:
    """One line per problem of the selected scale that would only show after pretraining (module doc)."""
    problems: list[str] = []
    for name in params.selected_variants():
        problems += _variant_problems(params, name)
    for name in params.selected_evaluations():
        problems += _evaluation_problems(params, name)
    return list(dict.fromkeys(problems))
