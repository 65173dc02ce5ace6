"""timm / Hugging Face ``config.json`` for a model folder, so that timm loads it without rsdino.

``timm.create_model('local-dir:<folder>', pretrained=True)`` reads ``<folder>/config.json`` and
``<folder>/model.safetensors``: it builds ``config["architecture"]`` with ``config["model_args"]`` as
keyword arguments (``timm.models._hub.load_model_config_from_path``), turns ``pretrained_cfg`` into a
``timm.models.PretrainedCfg`` (which refuses unknown keys, so band names go into its ``notes`` and,
as a list, into the top-level ``band_names``) and loads the weights strictly. ``model.safetensors``
already holds plain timm state-dict keys (``rsdino.models.backbones.export_backbone``).

``pretrained_cfg.mean`` / ``std`` are per band, in the data's native units (reflectance, dB, ...):
standardise ``(x - mean[c]) / std[c]`` on the raw values, not on images scaled to [0, 1].

ConvViT-S (``conv_stem``) is the exception: its stem is not a timm layer that JSON arguments can
select (see ``rsdino.models.conv_stem``), so its folder also carries ``convvit_stem.py``, a copy of
that module, whose ``create_model(folder)`` passes the stem to ``timm.create_model`` as
``embed_layer``; ``config.json`` names the file in ``loader``.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from rsdino.io import atomic_path, write_json
from rsdino.models.catalog import backbone_entry

TIMM_CONFIG_FILE = "config.json"
#: The stand-alone loader of a ConvViT folder (a copy of ``rsdino/models/conv_stem.py``).
CONVVIT_LOADER_FILE = "convvit_stem.py"
#: ``timm_arguments`` keys left out of ``model_args``: training-only or not JSON.
_NOT_MODEL_ARGS = ("drop_path_rate", "conv_stem")


def timm_arguments(name: str, in_chans: int, img_size: int, drop_path: float = 0.0,
                   **overrides: Any) -> tuple[str, dict[str, Any]]:
    """The timm model name and the ``timm.create_model`` keyword arguments of catalogue backbone ``name``.

    ViTs and Swin get ``img_size`` and ``dynamic_img_size=True`` unless ``overrides`` set them; every
    backbone ``num_classes=0``. The arguments are JSON values (``conv_stem`` stays a flag, which
    ``rsdino.models.backbones.build_backbone`` turns into ``embed_layer``), so ``config.json``
    records exactly what ``build_backbone`` builds.
    """
    entry = backbone_entry(name)
    kwargs = {**entry.kwargs, **overrides}
    if entry.family in ("vit", "swin"):
        kwargs.setdefault("img_size", img_size)
        kwargs.setdefault("dynamic_img_size", True)
    kwargs.update(num_classes=0, in_chans=int(in_chans), drop_path_rate=float(drop_path))
    return entry.timm_name, kwargs


def timm_config(meta: dict[str, Any]) -> dict[str, Any]:
    """The ``config.json`` of a backbone described by ``meta`` (the contents of ``model.json``)."""
    from timm.models import get_pretrained_cfg  # timm's own defaults for the architecture

    architecture, kwargs = timm_arguments(meta["backbone"], meta["in_chans"], meta["img_size"],
                                          **meta["timm_kwargs"])
    model_args = {key: value for key, value in kwargs.items() if key not in _NOT_MODEL_ARGS}
    size = int(model_args.get("img_size", meta["img_size"]))
    bands = [str(band) for band in meta.get("bands", [])]
    base = get_pretrained_cfg(architecture)
    pretrained_cfg: dict[str, Any] = {
        "input_size": [int(meta["in_chans"]), size, size],
        "fixed_input_size": not model_args.get("dynamic_img_size", False)
        and backbone_entry(meta["backbone"]).family != "cnn",
        "interpolation": "bicubic", "crop_pct": 1.0, "num_classes": 0,
        "first_conv": base.first_conv if base else None, "classifier": base.classifier if base else None,
        "description": (f"rsdino {meta.get('method', '?')} {meta.get('branch', 'teacher')} backbone "
                        f"({meta['backbone']}) of variant {meta.get('variant', '?')}"),
    }
    for key in ("mean", "std"):
        if key in meta:
            pretrained_cfg[key] = [float(v) for v in meta[key]]
    notes = ["mean/std are per band in the data's native units: standardise raw values, "
             "do not scale to [0, 1]"]
    if bands:
        notes.insert(0, "bands: " + ", ".join(bands))
    pretrained_cfg["notes"] = notes
    config: dict[str, Any] = {"architecture": architecture, "num_classes": 0,
                              "model_args": model_args, "pretrained_cfg": pretrained_cfg,
                              "band_names": bands}
    if kwargs.get("conv_stem"):
        config["loader"] = (f"{CONVVIT_LOADER_FILE}: timm cannot build this stem from config.json; "
                            f"use `from convvit_stem import create_model; create_model(folder)`")
    return config


def write_timm_config(out_dir: Path, meta: dict[str, Any]) -> Path:
    """Write ``out_dir/config.json`` (and ConvViT's ``convvit_stem.py``) atomically; return the former."""
    config = timm_config(meta)
    out_dir = Path(out_dir)
    if "loader" in config:
        source = Path(__file__).with_name("conv_stem.py")
        with atomic_path(out_dir / CONVVIT_LOADER_FILE, suffix=".py") as tmp:
            shutil.copyfile(source, tmp)
    return write_json(out_dir / TIMM_CONFIG_FILE, config)
