"""Multi-crop views: counts, sizes, band counts, seeding, the band-aware colour rule."""

from __future__ import annotations

import pytest
import torch

from rsdino.views import MultiCropViews, Normalize

S2_BANDS = ["B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B09", "B10", "B11", "B12", "B8A"]
S1_BANDS = ["VV", "VH"]


def _views(bands: list[str], rgb: list[str], **kwargs) -> MultiCropViews:
    return MultiCropViews(32, 16, 2, 3, (0.4, 1.0), (0.1, 0.4), bands, rgb, **kwargs)


@pytest.mark.parametrize(("bands", "rgb"), [(S2_BANDS, ["B04", "B03", "B02"]), (S1_BANDS, [])])
def test_count_sizes_and_bands(bands: list[str], rgb: list[str]) -> None:
    torch.manual_seed(0)
    views = _views(bands, rgb)(torch.randn(len(bands), 48, 48))
    assert [tuple(v.shape) for v in views] == [(len(bands), 32, 32)] * 2 + [(len(bands), 16, 16)] * 3
    assert all(v.dtype == torch.float32 and torch.isfinite(v).all() for v in views)


def test_same_seed_same_views_other_seed_other_views() -> None:
    image = torch.randn(13, 40, 40)
    transform = _views(S2_BANDS, [])
    torch.manual_seed(3)
    first = transform(image)
    torch.manual_seed(3)
    again = transform(image)
    torch.manual_seed(4)
    other = transform(image)
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    assert not all(torch.equal(a, b) for a, b in zip(first, other, strict=True))


def test_colour_rule_scales_all_bands_by_one_factor() -> None:
    # A spatially constant image: contrast and blur change nothing, brightness multiplies every band.
    levels = torch.linspace(-2.0, 3.0, 13)
    image = levels.view(13, 1, 1).expand(13, 24, 24).clone()
    transform = MultiCropViews(24, 8, 1, 0, (1.0, 1.0), (0.5, 0.5), S2_BANDS, [], color_p=1.0,
                               band_jitter=0.0)
    factors = set()
    for seed in range(5):
        torch.manual_seed(seed)
        (view,) = transform(image)
        ratio = view[:, 0, 0] / levels
        assert torch.allclose(ratio, ratio[0].expand(13), atol=1e-5)
        factors.add(round(ratio[0].item(), 4))
    assert len(factors) > 1 and all(0.6 - 1e-4 <= f <= 1.4 + 1e-4 for f in factors)


def test_rgb_bands_must_be_known() -> None:
    with pytest.raises(ValueError, match="B04"):
        _views(S1_BANDS, ["B04"])


def test_wrong_band_count_is_refused() -> None:
    with pytest.raises(ValueError, match="13"):
        _views(S2_BANDS, [])(torch.randn(3, 32, 32))


def test_normalize_standardises_each_band() -> None:
    image = torch.stack([torch.full((4, 4), 1000.0), torch.full((4, 4), 30.0)])
    out = Normalize([900.0, 10.0], [50.0, 4.0])(image)
    assert torch.allclose(out[0], torch.full((4, 4), 2.0)) and torch.allclose(out[1], torch.full((4, 4), 5.0))
    with pytest.raises(ValueError, match="bands"):
        Normalize([0.0] * 3, [1.0] * 3)(image)
