"""Band-aware multi-crop views for self-distillation, on float tensors of any number of bands.

Input images are ``(C, H, W)`` float32 tensors in native units; ``Normalize`` standardises each band
with the training-split statistics, then ``MultiCropViews`` draws the crops. All randomness comes
from the global torch generator, so ``torch.manual_seed`` makes the views reproducible.

Colour rule (no RGB-only torchvision ops on multispectral or SAR data), applied to a crop ``x`` in
native units (reflectance, DN) with probability ``color_p``::

    mu_c   = spatial mean of band c of the crop
    x'_c   = b * (1 + e_c) * (mu_c + a * (x_c - mu_c))

``b ~ U(1 - brightness, 1 + brightness)`` models illumination (it scales every band's reflectance by
the same factor, so the shape of the spectral signature is kept), ``a ~ U(1 - contrast, 1 +
contrast)`` is a contrast change around each band's own mean, both drawn once per crop and shared by
all bands; ``e_c ~ N(0, band_jitter^2)`` is a small independent per-band gain (calibration). Apply it
before standardising (``Normalize``), as the pretraining loop does.
``rgb_bands`` are kept (``rgb_index``) for the RGB-only operations a later issue adds.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torchvision.transforms.v2 as T
import torchvision.transforms.v2.functional as TF


class Normalize:
    """Standardise each band: ``(x - mean[c]) / std[c]`` for ``x (C, H, W)`` or ``(B, C, H, W)``."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        if len(mean) != len(std):
            raise ValueError(f"mean has {len(mean)} bands but std has {len(std)}")
        if any(s <= 0 for s in std):
            raise ValueError(f"std must be positive, got {list(std)}")
        self.mean = torch.tensor(mean, dtype=torch.float32).view(-1, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(-1, 1, 1)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """Return the standardised copy of ``x``."""
        if x.shape[-3] != self.mean.shape[0]:
            raise ValueError(f"image has {x.shape[-3]} bands, statistics have {self.mean.shape[0]}")
        return (x - self.mean) / self.std


class MultiCropViews:
    """``n_global`` large and ``n_local`` small random views of one standardised image (globals first).

    Each view: random resized crop (area fraction in ``*_scale``, aspect ratio 3/4-4/3), random
    horizontal and vertical flips, a random multiple of 90 degrees rotation (overhead imagery has no
    up), the colour rule of the module docstring, and a Gaussian blur with probability
    ``blur_p[0]`` for the first global view, ``blur_p[1]`` for the other globals and ``blur_p[2]`` for
    locals (DINO: 1.0, 0.1, 0.5).

    Args:
        global_size, local_size: Output sizes in pixels.
        n_global, n_local: Number of views of each kind.
        global_scale, local_scale: Area fraction ranges of the crops.
        band_names: Names of the ``C`` bands, in tensor order.
        rgb_bands: The bands forming a natural-colour image (may be empty).
        color_p, brightness, contrast, band_jitter: The colour rule.
        blur_sigma: Range of the Gaussian blur's standard deviation, in pixels of the output view.
    """

    def __init__(self, global_size: int, local_size: int, n_global: int, n_local: int,
                 global_scale: tuple[float, float], local_scale: tuple[float, float],
                 band_names: list[str], rgb_bands: list[str], *, color_p: float = 0.8,
                 brightness: float = 0.4, contrast: float = 0.4, band_jitter: float = 0.05,
                 blur_p: tuple[float, float, float] = (1.0, 0.1, 0.5),
                 blur_sigma: tuple[float, float] = (0.1, 2.0)) -> None:
        unknown = [band for band in rgb_bands if band not in band_names]
        if unknown:
            raise ValueError(f"rgb_bands {unknown} are not in band_names {band_names}")
        self.global_size, self.local_size = global_size, local_size
        self.n_global, self.n_local = n_global, n_local
        self.global_scale, self.local_scale = tuple(global_scale), tuple(local_scale)
        self.band_names = list(band_names)
        self.rgb_index = [self.band_names.index(band) for band in rgb_bands]
        self.color_p, self.brightness, self.contrast = color_p, brightness, contrast
        self.band_jitter = band_jitter
        self.blur_p, self.blur_sigma = blur_p, blur_sigma

    def __call__(self, image: torch.Tensor) -> list[torch.Tensor]:
        """Return ``n_global + n_local`` views of ``image (C, H, W)``: globals, then locals."""
        if image.ndim != 3 or image.shape[0] != len(self.band_names):
            raise ValueError(f"expected a ({len(self.band_names)}, H, W) image for bands "
                             f"{self.band_names}, got shape {tuple(image.shape)}")
        views = []
        for i in range(self.n_global):
            blur_p = self.blur_p[0] if i == 0 else self.blur_p[1]
            views.append(self._view(image, self.global_size, self.global_scale, blur_p))
        for _ in range(self.n_local):
            views.append(self._view(image, self.local_size, self.local_scale, self.blur_p[2]))
        return views

    def _view(self, image: torch.Tensor, size: int, scale: tuple[float, float],
              blur_p: float) -> torch.Tensor:
        top, left, height, width = T.RandomResizedCrop.get_params(image, list(scale), [3 / 4, 4 / 3])
        view = TF.resized_crop(image, top, left, height, width, [size, size],
                               interpolation=TF.InterpolationMode.BILINEAR, antialias=True)
        if _coin(0.5):
            view = view.flip(-1)
        if _coin(0.5):
            view = view.flip(-2)
        quarter_turns = int(torch.randint(4, ()).item())
        if quarter_turns:
            view = torch.rot90(view, quarter_turns, dims=(-2, -1))
        if _coin(self.color_p):
            view = self._colour(view)
        if _coin(blur_p):
            sigma = _uniform(*self.blur_sigma)
            kernel = min(2 * int(3 * sigma + 0.5) + 1, size - (1 - size % 2))
            if kernel >= 3:
                view = TF.gaussian_blur(view, [kernel, kernel], [sigma, sigma])
        return view.contiguous()

    def _colour(self, view: torch.Tensor) -> torch.Tensor:
        b = _uniform(1 - self.brightness, 1 + self.brightness)
        a = _uniform(1 - self.contrast, 1 + self.contrast)
        mu = view.mean(dim=(-2, -1), keepdim=True)
        out = (mu + a * (view - mu)) * b
        if self.band_jitter > 0:
            out = out * (1 + self.band_jitter * torch.randn(view.shape[0], 1, 1, dtype=view.dtype))
        return out


def _coin(p: float) -> bool:
    return p >= 1 or (p > 0 and torch.rand(()).item() < p)


def _uniform(low: float, high: float) -> float:
    return low + (high - low) * torch.rand(()).item()
