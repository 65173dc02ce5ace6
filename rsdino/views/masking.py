"""iBOT / DINOv2 block masks on a patch grid.

A mask of ``n`` patches is made of random rectangles (dinov2's block masking): each rectangle
has an area ``A ~ U(min_patches, min(n - masked, max_patches))`` patches and an aspect ratio
``r`` log-uniform in ``aspect`` (height = round(sqrt(A r)), width = round(sqrt(A / r))), placed
uniformly on the grid; its not yet masked patches are added. Unlike dinov2 (which stops when a
rectangle fails to fit and may fall short), the count is exact: a rectangle that would overshoot
adds only its first new patches in raster order, and after 100 rectangles adding nothing the rest
is drawn uniformly among the unmasked patches.
"""

from __future__ import annotations

import math

import torch


def block_mask(height: int, width: int, n_masked: int, *, min_patches: int = 4,
               max_patches: int | None = None,
               aspect: tuple[float, float] = (0.3, 1 / 0.3)) -> torch.Tensor:
    """A ``(height, width)`` bool mask with exactly ``n_masked`` True patches, made of blocks.

    Args:
        height: Rows of the patch grid.
        width: Columns of the patch grid.
        n_masked: Number of masked patches (``0 <= n_masked <= height * width``).
        min_patches: Smallest block area (patches).
        max_patches: Largest block area (default: half the grid, as in dinov2).
        aspect: Range of the blocks' aspect ratio (height / width).
    """
    total = height * width
    if not 0 <= n_masked <= total:
        raise ValueError(f"cannot mask {n_masked} patches of a {height}x{width} grid")
    mask = torch.zeros(height, width, dtype=torch.bool)
    largest = max(1, max_patches if max_patches is not None else total // 2)
    log_low, log_high = math.log(aspect[0]), math.log(aspect[1])
    count, idle = 0, 0
    while count < n_masked and idle < 100:
        remaining = n_masked - count
        high = min(remaining, largest)
        low = min(min_patches, high)
        u_area, u_aspect, u_top, u_left = torch.rand(4).tolist()
        area = low + (high - low) * u_area
        ratio = math.exp(log_low + (log_high - log_low) * u_aspect)
        h = min(height, max(1, round(math.sqrt(area * ratio))))
        w = min(width, max(1, round(math.sqrt(area / ratio))))
        top, left = int(u_top * (height - h + 1)), int(u_left * (width - w + 1))
        block = mask[top: top + h, left: left + w]
        new = ~block
        added = int(new.sum())
        if added == 0:
            idle += 1
            continue
        if added > remaining:
            keep = new.flatten().cumsum(0) <= remaining
            new = new & keep.view_as(new)
            added = remaining
        block |= new
        count += added
    if count < n_masked:
        free = (~mask).flatten().nonzero().squeeze(1)
        chosen = free[torch.randperm(free.numel())[: n_masked - count]]
        mask.view(-1)[chosen] = True
    return mask


def batch_masks(n_crops: int, height: int, width: int, *, mask_p: float, ratio: tuple[float, float],
                min_patches: int = 4, generator: torch.Generator) -> torch.Tensor:
    """Block masks of a batch's ``n_crops`` global crops with fractions spread over ``ratio``.

    As dinov2's collate: ``m = int(mask_p * n_crops)`` crops are masked; with
    ``r_0 < ... < r_m`` equally spaced over ``ratio``, crop ``i < m`` gets
    ``int(H W u_i)`` masked patches, ``u_i ~ U(r_i, r_{i+1})``; the others none; the crops are then
    shuffled. Returns ``(n_crops, height, width)`` bool; draws only from ``generator``.
    """
    total = height * width
    n_masked_crops = int(mask_p * n_crops)
    low, high = ratio
    edges = torch.linspace(low, high, n_masked_crops + 1, dtype=torch.float64)
    masks = torch.zeros(n_crops, height, width, dtype=torch.bool)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(torch.randint(0, 2**62, (1,), generator=generator)))
        for i in range(n_masked_crops):
            fraction = float(edges[i] + (edges[i + 1] - edges[i]) * torch.rand((), dtype=torch.float64))
            masks[i] = block_mask(height, width, int(total * fraction), min_patches=min_patches,
                                  max_patches=max(1, total // 2))
    return masks[torch.randperm(n_crops, generator=generator)]
