"""Dense and multi-label protocols: segmentation heads, a Siamese change detector, multi-label training.

* Segmentation (SatDINO table): ``LinearSegHead`` on frozen last-block patch tokens (BatchNorm +
  1x1 convolution, bilinear upsampling), or ``UPerHead``, a UPerNet-style decoder (Xiao et al.,
  "Unified Perceptual Parsing for Scene Understanding", ECCV 2018: pyramid pooling on the last
  level, a top-down feature pyramid, fusion) on four intermediate ViT levels rescaled to strides
  4, 8, 16, 32 patch-relative, fine-tuned with the backbone. Scored by ``metrics.mean_iou``.
* Change detection (DINO-MC, OSCD): ``SiameseChangeDetector``, one shared backbone on both dates,
  the absolute difference of patch tokens, a small convolutional decoder and a change logit per
  pixel; binary cross-entropy; scored by ``metrics.change_detection_scores`` at 0.5.
* Multi-label (DINO-MC, BigEarthNet): ``finetune.Classifier`` trained with the binary cross-entropy
  of every label, scored by ``metrics.multilabel_average_precision`` (micro).

All trainers take in-memory or lazy datasets of dict items and run on CPU or GPU.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from rsdino.data.registry import TASKS, resolve
from rsdino.evaluate.context import EvaluationContext
from rsdino.evaluate.metrics import change_detection_scores, mean_iou, multilabel_average_precision
from rsdino.evaluate.tokens import is_vit, last_blocks, patch_tokens
from rsdino.progress import track


def _token_map(tokens: Tensor, grid: tuple[int, int]) -> Tensor:
    """(B, h * w, D) -> (B, D, h, w)."""
    return tokens.transpose(1, 2).reshape(tokens.shape[0], tokens.shape[2], *grid)


class LinearSegHead(nn.Module):
    """BatchNorm + 1x1 convolution on a (B, D, h, w) patch-token map, upsampled to the image size.

    Args:
        dim: token width D.
        n_classes: output classes.
    """

    def __init__(self, dim: int, n_classes: int) -> None:
        super().__init__()
        self.norm = nn.BatchNorm2d(dim)
        self.classify = nn.Conv2d(dim, n_classes, 1)

    def forward(self, fmap: Tensor, size: tuple[int, int]) -> Tensor:
        """Logits (B, n_classes, H, W)."""
        return F.interpolate(self.classify(self.norm(fmap)), size=size, mode="bilinear", align_corners=False)


def _conv(cin: int, cout: int, k: int = 3) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, k, padding=k // 2, bias=False), nn.BatchNorm2d(cout),
                         nn.ReLU(inplace=True))


class UPerHead(nn.Module):
    """A UPerNet-style decoder on four feature levels of one width (finest first).

    Levels are 1x1-projected to ``channels``; the coarsest gets a pyramid pooling module (bins 1, 2,
    3, 6); a top-down pathway adds each coarser level (upsampled) to the next finer one, every
    level is 3x3-convolved, upsampled to the finest and concatenated, fused, and classified.

    Args:
        dim: width of every input level.
        n_classes: output classes.
        channels: decoder width.
    """

    def __init__(self, dim: int, n_classes: int, channels: int = 128) -> None:
        super().__init__()
        self.lateral = nn.ModuleList([_conv(dim, channels, 1) for _ in range(4)])
        self.bins = (1, 2, 3, 6)
        self.ppm = nn.ModuleList([_conv(dim, channels, 1) for _ in self.bins])
        self.ppm_out = _conv(dim + len(self.bins) * channels, channels)
        self.smooth = nn.ModuleList([_conv(channels, channels) for _ in range(3)])
        self.fuse = _conv(4 * channels, channels)
        self.classify = nn.Conv2d(channels, n_classes, 1)

    def forward(self, levels: list[Tensor], size: tuple[int, int]) -> Tensor:
        """Logits (B, n_classes, H, W) from four (B, dim, h_i, w_i) maps, finest first."""
        top = levels[3]
        pooled = [F.interpolate(conv(F.adaptive_avg_pool2d(top, b)), size=top.shape[-2:], mode="bilinear",
                                align_corners=False) for b, conv in zip(self.bins, self.ppm, strict=True)]
        maps = [self.lateral[i](levels[i]) for i in range(3)] + [self.ppm_out(torch.cat([top, *pooled], 1))]
        for i in (2, 1, 0):
            maps[i] = maps[i] + F.interpolate(maps[i + 1], size=maps[i].shape[-2:], mode="bilinear",
                                              align_corners=False)
        outs = [self.smooth[i](maps[i]) for i in range(3)] + [maps[3]]
        outs = [outs[0]] + [F.interpolate(o, size=outs[0].shape[-2:], mode="bilinear", align_corners=False)
                            for o in outs[1:]]
        logits = self.classify(self.fuse(torch.cat(outs, 1)))
        return F.interpolate(logits, size=size, mode="bilinear", align_corners=False)


def vit_pyramid(model: nn.Module, x: Tensor) -> list[Tensor]:
    """Four feature levels for ``UPerHead``.

    From a ViT: the maps of 4 evenly spaced blocks (from the last 4 when shallow), resampled to 4x,
    2x, 1x and 0.5x the patch grid; a CNN gives its last map 4 times,
    resampled the same way.
    """
    if is_vit(model):
        blocks = last_blocks(model, x, len(model.blocks))
        picks = [blocks[round(i * (len(blocks) - 1) / 3)] for i in range(4)]
        patch = model.patch_embed.patch_size
        grid = (x.shape[-2] // patch[0], x.shape[-1] // patch[1])
        maps = [_token_map(t[:, model.num_prefix_tokens:], grid) for t in picks]
    else:
        tokens, grid = patch_tokens(model, x)
        maps = [_token_map(tokens, grid)] * 4
    scales = (4.0, 2.0, 1.0, 0.5)
    return [F.interpolate(m, scale_factor=s, mode="bilinear", align_corners=False) if s != 1.0 else m
            for m, s in zip(maps, scales, strict=True)]


class Segmenter(nn.Module):
    """A backbone and a segmentation head: ``linear`` (frozen backbone) or ``upernet`` (fine-tuned).

    Args:
        backbone: a timm backbone.
        n_classes: classes.
        head: ``"linear"`` or ``"upernet"``.
    """

    def __init__(self, backbone: nn.Module, n_classes: int, head: str = "linear") -> None:
        super().__init__()
        from rsdino.models.backbones import embed_dim

        self.backbone = backbone
        self.kind = head
        dim = embed_dim(backbone)
        self.head: nn.Module = LinearSegHead(dim, n_classes) if head == "linear" else UPerHead(dim, n_classes)
        if head == "linear":
            for p in backbone.parameters():
                p.requires_grad_(False)

    def forward(self, x: Tensor) -> Tensor:
        """Logits (B, n_classes, H, W)."""
        size = (x.shape[-2], x.shape[-1])
        if self.kind == "linear":
            with torch.no_grad():
                tokens, grid = patch_tokens(self.backbone, x)
            return self.head(_token_map(tokens, grid), size)
        return self.head(vit_pyramid(self.backbone, x), size)


class SiameseChangeDetector(nn.Module):
    """Shared backbone on two dates, |tokens_a - tokens_b|, a conv decoder and a change logit map.

    Args:
        backbone: a timm backbone (shared by both dates).
        freeze_backbone: keep the backbone frozen.
    """

    def __init__(self, backbone: nn.Module, freeze_backbone: bool = False) -> None:
        super().__init__()
        from rsdino.models.backbones import embed_dim

        self.backbone = backbone
        self.freeze = freeze_backbone
        if freeze_backbone:
            for p in backbone.parameters():
                p.requires_grad_(False)
        self.decoder = nn.Sequential(_conv(embed_dim(backbone), 64), _conv(64, 32), nn.Conv2d(32, 1, 1))

    def forward(self, a: Tensor, b: Tensor) -> Tensor:
        """Change logits (B, H, W)."""
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.freeze):
            ta, grid = patch_tokens(self.backbone, a)
            tb, _ = patch_tokens(self.backbone, b)
        logits = self.decoder(_token_map((ta - tb).abs(), grid))
        return F.interpolate(logits, size=a.shape[-2:], mode="bilinear", align_corners=False)[:, 0]


def _fit(model: nn.Module, loader: DataLoader, loss_fn: Any, forward: Any, *, epochs: int, lr: float,
         device: str | torch.device, progress: bool, desc: str) -> float:
    """AdamW (weight decay 0.01) with a cosine per epoch; returns the mean loss of the last epoch."""
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.01)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs)
    model.to(device)
    last = float("nan")
    for _ in track(range(epochs), desc=f"{desc} epochs", enabled=progress, steps_per_epoch=1):
        model.train()
        losses = []
        for batch in loader:
            loss = loss_fn(forward(model, batch, device), batch, device)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            losses.append(float(loss.detach()))
        schedule.step()
        last = sum(losses) / max(1, len(losses))
    return last


def _stack(items: list[dict[str, Any]]) -> dict[str, Tensor]:
    return {k: torch.stack([torch.as_tensor(item[k]) for item in items]) for k in items[0]
            if isinstance(items[0][k], Tensor | int | float) or hasattr(items[0][k], "shape")}


def _fit_and_predict(model: nn.Module, train: Dataset, test: Dataset, loss_fn: Any, forward: Any,
                     target: str, *, keep: Any = None, epochs: int, lr: float, batch_size: int, seed: int,
                     device: str | torch.device, progress: bool, desc: str) -> tuple[float, Tensor, Tensor]:
    """``_fit`` on ``train`` (shuffled by ``seed``), then predict ``test`` in eval mode.

    The incomplete last training batch is dropped when ``train`` holds more than one batch (as
    ``finetune.finetune_classifier`` does): the heads' BatchNorm layers cannot train on a batch of
    one image whose map is 1x1 (UPerNet's pyramid pooling always is). Returns the last epoch's mean
    loss, the test outputs (``keep(forward(...))`` per batch, so dense logits can be reduced before
    they pile up) and the test items' ``target``, concatenated.
    """
    loader = DataLoader(train, batch_size=batch_size, shuffle=True, drop_last=len(train) > batch_size,
                        collate_fn=_stack, generator=torch.Generator().manual_seed(seed))
    loss = _fit(model, loader, loss_fn, forward, epochs=epochs, lr=lr, device=device, progress=progress,
                desc=desc)
    model.eval()
    outputs, targets = [], []
    with torch.no_grad():
        for batch in DataLoader(test, batch_size=batch_size, collate_fn=_stack):
            out = forward(model, batch, device)
            outputs.append((out if keep is None else keep(out)).cpu())
            targets.append(batch[target])
    return loss, torch.cat(outputs), torch.cat(targets)


def train_segmentation(backbone: nn.Module, train: Dataset, test: Dataset, *, n_classes: int,
                       head: str = "linear", epochs: int = 50, lr: float = 1e-4, batch_size: int = 8,
                       ignore_index: int | None = 255, seed: int = 0, device: str | torch.device = "cpu",
                       progress: bool = True) -> dict[str, float]:
    """Train a ``Segmenter`` on items ``{"image": (C, H, W) normalised, "mask": (H, W) int}``; mIoU.

    Cross-entropy over pixels (``ignore_index`` skipped). Returns ``{"mIoU", "train_loss"}`` with
    mIoU in percent (``metrics.mean_iou`` over all test pixels).
    """
    torch.manual_seed(seed)
    model = Segmenter(backbone, n_classes, head)
    ignore = -100 if ignore_index is None else ignore_index
    loss, preds, masks = _fit_and_predict(
        model, train, test,
        lambda out, b, d: F.cross_entropy(out, b["mask"].long().to(d), ignore_index=ignore),
        lambda m, b, d: m(b["image"].float().to(d)), "mask", keep=lambda out: out.argmax(1),
        epochs=epochs, lr=lr, batch_size=batch_size, seed=seed, device=device, progress=progress,
        desc="segmentation")
    miou, _ = mean_iou(preds, masks.long(), n_classes, ignore_index)
    return {"mIoU": 100.0 * miou, "train_loss": loss}


def train_change_detection(backbone: nn.Module, train: Dataset, test: Dataset, *, epochs: int = 50,
                           lr: float = 1e-4, batch_size: int = 16, threshold: float = 0.5,
                           freeze_backbone: bool = False, seed: int = 0, device: str | torch.device = "cpu",
                           progress: bool = True) -> dict[str, float]:
    """Train a ``SiameseChangeDetector`` on items ``{"image_a", "image_b", "mask" (H, W) 0/1}``.

    Binary cross-entropy with logits per pixel; the test probabilities are thresholded at
    ``threshold``. Returns ``{"precision", "recall", "f1", "train_loss"}`` (scores in percent).
    """
    torch.manual_seed(seed)
    model = SiameseChangeDetector(backbone, freeze_backbone)
    loss, probs, masks = _fit_and_predict(
        model, train, test,
        lambda out, b, d: F.binary_cross_entropy_with_logits(out, b["mask"].float().to(d)),
        lambda m, b, d: m(b["image_a"].float().to(d), b["image_b"].float().to(d)), "mask",
        keep=torch.sigmoid, epochs=epochs, lr=lr, batch_size=batch_size, seed=seed, device=device,
        progress=progress, desc="change detection")
    scores = change_detection_scores(probs, masks.long(), threshold)
    return {**{k: 100.0 * v for k, v in scores.items()}, "train_loss": loss}


def train_multilabel(backbone: nn.Module, train: Dataset, test: Dataset, *, n_labels: int,
                     mode: str = "finetune", epochs: int = 100, lr: float = 1e-3, batch_size: int = 64,
                     seed: int = 0, device: str | torch.device = "cpu",
                     progress: bool = True) -> dict[str, float]:
    """Train a classifier with per-label BCE on items ``{"image", "labels": (L,) 0/1}``; micro AP.

    ``mode="linear"`` freezes the backbone. Returns ``{"mAP_micro", "mAP_macro", "train_loss"}``
    in percent (``metrics.multilabel_average_precision``).
    """
    from rsdino.evaluate.finetune import Classifier

    torch.manual_seed(seed)
    model = Classifier(backbone, n_labels)
    if mode == "linear":
        for p in model.backbone.parameters():
            p.requires_grad_(False)
    loss, s, t = _fit_and_predict(
        model, train, test,
        lambda out, b, d: F.binary_cross_entropy_with_logits(out, b["labels"].float().to(d)),
        lambda m, b, d: m(b["image"].float().to(d)), "labels", epochs=epochs, lr=lr,
        batch_size=batch_size, seed=seed, device=device, progress=progress, desc="multi-label")
    return {"mAP_micro": 100.0 * multilabel_average_precision(s, t, "micro"),
            "mAP_macro": 100.0 * multilabel_average_precision(s, t, "macro"), "train_loss": loss}


#: The ``rsdino.data`` reader (dotted path) of each task a dense / multi-label protocol reads: the
#: ``dataset`` of its ``rsdino.data.registry`` record.
READERS = {name: task.dataset for name, task in TASKS.items()
           if task.labels in ("multi_label", "mask", "change")}


def _task_of(kind: str, prepared_dir: Path) -> str:
    """The task the prepared folder was made for (its ``dataset.json``); else the protocol's namesake task."""
    try:
        return json.loads((Path(prepared_dir) / "dataset.json").read_text(encoding="utf-8"))["task"]
    except (OSError, ValueError, KeyError, TypeError):
        return kind


class _Prepared:
    """Per-band normalisation, optional resizing and key renaming of a reader's items.

    Readers give ``image`` (and ``image2`` for the second date) in native units, ``mask`` and
    ``label``; the trainers here take ``image`` / ``image_a`` / ``image_b``, ``mask`` and ``labels``.
    """

    def __init__(self, kind: str, mean: list[float], std: list[float], size: int | None) -> None:
        self.kind = kind
        self.mean = torch.as_tensor(mean, dtype=torch.float32).view(-1, 1, 1)
        self.std = torch.as_tensor(std, dtype=torch.float32).view(-1, 1, 1)
        self.size = size

    def _image(self, image: Any) -> Tensor:
        x = (torch.as_tensor(image, dtype=torch.float32) - self.mean) / self.std
        if self.size is not None and tuple(x.shape[-2:]) != (self.size, self.size):
            x = F.interpolate(x[None], size=(self.size, self.size), mode="bilinear", align_corners=False)[0]
        return x

    def _mask(self, mask: Any) -> Tensor:
        m = torch.as_tensor(mask).long()
        if self.size is not None and tuple(m.shape[-2:]) != (self.size, self.size):
            m = F.interpolate(m[None, None].float(), size=(self.size, self.size), mode="nearest")[0, 0].long()
        return m

    def __call__(self, item: dict[str, Any]) -> dict[str, Tensor]:
        if self.kind == "change_detection":
            return {"image_a": self._image(item["image"]), "image_b": self._image(item["image2"]),
                    "mask": self._mask(item["mask"])}
        if self.kind == "segmentation":
            return {"image": self._image(item["image"]), "mask": self._mask(item["mask"])}
        return {"image": self._image(item["image"]), "labels": torch.as_tensor(item["label"]).float()}


def _split_name(reader: Any, raw_dir: Path, prepared_dir: Path, split: str, size: int | None) -> str:
    """``<split>_<size>`` when the prepared folder has tiles of that size, else ``split``."""
    if size is None:
        return split
    try:
        reader(raw_dir, prepared_dir, f"{split}_{size}")
    except (ValueError, FileNotFoundError, KeyError):
        return split
    return f"{split}_{size}"


def run_dense_protocol(kind: str, settings: Any, model_dir: Path, raw_dir: Path, prepared_dir: Path,
                       tracker: Any, *, device: str = "cpu", progress: bool = True,
                       bands: tuple[list[int], list[str]] | None = None) -> dict[str, Any]:
    """Run a dense / multi-label protocol on a prepared dataset through its ``rsdino.data`` reader.

    The images' bands are first selected and ordered as the model was trained on them (``bands``:
    ``rsdino.data.bands.select_bands_of``), then normalised with the evaluation dataset's training
    statistics of those bands (``with_dataset_statistics``, as every evaluation) and resized to
    ``settings.image_size`` (masks by nearest neighbour); segmentation and change detection use the
    prepared tiles of that size when there are some. Returns ``{"metrics": ..., "baselines": {}}``.

    Raises:
        NotImplementedError: naming the reader when ``rsdino.data`` does not provide it, or the
            prepared folder's task when no reader of ``READERS`` reads it.
    """
    from rsdino.evaluate.knn import _load_backbone

    task = _task_of(kind, prepared_dir)
    if task not in READERS:
        raise NotImplementedError(f"{prepared_dir}: protocol {kind!r} has no dataset reader for task "
                                  f"{task!r} (readers: {', '.join(READERS)})")
    try:
        reader = resolve(READERS[task])
    except (ImportError, AttributeError):
        raise NotImplementedError(f"{prepared_dir}: protocol {kind!r} needs the dataset reader "
                                  f"{READERS[task]}, which rsdino.data does not provide") from None
    from rsdino.data.bands import BandSelected, select_bands_of
    from rsdino.evaluate.features import with_dataset_statistics

    backbone, meta = _load_backbone(Path(model_dir))
    size = getattr(settings, "image_size", None) or meta.get("img_size")
    splits = {split: (split if kind == "multilabel"
                      else _split_name(reader, raw_dir, prepared_dir, split, size))
              for split in ("train", "test")}
    train = select_bands_of(reader(raw_dir, prepared_dir, splits["train"]), bands)
    test = select_bands_of(reader(raw_dir, prepared_dir, splits["test"]), bands)
    meta = with_dataset_statistics(meta, train)
    transform = _Prepared(kind, meta["mean"], meta["std"], size)
    train = BandSelected(train, range(len(train.bands)), names=train.bands, transform=transform)
    test = BandSelected(test, range(len(test.bands)), names=test.bands, transform=transform)
    common = {"epochs": settings.epochs, "lr": settings.lr, "batch_size": settings.train_batch_size,
              "seed": settings.seed, "device": device, "progress": progress}
    if kind == "segmentation":
        metrics = train_segmentation(backbone, train, test, n_classes=len(train.classes), head=settings.head,
                                     ignore_index=settings.ignore_index, **common)
    elif kind == "change_detection":
        metrics = train_change_detection(backbone, train, test, threshold=settings.threshold,
                                         freeze_backbone=settings.freeze_backbone, **common)
    else:
        n_labels = len(test.classes)
        if settings.train_fraction < 1:
            n = max(1, round(settings.train_fraction * len(train)))
            order = torch.randperm(len(train), generator=torch.Generator().manual_seed(settings.seed))[:n]
            train = torch.utils.data.Subset(train, order.sort().values.tolist())
        metrics = train_multilabel(backbone, train, test, n_labels=n_labels, mode=settings.mode, **common)
    tracker.log_metrics(metrics)
    return {"metrics": metrics, "baselines": {}}


def run_multilabel(context: EvaluationContext, settings: Any, tracker: Any) -> dict[str, Any]:
    """Protocol ``multilabel``: ``run_dense_protocol`` on the context's dataset."""
    return _run_dense("multilabel", context, settings, tracker)


def run_change_detection(context: EvaluationContext, settings: Any, tracker: Any) -> dict[str, Any]:
    """Protocol ``change_detection``: ``run_dense_protocol`` on the context's dataset."""
    return _run_dense("change_detection", context, settings, tracker)


def run_segmentation(context: EvaluationContext, settings: Any, tracker: Any) -> dict[str, Any]:
    """Protocol ``segmentation``: ``run_dense_protocol`` on the context's dataset."""
    return _run_dense("segmentation", context, settings, tracker)


def _run_dense(kind: str, context: EvaluationContext, settings: Any, tracker: Any) -> dict[str, Any]:
    return run_dense_protocol(kind, settings, context.model_dir, context.raw_dir, context.prepared_dir,
                              tracker, device=context.device, progress=context.progress, bands=context.bands)
