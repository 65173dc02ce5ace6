"""DINO pretraining loop: student and EMA teacher (backbone + DINO head), multi-crop, resumable.

Caron et al. 2021, "Emerging Properties in Self-Supervised Vision Transformers". One process, any
device; on CPU a run resumed from ``checkpoints/last.pt`` ends with bitwise the same weights as an
uninterrupted one (the checkpoint holds models, optimizer, loss centre and random states, and the
data order of epoch ``e`` depends only on ``(seed, e)``).
"""

from __future__ import annotations

import json
import logging
import math
import random
from dataclasses import dataclass
from itertools import groupby
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from matplotlib.figure import Figure
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from rsdino.config import OptimSettings, VariantConfig
from rsdino.views import MultiCropViews, Normalize
from rsdino.io import atomic_path
from rsdino.losses import DINOLoss
from rsdino.models.backbones import (
    backbone_features,
    backbone_spec,
    build_backbone,
    embed_dim,
    export_backbone,
)
from rsdino.models.catalog import BACKBONES
from rsdino.models.heads import DINOHead
from rsdino.tracking import Tracker
from rsdino.train.checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state
from rsdino.train.schedules import cosine_schedule, teacher_temp_schedule

log = logging.getLogger(__name__)

IMPLEMENTED_METHODS = ("dino",)
#: Variant fields that do not change the training trajectory (a checkpoint stays valid when they change).
_NOT_TRAINING = {"description", "resources", "published", "launcher", "num_workers"}


def _after_checkpoint(epoch: int) -> None:
    """Called after the checkpoint of ``epoch`` (0-based) is written; does nothing (a test hook)."""


class DinoBranch(nn.Module):
    """Backbone + DINO head; runs a list of crops, batching consecutive crops of equal size."""

    def __init__(self, backbone: nn.Module, head: DINOHead) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head

    def forward(self, crops: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Return embeddings ``(V*B, D)`` and head outputs ``(V*B, K)``, crops stacked in order."""
        embeddings = [backbone_features(self.backbone, torch.cat(list(group)))
                      for _, group in groupby(crops, key=lambda crop: tuple(crop.shape[-2:]))]
        embedding = torch.cat(embeddings)
        return embedding, self.head(embedding)


class _ViewsDataset(Dataset):
    """Items of ``dataset`` turned into lists of standardised multi-crop views (labels dropped).

    The views are drawn in native units (reflectance, dB), where the photometric rule has its
    physical meaning (illumination scales reflectance), and each view is standardised afterwards.
    """

    def __init__(self, dataset: Dataset, normalize: Normalize, views: MultiCropViews) -> None:
        self.dataset, self.normalize, self.views = dataset, normalize, views

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> list[torch.Tensor]:
        return [self.normalize(view) for view in self.views(self.dataset[index]["image"])]


def _seed_worker(worker_id: int) -> None:
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)


def _check_variant(variant: VariantConfig) -> None:
    if variant.method not in IMPLEMENTED_METHODS:
        raise NotImplementedError(f"pretraining method {variant.method!r} is not implemented yet "
                                  f"(implemented: {', '.join(IMPLEMENTED_METHODS)})")
    entry = BACKBONES[variant.backbone]
    patch = variant.backbone_kwargs.get("patch_size", entry["patch_size"])
    crops = variant.crops
    if crops.n_global + crops.n_local < 2:
        raise ValueError("DINO needs at least two crops per image (n_global + n_local >= 2)")
    if entry["family"] == "vit" and (crops.global_size % patch or crops.local_size % patch):
        raise ValueError(f"crop sizes {crops.global_size}/{crops.local_size} must be multiples of "
                         f"the patch size {patch} of {variant.backbone}")


def _param_groups(model: nn.Module) -> list[dict[str, Any]]:
    """Weight decay on matrices only: not on biases, norm weights or weight-norm magnitudes."""
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        plain = param.ndim <= 1 or name.endswith(".bias") or name.endswith(".original0")
        (no_decay if plain else decay).append(param)
    return [{"params": decay}, {"params": no_decay, "weight_decay": 0.0}]


def _clip_per_parameter(model: nn.Module, clip: float) -> None:
    """Scale each parameter's gradient to an L2 norm of at most ``clip`` (DINO's ``clip_gradients``)."""
    for param in model.parameters():
        if param.grad is not None:
            scale = clip / (param.grad.norm(2) + 1e-6)
            param.grad.mul_(scale.clamp(max=1.0))


@torch.no_grad()
def _ema_update(teacher: nn.Module, student: nn.Module, momentum: float) -> None:
    """``teacher <- momentum * teacher + (1 - momentum) * student``, parameter by parameter."""
    for t_param, s_param in zip(teacher.parameters(), student.parameters(), strict=True):
        t_param.mul_(momentum).add_(s_param.detach(), alpha=1 - momentum)


def _build_branch(variant: VariantConfig, in_chans: int, drop_path: float) -> DinoBranch:
    backbone = build_backbone(variant.backbone, in_chans, variant.crops.global_size, drop_path,
                              **variant.backbone_kwargs)
    head = variant.head
    return DinoBranch(backbone, DINOHead(embed_dim(backbone), head.out_dim, head.hidden_dim,
                                         head.bottleneck_dim, head.n_layers, head.norm_last_layer))


def _plot_loss(losses: list[float], steps_per_epoch: int, path: Path, title: str) -> Path:
    fig = Figure(figsize=(6, 4))
    ax = fig.add_subplot()
    ax.plot(np.arange(1, len(losses) + 1) / steps_per_epoch, losses, linewidth=1)
    ax.set(xlabel="epoch", ylabel="DINO loss", title=title)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    return path


@dataclass
class _Schedules:
    """Per-step values of the DINO schedules."""

    lr: np.ndarray
    wd: np.ndarray
    momentum: np.ndarray
    teacher_temp: np.ndarray

    @classmethod
    def of(cls, variant: VariantConfig, steps: int) -> _Schedules:
        optim, loss, epochs = variant.optim, variant.loss, variant.optim.epochs
        return cls(lr=cosine_schedule(optim.lr * optim.batch_size / 256, optim.min_lr, epochs, steps,
                                      optim.warmup_epochs),
                   wd=cosine_schedule(optim.weight_decay, optim.weight_decay_end, epochs, steps),
                   momentum=cosine_schedule(optim.momentum_teacher, 1.0, epochs, steps),
                   teacher_temp=teacher_temp_schedule(loss.warmup_teacher_temp, loss.teacher_temp,
                                                      loss.warmup_teacher_temp_epochs, epochs, steps))


def _train_step(student: DinoBranch, teacher: DinoBranch, loss_fn: DINOLoss,
                optimizer: torch.optim.Optimizer, batch: list[torch.Tensor], step: int,
                schedules: _Schedules, optim: OptimSettings, freeze_last_layer: bool) -> dict[str, float]:
    """One DINO update of the student and the EMA teacher; returns the step's metrics."""
    lr, wd = float(schedules.lr[step]), float(schedules.wd[step])
    momentum, temp = float(schedules.momentum[step]), float(schedules.teacher_temp[step])
    for group in optimizer.param_groups:
        group["lr"] = lr
    optimizer.param_groups[0]["weight_decay"] = wd
    with torch.no_grad():
        _, teacher_out = teacher(batch[: loss_fn.n_global_crops])
        teacher_entropy = torch.special.entr(loss_fn.teacher_probs(teacher_out, temp)).sum(-1).mean()
    student_emb, student_out = student(batch)
    loss = loss_fn(student_out, teacher_out, temp)
    loss_value = loss.item()
    if not math.isfinite(loss_value):
        raise FloatingPointError(f"DINO loss is {loss_value} at step {step}")
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if optim.clip_grad > 0:
        _clip_per_parameter(student, optim.clip_grad)
    if freeze_last_layer:  # as in DINO: no gradient at all, so not even weight decay moves the prototypes
        for param in student.head.last_layer.parameters():
            param.grad = None
    optimizer.step()
    _ema_update(teacher, student, momentum)
    with torch.no_grad():
        first_crop = F.normalize(student_emb[: batch[0].shape[0]], dim=-1)
        student_std = first_crop.std(dim=0).mean().item()
    return {"loss": loss_value, "lr": lr, "wd": wd, "momentum": momentum, "teacher_temp": temp,
            "student_std": student_std, "teacher_entropy": teacher_entropy.item()}


def run_pretraining(variant_name: str, variant: VariantConfig, dataset: Dataset, *, bands: list[str],
                    rgb_bands: list[str], mean: list[float], std: list[float], out_dir: Path,
                    tracker: Tracker, device: str = "cpu", progress: bool = True) -> Path:
    """Pretrain ``variant`` on ``dataset`` and export the teacher backbone to ``out_dir``.

    Resumes from ``out_dir/checkpoints/last.pt`` when it was written by the same settings (a
    finished run's checkpoint only re-exports). Writes ``model.safetensors``, ``model.json`` and
    ``loss.png``; logs per-step metrics (``loss``, ``lr``, ``wd``, ``momentum``, ``teacher_temp``,
    ``student_std``: mean over dimensions of the batch std of the L2-normalised student embeddings
    of the first global crop, near 0 on collapse; ``teacher_entropy``: mean entropy of the centred
    teacher softmax) to ``tracker``. Returns the path of ``model.safetensors``.
    """
    _check_variant(variant)
    optim, crops = variant.optim, variant.crops
    out_dir = Path(out_dir)
    ckpt_path = out_dir / "checkpoints" / "last.pt"
    n_images = len(dataset)  # type: ignore[arg-type]
    steps = n_images // optim.batch_size
    if steps == 0:
        raise ValueError(f"{variant_name}: {n_images} images are fewer than one batch of {optim.batch_size}")
    fingerprint = json.dumps({"variant": variant.model_dump(mode="json", exclude=_NOT_TRAINING),
                              "bands": bands, "mean": mean, "std": std, "n_images": n_images},
                             sort_keys=True)
    was_deterministic = torch.are_deterministic_algorithms_enabled()
    was_warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    if device == "cpu":  # bitwise reproducible resume on CPU; GPUs keep their fast kernels
        torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        torch.manual_seed(variant.seed)
        np.random.seed(variant.seed)
        random.seed(variant.seed)
        student = _build_branch(variant, len(bands), variant.drop_path).to(device)
        teacher = _build_branch(variant, len(bands), 0.0).to(device)
        teacher.load_state_dict(student.state_dict())
        teacher.requires_grad_(False)
        loss_fn = DINOLoss(variant.head.out_dim, crops.n_global, variant.loss.student_temp,
                           variant.loss.center_momentum).to(device)
        groups = _param_groups(student)
        optimizer: torch.optim.Optimizer = (torch.optim.AdamW(groups, lr=0.0, weight_decay=0.0)
                                            if optim.optimizer == "adamw"
                                            else torch.optim.SGD(groups, lr=0.0, momentum=0.9))
        schedules = _Schedules.of(variant, steps)
        start_epoch, losses = 0, []
        if ckpt_path.is_file():
            ckpt = load_checkpoint(ckpt_path)
            if ckpt.get("fingerprint") != fingerprint:
                log.warning("%s: written with other settings; starting %s from scratch",
                            ckpt_path, variant_name)
            else:
                student.load_state_dict(ckpt["student"])
                teacher.load_state_dict(ckpt["teacher"])
                optimizer.load_state_dict(ckpt["optimizer"])
                loss_fn.load_state_dict(ckpt["loss"])
                set_rng_state(ckpt["rng"])
                start_epoch, losses = int(ckpt["epoch"]), list(ckpt["losses"])
                log.info("%s: resuming %s after epoch %d", ckpt_path, variant_name, start_epoch)

        views = MultiCropViews(crops.global_size, crops.local_size, crops.n_global, crops.n_local,
                               crops.global_scale, crops.local_scale, bands, rgb_bands,
                               color_p=crops.color_p, brightness=crops.brightness,
                               contrast=crops.contrast, band_jitter=crops.band_jitter,
                               blur_p=crops.blur_p, blur_sigma=crops.blur_sigma)
        generator = torch.Generator()
        loader = DataLoader(_ViewsDataset(dataset, Normalize(mean, std), views),
                            batch_size=optim.batch_size, shuffle=True, drop_last=True,
                            num_workers=variant.num_workers, generator=generator,
                            worker_init_fn=_seed_worker, pin_memory=device.startswith("cuda"))
        for epoch in range(start_epoch, optim.epochs):
            generator.manual_seed(variant.seed * 1_000_003 + epoch)  # epoch order from (seed, epoch)
            student.train()
            teacher.train()  # as in DINO: BatchNorm layers (CNNs, conv stem) use batch statistics
            bar = tqdm(loader, total=steps, desc=f"{variant_name} {epoch + 1}/{optim.epochs}",
                       disable=not progress, leave=False)
            for i, batch in enumerate(bar):
                step = epoch * steps + i
                metrics = _train_step(student, teacher, loss_fn, optimizer,
                                      [crop.to(device, non_blocking=True) for crop in batch], step,
                                      schedules, optim, epoch < optim.freeze_last_layer_epochs)
                losses.append(metrics["loss"])
                tracker.log_metrics(metrics, step)
                bar.set_postfix(loss=f"{metrics['loss']:.4f}")
            save_checkpoint(ckpt_path, {
                "student": student.state_dict(), "teacher": teacher.state_dict(),
                "optimizer": optimizer.state_dict(), "loss": loss_fn.state_dict(),
                "epoch": epoch + 1, "step": (epoch + 1) * steps, "rng": rng_state(),
                "losses": losses, "fingerprint": fingerprint})
            _after_checkpoint(epoch)
    finally:
        torch.use_deterministic_algorithms(was_deterministic, warn_only=was_warn_only)

    meta = {**backbone_spec(variant.backbone, len(bands), crops.global_size, variant.drop_path,
                            **variant.backbone_kwargs),
            "bands": list(bands), "method": variant.method, "variant": variant_name,
            "mean": [float(v) for v in mean], "std": [float(v) for v in std]}
    weights = export_backbone(teacher.backbone, out_dir, meta)
    if losses:
        tracker.log_artifact(_plot_loss(losses, steps, out_dir / "loss.png", variant_name))
    return weights
