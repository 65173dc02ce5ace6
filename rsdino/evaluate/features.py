"""Frozen features of a backbone over a scene dataset, for kNN and linear probes.

Each image (``(C, H, W)`` float32 in native units) is normalised per band,
``x_c <- (x_c - mean_c) / std_c``, optionally resized to ``image_size x image_size`` (bilinear,
antialiased), batched and passed through the backbone in eval mode without gradients. The feature of
an image is what ``rsdino.models.backbones.backbone_features`` returns: the CLS token for a ViT, the
pooled feature map for a CNN.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

FeaturesFn = Callable[[nn.Module, Tensor], Tensor]


def _default_features_fn() -> FeaturesFn:
    from rsdino.models.backbones import backbone_features

    return backbone_features


class _Collate:
    """Normalise, resize and stack dataset items into ``(images (B, C, H, W), labels (B,))``."""

    def __init__(self, mean: Sequence[float], std: Sequence[float], image_size: int | None) -> None:
        self.mean = torch.as_tensor(mean, dtype=torch.float32).view(-1, 1, 1)
        self.std = torch.as_tensor(std, dtype=torch.float32).view(-1, 1, 1)
        if (self.std <= 0).any():
            raise ValueError(f"std must be positive, got {list(std)}")
        self.image_size = image_size

    def __call__(self, items: list[dict[str, Any]]) -> tuple[Tensor, Tensor]:
        images = []
        for item in items:
            image = torch.as_tensor(item["image"], dtype=torch.float32)
            if image.shape[0] != self.mean.shape[0]:
                raise ValueError(f"{item.get('path', 'image')}: {image.shape[0]} bands, but mean/std "
                                 f"have {self.mean.shape[0]}")
            image = (image - self.mean) / self.std
            if self.image_size is not None and tuple(image.shape[-2:]) != (self.image_size,) * 2:
                image = F.interpolate(image[None], size=(self.image_size, self.image_size),
                                      mode="bilinear", align_corners=False, antialias=True)[0]
            images.append(image)
        labels = torch.as_tensor([int(item["label"]) for item in items], dtype=torch.int64)
        return torch.stack(images), labels


@torch.no_grad()
def extract_features(model: nn.Module, dataset: Dataset, *, mean: Sequence[float], std: Sequence[float],
                     batch_size: int = 64, image_size: int | None = None, device: str | torch.device = "cpu",
                     progress: bool = True, features_fn: FeaturesFn | None = None,
                     num_workers: int = 0) -> tuple[Tensor, Tensor]:
    """Features and labels of every item of ``dataset``, in dataset order.

    Args:
        model: the backbone; put in eval mode (and left there).
        dataset: items are dicts ``{"image": (C, H, W) float32, "label": int, ...}``.
        mean: per-band means (length ``C``), in the images' units.
        std: per-band standard deviations (length ``C``), in the images' units.
        batch_size: images per forward pass.
        image_size: if given, every image is resized to ``image_size x image_size`` after normalising.
        device: where the forward passes run; the results are returned on the CPU.
        progress: show a tqdm progress bar.
        features_fn: ``(model, x (B, C, H, W)) -> (B, D)``; defaults to
            ``rsdino.models.backbones.backbone_features``.
        num_workers: DataLoader worker processes.

    Returns:
        ``features`` (N, D) float32 and ``labels`` (N,) int64, on the CPU.
    """
    features_fn = features_fn or _default_features_fn()
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers,
                        collate_fn=_Collate(mean, std, image_size))
    model.eval().to(device)
    features, labels = [], []
    for images, batch_labels in tqdm(loader, desc="features", disable=not progress, leave=False):
        out = features_fn(model, images.to(device))
        if out.ndim != 2 or out.shape[0] != images.shape[0]:
            raise ValueError(f"features_fn must return (B, D), got shape {tuple(out.shape)}")
        features.append(out.float().cpu())
        labels.append(batch_labels)
    if not features:
        raise ValueError("the dataset is empty: no features to extract")
    return torch.cat(features), torch.cat(labels)
