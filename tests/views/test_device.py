"""The device views (rsdino.views.device) equal the per-sample CPU views bit for bit."""

from __future__ import annotations

import pytest
import torch

from rsdino.config.views import CropSettings
from rsdino.views import build_views
from rsdino.views.device import finish_on_device

S2 = ["B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B09", "B10", "B11", "B12", "B8A"]
RECIPES = {
    # DINO's RGB recipe on uint8 photos: jitter, grayscale, blur, solarisation, standardisation folded in.
    "rgb_uint8": (dict(global_size=32, local_size=16, n_local=3, blur_p=(1.0, 0.1, 0.5), solarize_p=0.5,
                       grayscale_p=0.5), ["R", "G", "B"], ["R", "G", "B"], torch.uint8),
    # 13 optical bands with an RGB subset, float native units, multi-sized locals, iBOT masks.
    "s2_float": (dict(global_size=32, local_size=16, n_local=2, local_sizes=[16, 8], blur_p=(1.0, 0.5, 0.5),
                      solarize_p=0.5, mask_p=0.5, flips="d4"), S2, ["B04", "B03", "B02"], torch.float32),
    # S1 (dB, speckle) + S2 in one tensor.
    "s1s2": (dict(global_size=16, local_size=8, n_local=2, sar_p=0.7, sar_looks=4.0), ["VV", "VH", *S2],
             ["B04", "B03", "B02"], torch.float32),
}


def _sample(bands: int, dtype: torch.dtype, seed: int) -> dict:
    g = torch.Generator().manual_seed(seed)
    if dtype == torch.uint8:
        return {"image": torch.randint(0, 256, (bands, 40, 44), generator=g, dtype=torch.uint8)}
    return {"image": torch.rand(bands, 40, 44, generator=g) * 3000}


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_finish_of_a_batch_equals_each_samples_views(name: str) -> None:
    settings, bands, rgb, dtype = RECIPES[name]
    crops = CropSettings(**settings)
    views = build_views(crops, bands=bands, rgb_bands=rgb, mean=[100.0] * len(bands),
                        std=[50.0 + i for i in range(len(bands))], gsd=10.0, patch_size=8)
    samples = [_sample(len(bands), dtype, seed) for seed in range(5)]
    cpu, parts = [], []
    for seed, sample in enumerate(samples):  # the same draws: the same seed before each path
        torch.manual_seed(seed)
        cpu.append(views(sample))
        torch.manual_seed(seed)
        parts.append(views.crop(sample))
    want = views.collate(cpu)
    got = finish_on_device(views, views.collate(parts), "cpu")
    assert got.keys() == want.keys()
    for key in ("global", "local"):
        assert len(got[key]) == len(want[key])
        for a, b in zip(got[key], want[key], strict=True):
            assert a.dtype == torch.float32 and torch.equal(a, b)
    for key in set(want) - {"global", "local"}:
        assert torch.equal(got[key], want[key])
    # the draws do change the views: two samples' first globals differ
    assert not torch.equal(want["global"][0][0], want["global"][0][1])
