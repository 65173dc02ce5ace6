"""CLS-token attention maps per head of the last ViT block, drawn over the image."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from torch import Tensor


def plot_attention(image: np.ndarray, attention: Tensor, out_png: Path, title: str = "") -> Path:
    """Write the RGB image (H, W, 3) and one heat map per head (``attention`` (heads, h, w))."""
    from matplotlib.figure import Figure

    from rsdino.io import atomic_path

    heads = attention.shape[0]
    fig = Figure(figsize=(1.8 * (heads + 1), 2.0), layout="constrained")
    axes = fig.subplots(1, heads + 1, squeeze=False)[0]
    axes[0].imshow(image)
    axes[0].set_title("image", fontsize=8)
    for h in range(heads):
        axes[h + 1].imshow(attention[h].detach().cpu().numpy(), cmap="inferno")
        axes[h + 1].set_title(f"head {h}", fontsize=8)
    for ax in axes:
        ax.set_axis_off()
    if title:
        fig.suptitle(title, fontsize=9)
    with atomic_path(out_png, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    return Path(out_png)
