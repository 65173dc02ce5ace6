"""Projection heads for self-distillation."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import weight_norm


class DINOHead(nn.Module):
    """DINO projection head (Caron et al. 2021, "Emerging Properties in Self-Supervised Vision Transformers").

    ``x (B, in_dim)`` -> MLP -> ``z (B, bottleneck_dim)`` -> ``z / ||z||_2`` -> weight-normalised
    linear layer without bias -> ``(B, out_dim)`` prototype scores (logits before the temperature).

    The MLP is ``n_layers`` linear layers with GELU between them: ``in_dim -> hidden_dim -> ... ->
    bottleneck_dim`` (one layer maps ``in_dim -> bottleneck_dim`` directly).

    The last layer is ``W = g * V / ||V||`` row-wise, by ``torch.nn.utils.parametrizations.weight_norm``
    (``dim=0``): the magnitude ``g`` (shape ``(out_dim, 1)``) is
    ``last_layer.parametrizations.weight.original0`` and the direction ``V`` (``(out_dim,
    bottleneck_dim)``) is ``last_layer.parametrizations.weight.original1``. ``g`` starts at 1; with
    ``norm_last_layer`` it is frozen there, so each prototype is a unit vector and the output is a
    cosine similarity.

    Args:
        in_dim: Backbone embedding width.
        out_dim: Number of prototypes ``K``.
        hidden_dim: Width of the hidden MLP layers.
        bottleneck_dim: Width of the L2-normalised bottleneck.
        n_layers: Number of linear layers in the MLP (at least 1).
        norm_last_layer: Freeze the weight-norm magnitude of the last layer at 1.
    """

    def __init__(self, in_dim: int, out_dim: int, hidden_dim: int = 2048, bottleneck_dim: int = 256,
                 n_layers: int = 3, norm_last_layer: bool = True) -> None:
        super().__init__()
        if n_layers < 1:
            raise ValueError(f"n_layers must be at least 1, got {n_layers}")
        widths = [in_dim] + [hidden_dim] * (n_layers - 1) + [bottleneck_dim]
        layers: list[nn.Module] = []
        for i, (width_in, width_out) in enumerate(zip(widths[:-1], widths[1:], strict=True)):
            if i > 0:
                layers.append(nn.GELU())
            layers.append(nn.Linear(width_in, width_out))
        self.mlp = nn.Sequential(*layers)
        for module in self.mlp.modules():
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=0.02)
                nn.init.zeros_(module.bias)
        self.last_layer = weight_norm(nn.Linear(bottleneck_dim, out_dim, bias=False), dim=0)
        magnitude = self.last_layer.parametrizations.weight.original0
        with torch.no_grad():
            magnitude.fill_(1.0)
        magnitude.requires_grad_(not norm_last_layer)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map embeddings ``(B, in_dim)`` to prototype scores ``(B, out_dim)``."""
        z = F.normalize(self.mlp(x), dim=-1, p=2)
        return self.last_layer(z)
