"""The pretraining loop of every method: resumable, data parallel, bf16 on GPU, logged every step.

One loop for all methods: ``rsdino.train.meta_arch.SelfDistillation`` holds the student, the EMA
teacher and the loss terms the method switches on (``rsdino.train.methods``); ``rsdino.views``
draws the views. The loop:

- splits every global batch of ``optim.batch_size`` images over the ranks of ``torch.distributed``
  (initialised from ``RANK``/``WORLD_SIZE``/``MASTER_ADDR``/``MASTER_PORT`` when ``WORLD_SIZE > 1``;
  gloo on CPU, NCCL on GPU); gradients are averaged over ranks and the loss centres and
  Sinkhorn-Knopp sums are reduced inside the losses, so W processes on a global batch make the same
  update as one process on it (KoLeo and BatchNorm, which see the local batch only, are the
  documented exceptions);
- draws the views of image ``i`` in epoch ``e`` from a generator seeded by ``(seed, e, i)``, so they
  depend neither on the rank, nor on the number of workers, nor on where a run was resumed;
- sets lr, weight decay (per parameter group multipliers: no decay on biases and norms, layer-wise lr
  decay, patch-embedding lr multiplier), teacher momentum and temperature from per-step schedules;
- clips gradients per parameter (DINO) or globally (DINOv2), freezes the prototype layers during the
  first epoch(s), runs under bf16 autocast on CUDA;
- writes ``checkpoints/last.pt`` atomically after every epoch, every ``checkpoint_every_steps``
  steps and when ``request_stop()`` was called (then raises ``TrainingInterrupted``), with everything
  needed to resume bit for bit on CPU: model (student, teacher, centres), optimizer, step, random
  states, metric history;
- logs every loss term, lr, wd, momentum, teacher temperature and the collapse signals to MLflow,
  and writes them all, one row per step, to ``history.csv`` beside the exported weights (the report's
  training curves).
"""

from __future__ import annotations

import json
import logging
import math
import random
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure
from safetensors.torch import save_file
from torch.utils.data import DataLoader, Dataset, Sampler
from tqdm.auto import tqdm

from rsdino import io as rio
from rsdino import views as view_recipes
from rsdino.config.variants import VariantConfig
from rsdino.io import atomic_path
from rsdino.models.backbones import backbone_spec, export_backbone
from rsdino.models.catalog import BACKBONES
from rsdino.tracking import Tracker
from rsdino.train import distributed
from rsdino.train.checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state
from rsdino.train.meta_arch import SelfDistillation, compile_blocks
from rsdino.train.methods import recipe
from rsdino.train.param_groups import param_groups
from rsdino.train.schedules import Schedules

log = logging.getLogger(__name__)

#: Variant fields that do not change the training trajectory (a checkpoint stays valid when they change).
_NOT_TRAINING = {"description", "resources", "published", "launcher", "num_workers", "checkpoint_every_steps"}
_STOP = threading.Event()
#: The whole EMA teacher branch (backbones, heads, fusion), beside the exported backbone.
TEACHER_FILE = "teacher.safetensors"
HISTORY_FILE = "history.csv"  # one row per step: step, epoch and every logged metric


class TrainingInterrupted(RuntimeError):
    """Raised after ``request_stop()``: the checkpoint of the last finished step is on disk."""


def request_stop() -> None:
    """Ask the running loop to finish its step, write its checkpoint and raise ``TrainingInterrupted``.

    Safe to call from a signal handler or another thread (it only sets a flag).
    """
    _STOP.set()


def _after_checkpoint(epoch: int, step: int) -> None:
    """Called after each checkpoint (``epoch`` 0-based, ``step`` = steps done); a test hook."""


class GlobalBatchSampler(Sampler[list[int]]):
    """The share of this rank in each global batch of a seeded per-epoch permutation.

    The permutation of epoch ``e`` comes from ``(seed, e)``; global batch ``j`` is
    ``perm[j*B : (j+1)*B]`` (incomplete last batch dropped) and rank ``r`` of ``W`` gets its ``r``-th
    of ``W`` equal slices. ``start`` skips the first batches (resuming inside an epoch).

    Args:
        n_items: Dataset length.
        batch_size: Global batch ``B`` (a multiple of ``world_size``).
        seed, epoch: The permutation's seed.
        rank, world_size: This process's slice.
        start: Global batches already done in this epoch.
    """

    def __init__(self, n_items: int, batch_size: int, *, seed: int, epoch: int, rank: int = 0,
                 world_size: int = 1, start: int = 0) -> None:
        if batch_size % world_size:
            raise ValueError(f"global batch {batch_size} is not divisible by {world_size} processes")
        self.n_items, self.batch_size, self.start = n_items, batch_size, start
        self.rank, self.world_size = rank, world_size
        self.generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)

    def __len__(self) -> int:
        return self.n_items // self.batch_size - self.start

    def __iter__(self) -> Iterator[list[int]]:
        perm = torch.randperm(self.n_items, generator=self.generator).tolist()
        share = self.batch_size // self.world_size
        for j in range(self.start, self.n_items // self.batch_size):
            begin = j * self.batch_size + self.rank * share
            yield perm[begin: begin + share]


class ViewsDataset(Dataset):
    """Items of ``dataset`` turned into views, reproducibly.

    The views of item ``i`` in epoch ``e`` are seeded by ``(seed, e, i)``; the global RNG is forked,
    so the training RNG is untouched.
    """

    def __init__(self, dataset: Dataset, views: Any, seed: int) -> None:
        self.dataset, self.views, self.seed, self.epoch = dataset, views, seed, 0

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> dict:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed((self.seed * 1_000_003 + self.epoch) * 10_000_019 + index)
            return self.views(self.dataset[index])


class BandSubset(Dataset):
    """Items of ``dataset`` with ``image`` (and ``series``) reduced to the bands at ``index``."""

    def __init__(self, dataset: Dataset, index: list[int]) -> None:
        self.dataset, self.index = dataset, index

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, i: int) -> dict:
        item = dict(self.dataset[i])
        item["image"] = item["image"][self.index]
        if "series" in item:
            item["series"] = item["series"][:, self.index]
        return item


def select_bands(dataset: Dataset, wanted: list[str], bands: list[str], rgb_bands: list[str],
                 mean: list[float], std: list[float]) -> tuple[Dataset, list[str], list[str], list[float],
                                                             list[float]]:
    """Restrict the data to the bands ``wanted`` (``variant.input_bands``), by name."""
    missing = [band for band in wanted if band not in bands]
    if missing:
        raise ValueError(f"input_bands {missing} are not bands of the pretraining data {bands}")
    index = [bands.index(band) for band in wanted]
    return (BandSubset(dataset, index), list(wanted), [b for b in rgb_bands if b in wanted],
            [mean[i] for i in index], [std[i] for i in index])


def _seed_worker(worker_id: int) -> None:
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)


def check_variant(variant: VariantConfig) -> None:
    """Refuse settings the loop cannot train (clear messages, before anything is built)."""
    recipe(variant.method)
    entry = BACKBONES[variant.backbone]
    patch = variant.backbone_kwargs.get("patch_size", entry["patch_size"])
    crops = variant.crops
    if crops.n_global + crops.n_local < 2:
        raise ValueError("self-distillation needs at least two crops per image (n_global + n_local >= 2)")
    sizes = [crops.global_size, crops.local_size, *(getattr(crops, "local_sizes", None) or [])]
    padded = bool(variant.backbone_kwargs.get("dynamic_img_pad", False))  # pads crops up to the patch grid
    if entry["family"] == "vit" and not padded and any(size % patch for size in sizes):
        raise ValueError(f"crop sizes {sizes} must be multiples of the patch size {patch} "
                         f"of {variant.backbone}")


def _clip_gradients(parameters: list[torch.nn.Parameter], clip: float, mode: str) -> None:
    """Per parameter: ``g <- g * min(1, clip / (||g|| + 1e-6))`` (DINO); global: torch's norm clip."""
    grads = [p for p in parameters if p.grad is not None]
    if mode == "global":
        torch.nn.utils.clip_grad_norm_(grads, clip)
        return
    for param in grads:
        scale = clip / (param.grad.norm(2) + 1e-6)
        param.grad.mul_(scale.clamp(max=1.0))


def _is_loss(name: str) -> bool:
    return name == "loss" or name.startswith("loss_")


def write_history(history: dict[str, list[float]], steps_per_epoch: int, path: Path) -> Path:
    """Write the per-step metrics as CSV, atomically.

    Columns: ``step``, ``epoch`` (= step / steps per epoch), then one per metric.
    """
    n = max((len(v) for v in history.values()), default=0)
    frame = pd.DataFrame({"step": np.arange(1, n + 1), "epoch": np.arange(1, n + 1) / steps_per_epoch})
    for name, values in history.items():
        frame[name] = pd.Series(values, dtype="float64")
    return rio.write_text(path, frame.to_csv(index=False))


def _plot_losses(history: dict[str, list[float]], steps_per_epoch: int, path: Path, title: str) -> Path:
    fig = Figure(figsize=(6, 4))
    ax = fig.add_subplot()
    for name, values in ((k, v) for k, v in history.items() if _is_loss(k)):
        ax.plot(np.arange(1, len(values) + 1) / steps_per_epoch, values, linewidth=1, label=name)
    ax.set(xlabel="epoch", ylabel="loss", title=title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    return path


def _to_device(batch: Any, device: str) -> Any:
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: _to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, list | tuple):
        return [_to_device(v, device) for v in batch]
    return batch


def train_step(model: SelfDistillation, optimizer: torch.optim.Optimizer, batch: dict, step: int,
               schedules: Schedules, variant: VariantConfig, freeze_last_layer: bool,
               autocast: bool = False) -> dict[str, float]:
    """One update of the student and the EMA teacher; returns the step's metrics (mean over ranks)."""
    lr, wd = float(schedules.lr[step]), float(schedules.wd[step])
    momentum, temp = float(schedules.momentum[step]), float(schedules.teacher_temp[step])
    for group in optimizer.param_groups:
        group["lr"] = lr * group.get("lr_multiplier", 1.0)
        group["weight_decay"] = wd * group.get("wd_multiplier", 1.0)
    device_type = batch["global"][0].device.type
    with torch.autocast(device_type=device_type, dtype=torch.bfloat16, enabled=autocast):
        out = model.losses(batch, temp)
    loss = out["total"]
    if not math.isfinite(loss.item()):
        raise FloatingPointError(f"loss is {loss.item()} at step {step} "
                                 f"(terms: { {k: float(v) for k, v in out.items()} })")
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    distributed.average_gradients(model.student)
    if variant.optim.clip_grad > 0:
        _clip_gradients(list(model.student.parameters()), variant.optim.clip_grad, variant.optim.clip_mode)
    if freeze_last_layer:  # as in DINO: no gradient at all, so not even weight decay moves the prototypes
        for layer in model.student.last_layers():
            for param in layer.parameters():
                param.grad = None
    optimizer.step()
    model.ema_update(momentum)
    metrics = {"loss": loss.item(), **{f"loss_{k}": v.item() for k, v in out.items()
                                       if k not in ("total", "student_std", "teacher_entropy")},
               "student_std": out["student_std"].item(), "teacher_entropy": out["teacher_entropy"].item()}
    metrics = distributed.mean_over_ranks(metrics)
    return {**metrics, "lr": lr, "wd": wd, "momentum": momentum, "teacher_temp": temp}


def build_optimizer(model: SelfDistillation, variant: VariantConfig) -> torch.optim.Optimizer:
    """AdamW (or SGD) over the student's parameter groups."""
    groups = param_groups(model.student, layer_decay=variant.optim.layer_decay,
                          patch_embed_lr_mult=variant.optim.patch_embed_lr_mult)
    if variant.optim.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=0.0, weight_decay=0.0)
    return torch.optim.SGD(groups, lr=0.0, momentum=0.9)


def run_pretraining(variant_name: str, variant: VariantConfig, dataset: Dataset, *, bands: list[str],
                    rgb_bands: list[str], mean: list[float], std: list[float], out_dir: Path,
                    tracker: Tracker, device: str = "cpu", progress: bool = True,
                    gsd: float = 10.0) -> Path:
    """Pretrain ``variant`` on ``dataset`` and export the teacher backbone to ``out_dir``.

    Resumes from ``out_dir/checkpoints/last.pt`` when it was written by the same settings (a
    finished run's checkpoint only re-exports). Writes ``model.safetensors``, ``model.json``,
    ``teacher.safetensors``, ``history.csv`` and ``loss.png`` (rank 0); logs per-step metrics
    (``loss`` and ``loss_<term>`` for every term, ``lr``, ``wd``, ``momentum``, ``teacher_temp``,
    ``student_std``, ``teacher_entropy``) to ``tracker``. Returns the path of
    ``model.safetensors``. ``gsd`` is the data's native ground sample distance in metres (a
    sample's own ``gsd`` overrides it).
    """
    check_variant(variant)
    if variant.input_bands is not None:
        dataset, bands, rgb_bands, mean, std = select_bands(dataset, variant.input_bands, bands, rgb_bands,
                                                            mean, std)
    optim = variant.optim
    out_dir = Path(out_dir)
    ckpt_path = out_dir / "checkpoints" / "last.pt"
    info, created_group = distributed.init_from_env(device)
    if device.startswith("cuda") and info.world_size > 1:
        device = f"cuda:{info.local_rank}"
        torch.cuda.set_device(device)
    n_images = len(dataset)  # type: ignore[arg-type]
    steps = n_images // optim.batch_size
    if steps == 0:
        raise ValueError(f"{variant_name}: {n_images} images are fewer than one batch of {optim.batch_size}")
    total_steps = steps * optim.epochs
    fingerprint = json.dumps({"variant": variant.model_dump(mode="json", exclude=_NOT_TRAINING),
                              "bands": bands, "mean": mean, "std": std, "n_images": n_images, "gsd": gsd},
                             sort_keys=True)
    was_deterministic = torch.are_deterministic_algorithms_enabled()
    was_warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    if device == "cpu":  # bitwise reproducible resume on CPU; GPUs keep their fast kernels
        torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        torch.manual_seed(variant.seed)
        np.random.seed(variant.seed)
        random.seed(variant.seed)
        model = SelfDistillation(variant, len(bands)).to(device)
        if variant.compile:
            compile_blocks(model)
        optimizer = build_optimizer(model, variant)
        schedules = Schedules.of(variant, steps)
        step, history = 0, {}
        if ckpt_path.is_file():
            ckpt = load_checkpoint(ckpt_path)
            if ckpt.get("fingerprint") != fingerprint:
                log.warning("%s: written with other settings; starting %s from scratch",
                            ckpt_path, variant_name)
            else:
                model.load_state_dict(ckpt["model"])
                optimizer.load_state_dict(ckpt["optimizer"])
                set_rng_state(ckpt["rng"])
                step, history = int(ckpt["step"]), {k: list(v) for k, v in ckpt["history"].items()}
                log.info("%s: resuming %s at step %d of %d", ckpt_path, variant_name, step, total_steps)

        def checkpoint() -> None:
            if info.is_main:
                save_checkpoint(ckpt_path, {
                    "model": model.state_dict(), "optimizer": optimizer.state_dict(), "step": step,
                    "epoch": step // steps, "rng": rng_state(), "history": history,
                    "fingerprint": fingerprint})
            _after_checkpoint(step // steps, step)

        patch = variant.backbone_kwargs.get("patch_size", BACKBONES[variant.backbone]["patch_size"]) or 1
        make_views = view_recipes.build_views(variant.crops, bands=bands, rgb_bands=rgb_bands, mean=mean,
                                              std=std, gsd=gsd, patch_size=patch)
        views = ViewsDataset(dataset, make_views, variant.seed)
        autocast = device.startswith("cuda") and variant.precision == "bf16"
        model.train()  # as in DINO: BatchNorm layers (CNNs, conv stem) use batch statistics
        bar = tqdm(total=total_steps, initial=step, desc=variant_name,
                   disable=not progress or not info.is_main)
        while step < total_steps:
            epoch = step // steps
            views.epoch = epoch
            sampler = GlobalBatchSampler(n_images, optim.batch_size, seed=variant.seed, epoch=epoch,
                                         rank=info.rank, world_size=info.world_size, start=step % steps)
            # Its own generator: creating the loader (also mid-epoch, on resume) leaves the global RNG alone.
            loader = DataLoader(views, batch_sampler=sampler, num_workers=variant.num_workers,
                                collate_fn=make_views.collate,
                                worker_init_fn=_seed_worker, pin_memory=device.startswith("cuda"),
                                generator=torch.Generator().manual_seed(variant.seed + epoch))
            for batch in loader:
                metrics = train_step(model, optimizer, _to_device(batch, device), step, schedules, variant,
                                     epoch < optim.freeze_last_layer_epochs, autocast)
                for key, value in metrics.items():
                    history.setdefault(key, []).append(value)
                if info.is_main:
                    tracker.log_metrics(metrics, step)
                step += 1
                bar.update(1)
                bar.set_postfix(loss=f"{metrics['loss']:.4f}", epoch=epoch + 1)
                every = variant.checkpoint_every_steps
                if step % steps == 0 or (every and step % every == 0) or _STOP.is_set():
                    checkpoint()
                if _STOP.is_set():
                    raise TrainingInterrupted(f"{variant_name}: stopped at step {step}; "
                                              f"checkpoint written to {ckpt_path}")
        bar.close()
    finally:
        torch.use_deterministic_algorithms(was_deterministic, warn_only=was_warn_only)
        _STOP.clear()  # a stop requested during start-up (imports, MLflow) still stops this run

    weights = out_dir / "model.safetensors"
    if info.is_main:
        crops = variant.crops
        backbone = model.teacher.backbone
        kwargs = dict(variant.backbone_kwargs)
        if model.plan.gsd:
            kwargs["reg_tokens"] = int(kwargs.get("reg_tokens", 0)) + 1
        n_bands = len(bands) - model.student.s1_bands
        meta = {**backbone_spec(variant.backbone, n_bands, crops.global_size, variant.drop_path, **kwargs),
                "bands": list(bands[model.student.s1_bands:]), "method": variant.method,
                "variant": variant_name, "mean": [float(v) for v in mean[model.student.s1_bands:]],
                "std": [float(v) for v in std[model.student.s1_bands:]]}
        weights = export_backbone(backbone, out_dir, meta)
        # The whole teacher (heads, GSD head, S1 backbone and fusion too), for analyses and reuse.
        teacher_state = {k: v.detach().cpu().contiguous() for k, v in model.teacher.state_dict().items()}
        with atomic_path(out_dir / TEACHER_FILE, suffix=".safetensors") as tmp:
            save_file(teacher_state, str(tmp), metadata={"method": variant.method, "variant": variant_name})
        tracker.log_artifact(write_history(history, steps, out_dir / HISTORY_FILE))
        if history:
            tracker.log_artifact(_plot_losses(history, steps, out_dir / "loss.png", variant_name))
    if created_group:
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()
    return weights
