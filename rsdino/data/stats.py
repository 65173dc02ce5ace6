"""Per-band mean and standard deviation over every pixel of a set of images, in one streaming pass.

Each image contributes its own per-band count, mean and sum of squared deviations (float64); these
are merged with the pairwise update of Chan, Golub and LeVeque (1979), which stays accurate when the
standard deviation is small against the mean (``E[x^2] - E[x]^2`` would cancel catastrophically).
Only one image is held in memory at a time.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
from tqdm import tqdm

from rsdino.data.readers import read_image


def compute_band_stats(
    paths: list[Path],
    *,
    reader: Callable[[Path], np.ndarray] = read_image,
    progress: bool = False,
) -> dict:
    """Return ``{"mean": [...], "std": [...], "n_images": int}`` per band over all pixels of ``paths``.

    ``std`` is the population standard deviation (ddof 0). Images may differ in size, not in band count.

    Args:
        paths: image files, read with ``reader`` as ``(C, H, W)`` arrays.
        reader: function reading one image.
        progress: show a tqdm progress bar.

    Raises:
        ValueError: ``paths`` is empty, or an image's band count differs from the first image's.
    """
    if not paths:
        raise ValueError("compute_band_stats: no images given")
    count = 0
    mean = m2 = None
    for path in tqdm(paths, desc="band stats", unit="img", disable=not progress):
        image = reader(path).astype(np.float64)
        flat = image.reshape(image.shape[0], -1)
        n_b = flat.shape[1]
        mean_b = flat.mean(axis=1)
        m2_b = ((flat - mean_b[:, None]) ** 2).sum(axis=1)
        if mean is None:
            count, mean, m2 = n_b, mean_b, m2_b
            continue
        if flat.shape[0] != mean.shape[0]:
            raise ValueError(f"{path}: {flat.shape[0]} bands, but earlier images have {mean.shape[0]}")
        total = count + n_b
        delta = mean_b - mean
        mean = mean + delta * (n_b / total)
        m2 = m2 + m2_b + delta**2 * (count * n_b / total)
        count = total
    return {"mean": mean.tolist(), "std": np.sqrt(m2 / count).tolist(), "n_images": len(paths)}
