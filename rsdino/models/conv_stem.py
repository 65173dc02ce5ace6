"""ConvViT-S's convolutional stem, standalone: this file imports only torch and timm.

``rsdino export`` and every ConvViT model folder carry a copy of this file (``convvit_stem.py``), so
that the folder loads without rsdino:

    import sys; sys.path.insert(0, "<folder>")
    from convvit_stem import create_model
    model = create_model("<folder>")   # timm.create_model('local-dir:<folder>', ..., embed_layer=...)

Why a file at all: timm rebuilds a ``local-dir:`` model from ``config.json``, whose ``model_args``
are JSON, and a ViT's ``embed_layer`` is a class that JSON cannot name. timm registers no ViT whose
convolutional stem is set by JSON arguments (its one conv-stem ViT, ``vit_base_mci_224``, fixes
widths 192-192-768, strides 4-2-2 and GELU), so this stem (3x3 stride-2 convolutions, BatchNorm,
ReLU, widths doubling to ``embed_dim``) cannot be expressed as ``model_args``.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import timm
from timm.layers import PatchEmbed, to_2tuple
from torch import nn


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
        if patch_size is not None and tuple(to_2tuple(patch_size)) != self.patch_size:
            raise ValueError("the convolutional stem cannot change its patch size")
        super().set_input_size(img_size=img_size)


def create_model(folder: str | Path, **kwargs: Any) -> nn.Module:
    """The ConvViT backbone saved in ``folder`` (``config.json`` + ``model.safetensors``), weights loaded.

    ``timm.create_model('local-dir:<folder>', pretrained=True, embed_layer=ConvStemPatchEmbed)``;
    ``kwargs`` go to ``timm.create_model`` too.
    """
    kwargs.setdefault("embed_layer", ConvStemPatchEmbed)
    return timm.create_model(f"local-dir:{Path(folder).resolve()}", pretrained=True, **kwargs)
