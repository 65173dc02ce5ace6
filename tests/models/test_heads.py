"""The DINO head: shapes, L2 bottleneck, weight-normalised prototypes."""

from __future__ import annotations

import pytest
import torch

from rsdino.models.heads import DINOHead


@pytest.mark.parametrize("n_layers", [1, 2, 3])
def test_shapes_and_layer_count(n_layers: int) -> None:
    head = DINOHead(16, 10, hidden_dim=32, bottleneck_dim=8, n_layers=n_layers)
    assert head(torch.randn(4, 16)).shape == (4, 10)
    assert sum(isinstance(m, torch.nn.Linear) for m in head.mlp) == n_layers


def test_frozen_magnitude_makes_outputs_cosine_similarities() -> None:
    head = DINOHead(16, 10, hidden_dim=32, bottleneck_dim=8, norm_last_layer=True)
    magnitude = head.last_layer.parametrizations.weight.original0
    assert magnitude.shape == (10, 1) and not magnitude.requires_grad
    assert torch.allclose(head.last_layer.weight.norm(dim=1), torch.ones(10))
    assert head(torch.randn(5, 16)).abs().max() <= 1 + 1e-5


def test_magnitude_trains_without_norm_last_layer() -> None:
    head = DINOHead(16, 10, hidden_dim=32, bottleneck_dim=8, norm_last_layer=False)
    head(torch.randn(3, 16)).sum().backward()
    assert head.last_layer.parametrizations.weight.original0.grad is not None


def test_zero_layers_are_refused() -> None:
    with pytest.raises(ValueError, match="n_layers"):
        DINOHead(16, 10, n_layers=0)
