"""Crop-then-resize of one view, and a separable Gaussian blur, on tensors (no PIL).

``crop_resize`` slices the box out of the source and resizes only that crop, once, with the
antialiased bilinear/bicubic kernels of ``torch.nn.functional.interpolate`` (the kernels
torchvision's v2 ``resize`` calls; bicubic uses PIL's a = -0.5 when antialiased). uint8 sources
stay uint8 through the resize (torch's vectorised uint8 path, fastest on a channels-last source);
other dtypes are converted to float32 first, so uint16 reflectance or float dB never round-trips
through 8 bits.

``gaussian_blur`` blurs float views with a separable kernel by shifted multiply-adds
(reflect padding): ``y_i = sum_k g_k x_reflect(i + k)``, ``g_k ~ exp(-k^2 / (2 sigma^2))``,
``|k| <= min(ceil(3 sigma), 4, S - 1)``, ``sum_k g_k = 1``, first along rows then columns. The radius
cap of 4 is dinov2's 9-tap kernel (``GaussianBlur(kernel_size=9, sigma=(0.1, 2))``).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

MAX_RADIUS = 4


def crop_resize(image: torch.Tensor, box: tuple[int, int, int, int], size: int, mode: str) -> torch.Tensor:
    """The ``box`` of ``image (C, H, W)`` resized to ``(C, size, size)``.

    Args:
        image: Source image, any real dtype (channels-last memory is fastest for uint8).
        box: ``(top, left, height, width)`` in source pixels.
        size: Output side in pixels.
        mode: ``"bilinear"`` or ``"bicubic"`` (antialiased when shrinking).

    Returns:
        uint8 for a uint8 source, float32 otherwise.
    """
    _check_mode(mode)
    top, left, height, width = box
    crop = image[None, :, top: top + height, left: left + width]
    if crop.dtype != torch.uint8:
        crop = crop.to(torch.float32)
    if height == size and width == size:
        return crop[0].contiguous()
    return F.interpolate(crop, size=(size, size), mode=mode, antialias=True, align_corners=False)[0]


def gaussian_kernel(sigma: float, size: int) -> list[float]:
    """The normalised 1-D Gaussian of the module docstring, for a view of side ``size``."""
    radius = max(0, min(math.ceil(3 * sigma), MAX_RADIUS, size - 1))
    kernel = [math.exp(-k * k / (2 * sigma * sigma)) for k in range(-radius, radius + 1)]
    total = sum(kernel)
    return [k / total for k in kernel]


def gaussian_blur(views: torch.Tensor, sigmas: list[float]) -> torch.Tensor:
    """Blur float views ``(V, C, S, S)`` in place, view ``v`` with the Gaussian of ``sigmas[v]`` pixels.

    All views share one pass of shifted multiply-adds: the kernels are zero-padded to the widest.
    Returns ``views``.
    """
    n, channels, height, width = views.shape
    if len(sigmas) != n:
        raise ValueError(f"{n} views but {len(sigmas)} blur sigmas")
    kernels = [gaussian_kernel(sigma, min(height, width)) for sigma in sigmas]
    radius = max(len(kernel) // 2 for kernel in kernels)
    if radius == 0:
        return views
    rows_of_taps = []
    for kernel in kernels:
        pad = [0.0] * (radius - len(kernel) // 2)
        rows_of_taps.append(pad + kernel + pad)
    taps = torch.tensor(rows_of_taps).view(n, 1, 1, 1, -1).unbind(-1)
    padded = F.pad(views, (radius, radius, radius, radius), mode="reflect")
    rows = padded[..., 0:width] * taps[0]
    for k in range(1, 2 * radius + 1):
        rows.addcmul_(padded[..., k: k + width], taps[k])
    torch.mul(rows[:, :, 0:height], taps[0], out=views)
    for k in range(1, 2 * radius + 1):
        views.addcmul_(rows[:, :, k: k + height], taps[k])
    return views



def _check_mode(mode: str) -> None:
    if mode not in ("bilinear", "bicubic"):
        raise ValueError(f"interpolation must be 'bilinear' or 'bicubic', got {mode!r}")
