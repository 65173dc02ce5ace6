"""Build, run, export and reload backbones from the catalogue (``rsdino.models.catalog``).

Every backbone is a timm model created with ``pretrained=False`` and ``num_classes=0``. ViTs and Swin
get ``dynamic_img_size=True`` so that one model takes both the global and the local crop sizes.
``convvit_small`` is a timm ViT-S whose patch embedding is a small convolutional stem
(``ConvStemPatchEmbed``, after Xiao et al. 2021, "Early Convolutions Help Transformers See Better").

A model folder (see docs/architecture.md) holds ``model.safetensors`` (plain timm state-dict keys)
and ``model.json`` (how to rebuild the backbone and normalise its inputs). A pretrained variant's
folder holds the teacher backbone; its ``student/`` sub-folder the student backbone, in the same
layout (``backbone_folder``).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import timm
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from timm.layers import PatchEmbed
from timm.models.vision_transformer import VisionTransformer
from torch import nn

from rsdino.io import atomic_path, write_json
from rsdino.models.catalog import BACKBONES
from rsdino.models.folders import BRANCH_FOLDERS, META_FILE, WEIGHTS_FILE, backbone_folder  # noqa: F401

#: Keys ``export_backbone`` requires in its ``meta`` (``bands``, ``method``, ... are added by callers).
REQUIRED_META = ("backbone", "timm_name", "timm_kwargs", "in_chans", "img_size", "drop_path")


class ConvStemPatchEmbed(PatchEmbed):
    """Patch embedding by a convolutional stem instead of one strided ``patch x patch`` convolution.

    ``log2(patch_size)`` blocks of (3x3 convolution, stride 2, no bias) - BatchNorm - ReLU, with
    widths doubling up to ``embed_dim`` (48-96-192-384 for ViT-S/16), then a 1x1 convolution to
    ``embed_dim``: the patch projection. The output grid is the same as for ``PatchEmbed``, so the
    rest of the ViT (position embeddings, dynamic image size) is unchanged.

    Args:
        img_size: Nominal input size (position embeddings are made for its grid).
        patch_size: Total stride of the stem; a power of two, at least 2.
        in_chans: Input bands.
        embed_dim: Token width.
        **kwargs: Passed to ``timm.layers.PatchEmbed`` (``strict_img_size``, ``output_fmt``, ...).
    """

    def __init__(self, img_size: int | tuple[int, int] | None = 224, patch_size: int = 16,
                 in_chans: int = 3, embed_dim: int = 768, **kwargs: Any) -> None:
        super().__init__(img_size=img_size, patch_size=patch_size, in_chans=in_chans,
                         embed_dim=embed_dim, **kwargs)
        n_blocks = int(round(math.log2(patch_size))) if patch_size > 1 else 0
        if patch_size < 2 or 2 ** n_blocks != patch_size:
            raise ValueError(f"a convolutional stem needs a power-of-two patch size, got {patch_size}")
        bias = self.proj.bias is not None
        layers: list[nn.Module] = []
        width_in = in_chans
        for i in range(n_blocks):
            width = max(embed_dim >> (n_blocks - 1 - i), 8)
            layers += [nn.Conv2d(width_in, width, 3, stride=2, padding=1, bias=False),
                       nn.BatchNorm2d(width), nn.ReLU(inplace=True)]
            width_in = width
        layers.append(nn.Conv2d(width_in, embed_dim, 1, bias=bias))
        self.proj = nn.Sequential(*layers)

    def set_input_size(self, img_size: Any = None, patch_size: Any = None) -> None:
        """Change the nominal image size; the stem's stride (patch size) cannot change."""
        if patch_size is not None and tuple(timm.layers.to_2tuple(patch_size)) != self.patch_size:
            raise ValueError("the convolutional stem cannot change its patch size")
        super().set_input_size(img_size=img_size)


def _catalog_entry(name: str) -> dict[str, Any]:
    if name not in BACKBONES:
        raise ValueError(f"unknown backbone {name!r}; known: {', '.join(BACKBONES)}")
    return BACKBONES[name]


def backbone_spec(name: str, in_chans: int, img_size: int, drop_path: float = 0.0,
                  **overrides: Any) -> dict[str, Any]:
    """The JSON-serialisable description of a backbone: the build part of ``model.json``."""
    entry = _catalog_entry(name)
    return {"backbone": name, "timm_name": entry["timm_name"],
            "timm_kwargs": {**entry["kwargs"], **overrides}, "in_chans": int(in_chans),
            "img_size": int(img_size), "drop_path": float(drop_path)}


def build_backbone(name: str, in_chans: int, img_size: int, drop_path: float = 0.0,
                   **overrides: Any) -> nn.Module:
    """Create the catalogue backbone ``name`` as a headless timm model with random weights.

    Args:
        name: A key of ``rsdino.models.catalog.BACKBONES``.
        in_chans: Input bands (3, 13, 2, ...).
        img_size: Nominal input size (ViT position embeddings; other sizes are resampled).
        drop_path: Stochastic-depth rate.
        **overrides: timm keyword arguments that replace the catalogue's (``conv_stem=True`` selects
            ``ConvStemPatchEmbed``).
    """
    entry = _catalog_entry(name)
    kwargs = {**entry["kwargs"], **overrides}
    if kwargs.pop("conv_stem", False):
        kwargs["embed_layer"] = ConvStemPatchEmbed
    if entry["family"] in ("vit", "swin"):
        kwargs.setdefault("img_size", img_size)
        kwargs.setdefault("dynamic_img_size", True)
    return timm.create_model(entry["timm_name"], pretrained=False, num_classes=0, in_chans=in_chans,
                             drop_path_rate=drop_path, **kwargs)


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
    """Write ``out_dir/model.safetensors`` and ``out_dir/model.json`` atomically; return the former.

    ``meta`` must hold at least ``REQUIRED_META`` (``backbone_spec`` gives them); the pipeline also
    adds ``bands``, ``method``, ``variant``, ``mean`` and ``std``.
    """
    missing = [key for key in REQUIRED_META if key not in meta]
    if missing:
        raise ValueError(f"export_backbone: meta lacks {', '.join(missing)}")
    out_dir = Path(out_dir)
    tensors = {key: value.detach().to("cpu").contiguous() for key, value in model.state_dict().items()}
    weights = out_dir / WEIGHTS_FILE
    with atomic_path(weights, suffix=".safetensors") as tmp:
        save_file(tensors, str(tmp), metadata={"format": "pt", "backbone": str(meta["backbone"])})
    write_json(out_dir / META_FILE, meta)
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
        raise ValueError(f"{meta_path}: not a valid model description ({error!r})") from None
    expected = _catalog_entry(spec["backbone"])["timm_name"]
    if spec["timm_name"] != expected:
        raise ValueError(f"{meta_path}: timm_name {spec['timm_name']!r} does not match the catalogue's "
                         f"{expected!r} for backbone {spec['backbone']!r}")
    model = build_backbone(spec["backbone"], spec["in_chans"], spec["img_size"], spec["drop_path"],
                           **spec["timm_kwargs"])
    try:
        state = load_file(str(weights_path))
    except (SafetensorError, OSError, ValueError) as error:
        raise ValueError(f"{weights_path}: cannot read the weights ({error})") from None
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as error:
        raise ValueError(f"{weights_path}: weights do not fit {spec['backbone']}: {error}") from None
    return model.eval(), meta
