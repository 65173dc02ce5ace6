"""Frozen features of a backbone over a scene dataset, for kNN and linear probes.

Each image (``(C, H, W)`` float32 in native units) is normalised per band,
``x_c <- (x_c - mean_c) / std_c``, optionally resized to ``image_size x image_size`` (bilinear,
antialiased), batched and passed through the backbone in eval mode without gradients. The feature of
an image is what ``rsdino.models.backbones.backbone_features`` returns: the CLS token for a ViT, the
pooled feature map for a CNN.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from rsdino.progress import track

log = logging.getLogger(__name__)

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
        progress: show progress (``rsdino.progress``: a bar on a terminal, else log lines).
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
    for images, batch_labels in track(loader, desc="features", enabled=progress):
        out = features_fn(model, images.to(device))
        if out.ndim != 2 or out.shape[0] != images.shape[0]:
            raise ValueError(f"features_fn must return (B, D), got shape {tuple(out.shape)}")
        features.append(out.float().cpu())
        labels.append(batch_labels)
    if not features:
        raise ValueError("the dataset is empty: no features to extract")
    return torch.cat(features), torch.cat(labels)


# ------------------------------------------------------------- several variants, cached on disk


@torch.no_grad()
def extract_feature_sets(model: nn.Module, dataset: Dataset, variants: Sequence[str], *,
                         mean: Sequence[float], std: Sequence[float], batch_size: int = 64,
                         image_size: int | None = None, device: str | torch.device = "cpu",
                         progress: bool = True, cache_dir: Path | None = None,
                         chunk_batches: int = 20,
                         record: dict[str, Any] | None = None) -> tuple[dict[str, Tensor], Tensor]:
    """Several feature variants of every item (``rsdino.evaluate.tokens``), optionally cached.

    With ``cache_dir`` the features are written there in chunks of ``chunk_batches`` batches
    (``chunk_<i>.pt``, each atomically) and a finished ``features.pt``; an interrupted extraction
    resumes at the first missing chunk and a finished one is read back without running the model.
    The caller names the folder by the digest of ``record`` (``rsdino.evaluate.feature_cache``:
    weights, split files, statistics, transform). Every file of the folder carries ``record`` (and
    ``built_from.json`` shows it); a file whose record, variants or length differ from this call's
    is discarded and recomputed, never reused.

    Args:
        model: the backbone (the exported teacher weights of a variant).
        dataset: items ``{"image": (C, H, W), "label": int, ...}``.
        variants: feature variants, e.g. ``["cls", "cls_n4", "cls_n1_avgpool"]``.
        mean: per-band means.
        std: per-band standard deviations.
        batch_size: images per forward pass.
        image_size: resize every image to this square size (None: keep).
        device: where the model runs.
        progress: show progress (``rsdino.progress``: a bar on a terminal, else log lines).
        cache_dir: folder of this cache, or None for no caching.
        chunk_batches: batches per chunk file.
        record: what the features are built from (``feature_cache.build_record``); checked on read.

    Returns:
        ``({variant: (N, D_v) float32}, labels (N,) int64)`` on the CPU.
    """
    from rsdino.evaluate.feature_cache import RECORD_FILE, canonical
    from rsdino.evaluate.tokens import check_variants, token_features
    from rsdino.io import atomic_path, write_text

    variants = check_variants(variants)
    expected = canonical(record or {})
    final = Path(cache_dir) / "features.pt" if cache_dir is not None else None

    def valid(stored: dict[str, Any], path: Path, n_items: int | None) -> bool:
        if (stored.get("built_from") == expected and sorted(stored["features"]) == sorted(variants)
                and (n_items is None or len(stored["labels"]) == n_items)):
            return True
        log.warning("%s: built from other inputs (weights, split, statistics or transform); recomputing",
                    path)
        return False

    if final is not None and final.is_file():
        stored = torch.load(final, map_location="cpu", weights_only=True)
        if valid(stored, final, len(dataset)):
            return stored["features"], stored["labels"]
        final.unlink()
    model.eval().to(device)
    chunks: list[dict[str, Any]] = []
    chunk_index = 0
    while cache_dir is not None and (Path(cache_dir) / f"chunk_{chunk_index:05d}.pt").is_file():
        path = Path(cache_dir) / f"chunk_{chunk_index:05d}.pt"
        chunk = torch.load(path, map_location="cpu", weights_only=True)
        if not valid(chunk, path, None):
            for stale in Path(cache_dir).glob("chunk_*.pt"):
                stale.unlink(missing_ok=True)
            chunks, chunk_index = [], 0
            break
        chunks.append(chunk)
        chunk_index += 1
    if cache_dir is not None:
        write_text(Path(cache_dir) / RECORD_FILE, json.dumps(record or {}, indent=2, sort_keys=True) + "\n")
    start = min(chunk_index * chunk_batches * batch_size, len(dataset))  # resume after the chunks
    rest = torch.utils.data.Subset(dataset, range(start, len(dataset)))
    loader = DataLoader(rest, batch_size=batch_size, shuffle=False,
                        collate_fn=_Collate(mean, std, image_size))
    current: dict[str, list[Tensor]] = {v: [] for v in variants}
    labels: list[Tensor] = []
    n_batches = len(loader)
    for batch_index, (images, batch_labels) in enumerate(track(loader, desc="features", enabled=progress)):
        out = token_features(model, images.to(device), variants)
        for v in variants:
            current[v].append(out[v].float().cpu())
        labels.append(batch_labels)
        if (batch_index + 1) % chunk_batches == 0 or batch_index + 1 == n_batches:
            chunk = {"features": {v: torch.cat(current[v]) for v in variants}, "labels": torch.cat(labels),
                     "built_from": expected}
            if cache_dir is not None:
                with atomic_path(Path(cache_dir) / f"chunk_{chunk_index:05d}.pt", suffix=".pt") as tmp:
                    torch.save(chunk, tmp)
            chunks.append(chunk)
            chunk_index += 1
            current, labels = {v: [] for v in variants}, []
    if not chunks:
        raise ValueError("the dataset is empty: no features to extract")
    features = {v: torch.cat([c["features"][v] for c in chunks]) for v in variants}
    all_labels = torch.cat([c["labels"] for c in chunks])
    if final is not None:
        with atomic_path(final, suffix=".pt") as tmp:
            torch.save({"features": features, "labels": all_labels, "built_from": expected}, tmp)
        for i in range(chunk_index):
            (Path(cache_dir) / f"chunk_{i:05d}.pt").unlink(missing_ok=True)
    return features, all_labels


def with_dataset_statistics(meta: dict[str, Any], dataset: Dataset) -> dict[str, Any]:
    """``meta`` with ``mean``/``std`` replaced by the evaluation dataset's training-split statistics.

    Every evaluation standardises its inputs band by band with the statistics of the dataset it
    evaluates on (``dataset.stats``, computed on that dataset's training split), not with those of
    the pretraining data: a model pretrained on 8-bit SeCo and evaluated on 16-bit EuroSAT DN would
    otherwise see inputs hundreds of standard deviations off. Falls back to the model's own
    statistics when the dataset has none (or a different number of bands).
    """
    stats = getattr(dataset, "stats", None)
    if not isinstance(stats, dict) or "mean" not in stats or "std" not in stats:
        return meta
    if meta.get("mean") is not None and len(stats["mean"]) != len(meta["mean"]):
        return meta
    return {**meta, "mean": [float(v) for v in stats["mean"]], "std": [float(v) for v in stats["std"]]}

