"""Crop boxes, scale bins, GSD, resize and blur, and the block masks."""

from __future__ import annotations

import math

import pytest
import torch
import torchvision.transforms.v2.functional as TF

from rsdino.views.boxes import UNIFORMS_PER_BOX, sample_box, scale_ranges, view_gsd
from rsdino.views.masking import block_mask
from rsdino.views.resample import crop_resize, gaussian_blur, gaussian_kernel


def test_boxes_fit_and_follow_scale_and_ratio() -> None:
    torch.manual_seed(0)
    for _ in range(50):
        top, left, h, w = sample_box(torch.rand(UNIFORMS_PER_BOX).tolist(), 60, 80, (0.1, 0.5), (0.75, 4 / 3))
        assert 0 <= top <= 60 - h and 0 <= left <= 80 - w
        assert 0.1 - 0.03 <= h * w / (60 * 80) <= 0.5 + 0.03
        assert 0.75 - 0.1 <= w / h <= 4 / 3 + 0.1


def test_box_fallback_is_central() -> None:
    # Every attempt asks for more than the image: torchvision's central-crop fallback.
    assert sample_box([0.999] * UNIFORMS_PER_BOX, 10, 40, (5.0, 5.0), (1.0, 1.0)) == (0, 15, 10, 10)


def test_scale_bins_and_gsd() -> None:
    bins = [bound for pair in scale_ranges((0.05, 0.45), 4, bins=True) for bound in pair]
    assert bins == pytest.approx([0.05, 0.15, 0.15, 0.25, 0.25, 0.35, 0.35, 0.45])
    assert scale_ranges((0.05, 0.4), 3, bins=False) == [(0.05, 0.4)] * 3
    assert view_gsd(0.5, (0, 0, 100, 100), 50) == pytest.approx(1.0)
    assert view_gsd(1.0, (0, 0, 60, 120), 60) == pytest.approx(1 / ((1 + 0.5) / 2))


def test_crop_resize_matches_torchvision_and_keeps_uint8() -> None:
    image = torch.rand(3, 40, 40) * 255
    ours = crop_resize(image, (5, 7, 20, 24), 16, "bicubic")
    theirs = TF.resized_crop(image, 5, 7, 20, 24, [16, 16], interpolation=TF.InterpolationMode.BICUBIC,
                             antialias=True)
    assert torch.allclose(ours, theirs, atol=1e-3)
    assert crop_resize(image.to(torch.uint8), (0, 0, 20, 20), 30, "bilinear").dtype == torch.uint8
    assert crop_resize(image.to(torch.uint16), (0, 0, 20, 20), 30, "bilinear").dtype == torch.float32
    assert torch.equal(crop_resize(image, (3, 4, 16, 16), 16, "bicubic"), image[:, 3:19, 4:20])
    with pytest.raises(ValueError, match="interpolation"):
        crop_resize(image, (0, 0, 8, 8), 4, "nearest")


def test_blur_matches_torchvision_and_keeps_mass() -> None:
    image = torch.rand(3, 24, 24)
    sigma = 1.0  # radius 3: a 7-tap kernel
    assert len(gaussian_kernel(sigma, 24)) == 7 and math.isclose(sum(gaussian_kernel(sigma, 24)), 1.0)
    expected = TF.gaussian_blur(image, [7, 7], [sigma, sigma])
    single = image[None].clone()
    assert gaussian_blur(single, [sigma]) is single  # in place
    assert torch.allclose(single[0], expected, atol=1e-5)
    assert len(gaussian_kernel(2.0, 24)) == 9  # dinov2's 9-tap cap
    # Views of one batch get their own sigma (kernels zero-padded to the widest).
    pair = gaussian_blur(torch.stack([image, image]), [sigma, 0.5])
    assert torch.allclose(pair[0], expected, atol=1e-5)
    assert torch.allclose(pair[1], TF.gaussian_blur(image, [5, 5], [0.5, 0.5]), atol=1e-5)
    constant = torch.full((1, 2, 10, 10), 3.0)
    assert torch.allclose(gaussian_blur(constant, [2.0]), constant)


@pytest.mark.parametrize("n_masked", [0, 1, 3, 10, 31, 50, 64])
def test_block_mask_exact_count(n_masked: int) -> None:
    torch.manual_seed(n_masked)
    mask = block_mask(8, 8, n_masked)
    assert mask.shape == (8, 8) and mask.dtype == torch.bool and int(mask.sum()) == n_masked


def test_block_mask_is_made_of_blocks() -> None:
    # Blocks: most masked patches have a masked 4-neighbour (random scattering would rarely).
    torch.manual_seed(0)
    mask = block_mask(14, 14, 60)
    padded = torch.nn.functional.pad(mask[None, None].float(), (1, 1, 1, 1))[0, 0]
    neighbours = padded[:-2, 1:-1] + padded[2:, 1:-1] + padded[1:-1, :-2] + padded[1:-1, 2:]
    assert float((neighbours[mask] > 0).float().mean()) > 0.9
    with pytest.raises(ValueError, match="cannot mask"):
        block_mask(4, 4, 17)
