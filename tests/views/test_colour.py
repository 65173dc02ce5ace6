"""Colour rules: the RGB jitter's affine map against torchvision, solarisation, optical and SAR rules."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision.transforms.v2.functional as TF

from rsdino.views.colour import jitter_affine, optical_colour, rgb_colour, sar_colour, solarize

IDENTITY_ORDER = np.array([[0, 1, 2, 3]])


def _views(seed: int = 0) -> torch.Tensor:
    # Values in [0.3, 0.6] of a white level 1: no clamping for moderate factors.
    return 0.3 + 0.3 * torch.rand(1, 3, 12, 12, generator=torch.Generator().manual_seed(seed))


def _jitter(views: torch.Tensor, factors: list[float], gray: bool = False) -> torch.Tensor:
    return rgb_colour(views.clone(), np.array([factors]), IDENTITY_ORDER, np.array([gray]), 1.0)


@pytest.mark.parametrize(("factors", "reference"), [
    ([1.2, 1.0, 1.0, 0.0], lambda x: TF.adjust_brightness(x, 1.2)),
    ([1.0, 0.7, 1.0, 0.0], lambda x: TF.adjust_contrast(x, 0.7)),
    ([1.0, 1.0, 1.3, 0.0], lambda x: TF.adjust_saturation(x, 1.3)),
])
def test_single_operations_equal_torchvision(factors: list[float], reference) -> None:
    views = _views()
    assert torch.allclose(_jitter(views, factors), reference(views[0])[None], atol=1e-5)


def test_composition_in_order_equals_torchvision_chain() -> None:
    views = _views(1)
    ours = rgb_colour(views.clone(), np.array([[0.9, 1.2, 0.8, 0.0]]), np.array([[2, 1, 0, 3]]),
                      np.array([False]), 1.0)
    expected = TF.adjust_brightness(TF.adjust_contrast(TF.adjust_saturation(views[0], 0.8), 1.2), 0.9)
    assert torch.allclose(ours[0], expected, atol=1e-5)


def test_grayscale_equals_torchvision() -> None:
    views = _views(2)
    out = _jitter(views, [1.0, 1.0, 1.0, 0.0], gray=True)
    assert torch.allclose(out[0], TF.rgb_to_grayscale(views[0], num_output_channels=3), atol=1e-5)


def test_hue_rotation_keeps_grays_and_channel_mean_but_changes_colours() -> None:
    views = _views(3)
    views[0, :, 0, 0] = 0.5  # a gray pixel
    out = _jitter(views, [1.0, 1.0, 1.0, 0.25])
    assert torch.allclose(out[0, :, 0, 0], torch.full((3,), 0.5), atol=1e-6)
    assert torch.allclose(out.mean(dim=1), views.mean(dim=1), atol=1e-5)
    assert (out - views).abs().max() > 0.01
    # A rotation by a full turn is the identity.
    assert torch.allclose(_jitter(views, [1.0, 1.0, 1.0, 1.0]), views, atol=1e-5)


def test_affine_identity_and_clamp() -> None:
    matrix, offset = jitter_affine(np.ones((2, 3)), np.array([[1.0, 1.0, 1.0, 0.0]] * 2),
                                   np.array([[0, 1, 2, 3], [3, 2, 1, 0]]), np.array([False, False]))
    assert np.allclose(matrix, np.eye(3)) and np.allclose(offset, 0)
    bright = _jitter(torch.full((1, 3, 4, 4), 200.0) / 255, [1.4, 1.0, 1.0, 0.0])
    assert float(bright.max()) == 1.0


def test_solarize_only_selected_views() -> None:
    views = torch.tensor([200.0, 200.0, 50.0]).view(3, 1, 1, 1).expand(3, 3, 2, 2)
    out = solarize(views, torch.tensor([True, False, True]), 255.0)
    assert out[0].eq(55.0).all() and out[1].eq(200.0).all() and out[2].eq(50.0).all()


def test_optical_rule_contrast_around_band_mean_and_brightness() -> None:
    views = torch.rand(2, 5, 6, 6) * 1000
    out = optical_colour(views, torch.tensor([1.0, 1.2]), torch.tensor([0.5, 1.0]), torch.ones(2, 5))
    mu = views.mean(dim=(-2, -1), keepdim=True)
    assert torch.allclose(out[0], mu[0] + 0.5 * (views[0] - mu[0]), rtol=1e-5)
    assert torch.allclose(out[1], 1.2 * views[1], rtol=1e-5)


def test_sar_rule_db_and_linear() -> None:
    views = torch.full((2, 2, 8, 8), -15.0)
    out = sar_colour(views, torch.tensor([1.5, 0.0]), torch.tensor([False, False]), 10.0, "db")
    assert torch.allclose(out[0], torch.full((2, 8, 8), -13.5)) and torch.equal(out[1], views[1])
    linear = torch.full((1, 2, 8, 8), 0.02)
    out = sar_colour(linear, torch.tensor([10.0]), torch.tensor([False]), 0.0, "linear")
    assert torch.allclose(out, torch.full_like(linear, 0.2))
    torch.manual_seed(0)
    big = torch.zeros(1, 2, 64, 64)
    speckled = sar_colour(big, torch.zeros(1), torch.tensor([True]), 4.0, "linear")
    assert torch.equal(speckled, big)  # multiplicative: zero stays zero
    ones = sar_colour(torch.ones(1, 2, 64, 64), torch.zeros(1), torch.tensor([True]), 4.0, "linear")
    assert abs(float(ones.mean()) - 1.0) < 0.05 and abs(float(ones.var()) - 0.25) < 0.05  # Gamma(L, 1/L)
    with pytest.raises(ValueError, match="units"):
        sar_colour(views, torch.zeros(2), torch.tensor([False, False]), 0.0, "dbm")
