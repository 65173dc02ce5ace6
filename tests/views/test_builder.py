"""build_views: every recipe's shapes, sizes, GSDs, masks, dates, co-registration, dtypes, errors."""

from __future__ import annotations

import pickle

import pytest
import torch
from torch.utils.data import default_collate

from rsdino.config.views import CropSettings
from rsdino.views import build_views

RGB = ["red", "green", "blue"]
S2 = ["B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B08A", "B09", "B10", "B11", "B12"]
SMALL = {"global_size": 32, "local_size": 16, "n_global": 2, "n_local": 3}
NO_COLOUR = {"color_p": 0.0, "grayscale_p": 0.0, "solarize_p": 0.0, "sar_p": 0.0, "blur_p": (0.0, 0.0, 0.0)}


def _rgb_builder(gsd: float = 0.5, patch: int = 8, **crops):
    settings = CropSettings(**{**SMALL, **crops})
    return build_views(settings, bands=RGB, rgb_bands=RGB, mean=[100.0] * 3, std=[50.0] * 3, gsd=gsd,
                       patch_size=patch)


def _image(channels: int = 3, size: int = 48, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 256, (channels, size, size), generator=torch.Generator().manual_seed(seed),
                         dtype=torch.uint8)


def test_dino_multicrop_shapes_and_dtypes() -> None:
    torch.manual_seed(0)
    out = _rgb_builder()({"image": _image()})
    assert set(out) == {"global", "local", "global_gsd", "local_gsd"}
    assert [tuple(v.shape) for v in out["global"]] == [(3, 32, 32)] * 2
    assert [tuple(v.shape) for v in out["local"]] == [(3, 16, 16)] * 3
    assert all(v.dtype == torch.float32 and torch.isfinite(v).all() for v in out["global"] + out["local"])
    assert out["global_gsd"].shape == (2,) and out["local_gsd"].shape == (3,)
    assert out["global_gsd"].dtype == torch.float32


def test_dino_mc_one_size_per_local_position() -> None:
    builder = _rgb_builder(n_local=4, local_sizes=[24, 20, 16, 8])
    for seed in range(3):
        torch.manual_seed(seed)
        out = builder({"image": _image(seed=seed)})
        assert [v.shape[-1] for v in out["local"]] == [24, 20, 16, 8]
        assert all(v.shape[-2] == v.shape[-1] for v in out["local"])


def test_gsd_of_full_crops_and_override() -> None:
    builder = _rgb_builder(gsd=0.5, global_scale=(1.0, 1.0), local_scale=(1.0, 1.0), aspect_ratio=(1.0, 1.0))
    torch.manual_seed(0)
    out = builder({"image": _image(size=48)})
    assert torch.allclose(out["global_gsd"], torch.full((2,), 0.5 * 48 / 32))
    assert torch.allclose(out["local_gsd"], torch.full((3,), 0.5 * 48 / 16))
    out = builder({"image": _image(size=48), "gsd": 2.0})
    assert torch.allclose(out["global_gsd"], torch.full((2,), 2.0 * 48 / 32))


def test_satdino_scale_bins_one_bin_per_local_crop() -> None:
    n_local, low, high, side, gsd, out_size = 4, 0.05, 0.45, 200, 1.0, 16
    builder = _rgb_builder(gsd=gsd, n_local=n_local, local_scale=(low, high), scale_bins=True,
                           aspect_ratio=(1.0, 1.0), **NO_COLOUR)
    step = (high - low) / n_local
    for seed in range(10):
        torch.manual_seed(seed)
        out = builder({"image": _image(size=side, seed=seed)})
        crop_sides = out["local_gsd"] * out_size / gsd  # square boxes: gsd_i = gsd * side_i / out_size
        fractions = (crop_sides ** 2 / side ** 2).tolist()
        for i, fraction in enumerate(fractions):
            assert low + i * step - 0.01 <= fraction <= low + (i + 1) * step + 0.01, (i, fraction)


def test_masks_only_when_asked_and_ratio_within_bounds() -> None:
    assert "masks" not in _rgb_builder()({"image": _image()})
    builder = _rgb_builder(patch=4, mask_p=1.0, mask_ratio=(0.1, 0.5))
    grid = 32 // 4
    for seed in range(10):
        torch.manual_seed(seed)
        masks = builder({"image": _image()})["masks"]
        assert masks.shape == (2, grid, grid) and masks.dtype == torch.bool
        ratios = masks.flatten(1).float().mean(1)
        assert ((ratios >= int(0.1 * grid * grid) / grid ** 2) & (ratios <= 0.5)).all()
    half = _rgb_builder(patch=4, mask_p=0.5)
    masked = []
    for seed in range(20):
        torch.manual_seed(seed)
        masked += half({"image": _image()})["masks"].flatten(1).any(1).tolist()
    assert 0 < sum(masked) < len(masked)


def test_batch_mask_spread_covers_the_ratio_range_evenly() -> None:
    # dinov2's rule: of a batch of 8 images x 2 globals = 16 crops, int(0.5 x 16) = 8 are masked,
    # crop i's fraction drawn from the i-th of 8 equal sub-ranges of (0.1, 0.5).
    builder = _rgb_builder(patch=4, mask_p=0.5, mask_ratio=(0.1, 0.5), mask_spread="batch")
    grid, total = 8, 64
    samples = []
    for seed in range(8):
        torch.manual_seed(seed)
        samples.append(builder({"image": _image(seed=seed)}))
    assert all("masks" not in s and "mask_seed" in s for s in samples)
    batch = builder.collate(samples)
    assert "mask_seed" not in batch and batch["global"][0].shape == (8, 3, 32, 32)
    masks = batch["masks"]
    assert masks.shape == (8, 2, grid, grid) and masks.dtype == torch.bool
    counts = sorted(masks.flatten(2).sum(-1).flatten().tolist())
    assert counts[:8] == [0] * 8
    edges = torch.linspace(0.1, 0.5, 9)
    for i, count in enumerate(counts[8:]):  # the i-th smallest count lies in the i-th sub-range
        assert int(total * edges[i]) <= count <= int(total * edges[i + 1]), (i, count)
    assert torch.equal(builder.collate(samples)["masks"], masks)  # a batch's masks: its samples' seeds
    other = builder.collate(samples[::-1])["masks"]
    assert not torch.equal(other, masks.flip(0))
    per_crop = _rgb_builder(patch=4, mask_p=0.5)
    torch.manual_seed(0)
    assert "masks" in per_crop.collate([per_crop({"image": _image()})])


def _series(dates: int, size: int = 40) -> torch.Tensor:
    # Date t is the constant image 20 * (t + 1): a view's value tells its date.
    return torch.stack([torch.full((3, size, size), 20.0 * (t + 1)) for t in range(dates)])


def _dates(views: list[torch.Tensor]) -> list[int]:
    return [round(float(v.mean()) / 20) - 1 for v in views]


def test_temporal_globals_from_different_dates_locals_from_anchor() -> None:
    settings = CropSettings(**SMALL, **NO_COLOUR, temporal=True)
    builder = build_views(settings, bands=RGB, rgb_bands=RGB, mean=[0.0] * 3, std=[1.0] * 3, gsd=1.0,
                          patch_size=8)
    seen = set()
    for seed in range(8):
        torch.manual_seed(seed)
        out = builder({"series": _series(4)})
        globals_, locals_ = _dates(out["global"]), _dates(out["local"])
        assert len(set(globals_)) == 2 and len(set(locals_)) == 1
        assert locals_[0] not in globals_
        seen.update(globals_)
    assert len(seen) > 2


def test_temporal_views_take_the_gsd_of_their_date() -> None:
    """fMoW series: each date has its own metadata GSD, and each view's target follows its date."""
    whole = {"global_scale": (1.0, 1.0), "local_scale": (1.0, 1.0), "aspect_ratio": (1.0, 1.0)}
    settings = CropSettings(**SMALL, **NO_COLOUR, **whole, temporal=True)
    builder = build_views(settings, bands=RGB, rgb_bands=RGB, mean=[0.0] * 3, std=[1.0] * 3, gsd=99.0,
                          patch_size=8)
    per_date = torch.tensor([0.5, 1.0, 3.0])
    for seed in range(4):
        torch.manual_seed(seed)
        out = builder({"series": _series(3), "series_gsd": per_date, "gsd": 0.5})
        for views, key, size in ((out["global"], "global_gsd", 32), (out["local"], "local_gsd", 16)):
            expected = per_date[_dates(views)] * 40 / size  # whole 40 px image in every view
            torch.testing.assert_close(out[key], expected)


def test_temporal_random_locals_and_missing_series() -> None:
    settings = CropSettings(**{**SMALL, "n_local": 6}, **NO_COLOUR, temporal=True, temporal_locals="random")
    builder = build_views(settings, bands=RGB, rgb_bands=RGB, mean=[0.0] * 3, std=[1.0] * 3, gsd=1.0,
                          patch_size=8)
    dates = set()
    for seed in range(5):
        torch.manual_seed(seed)
        dates.update(_dates(builder({"series": _series(3)})["local"]))
    assert dates == {0, 1, 2}
    with pytest.raises(ValueError, match="series"):
        builder({"image": _image()})


def test_s1_s2_crops_share_boxes() -> None:
    # S1 bands then S2 bands; the S2 bands are copies of the S1 bands, so co-registered views match.
    bands = ["VV", "VH", "B04", "B08"]
    modalities = {"VV": "sar", "VH": "sar", "B04": "optical", "B08": "optical"}
    s1 = torch.randn(2, 40, 40) * 3 - 15
    image = torch.cat([s1, s1])
    settings = CropSettings(**{**SMALL, **NO_COLOUR, "blur_p": (1.0, 0.5, 0.5)}, flips="d4")
    builder = build_views(settings, bands=bands, rgb_bands=[], mean=[-15.0, -15.0, -15.0, -15.0],
                          std=[3.0] * 4, gsd=10.0, patch_size=8, modalities=modalities)
    for seed in range(5):
        torch.manual_seed(seed)
        out = builder({"image": image})
        for view in out["global"] + out["local"]:
            assert torch.allclose(view[:2], view[2:], atol=1e-5)


def test_s1_s2_colour_rule_per_modality() -> None:
    # A constant image: the SAR rule shifts both polarisations by one dB offset; the optical rule
    # scales both optical bands by one factor; nothing mixes the groups.
    bands = ["VV", "VH", "B04", "B08"]
    modalities = {"VV": "sar", "VH": "sar", "B04": "optical", "B08": "optical"}
    levels = torch.tensor([-12.0, -18.0, 800.0, 2400.0])
    image = levels.view(4, 1, 1).expand(4, 40, 40).clone()
    settings = CropSettings(**SMALL, color_p=1.0, sar_p=1.0, sar_looks=0.0, sar_offset_db=2.0,
                            band_jitter=0.0, blur_p=(0.0, 0.0, 0.0))
    builder = build_views(settings, bands=bands, rgb_bands=[], mean=[0.0] * 4, std=[1.0] * 4, gsd=10.0,
                          patch_size=8, modalities=modalities)
    torch.manual_seed(0)
    for view in builder({"image": image})["global"]:
        values = view[:, 0, 0]
        shift = values[:2] - levels[:2]
        ratio = values[2:] / levels[2:]
        assert torch.allclose(shift, shift[0].expand(2), atol=1e-4) and abs(float(shift[0])) <= 2.0 + 1e-4
        assert torch.allclose(ratio, ratio[0].expand(2), atol=1e-5)
        assert 0.6 - 1e-5 <= float(ratio[0]) <= 1.4 + 1e-5


def test_same_seed_same_views_other_seed_other_views() -> None:
    builder = _rgb_builder(mask_p=0.5)
    image = _image()

    def run(seed: int) -> list[torch.Tensor]:
        torch.manual_seed(seed)
        out = builder({"image": image})
        return out["global"] + out["local"] + [out["global_gsd"], out["local_gsd"], out["masks"]]

    first, again, other = run(3), run(3), run(4)
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    assert not all(torch.equal(a, b) for a, b in zip(first, other, strict=True))


def test_uint8_uint16_float_inputs_agree() -> None:
    # A smooth image (no bicubic overshoot past 0..255, which only the uint8 path clamps).
    ramp = torch.linspace(30, 220, 48)
    image = torch.stack([ramp[None, :] + 0 * ramp[:, None], ramp[:, None] + 0 * ramp[None, :],
                         (ramp[None, :] + ramp[:, None]) / 2]).round().to(torch.uint8)
    builder = _rgb_builder(rgb_white=255.0)
    views = {}
    for dtype in (torch.uint8, torch.uint16, torch.float32):
        torch.manual_seed(7)
        out = builder({"image": image.to(dtype)})
        views[dtype] = out["global"] + out["local"]
    for a, b in zip(views[torch.uint16], views[torch.float32], strict=True):
        assert torch.equal(a, b)  # both resized in float32
    for a, b in zip(views[torch.uint8], views[torch.float32], strict=True):
        assert (a - b).abs().max() < 0.05  # the uint8 resize rounds to integers


def test_float_rgb_in_0_255_gets_white_255_and_unit_range_gets_white_1() -> None:
    settings = CropSettings(**{**SMALL, **NO_COLOUR, "solarize_p": 1.0}, global_scale=(1.0, 1.0),
                            aspect_ratio=(1.0, 1.0))
    mean, std = torch.tensor([10.0, 20.0, 30.0]), torch.tensor([2.0, 4.0, 5.0])
    for scale in (1.0, 1 / 255):
        image = torch.full((3, 32, 32), 200.0 * scale)
        builder = build_views(settings, bands=RGB, rgb_bands=RGB, mean=(mean * scale).tolist(),
                              std=(std * scale).tolist(), gsd=1.0, patch_size=8)
        torch.manual_seed(0)
        out = builder({"image": image})
        plain = ((200.0 - mean) / std).view(3, 1, 1).expand(3, 32, 32)
        solarised = ((55.0 - mean) / std).view(3, 1, 1).expand(3, 32, 32)
        assert torch.allclose(out["global"][0], plain, atol=1e-4)
        assert torch.allclose(out["global"][1], solarised, atol=1e-4)
        assert all(torch.allclose(v, plain[:, :16, :16], atol=1e-4) for v in out["local"])


def test_no_rgb_operation_on_13_bands() -> None:
    # Grayscale, saturation and hue would mix bands; the optical rule scales them all by one factor.
    levels = torch.linspace(300.0, 3000.0, 13)
    image = levels.view(13, 1, 1).expand(13, 40, 40).to(torch.uint16)
    settings = CropSettings(**SMALL, color_p=1.0, grayscale_p=1.0, solarize_p=1.0, saturation=0.9, hue=0.5,
                            band_jitter=0.0)
    builder = build_views(settings, bands=S2, rgb_bands=["B04", "B03", "B02"], mean=[0.0] * 13,
                          std=[1.0] * 13, gsd=10.0, patch_size=8)
    assert builder.rgb_index == [] and builder.optical_index == list(range(13))
    factors = set()
    for seed in range(4):
        torch.manual_seed(seed)
        out = builder({"image": image})
        for view in out["global"] + out["local"]:
            ratio = view.mean(dim=(1, 2)) / levels.float()
            assert torch.allclose(ratio, ratio[0].expand(13), rtol=1e-4)
            factors.add(round(float(ratio[0]), 3))
    assert len(factors) > 1


def test_rgb_jitter_changes_colours_and_grayscale_happens() -> None:
    builder = _rgb_builder(grayscale_p=1.0, **{"blur_p": (0.0, 0.0, 0.0)})
    torch.manual_seed(0)
    out = builder({"image": _image()})
    for view in out["global"] + out["local"]:
        assert torch.allclose(view[0], view[1], atol=1e-4) and torch.allclose(view[1], view[2], atol=1e-4)


def test_picklable_and_collates() -> None:
    builder = _rgb_builder(mask_p=1.0)
    clone = pickle.loads(pickle.dumps(builder))
    torch.manual_seed(1)
    a = builder({"image": _image()})
    torch.manual_seed(1)
    b = clone({"image": _image()})
    assert torch.equal(a["global"][0], b["global"][0])
    batch = default_collate([a, b])
    assert batch["global"][0].shape == (2, 3, 32, 32) and batch["local"][2].shape == (2, 3, 16, 16)
    assert batch["global_gsd"].shape == (2, 2) and batch["masks"].shape == (2, 2, 4, 4)


def test_clear_errors() -> None:
    builder = _rgb_builder()
    with pytest.raises(ValueError, match="expected \\(3, H, W\\)"):
        builder({"image": torch.zeros(4, 20, 20)})
    with pytest.raises(ValueError, match="no 'image'"):
        builder({"label": 1})
    with pytest.raises(ValueError, match="dtype"):
        builder({"image": torch.zeros(3, 20, 20, dtype=torch.bool)})
    settings = CropSettings(**SMALL)
    with pytest.raises(ValueError, match="one value per band"):
        build_views(settings, bands=RGB, rgb_bands=RGB, mean=[0.0], std=[1.0] * 3, gsd=1.0, patch_size=8)
    with pytest.raises(ValueError, match="std must be positive"):
        build_views(settings, bands=RGB, rgb_bands=RGB, mean=[0.0] * 3, std=[1.0, 0.0, 1.0], gsd=1.0,
                    patch_size=8)
    with pytest.raises(ValueError, match="no modality for bands \\['VH'\\]"):
        build_views(settings, bands=["VV", "VH"], rgb_bands=[], mean=[0.0] * 2, std=[1.0] * 2, gsd=1.0,
                    patch_size=8, modalities={"VV": "sar"})
    with pytest.raises(ValueError, match="unknown modalities"):
        build_views(settings, bands=["VV"], rgb_bands=[], mean=[0.0], std=[1.0], gsd=1.0, patch_size=8,
                    modalities={"VV": "radar"})
    with pytest.raises(ValueError, match="'rgb' modality needs exactly the 3 rgb_bands"):
        build_views(settings, bands=S2[:4], rgb_bands=["B04", "B03", "B02"], mean=[0.0] * 4, std=[1.0] * 4,
                    gsd=1.0, patch_size=8, modalities={b: "rgb" for b in S2[:4]})
    with pytest.raises(ValueError, match="rgb_bands \\['B04'\\] are not in bands"):
        build_views(settings, bands=RGB, rgb_bands=["B04"], mean=[0.0] * 3, std=[1.0] * 3, gsd=1.0,
                    patch_size=8)


def test_modalities_inferred_from_band_names() -> None:
    settings = CropSettings(**SMALL)
    rgb = build_views(settings, bands=RGB, rgb_bands=RGB, mean=[0.0] * 3, std=[1.0] * 3, gsd=1.0,
                      patch_size=8)
    assert rgb.rgb_index == [0, 1, 2] and rgb.optical_index == [] and rgb.sar_index == []
    bands = ["S1_VV", "vh", *S2]
    mixed = build_views(settings, bands=bands, rgb_bands=["B04", "B03", "B02"], mean=[0.0] * 15,
                        std=[1.0] * 15, gsd=10.0, patch_size=8)
    assert mixed.sar_index == [0, 1] and mixed.optical_index == list(range(2, 15)) and mixed.rgb_index == []


@pytest.mark.parametrize("bands", [RGB, S2])
def test_local_jitter_applies_to_local_crops_only(bands) -> None:
    # A flat image stays flat under cropping, so each view's value is the brightness factor b
    # times 100 (contrast, saturation, hue, per-band gains off): globals' spread 0 keeps b = 1,
    # the locals' spread 0.8 draws b in [0.2, 1.8].
    crops = CropSettings(**{**SMALL, **NO_COLOUR, "n_local": 6, "color_p": 1.0, "brightness": 0.0,
                            "contrast": 0.0, "saturation": 0.0, "hue": 0.0, "band_jitter": 0.0,
                            "local_jitter": (0.8, 0.0, 0.0, 0.0)})
    builder = build_views(crops, bands=bands, rgb_bands=RGB if bands is RGB else [], mean=[0.0] * len(bands),
                          std=[1.0] * len(bands), gsd=10.0, patch_size=8)
    factors = []
    for seed in range(5):
        torch.manual_seed(seed)
        out = builder({"image": torch.full((len(bands), 48, 48), 100, dtype=torch.uint16)})
        for view in out["global"]:
            assert torch.allclose(view, torch.full_like(view, 100.0))
        for view in out["local"]:
            assert torch.allclose(view, view.flatten()[0].expand_as(view), rtol=1e-5)
            factors.append(float(view.flatten()[0]) / 100)
    assert all(0.2 - 1e-6 <= f <= 1.8 + 1e-6 for f in factors)
    assert max(abs(f - 1) for f in factors) > 0.4  # beyond what the globals' 0.4 spread could draw
    with pytest.raises(ValueError, match="local_jitter"):
        CropSettings(local_jitter=(1.2, 0.8, 0.8, 0.2))
