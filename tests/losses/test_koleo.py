"""The KoLeo loss against explicit loops."""

from __future__ import annotations

import math

import pytest
import torch

from rsdino.losses.koleo import KoLeoLoss


def _hand_koleo(x: list[list[float]], eps: float) -> float:
    """-1/B sum_i log(||z_i - z_nn(i) + eps|| + eps) with z the L2-normalised rows."""
    z = []
    for row in x:
        norm = max(math.sqrt(sum(v * v for v in row)), eps)
        z.append([v / norm for v in row])
    total = 0.0
    for i, zi in enumerate(z):
        best = min(
            (math.sqrt(sum((a - b) ** 2 for a, b in zip(zi, zj, strict=True))), j)
            for j, zj in enumerate(z) if j != i
        )
        zj = z[best[1]]
        d = math.sqrt(sum((a - b + eps) ** 2 for a, b in zip(zi, zj, strict=True)))
        total += math.log(d + eps)
    return -total / len(z)


@pytest.mark.parametrize(("batch", "dim"), [(2, 3), (3, 5), (4, 4)])
def test_loss_equals_the_hand_computed_value(batch: int, dim: int) -> None:
    generator = torch.Generator().manual_seed(batch + dim)
    x = torch.randn(batch, dim, generator=generator, dtype=torch.float64)
    assert KoLeoLoss()(x).item() == pytest.approx(_hand_koleo(x.tolist(), 1e-8), rel=1e-12)


def test_plain_formula_without_eps_inside_the_norm() -> None:
    # a 2-D example that can be checked on paper: unit vectors at 0, 90 and 180 degrees
    x = torch.tensor([[1.0, 0.0], [0.0, 2.0], [-3.0, 0.0]], dtype=torch.float64)
    # nearest neighbours: 0 -> 1, 1 -> 0 (tie with 2), 2 -> 1; every distance is sqrt(2)
    assert KoLeoLoss(eps=0.0)(x).item() == pytest.approx(-math.log(math.sqrt(2)), rel=1e-12)


def test_spread_features_score_lower_than_clustered_ones() -> None:
    generator = torch.Generator().manual_seed(0)
    spread = torch.randn(16, 8, generator=generator)
    clustered = torch.ones(16, 8) + 0.01 * torch.randn(16, 8, generator=generator)
    assert KoLeoLoss()(spread) < KoLeoLoss()(clustered)


def test_gradient_flows_to_the_input() -> None:
    x = torch.randn(5, 4, requires_grad=True)
    KoLeoLoss()(x).backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_bad_shapes_are_refused() -> None:
    with pytest.raises(ValueError, match="B >= 2"):
        KoLeoLoss()(torch.randn(1, 4))
    with pytest.raises(ValueError, match="B >= 2"):
        KoLeoLoss()(torch.randn(4))
