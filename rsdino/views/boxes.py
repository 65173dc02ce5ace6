"""Random crop boxes (random resized crop parameters) drawn from pre-drawn uniform numbers.

A box is ``(top, left, height, width)`` in pixels of the source image. Sampling follows
torchvision's ``RandomResizedCrop``: up to ``ATTEMPTS`` tries of an area fraction ``s ~ U(scale)``
and a log-uniform aspect ratio ``r = w / h``; ``w = round(sqrt(s A r))``, ``h = round(sqrt(s A / r))``;
the first box that fits is placed uniformly; otherwise the central crop with the aspect ratio
clamped to the range. The uniforms come from the caller (one ``torch.rand`` per sample), so the
boxes are reproducible under ``torch.manual_seed``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

ATTEMPTS = 10
UNIFORMS_PER_BOX = 4 * ATTEMPTS

Box = tuple[int, int, int, int]


def sample_box(u: Sequence[float], height: int, width: int, scale: tuple[float, float],
               ratio: tuple[float, float]) -> Box:
    """Draw one random resized crop box of a ``height x width`` image.

    Args:
        u: ``UNIFORMS_PER_BOX`` numbers in ``[0, 1)``.
        height: Source image height in pixels.
        width: Source image width in pixels.
        scale: Area fraction range of the box.
        ratio: Aspect-ratio range (width / height) of the box.

    Returns:
        ``(top, left, box_height, box_width)``.
    """
    area = height * width
    log_low, log_high = math.log(ratio[0]), math.log(ratio[1])
    for attempt in range(ATTEMPTS):
        a, b, c, d = u[4 * attempt: 4 * attempt + 4]
        target = area * (scale[0] + (scale[1] - scale[0]) * a)
        aspect = math.exp(log_low + (log_high - log_low) * b)
        w = round(math.sqrt(target * aspect))
        h = round(math.sqrt(target / aspect))
        if 0 < w <= width and 0 < h <= height:
            return int(c * (height - h + 1)), int(d * (width - w + 1)), h, w
    aspect = width / height
    if aspect < ratio[0]:
        w, h = width, max(1, round(width / ratio[0]))
    elif aspect > ratio[1]:
        h, w = height, max(1, round(height * ratio[1]))
    else:
        h, w = height, width
    return (height - h) // 2, (width - w) // 2, h, w


def scale_ranges(scale: tuple[float, float], n: int, bins: bool) -> list[tuple[float, float]]:
    """Area-fraction range of each of ``n`` crops.

    ``scale`` itself, or (SatDINO's scale-aware crops, ``bins=True``) bin ``i`` of ``scale`` cut
    into ``n`` equal bins.
    """
    if not bins or n == 0:
        return [tuple(scale)] * n  # type: ignore[list-item]
    step = (scale[1] - scale[0]) / n
    return [(scale[0] + i * step, scale[0] + (i + 1) * step) for i in range(n)]


def view_gsd(gsd: float, box: Box, size: int) -> float:
    """Metres per output pixel of a ``size x size`` view of ``box``.

    SatDINO's rule: ``gsd / mean(size / box_height, size / box_width)``.
    """
    return gsd / ((size / box[2] + size / box[3]) / 2)
