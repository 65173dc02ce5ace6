"""CropSettings: DINO defaults, the recipes' keys and their validation."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from rsdino.config.views import CropSettings


def test_defaults_are_dino() -> None:
    crops = CropSettings()
    assert (crops.global_size, crops.local_size, crops.n_global, crops.n_local) == (224, 96, 2, 8)
    assert crops.global_scale == (0.4, 1.0) and crops.local_scale == (0.05, 0.4)
    jitter = (crops.color_p, crops.brightness, crops.contrast, crops.saturation, crops.hue)
    assert jitter == (0.8, 0.4, 0.4, 0.2, 0.1)
    assert (crops.grayscale_p, crops.solarize_p, crops.blur_p) == (0.2, 0.2, (1.0, 0.1, 0.5))
    assert crops.mask_p == 0.0 and not crops.temporal and not crops.scale_bins
    assert crops.local_sizes_or_default() == [96] * 8


def test_dino_mc_sizes_must_match_n_local() -> None:
    crops = CropSettings(n_local=6, local_sizes=[184, 164, 144, 124, 104, 84])
    assert crops.local_sizes_or_default() == [184, 164, 144, 124, 104, 84]
    with pytest.raises(ValidationError, match="one size per local crop"):
        CropSettings(n_local=8, local_sizes=[184, 164])


@pytest.mark.parametrize(("key", "value", "message"), [
    ("local_scale", (0.5, 0.1), "local_scale"),
    ("global_scale", (0.0, 1.0), "global_scale"),
    ("mask_ratio", (0.6, 0.5), "mask_ratio"),
    ("blur_sigma", (0.0, 1.0), "blur_sigma"),
    ("blur_p", (1.0, 2.0, 0.5), "blur_p"),
    ("aspect_ratio", (2.0, 1.0), "aspect_ratio"),
    ("mask_p", 1.5, "mask_p"),
    ("sar_units", "dbm", "sar_units"),
    ("local_crops", 3, "local_crops"),
])
def test_bad_values_and_unknown_keys_are_refused(key: str, value, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        CropSettings(**{key: value})
