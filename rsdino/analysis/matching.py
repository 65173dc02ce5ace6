"""Sparse feature matching: mutual nearest neighbours of the patch tokens of two images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor


def mutual_nearest_neighbours(a: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
    r"""Pairs (i, j) of patches that are each other's most similar patch (cosine similarity).

    With :math:`S_{ij} = \hat a_i^\top \hat b_j` for L2-normalised tokens, (i, j) is kept when
    :math:`j = \arg\max_{j'} S_{ij'}` and :math:`i = \arg\max_{i'} S_{i'j}`.

    Args:
        a: (P, D) tokens of the first image.
        b: (Q, D) tokens of the second image.

    Returns:
        ``(pairs (M, 2) int64, similarity (M,))``, sorted by decreasing similarity.
    """
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"need (P, D) and (Q, D) tokens, got {tuple(a.shape)} and {tuple(b.shape)}")
    sim = F.normalize(a.float(), dim=1) @ F.normalize(b.float(), dim=1).T
    best_b = sim.argmax(dim=1)  # (P,)
    best_a = sim.argmax(dim=0)  # (Q,)
    i = torch.arange(a.shape[0])
    mutual = best_a[best_b] == i
    pairs = torch.stack([i[mutual], best_b[mutual]], dim=1)
    scores = sim[pairs[:, 0], pairs[:, 1]]
    order = torch.argsort(scores, descending=True)
    return pairs[order], scores[order]


def plot_matches(image_a: np.ndarray, image_b: np.ndarray, pairs: Tensor, grid: tuple[int, int],
                 out_png: Path, max_lines: int = 40, title: str = "") -> Path:
    """Write two RGB images (H, W, 3) side by side, with lines between matched patches.

    A line joins the centres of each matched pair of patches (at most ``max_lines``, the most similar first).
    """
    from matplotlib.figure import Figure

    from rsdino.io import atomic_path

    h, w = image_a.shape[:2]
    gh, gw = grid
    fig = Figure(figsize=(6, 3.2), layout="constrained")
    ax = fig.add_subplot()
    ax.imshow(np.concatenate([image_a, image_b], axis=1))
    for n, (i, j) in enumerate(pairs[:max_lines].tolist()):
        ya, xa = (i // gw + 0.5) * h / gh, (i % gw + 0.5) * w / gw
        yb, xb = (j // gw + 0.5) * h / gh, (j % gw + 0.5) * w / gw + w
        ax.plot([xa, xb], [ya, yb], linewidth=0.8, color=f"C{n % 10}")
    ax.set_axis_off()
    ax.set_title(title or f"{len(pairs)} mutual nearest neighbours", fontsize=9)
    with atomic_path(out_png, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    return Path(out_png)
