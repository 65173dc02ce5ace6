"""The views of one sample for every pretraining recipe: ``build_views`` and ``ViewBuilder``.

Recipes (``CropSettings``): DINO multi-crop (``n_global`` crops of ``global_size``, ``n_local`` of
``local_size``); DINO-MC multi-sized locals (``local_sizes``, one size per local position);
SatDINO scale-aware locals (``scale_bins``: the local scale range cut into ``n_local`` equal bins,
local ``i`` from bin ``i``) and every crop's GSD; DINO-TP temporal views (``temporal``: the sample's
``series (T, C, H, W)``, every global from a different date, locals from one further "anchor" date or
each from a random date; DINO-TP's reference is 3 globals from dates 1-3 and the locals from date
0, without colour operations: ``n_global: 3, temporal: true`` and the colour probabilities at 0);
co-registered S1/S2 crops (one tensor with the S1 bands then the S2
bands: every box, flip and blur is shared by all bands, only the colour rule depends on the band's
modality); iBOT/DINOv2 block masks on the global crops' patch grid (``mask_p > 0``).

Per view, in DINO's order: random resized crop (``rsdino.views.boxes``) and one resize of the crop
(``rsdino.views.resample``), flips, the colour rule of each band group (``rsdino.views.colour``:
RGB jitter + grayscale, optical rule, SAR rule; views of one size are processed as one batch),
Gaussian blur, solarisation (RGB, second global), standardisation ``(x - mean_c) / std_c`` with the
dataset's native-unit statistics (for an RGB image it is folded into the colour map's pass: the
blur and solarisation are then done in standardised units, which gives the same values). Inputs
may be uint8, uint16, int16 or float (uint8 stays uint8 until after the resize); all randomness
comes from the global torch generator, drawn as one ``torch.rand`` block per sample (plus the
per-band gains, the speckle and the mask blocks).

Two stages: ``crop`` makes every random draw and the crops (a DataLoader worker's share);
``finish`` does the photometric part of a batch of them on any device, with elementwise or per-view
operations only, so a view gets the same bits alone or batched. A call is ``finish`` of one
``crop``; ``rsdino.views.device`` runs ``finish`` batched on the accelerator.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import partial

import numpy as np
import torch
from torch.utils.data import default_collate

from rsdino.config.views import CropSettings
from rsdino.views.boxes import UNIFORMS_PER_BOX, sample_box, scale_ranges, view_gsd
from rsdino.views.colour import (
    apply_affine_rows,
    jitter_maps,
    map_offsets,
    optical_colour,
    sar_colour,
    solarize,
)
from rsdino.views.masking import batch_masks, block_mask
from rsdino.views.resample import crop_resize, gaussian_blur

MODALITIES = ("rgb", "optical", "sar")
SAR_POLARISATIONS = frozenset({"VV", "VH", "HH", "HV"})
_REAL_DTYPES = (torch.uint8, torch.int8, torch.int16, torch.uint16, torch.int32, torch.float16,
                torch.bfloat16, torch.float32, torch.float64)
# Layout of the uniforms drawn for one view: the box's, then one slot per random choice.
(_HFLIP, _VFLIP, _TRANSPOSE, _BLUR, _SIGMA, _JITTER, _GRAY, _SOLAR, _OPTICAL, _SAR, _MASK, _RATIO,
 _OPTICAL_B, _OPTICAL_A, _SAR_OFFSET) = range(UNIFORMS_PER_BOX, UNIFORMS_PER_BOX + 15)
_JITTER_FACTORS = slice(UNIFORMS_PER_BOX + 15, UNIFORMS_PER_BOX + 19)  # brightness, contrast, saturation, hue
_JITTER_ORDER = slice(UNIFORMS_PER_BOX + 19, UNIFORMS_PER_BOX + 23)  # sort keys: the order of the four
_PER_VIEW = UNIFORMS_PER_BOX + 23
#: The keys of ``ViewBuilder.crop`` that ``finish`` takes with a batch axis.
_BATCHED = ("crops", "drawn", "sigma", "white", "gains", "speckle", "rgb_matrix", "rgb_means_map",
            "global_gsd", "local_gsd")


class ViewBuilder:
    """Draws the views of one sample dict (see ``build_views``); picklable for DataLoader workers.

    Args:
        crops: The recipe.
        bands: Band names, in tensor order.
        rgb_bands: The R, G, B band names (in that order), or empty.
        mean, std: Per-band statistics in native units, for the final standardisation.
        gsd: Native ground sampling distance (metres per pixel) of the dataset; a sample's own
            ``gsd`` (or ``series_gsd``) takes its place.
        patch_size: The backbone's patch size (mask grid = ``global_size // patch_size``).
        modalities: Band name -> ``"rgb"``, ``"optical"`` or ``"sar"``; None infers ``"rgb"`` for
            every band when there are 3 bands, all in ``rgb_bands``, else ``"sar"`` for bands named
            by a polarisation (VV, VH, HH, HV, optionally prefixed like ``S1_VV``) and
            ``"optical"`` for the others.
    """

    def __init__(self, crops: CropSettings, *, bands: list[str], rgb_bands: list[str], mean: list[float],
                 std: list[float], gsd: float, patch_size: int,
                 modalities: dict[str, str] | None = None) -> None:
        self.crops = crops
        self.bands = list(bands)
        n = len(self.bands)
        if n == 0:
            raise ValueError("views need at least one band")
        if len(mean) != n or len(std) != n:
            raise ValueError(f"mean ({len(mean)}) and std ({len(std)}) need one value per band {self.bands}")
        if any(not s > 0 for s in std):
            raise ValueError(f"std must be positive for every band, got {list(std)}")
        if not gsd > 0:
            raise ValueError(f"gsd must be positive (metres per pixel), got {gsd}")
        if patch_size <= 0:
            raise ValueError(f"patch_size must be positive, got {patch_size}")
        unknown = [band for band in rgb_bands if band not in self.bands]
        if unknown:
            raise ValueError(f"rgb_bands {unknown} are not in bands {self.bands}")
        modalities = self._modalities(modalities, rgb_bands)
        rgb = [b for b in self.bands if modalities[b] == "rgb"]
        if rgb and (len(rgb) != 3 or sorted(rgb) != sorted(rgb_bands)):
            raise ValueError(f"the 'rgb' modality needs exactly the 3 rgb_bands {list(rgb_bands)}, "
                             f"got {rgb}")
        self.rgb_index = [self.bands.index(b) for b in rgb_bands] if rgb else []
        self.optical_index = [i for i, b in enumerate(self.bands) if modalities[b] == "optical"]
        self.sar_index = [i for i, b in enumerate(self.bands) if modalities[b] == "sar"]
        self.modalities = modalities
        self.mean = torch.tensor(mean, dtype=torch.float32).view(1, n, 1, 1)
        self.inv_std = 1 / torch.tensor(std, dtype=torch.float32).view(1, n, 1, 1)
        # Standardisation of the RGB bands as x * scale + shift, folded into the colour map.
        f64 = torch.float64
        self.scale = torch.tensor([1 / std[i] for i in range(n)], dtype=f64) if n == 3 else None
        self.shift = torch.tensor([-mean[i] / std[i] for i in range(n)], dtype=f64) if n == 3 else None
        self.gsd, self.patch_size = float(gsd), int(patch_size)
        self.grid = crops.global_size // patch_size
        if crops.mask_p > 0 and self.grid < 1:
            raise ValueError(f"global_size {crops.global_size} is smaller than patch_size {patch_size}")
        self.local_sizes = crops.local_sizes_or_default()
        self.local_scales = scale_ranges(crops.local_scale, crops.n_local, crops.scale_bins)

    def _modalities(self, modalities: dict[str, str] | None, rgb_bands: list[str]) -> dict[str, str]:
        if modalities is None:
            is_rgb = len(self.bands) == 3 and all(b in rgb_bands for b in self.bands)
            return {b: "rgb" if is_rgb else "sar" if _is_polarisation(b) else "optical" for b in self.bands}
        missing = [b for b in self.bands if b not in modalities]
        if missing:
            raise ValueError(f"modalities gives no modality for bands {missing}")
        wrong = {b: m for b, m in modalities.items() if m not in MODALITIES}
        if wrong:
            raise ValueError(f"unknown modalities {wrong}: use one of {list(MODALITIES)}")
        return {b: modalities[b] for b in self.bands}

    def __call__(self, sample: dict) -> dict:
        """Views of ``sample`` (``{"image": (C, H, W)}``, optionally ``"series"``, ``"gsd"``, ...).

        ``finish(crop(sample))`` for one sample: the draws and crops, then the photometric part.
        """
        parts = self.crop(sample)
        batch = {k: (v[None] if isinstance(v, torch.Tensor) else [t[None] for t in v])
                 for k, v in parts.items() if k in _BATCHED}
        views = self.finish(batch)
        result = {k: [t[0] for t in v] if isinstance(v, list) else v[0] for k, v in views.items()}
        return {**result, **{k: v for k, v in parts.items() if k not in _BATCHED}}

    def crop(self, sample: dict) -> dict:
        """Every random draw of ``sample``'s views, and its crops: what a DataLoader worker does.

        Returns the crops (uint8 for a uint8 source, else float32; after the flips) and the
        draws of the photometric part in plain tensors, so ``collate`` batches them and
        ``finish`` (on any device) makes the views: ``{"crops": [V x (C, s_v, s_v)], "drawn"
        (V, P) float64, "sigma" (V,) float64 (NaN: no blur), "white" () float64, "gains" (V, C_opt),
        "speckle" [V x (C_sar, s_v, s_v)] (SAR bands with looks > 0), "rgb_matrix", "rgb_means_map"
        (V, 3, 3) float64 (RGB bands), "global_gsd", "local_gsd"}`` plus ``masks`` / ``mask_seed``.
        """
        crops = self.crops
        sources, dates = self._sources(sample)
        gsds_in = self._source_gsds(sample, dates)
        n_views = crops.n_global + crops.n_local
        drawn = torch.rand(n_views, _PER_VIEW, dtype=torch.float64)
        uniforms = drawn.tolist()
        sizes = self.sizes()
        scales = [tuple(crops.global_scale)] * crops.n_global + self.local_scales
        blur_p = [crops.blur_p[0] if i == 0 else crops.blur_p[1] for i in range(crops.n_global)]
        blur_p += [crops.blur_p[2]] * crops.n_local
        views, gsds, sigmas = [], [], []
        d4 = crops.flips == "d4"
        for v in range(n_views):
            u, source = uniforms[v], sources[v]
            box = sample_box(u, source.shape[-2], source.shape[-1], scales[v], crops.aspect_ratio)
            low, high = crops.blur_sigma
            sigma = low + (high - low) * u[_SIGMA] if u[_BLUR] < blur_p[v] else None
            hflip, vflip = u[_HFLIP] < 0.5, d4 and u[_VFLIP] < 0.5
            size = sizes[v]
            view = crop_resize(source, box, size, crops.interpolation)
            if hflip:
                view = view.flip(-1)
            if vflip:
                view = view.flip(-2)
            if d4 and u[_TRANSPOSE] < 0.5:
                view = view.transpose(-1, -2)
            views.append(view)
            gsds.append(view_gsd(gsds_in[v], box, size))
            sigmas.append(sigma)
        parts = {"crops": views, "drawn": drawn,
                 "sigma": torch.tensor([math.nan if s is None else s for s in sigmas], dtype=torch.float64),
                 "white": torch.tensor(self._white(sources[0]), dtype=torch.float64),
                 "global_gsd": torch.tensor(gsds[: crops.n_global], dtype=torch.float32),
                 "local_gsd": torch.tensor(gsds[crops.n_global:], dtype=torch.float32)}
        # The per-band gains and the speckle, in the order the colour rule of each size takes them.
        gains = torch.ones(n_views, len(self.optical_index))
        speckle = [torch.ones(len(self.sar_index), size, size) for size in sizes] \
            if self.sar_index and crops.sar_looks > 0 else None
        for size in dict.fromkeys(sizes):
            index = sorted((v for v in range(n_views) if sizes[v] == size), key=lambda v: sigmas[v] is None)
            if self.optical_index:
                gains[index] = torch.randn(len(index), len(self.optical_index))
            apply = [uniforms[v][_SAR] < crops.sar_p for v in index]
            if speckle is not None and any(apply):
                rate = torch.tensor(float(crops.sar_looks))
                shape = (len(index), len(self.sar_index), size, size)
                gamma = torch.distributions.Gamma(rate, rate).sample(shape)
                for k, v in enumerate(index):
                    if apply[k]:
                        speckle[v] = gamma[k]
        if self.optical_index:
            parts["gains"] = gains
        if speckle is not None:
            parts["speckle"] = speckle
        if self.rgb_index:
            parts["rgb_matrix"], parts["rgb_means_map"] = self._rgb_maps(drawn.numpy())
        if crops.mask_p > 0 and crops.mask_spread == "batch":
            # Masks are made per batch (``collate``) from the samples' own seeds.
            parts["mask_seed"] = int(drawn[0, _RATIO] * 2**52)
        elif crops.mask_p > 0:
            parts["masks"] = self._masks(uniforms[: crops.n_global])
        return parts

    def sizes(self) -> list[int]:
        """The side of every view, globals then locals."""
        return [self.crops.global_size] * self.crops.n_global + self.local_sizes

    def finish(self, parts: dict) -> dict:
        """The photometric part of the views of a batch of ``crop`` results, on the crops' device.

        ``parts``: ``collate`` of ``crop`` results (each tensor with a leading batch axis ``B``),
        the crops (and speckle) on any device, the other draws on the CPU (they are read on the
        host: nothing here waits for the device). Every operation is elementwise or a per-view
        reduction, so a view gets the same bits in any batch: ``finish`` of a batch equals
        ``__call__`` of each sample, bit for bit on the same device.

        Returns ``{"global": [n_global x (B, C, G, G)], "local": [n_local x (B, C, s_i, s_i)],
        "global_gsd", "local_gsd"}``, float32, standardised (plus ``masks`` when in ``parts``).
        """
        crops = self.crops
        sizes = self.sizes()
        n_views = len(sizes)
        out: list[torch.Tensor] = [torch.empty(0)] * n_views
        n = parts["drawn"].shape[0]
        for size in dict.fromkeys(sizes):
            index = [v for v in range(n_views) if sizes[v] == size]
            batch = torch.cat([parts["crops"][v] for v in index]).to(torch.float32)
            views = torch.tensor(index).repeat_interleave(n)  # row -> view position (position-major)
            rows_of = partial(_rows, index=index)
            white = parts["white"].repeat(len(index))
            batch, standardised = self._colour(batch, views, rows_of, parts, white)
            sigma = rows_of(parts["sigma"])
            blurred = (~sigma.isnan()).nonzero().flatten().tolist()
            if blurred and blurred[-1] - blurred[0] + 1 == len(blurred):  # a run of rows: in place
                gaussian_blur(batch[blurred[0]: blurred[-1] + 1], sigma[blurred].tolist())
            elif blurred:
                rows = torch.tensor(blurred, device=batch.device)
                batch[rows] = gaussian_blur(batch[rows], sigma[blurred].tolist())
            batch = self._solarize(batch, views, rows_of(parts["drawn"]), white, standardised)
            if not standardised:
                batch.sub_(self.mean.to(batch.device)).mul_(self.inv_std.to(batch.device))
            for k, v in enumerate(index):
                out[v] = batch[k * n: (k + 1) * n]
        result = {"global": out[: crops.n_global], "local": out[crops.n_global:],
                  "global_gsd": parts["global_gsd"], "local_gsd": parts["local_gsd"]}
        if "masks" in parts:
            result["masks"] = parts["masks"]
        return result

    def collate(self, samples: list[dict]) -> dict:
        """Stack views dicts into a batch (``default_collate``).

        With ``mask_spread: batch``, adds ``"masks"`` ``(B, n_global, G // p, G // p)`` from
        ``masking.batch_masks``, seeded by the samples' seeds (so a batch's masks depend only on
        its samples, not on workers).
        """
        crops = self.crops
        if not (crops.mask_p > 0 and crops.mask_spread == "batch"):
            return default_collate(samples)
        seed = 0
        for sample in samples:
            seed = (seed * 1_000_003 + int(sample["mask_seed"])) % 2**62
        batch = default_collate([{k: v for k, v in s.items() if k != "mask_seed"} for s in samples])
        masks = batch_masks(len(samples) * crops.n_global, self.grid, self.grid, mask_p=crops.mask_p,
                            ratio=crops.mask_ratio, min_patches=crops.mask_min_patches,
                            generator=torch.Generator().manual_seed(seed))
        batch["masks"] = masks.view(len(samples), crops.n_global, self.grid, self.grid)
        return batch

    def _source_gsds(self, sample: dict, dates: list[int] | None) -> list[float]:
        """Each view's source GSD: its date's ``series_gsd``, the sample's ``gsd`` or the dataset's."""
        n_views = self.crops.n_global + self.crops.n_local
        per_date = sample.get("series_gsd")
        if dates is not None and per_date is not None:
            if len(per_date) <= max(dates):
                raise ValueError(f"series_gsd has {len(per_date)} values for a series of more dates")
            return [float(per_date[d]) for d in dates]
        gsd = float(sample["gsd"]) if sample.get("gsd") is not None else self.gsd
        return [gsd] * n_views

    def _sources(self, sample: dict) -> tuple[list[torch.Tensor], list[int] | None]:
        """The source image of every view (globals then locals), and its date in the series (or None)."""
        crops = self.crops
        n_views = crops.n_global + crops.n_local
        if not isinstance(sample, dict):
            raise TypeError(f"views take a sample dict with an 'image' tensor, got {type(sample).__name__}")
        if crops.temporal:
            series = sample.get("series")
            if not isinstance(series, torch.Tensor) or series.ndim != 4:
                raise ValueError("temporal views need a 'series' tensor (T, C, H, W) of dates in the sample, "
                                 f"got {None if series is None else tuple(getattr(series, 'shape', ()))}")
            self._check_image(series[0], "series")
            t = series.shape[0]
            dates = torch.randperm(t).tolist()
            chosen = [dates[i % t] for i in range(crops.n_global)]
            if crops.temporal_locals == "anchor":
                chosen += [dates[crops.n_global % t]] * crops.n_local
            else:
                chosen += torch.randint(t, (crops.n_local,)).tolist()
            fast = {d: _fast_layout(series[d]) for d in set(chosen)}
            return [fast[d] for d in chosen], chosen
        image = sample.get("image")
        if not isinstance(image, torch.Tensor):
            raise ValueError(f"the sample has no 'image' tensor (keys: {sorted(sample)})")
        self._check_image(image, "image")
        return [_fast_layout(image)] * n_views, None

    def _check_image(self, image: torch.Tensor, name: str) -> None:
        if image.ndim != 3 or image.shape[0] != len(self.bands):
            raise ValueError(f"sample {name!r}: expected ({len(self.bands)}, H, W) for bands {self.bands}, "
                             f"got shape {tuple(image.shape)}")
        if image.dtype not in _REAL_DTYPES:
            raise ValueError(f"sample {name!r}: unsupported dtype {image.dtype} (use uint8, uint16 or float)")
        if image.shape[1] < 1 or image.shape[2] < 1:
            raise ValueError(f"sample {name!r}: empty image of shape {tuple(image.shape)}")

    def _white(self, image: torch.Tensor) -> float:
        """White level of the RGB bands.

        The setting, else by dtype (float: 255 when the RGB values exceed 1, i.e. 0-255 values
        stored as float, else 1).
        """
        if self.crops.rgb_white is not None:
            return float(self.crops.rgb_white)
        if not self.rgb_index:
            return 1.0
        if image.dtype == torch.uint8:
            return 255.0
        if image.dtype == torch.uint16:
            return 65535.0
        return 255.0 if float(image[self.rgb_index].amax()) > 1.0 else 1.0

    def _rgb_maps(self, drawn: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """Every view's RGB colour map ``y = A x + K m`` (``colour.jitter_maps``) from its draws."""
        crops = self.crops
        identity = np.array([1.0, 1.0, 1.0, 0.0])
        jitter = drawn[:, _JITTER] < crops.color_p
        spread = self._jitter_spreads(list(range(drawn.shape[0])))
        factors = np.where(jitter[:, None], spread * (2 * drawn[:, _JITTER_FACTORS] - 1) + identity, identity)
        order = np.argsort(drawn[:, _JITTER_ORDER], axis=1)
        gray = drawn[:, _GRAY] < crops.grayscale_p
        matrix, means_map = jitter_maps(factors, order, gray)
        return torch.from_numpy(matrix), torch.from_numpy(means_map)

    def _jitter_spreads(self, index: list[int]) -> np.ndarray:
        """``(V, 4)`` brightness, contrast, saturation and hue spreads of views ``index``."""
        crops = self.crops
        spread = np.array([crops.brightness, crops.contrast, crops.saturation, crops.hue])
        local = spread if crops.local_jitter is None else np.array(crops.local_jitter, dtype=float)
        return np.where((np.asarray(index) >= crops.n_global)[:, None], local, spread)

    def _colour(self, batch: torch.Tensor, views: torch.Tensor,
                rows_of: Callable[[torch.Tensor], torch.Tensor], parts: dict,
                white: torch.Tensor) -> tuple[torch.Tensor, bool]:
        """The colour rule of each band group on float views ``(R, C, S, S)`` of one size.

        ``views (R,)`` is each row's view position (globals first), ``rows_of`` picks the rows'
        draws out of ``parts``, ``white (R,)`` their white levels.
        Returns the views and whether they are already standardised (an RGB-only image: done in
        the colour map's pass; the blur and solarisation that follow are exact in standardised
        units too).
        """
        crops = self.crops
        n = batch.shape[0]
        device = batch.device
        u = rows_of(parts["drawn"]).to(torch.float32)
        if self.rgb_index:
            means = batch.mean(dim=(-2, -1))[:, self.rgb_index].double()
            matrix = rows_of(parts["rgb_matrix"])
            offset = map_offsets(rows_of(parts["rgb_means_map"]).to(device), means)
            if self._whole_rgb(batch):
                return apply_affine_rows(batch, matrix, offset, white, self.scale, self.shift), True
            batch[:, self.rgb_index] = apply_affine_rows(batch[:, self.rgb_index], matrix, offset, white)
        if self.optical_index:
            apply = u[:, _OPTICAL] < crops.color_p
            spread = torch.from_numpy(self._jitter_spreads(views.tolist())).to(torch.float32)
            b = torch.where(apply, 1 + spread[:, 0] * (2 * u[:, _OPTICAL_B] - 1), torch.ones(n))
            a = torch.where(apply, 1 + spread[:, 1] * (2 * u[:, _OPTICAL_A] - 1), torch.ones(n))
            gains = 1 + crops.band_jitter * rows_of(parts["gains"])
            gains = torch.where(apply[:, None], gains, torch.ones(()))
            part = batch[:, self.optical_index]
            batch[:, self.optical_index] = optical_colour(part, b.to(device), a.to(device), gains.to(device))
        if self.sar_index:
            apply = u[:, _SAR] < crops.sar_p
            offset = torch.where(apply, crops.sar_offset_db * (2 * u[:, _SAR_OFFSET] - 1), torch.zeros(n))
            speckle = torch.cat([parts["speckle"][v] for v in dict.fromkeys(views.tolist())]) \
                if "speckle" in parts else None
            part = batch[:, self.sar_index]
            batch[:, self.sar_index] = sar_colour(part, offset.to(device), apply, crops.sar_looks,
                                                  crops.sar_units, speckle=speckle)
        return batch, False

    def _whole_rgb(self, batch: torch.Tensor) -> bool:
        return self.rgb_index == [0, 1, 2] and batch.shape[1] == 3

    def _solarize(self, batch: torch.Tensor, views: torch.Tensor, uniforms: torch.Tensor, white: torch.Tensor,
                  standardised: bool) -> torch.Tensor:
        """DINO's solarisation of the RGB bands of the second global crop (probability ``solarize_p``)."""
        if not self.rgb_index or 1 not in views.tolist():
            return batch
        apply = (views == 1) & (uniforms[:, _SOLAR] < self.crops.solarize_p)
        if not bool(apply.any()):
            return batch
        if standardised:
            return solarize(batch, apply, white, self.scale, self.shift)
        batch[:, self.rgb_index] = solarize(batch[:, self.rgb_index], apply, white)
        return batch

    def _masks(self, uniforms: list[list[float]]) -> torch.Tensor:
        """Block masks ``(n_global, grid, grid)``.

        Each global crop is masked with probability ``mask_p``, a fraction ``U(mask_ratio)`` of its
        patches (at most half the grid per block): ``mask_spread: crop``. dinov2 instead spreads the
        fractions of a batch's masked crops evenly over the range: ``mask_spread: batch``, made in
        ``collate``.
        """
        crops, grid = self.crops, self.grid
        total = grid * grid
        masks = torch.zeros(len(uniforms), grid, grid, dtype=torch.bool)
        for i, u in enumerate(uniforms):
            if u[_MASK] < crops.mask_p:
                low, high = crops.mask_ratio
                n_masked = int(total * (low + (high - low) * u[_RATIO]))
                masks[i] = block_mask(grid, grid, n_masked, min_patches=crops.mask_min_patches,
                                      max_patches=max(1, total // 2))
        return masks


def _rows(values: torch.Tensor, index: list[int]) -> torch.Tensor:
    """The rows of views ``index`` of per-sample values ``(B, V, ...)``, position-major ``(len*B, ...)``."""
    picked = values[:, index].transpose(0, 1)
    return picked.reshape(picked.shape[0] * picked.shape[1], *picked.shape[2:])


def _is_polarisation(band: str) -> bool:
    """A SAR band by its name: VV, VH, HH or HV, optionally prefixed (``S1_VV``, ``s1-vh``)."""
    return band.upper().replace("-", "_").split("_")[-1] in SAR_POLARISATIONS


def _fast_layout(image: torch.Tensor) -> torch.Tensor:
    """uint8 images in channels-last memory (torch's fastest uint8 resize); others unchanged."""
    if image.dtype != torch.uint8:
        return image
    return image[None].contiguous(memory_format=torch.channels_last)[0]


def build_views(crops: CropSettings, *, bands: list[str], rgb_bands: list[str], mean: list[float],
                std: list[float], gsd: float, patch_size: int,
                modalities: dict[str, str] | None = None) -> ViewBuilder:
    """The view maker of a variant: a picklable callable, sample dict -> views dict.

    Its ``collate`` stacks views dicts into a batch.

    The sample is ``{"image": (C, H, W) uint8/uint16/float in native units, optionally "series":
    (T, C, H, W), optionally "gsd": float (the image's own GSD, e.g. from fMoW metadata; else the
    dataset's ``gsd``), optionally "series_gsd": (T,) one GSD per date}``; the result is
    ``{"global": [n_global x (C, G, G)], "local": [n_local x (C, s_i, s_i)], "global_gsd": (n_global,),
    "local_gsd": (n_local,)}``, float32, standardised, GSDs in metres per output pixel, plus
    ``"masks": (n_global, G // p, G // p)`` bool when ``crops.mask_p > 0``. See ``ViewBuilder`` for the
    arguments.
    """
    return ViewBuilder(crops, bands=bands, rgb_bands=rgb_bands, mean=mean, std=std, gsd=gsd,
                       patch_size=patch_size, modalities=modalities)
