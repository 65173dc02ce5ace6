"""Fusion of Sentinel-1 and Sentinel-2 token sequences into one (multimodal DINOv2).

Both backbones see the same crop boxes, so for ViTs of equal patch size their token sequences
``(B, T, D1)`` and ``(B, T, D2)`` are aligned token by token (CLS with CLS, patch with patch). CNN
backbones give one pooled token each (``T = 1``).
"""

from __future__ import annotations

import torch
from torch import nn


class LinearFusion(nn.Module):
    """Token-wise MLP on the concatenated S1 and S2 tokens (the reference's linear fusion block).

    ``f(a, b) = W2 GELU(LN(W1 [a; b] + c1)) + c2`` with ``W1: (D1 + D2) -> 2 (D1 + D2)`` and
    ``W2: 2 (D1 + D2) -> D``.

    Args:
        s1_dim, s2_dim: Token widths ``D1``, ``D2`` of the two backbones.
        out_dim: Output width ``D``.
    """

    def __init__(self, s1_dim: int, s2_dim: int, out_dim: int) -> None:
        super().__init__()
        total = s1_dim + s2_dim
        self.net = nn.Sequential(nn.Linear(total, 2 * total), nn.LayerNorm(2 * total), nn.GELU(),
                                 nn.Linear(2 * total, out_dim))

    def forward(self, s1: torch.Tensor, s2: torch.Tensor) -> torch.Tensor:
        """``(B, T, D1), (B, T, D2) -> (B, T, D)``."""
        if s1.shape[:-1] != s2.shape[:-1]:
            raise ValueError(f"S1 tokens {tuple(s1.shape)} and S2 tokens {tuple(s2.shape)} are not aligned")
        return self.net(torch.cat([s1, s2], dim=-1))


class CrossAttentionFusion(nn.Module):
    """S1 tokens attend to S2 tokens: a stack of Transformer decoder layers without causal masking.

    Each layer: ``q = q + SelfAttn(LN(q))``, ``q = q + CrossAttn(LN(q), kv)``, ``q = q + MLP(LN(q))``
    (pre-norm ``nn.TransformerDecoderLayer``), with ``q`` the S1 tokens projected to ``D`` and ``kv`` the
    S2 tokens projected to ``D``; a final LayerNorm.

    Args:
        s1_dim, s2_dim: Token widths of the two backbones.
        out_dim: Width ``D`` of the fused tokens.
        n_heads: Attention heads (4 in the spec).
        n_layers: Decoder layers (6 in the spec).
    """

    def __init__(self, s1_dim: int, s2_dim: int, out_dim: int, n_heads: int = 4, n_layers: int = 6) -> None:
        super().__init__()
        if out_dim % n_heads:
            raise ValueError(f"fused width {out_dim} is not divisible by {n_heads} heads")
        self.query = nn.Linear(s1_dim, out_dim)
        self.memory = nn.Linear(s2_dim, out_dim)
        layer = nn.TransformerDecoderLayer(out_dim, n_heads, dim_feedforward=4 * out_dim, dropout=0.0,
                                           activation="gelu", batch_first=True, norm_first=True)
        self.layers = nn.TransformerDecoder(layer, n_layers, norm=nn.LayerNorm(out_dim))

    def forward(self, s1: torch.Tensor, s2: torch.Tensor) -> torch.Tensor:
        """``(B, T1, D1), (B, T2, D2) -> (B, T1, D)``."""
        return self.layers(self.query(s1), self.memory(s2))


FUSIONS: dict[str, type[nn.Module]] = {"linear": LinearFusion, "cross_attention": CrossAttentionFusion}
