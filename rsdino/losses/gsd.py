"""SatDINO's ground-sample-distance (GSD) regression loss, and the GSD of a resized crop."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


def resized_crop_gsd(gsd: float | torch.Tensor, crop_h: float, crop_w: float, out_h: float,
                     out_w: float) -> float | torch.Tensor:
    r"""GSD of a ``crop_h x crop_w`` pixel crop after it is resized to ``out_h x out_w``.

    Straka et al. 2025, "SatDINO: A Deep Dive into Self-Supervised Pretraining for Remote Sensing"
    (reference code strakaj/SatDINO@36b94af, ``satdino/view_augmentations.py``,
    ``RandomResizedCrop.__call__``)::

        gsd_new = gsd / ((out_w / crop_w + out_h / crop_h) / 2)

    i.e. the GSD divided by the arithmetic mean of the two resize factors. Up-sampling a small
    crop (factor > 1) makes its pixels finer, so the GSD in metres per pixel goes down.
    """
    return gsd / ((out_w / crop_w + out_h / crop_h) / 2)


class GSDLoss(nn.Module):
    r"""Mean squared error between the predicted and the true GSD of every crop.

    Straka et al. 2025 (SatDINO), reference code strakaj/SatDINO@36b94af ``satdino/main_satdino.py``:
    a learnable register token appended after the patch tokens goes through
    ``GSDHead = Linear(D, 1)``; its output is
    compared with the crop's GSD by ``nn.MSELoss()`` (``--gsd_loss mse``) and added to the DINO loss
    with weight ``--gsd_weight``. With ``N`` crops (all crops of all images, stacked)::

        L = 1 / N * sum_i (g_hat_i - g_i)^2

    where ``g_i`` is the crop's GSD in metres per pixel from :func:`resized_crop_gsd` applied to the
    image's GSD (fMoW metadata, ``features[0]``). The reference uses the plain value: no logarithm,
    no normalisation of the target, and the mean over all crops (``torch.cat(metadata['gsd'])``).
    The weight ``w`` is applied by the caller (``loss = dino + w * gsd``).

    Shapes: ``prediction`` is ``(N,)`` or ``(N, 1)``; ``target`` is ``(N,)``/``(N, 1)`` or a sequence
    of per-crop ``(B,)`` tensors, concatenated in order (``N = V * B``). The target carries no
    gradient.
    """

    def forward(self, prediction: torch.Tensor,
                target: torch.Tensor | Sequence[torch.Tensor]) -> torch.Tensor:
        """Return the scalar MSE between ``prediction`` and ``target``."""
        if not isinstance(target, torch.Tensor):
            target = torch.cat([torch.as_tensor(t).reshape(-1) for t in target])
        prediction = prediction.reshape(-1)
        target = target.reshape(-1).to(device=prediction.device, dtype=prediction.dtype).detach()
        if prediction.shape != target.shape:
            raise ValueError(f"{prediction.numel()} predictions for {target.numel()} GSD targets")
        return F.mse_loss(prediction, target)
