"""The backbone catalogue: our names -> timm model names and keyword arguments.

Pure data (no torch import), so that the settings validator and the Snakemake DAG can check names
without loading torch. Each backbone is one ``register_backbone`` call, which files a frozen
``BackboneEntry`` under its name in ``BACKBONES``; readers go through ``backbone_entry(name)`` (an
unknown name is one clear error). ``rsdino.models.backbones.build_backbone`` turns an entry into a
model. Every entry is built with ``pretrained=False``; ``in_chans`` and image size come from the data.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal

#: How a backbone produces tokens: ViTs have patch tokens (iBOT, GSD, dense protocols), Swin has
#: windows of patches, CNNs have feature maps.
Family = Literal["vit", "cnn", "swin"]


@dataclass(frozen=True)
class BackboneEntry:
    """One catalogue backbone.

    Args:
        name: Our name (the ``backbone`` of a variant, ``model.json``'s ``backbone``).
        timm_name: The ``timm.create_model`` architecture it is built from.
        family: ``vit``, ``cnn`` or ``swin``.
        patch_size: Pixels per patch side (``None`` for CNNs); a variant's
            ``backbone_kwargs.patch_size`` overrides it.
        kwargs: ``timm.create_model`` keyword arguments that make ``timm_name`` this backbone
            (read-only; ``conv_stem: True`` selects ``rsdino.models.conv_stem``).
    """

    name: str
    timm_name: str
    family: Family
    patch_size: int | None
    kwargs: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}), hash=False)


#: name -> entry, in registration order (``register_backbone`` fills it).
BACKBONES: dict[str, BackboneEntry] = {}


def register_backbone(name: str, timm_name: str, *, family: Family, patch_size: int | None,
                      kwargs: Mapping[str, Any] | None = None) -> BackboneEntry:
    """File the backbone ``name`` (built as timm's ``timm_name`` with ``kwargs``) in ``BACKBONES``."""
    if name in BACKBONES:
        raise ValueError(f"backbone {name!r} is registered twice")
    if family not in ("vit", "cnn", "swin"):
        raise ValueError(f"backbone {name!r}: unknown family {family!r} (vit, cnn or swin)")
    entry = BackboneEntry(name, timm_name, family, patch_size, MappingProxyType(dict(kwargs or {})))
    BACKBONES[name] = entry
    return entry


def backbone_entry(name: str) -> BackboneEntry:
    """The catalogue entry of ``name``; ``ValueError`` naming the known backbones if there is none."""
    try:
        return BACKBONES[name]
    except KeyError:
        raise ValueError(f"unknown backbone {name!r}; known: {', '.join(BACKBONES)}") from None


# A tiny ViT for the CPU demo and the tests (timm's ViT-Ti with 8 px patches, 4 blocks).
register_backbone("vit_tiny_patch8", "vit_tiny_patch16_224", family="vit", patch_size=8,
                  kwargs={"patch_size": 8, "depth": 4})
register_backbone("vit_small_patch16", "vit_small_patch16_224", family="vit", patch_size=16)
register_backbone("vit_small_patch8", "vit_small_patch8_224", family="vit", patch_size=8)
register_backbone("vit_base_patch16", "vit_base_patch16_224", family="vit", patch_size=16)
register_backbone("vit_large_patch16", "vit_large_patch16_224", family="vit", patch_size=16)
# ViT-S with a convolutional stem (DINOv2-RS's ConvViT-S, trained with DINO v1).
register_backbone("convvit_small", "vit_small_patch16_224", family="vit", patch_size=16,
                  kwargs={"conv_stem": True})
register_backbone("resnet50", "resnet50", family="cnn", patch_size=None)
register_backbone("wide_resnet50_2", "wide_resnet50_2", family="cnn", patch_size=None)
register_backbone("swin_tiny", "swin_tiny_patch4_window7_224", family="swin", patch_size=4)

