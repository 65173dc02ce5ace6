"""The KoLeo regulariser: spread the batch's features uniformly over the unit sphere."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class KoLeoLoss(nn.Module):
    r"""Kozachenko-Leonenko differential-entropy estimator, negated, on L2-normalised features.

    Sablayrolles et al. 2019, "Spreading vectors for similarity search" (ICLR), eq. 4; used with
    weight 0.1 on the student CLS tokens in Oquab et al. 2023 (DINOv2), section 4.

    For ``B`` rows ``x_i`` of dimension ``D``::

        z_i  = x_i / max(||x_i||_2, eps)                           L2-normalised rows
        n(i) = argmin_{j != i} ||z_i - z_j||_2 = argmax_{j != i} <z_i, z_j>
        d_i  = || z_i - z_n(i) + eps ||_2                          (eps added to every coordinate)
        L    = -1/B * sum_i log(d_i + eps)

    The nearest neighbour is found within the local batch only, as DINOv2 does (no all-gather).
    ``d_i`` adds ``eps`` inside the norm exactly as ``nn.PairwiseDistance(2, eps=eps)`` in the
    reference, so the value matches it; this differs from ``log(min_j ||z_i - z_j|| + eps)`` by
    ``O(eps)``. The neighbour index carries no gradient; the gradient flows through ``d_i``.
    Half-precision inputs are computed in float32, outside autocast.

    Args:
        eps: ``eps`` in the normalisation, the distance and the logarithm (1e-8 in DINOv2).
    """

    def __init__(self, eps: float = 1e-8) -> None:
        super().__init__()
        self.eps = eps

    @staticmethod
    @torch.no_grad()
    def nearest_neighbours(z: torch.Tensor) -> torch.Tensor:
        """Index of each row's nearest other row, ``(B, D) -> (B,)``, for L2-normalised rows."""
        dots = z @ z.t()
        dots.fill_diagonal_(-2.0)  # below any inner product of unit vectors
        return dots.argmax(dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return the scalar loss for ``x`` of shape ``(B, D)``, ``B >= 2``."""
        if x.ndim != 2 or x.shape[0] < 2:
            raise ValueError(f"KoLeo needs a (B, D) tensor with B >= 2, got shape {tuple(x.shape)}")
        if x.dtype not in (torch.float32, torch.float64):
            x = x.float()
        with torch.autocast(device_type=x.device.type, enabled=False):
            z = F.normalize(x, p=2, dim=-1, eps=self.eps)
            neighbours = self.nearest_neighbours(z)
            distances = F.pairwise_distance(z, z[neighbours], p=2, eps=self.eps)
            return -torch.log(distances + self.eps).mean()
