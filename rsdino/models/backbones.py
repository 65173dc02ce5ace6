"""Build, run, export and reload backbones from the catalogue (``rsdino.models.catalog``).

Every backbone is a timm model created with ``pretrained=False`` and ``num_classes=0``. ViTs and Swin
get ``dynamic_img_size=True`` so that one model takes both the global and the local crop sizes.
``convvit_small`` is a timm ViT-S whose patch embedding is a small convolutional stem
(``ConvStemPatchEmbed`` in ``rsdino.models.conv_stem``, after Xiao et al. 2021, "Early Convolutions
Help Transformers See Better").

A model folder (see docs/architecture.md) holds ``model.safetensors`` (plain timm state-dict keys)
and ``model.json`` (how to rebuild the backbone and normalise its inputs), plus timm's ``config.json``
(``rsdino.models.timm_config``), so that ``timm.create_model('local-dir:<folder>', pretrained=True)``
loads it without rsdino. A pretrained variant's
folder holds the teacher backbone; its ``student/`` sub-folder the student backbone, in the same
layout (``backbone_folder``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import timm
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from timm.models.vision_transformer import VisionTransformer
from torch import nn

from rsdino.errors import CheckpointError
from rsdino.io import write_json
from rsdino.models.catalog import backbone_entry
from rsdino.models.conv_stem import ConvStemPatchEmbed
from rsdino.models.folders import BRANCH_FOLDERS, META_FILE, WEIGHTS_FILE, backbone_folder  # noqa: F401
from rsdino.models.timm_config import timm_arguments, write_timm_config
from rsdino.stable_files import save_safetensors

#: Keys ``export_backbone`` requires in its ``meta`` (``bands``, ``method``, ... are added by callers).
REQUIRED_META = ("backbone", "timm_name", "timm_kwargs", "in_chans", "img_size", "drop_path")


def backbone_spec(name: str, in_chans: int, img_size: int, drop_path: float = 0.0,
                  **overrides: Any) -> dict[str, Any]:
    """The JSON-serialisable description of a backbone: the build part of ``model.json``."""
    entry = backbone_entry(name)
    return {"backbone": name, "timm_name": entry.timm_name,
            "timm_kwargs": {**entry.kwargs, **overrides}, "in_chans": int(in_chans),
            "img_size": int(img_size), "drop_path": float(drop_path)}


def build_backbone(name: str, in_chans: int, img_size: int, drop_path: float = 0.0,
                   **overrides: Any) -> nn.Module:
    """Create the catalogue backbone ``name`` as a headless timm model with random weights.

    Args:
        name: A catalogue backbone (``rsdino.models.catalog.BACKBONES``).
        in_chans: Input bands (3, 13, 2, ...).
        img_size: Nominal input size (ViT position embeddings; other sizes are resampled).
        drop_path: Stochastic-depth rate.
        **overrides: timm keyword arguments that replace the catalogue's (``conv_stem=True`` selects
            ``ConvStemPatchEmbed``).
    """
    timm_name, kwargs = timm_arguments(name, in_chans, img_size, drop_path, **overrides)
    if kwargs.pop("conv_stem", False):
        kwargs["embed_layer"] = ConvStemPatchEmbed
    return timm.create_model(timm_name, pretrained=False, **kwargs)


def backbone_features(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Image embeddings ``(B, D)``: the CLS token for ViTs, pooled features for CNNs and Swin.

    A ViT without a class token gives the mean of its patch tokens (prefix tokens such as registers
    are skipped).
    """
    if isinstance(model, VisionTransformer):
        tokens = model.forward_features(x)
        if model.has_class_token:
            return tokens[:, 0]
        return tokens[:, model.num_prefix_tokens:].mean(dim=1)
    return model.forward_head(model.forward_features(x), pre_logits=True)


def embed_dim(model: nn.Module) -> int:
    """Width ``D`` of ``backbone_features(model, x)``."""
    if isinstance(model, VisionTransformer):
        return int(model.embed_dim)
    return int(getattr(model, "head_hidden_size", None) or model.num_features)


def export_backbone(model: nn.Module, out_dir: Path, meta: dict[str, Any]) -> Path:
    """Write ``out_dir/model.safetensors``, ``model.json`` and timm's ``config.json`` atomically.

    Returns the weights' path. ``meta`` must hold at least ``REQUIRED_META`` (``backbone_spec`` gives
    them); the pipeline also adds ``bands``, ``method``, ``variant``, ``mean`` and ``std``, which
    ``config.json`` records as timm's ``pretrained_cfg`` (``rsdino.models.timm_config``).
    """
    missing = [key for key in REQUIRED_META if key not in meta]
    if missing:
        raise ValueError(f"export_backbone: meta lacks {', '.join(missing)}")
    out_dir = Path(out_dir)
    tensors = {key: value.detach().to("cpu").contiguous() for key, value in model.state_dict().items()}
    weights = out_dir / WEIGHTS_FILE
    save_safetensors(tensors, weights, metadata={"format": "pt", "backbone": str(meta["backbone"])})
    write_json(out_dir / META_FILE, meta)
    write_timm_config(out_dir, meta)
    return weights


def load_backbone(model_dir: Path) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the backbone described by ``model_dir/model.json`` and load its weights strictly.

    Returns the model (in eval mode) and the ``model.json`` contents. A missing, unreadable or
    mismatching file raises an error that names it.
    """
    model_dir = Path(model_dir)
    meta_path, weights_path = model_dir / META_FILE, model_dir / WEIGHTS_FILE
    for path in (meta_path, weights_path):
        if not path.is_file():
            raise FileNotFoundError(f"{path}: not found (run `rsdino pretrain` to create it)")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        spec = {key: meta[key] for key in REQUIRED_META}
    except (json.JSONDecodeError, KeyError, TypeError) as error:
        raise CheckpointError(meta_path, f"not a valid model description ({error!r})") from None
    expected = backbone_entry(spec["backbone"]).timm_name
    if spec["timm_name"] != expected:
        raise CheckpointError(meta_path, f"timm_name {spec['timm_name']!r} does not match the catalogue's "
                                         f"{expected!r} for backbone {spec['backbone']!r}")
    model = build_backbone(spec["backbone"], spec["in_chans"], spec["img_size"], spec["drop_path"],
                           **spec["timm_kwargs"])
    try:
        state = load_file(str(weights_path))
    except (SafetensorError, OSError, ValueError) as error:
        raise CheckpointError(weights_path, f"cannot read the weights ({error})") from None
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as error:
        raise CheckpointError(weights_path, f"weights do not fit {spec['backbone']}: {error}") from None
    return model.eval(), meta
