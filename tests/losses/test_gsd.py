"""SatDINO's GSD regression loss and the GSD of a resized crop, against hand values."""

from __future__ import annotations

import pytest
import torch

from rsdino.losses.gsd import GSDLoss, resized_crop_gsd


def test_resized_crop_gsd_divides_by_the_mean_resize_factor() -> None:
    # a 48 x 64 crop of a 0.5 m image resized to 96 x 96: factors 2 and 1.5, mean 1.75
    assert resized_crop_gsd(0.5, crop_h=48, crop_w=64, out_h=96, out_w=96) == pytest.approx(0.5 / 1.75)
    # a 448 x 448 crop resized to 224: the pixels get twice as coarse
    assert resized_crop_gsd(0.3, 448, 448, 224, 224) == pytest.approx(0.6)
    tensor = resized_crop_gsd(torch.tensor([1.0, 2.0]), 50, 50, 100, 100)
    torch.testing.assert_close(tensor, torch.tensor([0.5, 1.0]))


def test_loss_is_the_plain_mean_squared_error() -> None:
    prediction = torch.tensor([0.5, 1.0, 2.0, -1.0], dtype=torch.float64)
    target = [0.25, 1.5, 2.0, 1.0]
    expected = sum((p - t) ** 2 for p, t in zip(prediction.tolist(), target, strict=True)) / 4
    assert GSDLoss()(prediction, torch.tensor(target)).item() == pytest.approx(expected, rel=1e-12)
    assert expected == pytest.approx((0.0625 + 0.25 + 0 + 4) / 4)


def test_per_crop_targets_are_concatenated_in_crop_order() -> None:
    prediction = torch.tensor([[1.0], [2.0], [3.0], [4.0], [5.0], [6.0]])  # 3 crops x batch 2, (N, 1)
    per_crop = [torch.tensor([1.0, 2.5]), torch.tensor([3.0, 3.0]), torch.tensor([5.0, 7.0])]
    expected = (0 + 0.25 + 0 + 1 + 0 + 1) / 6
    assert GSDLoss()(prediction, per_crop).item() == pytest.approx(expected)


def test_gradient_reaches_the_prediction_only() -> None:
    prediction = torch.randn(4, requires_grad=True)
    target = torch.rand(4, requires_grad=True)
    GSDLoss()(prediction, target).backward()
    assert prediction.grad is not None and prediction.grad.abs().sum() > 0
    assert target.grad is None


def test_mismatched_lengths_are_refused() -> None:
    with pytest.raises(ValueError, match="3 predictions for 4"):
        GSDLoss()(torch.randn(3), torch.randn(4))
