r"""Two-step PCA feature maps of patch tokens (DINOv2, Oquab et al. 2024, section 7 / figure 1).

Step 1: a PCA of the patch tokens of all images together; the first component, thresholded,
separates foreground from background. Step 2: a second PCA on the foreground patches only; its
first three components, each min-max scaled to [0, 1], are shown as red, green and blue, and the
background is black.
"""

from __future__ import annotations

import torch
from torch import Tensor


def principal_components(x: Tensor, n: int) -> tuple[Tensor, Tensor]:
    r"""The first ``n`` principal directions of the rows of ``x`` and the projections on them.

    With :math:`\bar x` the row mean and :math:`X - \bar x = U S V^\top` (thin SVD), the
    directions are the first n rows of :math:`V^\top` and the scores :math:`(X - \bar x) V_{:, :n}`.
    Each direction's sign is fixed so that its largest-magnitude entry is positive (deterministic).

    Args:
        x: (N, D) float.
        n: number of components, at most min(N, D).

    Returns:
        ``(scores (N, n), directions (n, D))``.
    """
    if x.ndim != 2 or x.shape[0] < 2:
        raise ValueError(f"need (N >= 2, D) rows for a PCA, got shape {tuple(x.shape)}")
    n = min(n, *x.shape)
    centred = x.double() - x.double().mean(dim=0, keepdim=True)
    _, _, vh = torch.linalg.svd(centred, full_matrices=False)
    directions = vh[:n]
    signs = torch.sign(directions.gather(1, directions.abs().argmax(dim=1, keepdim=True)))
    directions = directions * signs
    return (centred @ directions.T).to(x.dtype), directions.to(x.dtype)


def two_step_pca(tokens: Tensor, grid: tuple[int, int], threshold: float = 0.0,
                 foreground_above: bool = True) -> tuple[Tensor, Tensor]:
    """Foreground masks and RGB feature maps of a batch of images (module docstring).

    Args:
        tokens: (B, h * w, D) patch tokens of B images.
        grid: (h, w).
        threshold: foreground where the first-step score is above it (``foreground_above``) or below.
        foreground_above: which side of the threshold is the foreground.

    Returns:
        ``(foreground (B, h, w) bool, rgb (B, h, w, 3) float in [0, 1])``.
    """
    b, t, d = tokens.shape
    h, w = grid
    if t != h * w:
        raise ValueError(f"{t} tokens do not fill a {h} x {w} grid")
    flat = tokens.reshape(b * t, d).float()
    first, _ = principal_components(flat, 1)
    score = first[:, 0]
    foreground = score > threshold if foreground_above else score < threshold
    if int(foreground.sum()) < 3:  # too few foreground patches: use them all
        foreground = torch.ones_like(foreground)
    scores, _ = principal_components(flat[foreground], 3)
    low, high = scores.min(dim=0).values, scores.max(dim=0).values
    scaled = (scores - low) / torch.where(high > low, high - low, torch.ones_like(high))
    rgb = torch.zeros(b * t, 3)
    rgb[foreground, :scaled.shape[1]] = scaled.float()
    return foreground.reshape(b, h, w), rgb.reshape(b, h, w, 3)
