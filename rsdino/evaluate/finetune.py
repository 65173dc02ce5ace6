r"""Full fine-tuning for scene classification: AdamW, layer-wise lr decay, flips and random crops.

The backbone and a linear head on its image embedding (``backbone_features``) are trained end to
end. Layer-wise learning-rate decay (Clark et al., "ELECTRA", ICLR 2020; Bao et al., "BEiT", ICLR
2022) gives layer l of L (embeddings l = 0, block i l = i + 1, final norm and head l = L + 1) the
rate :math:`\eta_l = \eta \cdot \lambda^{L + 1 - l}`; the grouping is timm's
``param_groups_layer_decay`` (its layer matcher knows ViT, Swin and ResNet stages). The rate has a
linear warm-up then a cosine to 0, stepped every iteration; biases and norms get no weight decay.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from rsdino.evaluate.features import _Collate
from rsdino.evaluate.metrics import top_k_accuracy
from rsdino.progress import track


class Classifier(nn.Module):
    """A backbone and a linear head on its image embedding (CLS token / pooled features).

    Args:
        backbone: a timm backbone built by ``rsdino.models.backbones``.
        n_classes: outputs of the head.
    """

    def __init__(self, backbone: nn.Module, n_classes: int) -> None:
        super().__init__()
        from rsdino.models.backbones import embed_dim

        self.backbone = backbone
        self.head = nn.Linear(embed_dim(backbone), n_classes)
        nn.init.trunc_normal_(self.head.weight, std=2e-5)
        nn.init.zeros_(self.head.bias)

    def forward(self, x: Tensor) -> Tensor:
        """Class logits (B, n_classes)."""
        from rsdino.models.backbones import backbone_features

        return self.head(backbone_features(self.backbone, x))


def layer_decay_groups(model: Classifier, *, weight_decay: float, layer_decay: float) -> list[dict[str, Any]]:
    """AdamW parameter groups with an ``lr_scale`` each.

    timm's layer-wise decay for the backbone, scale 1 for the head (no weight decay on biases and
    1-D parameters).
    """
    from timm.optim import param_groups_layer_decay

    groups = param_groups_layer_decay(model.backbone, weight_decay=weight_decay, layer_decay=layer_decay)
    groups.append({"params": [model.head.weight], "weight_decay": weight_decay, "lr_scale": 1.0})
    groups.append({"params": [model.head.bias], "weight_decay": 0.0, "lr_scale": 1.0})
    return groups


def random_crop_flip(images: Tensor, size: int, min_scale: float, generator: torch.Generator) -> Tensor:
    """Random resized crops and flips of a batch.

    Per image: a random resized crop (area in [min_scale, 1], aspect ratio in [3/4, 4/3]) to
    ``size x size`` (bilinear), then random horizontal and vertical flips (p = 0.5 each).
    """
    out = []
    _, _, h, w = images.shape
    for image in images:
        area = h * w * (min_scale + (1 - min_scale) * torch.rand((), generator=generator).item())
        ratio = math.exp(math.log(3 / 4) + (math.log(4 / 3) - math.log(3 / 4)) *
                         torch.rand((), generator=generator).item())
        ch = max(1, min(h, round(math.sqrt(area / ratio))))
        cw = max(1, min(w, round(math.sqrt(area * ratio))))
        top = int(torch.randint(0, h - ch + 1, (), generator=generator))
        left = int(torch.randint(0, w - cw + 1, (), generator=generator))
        crop = image[None, :, top:top + ch, left:left + cw]
        crop = F.interpolate(crop, size=(size, size), mode="bilinear", align_corners=False)[0]
        if torch.rand((), generator=generator) < 0.5:
            crop = crop.flip(-1)
        if torch.rand((), generator=generator) < 0.5:
            crop = crop.flip(-2)
        out.append(crop)
    return torch.stack(out)


def _lr_at(step: int, total: int, warmup: int) -> float:
    """Factor of the peak rate: linear warm-up over ``warmup`` steps, then a cosine to 0."""
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1.0 + math.cos(math.pi * progress))


@torch.no_grad()
def evaluate_classifier(model: nn.Module, loader: DataLoader, device: str | torch.device,
                        n_classes: int) -> dict[str, float]:
    """Top-1 (and top-5 for >= 5 classes) accuracy in percent of ``model`` on ``loader``."""
    model.eval()
    logits, labels = [], []
    for images, batch_labels in loader:
        logits.append(model(images.to(device)).float().cpu())
        labels.append(batch_labels)
    all_logits, all_labels = torch.cat(logits), torch.cat(labels)
    out = {"top1": 100.0 * top_k_accuracy(all_logits, all_labels, 1)}
    if n_classes >= 5:
        out["top5"] = 100.0 * top_k_accuracy(all_logits, all_labels, 5)
    return out


def finetune_classifier(backbone: nn.Module, train: Dataset, test: Dataset, *, n_classes: int,
                        mean: list[float], std: list[float], image_size: int, epochs: int = 100,
                        lr: float = 5e-4, layer_decay: float = 0.65, weight_decay: float = 0.05,
                        warmup_epochs: int = 5, batch_size: int = 64, eval_batch_size: int = 64,
                        crop_scale: float = 0.5, seed: int = 0, device: str | torch.device = "cpu",
                        progress: bool = True) -> dict[str, float]:
    r"""Fine-tune ``backbone`` + a linear head on ``train``; accuracy on ``test`` after the last epoch.

    Minimises the mean cross-entropy :math:`-\frac{1}{B}\sum_i \log \mathrm{softmax}(f(x_i))_{y_i}`
    with AdamW (betas 0.9, 0.999), peak learning rate :math:`\eta = \mathrm{lr} \cdot B / 256`
    scaled per layer by :math:`\lambda^{L + 1 - l}` (``layer_decay_groups``), warm-up then cosine per
    iteration. Training images: normalised per band, resized to ``image_size``, then a random
    resized crop (``crop_scale``) back to ``image_size`` and random flips; test images: resized.
    The incomplete last training batch is dropped when there is more than one batch, so that no
    BatchNorm layer (CNN backbones, convolutional stems) trains on a batch of one.

    Args:
        backbone: the pretrained backbone (modified in place).
        train: training items ``{"image", "label"}``.
        test: test items.
        n_classes: number of classes.
        mean: per-band means.
        std: per-band standard deviations.
        image_size: training and test size.
        epochs: passes over ``train``.
        lr: base learning rate (before ``B / 256``).
        layer_decay: lambda.
        weight_decay: AdamW decoupled weight decay.
        warmup_epochs: epochs of linear warm-up.
        batch_size: B.
        eval_batch_size: test batch size.
        crop_scale: smallest crop area fraction.
        seed: seeds the head, the shuffling and the augmentation.
        device: where training runs.
        progress: show progress over the epochs (``rsdino.progress``: a bar on a terminal, else a
            log line per epoch).

    Returns:
        ``{"top1", "top5" (>= 5 classes), "train_loss"}`` (accuracies in percent; the mean training
        loss of the last epoch).
    """
    torch.manual_seed(seed)
    model = Classifier(backbone, n_classes).to(device)
    groups = layer_decay_groups(model, weight_decay=weight_decay, layer_decay=layer_decay)
    peak = lr * batch_size / 256.0
    optimizer = torch.optim.AdamW(groups, lr=peak, betas=(0.9, 0.999))
    generator = torch.Generator().manual_seed(seed)
    train_loader = DataLoader(train, batch_size=batch_size, shuffle=True, drop_last=len(train) > batch_size,
                              collate_fn=_Collate(mean, std, image_size), generator=generator)
    test_loader = DataLoader(test, batch_size=eval_batch_size, shuffle=False,
                             collate_fn=_Collate(mean, std, image_size))
    total = epochs * len(train_loader)
    warmup = warmup_epochs * len(train_loader)
    step = 0
    last_loss = float("nan")
    for _ in track(range(epochs), desc="fine-tune epochs", enabled=progress, steps_per_epoch=1):
        model.train()
        losses = []
        for images, labels in train_loader:
            factor = _lr_at(step, total, warmup)
            for group in optimizer.param_groups:
                group["lr"] = peak * factor * group.get("lr_scale", 1.0)
            images = random_crop_flip(images, image_size, crop_scale, generator).to(device)
            loss = F.cross_entropy(model(images), labels.to(device))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            losses.append(float(loss.detach()))
            step += 1
        last_loss = sum(losses) / max(1, len(losses))
    metrics = evaluate_classifier(model, test_loader, device, n_classes)
    metrics["train_loss"] = last_loss
    return metrics
