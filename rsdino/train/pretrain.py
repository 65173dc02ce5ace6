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
- exports the teacher backbone (``model.safetensors`` + ``model.json``) and the student backbone
  (``student/``, same layout) at the end;
- starts from an imported training checkpoint (student, teacher, heads, centre) when the variant
  sets ``init_from`` (``rsdino.train.init_from``);
- writes ``checkpoints/last.pt`` atomically after every epoch, every ``checkpoint_every_steps``
  steps and when ``request_stop()`` was called (then raises ``TrainingInterrupted``), with everything
  needed to resume bit for bit on CPU: model (student, teacher, centres), optimizer, step, random
  states, metric history; the one before is kept as ``previous.pt`` and resumed from when
  ``last.pt`` is unreadable; the folder is locked for the run and the temporary files of a killed
  run are removed at start-up (``rsdino.train.checkpointing``);
- logs every loss term, lr, wd, momentum, teacher temperature and the collapse signals to MLflow,
  and writes them all, one row per step, to ``history.csv`` beside the exported weights (the report's
  training curves);
- with a ``probe`` (``variant.probe``, ``rsdino.train.probe.KnnProbe``), scores the teacher backbone
  by kNN on a small held-out labelled set at step 0 and every ``probe.every_steps`` steps, logged as
  ``knn_probe_top1`` beside the losses (a step-0 row in ``history.csv`` holds the value before
  training); the probe leaves the RNGs and so the trained weights untouched.
  training curves); they stay on the device and are read in blocks of ``read_metrics_every`` steps
  (``rsdino.train.step_metrics``), so a GPU step never waits for the host;
- feeds the steps from one DataLoader iteration over the whole run (the workers prefetch across
  epochs; pinned memory on CUDA); the dataset is a chip store (``rsdino.data.chips``) when the
  CLI found one in the prepared folder.
"""

from __future__ import annotations

import json
import logging
import random
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure
from torch.utils.data import DataLoader, Dataset, Sampler

from rsdino import io as rio
from rsdino import views as view_recipes
from rsdino.config.variants import VariantConfig
from rsdino.io import atomic_path
from rsdino.models.backbones import backbone_folder, backbone_spec, export_backbone
from rsdino.models.catalog import backbone_entry
from rsdino.progress import Progress
from rsdino.stable_files import save_safetensors
from rsdino.tracking import Tracker
from rsdino.train import distributed
from rsdino.train.budget import Budget, data_subset
from rsdino.train.checkpoint import rng_state, set_rng_state
from rsdino.train.checkpointing import holds_output_folder, load_latest, save_rotating
from rsdino.train.meta_arch import SelfDistillation, compile_blocks
from rsdino.train.methods import recipe
from rsdino.train.param_groups import param_groups
from rsdino.train.probe import PROBE_METRIC, PROBE_SECONDS, KnnProbe
from rsdino.train.schedules import Schedules
from rsdino.train.step_metrics import StepMetrics, read_interval
from rsdino.views.device import finish_on_device

log = logging.getLogger(__name__)

#: Variant fields that do not change the training trajectory (a checkpoint stays valid when they change).
_NOT_TRAINING = {"description", "resources", "published", "launcher", "num_workers", "checkpoint_every_steps",
                 "probe", "read_metrics_every"}
_STOP = threading.Event()
#: Epochs the batches of a time-budgeted run may span: the budget, not this bound, ends the run.
_OPEN_ENDED_EPOCHS = 1_000_000
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


class RunBatches(Sampler[list[tuple[int, int]]]):
    """``GlobalBatchSampler``'s batches of every epoch from step ``start`` on, as ``(epoch, index)`` pairs.

    One DataLoader iteration then serves the whole run (the workers prefetch across epoch
    boundaries), and each item still knows the epoch its views are seeded by (``ViewsDataset``).

    Args:
        n_items, batch_size, seed, rank, world_size: As in ``GlobalBatchSampler``.
        epochs: Epochs of the run.
        start: Steps already done (resuming).
    """

    def __init__(self, n_items: int, batch_size: int, *, seed: int, epochs: int, rank: int = 0,
                 world_size: int = 1, start: int = 0) -> None:
        self.args = {"n_items": n_items, "batch_size": batch_size, "seed": seed, "rank": rank,
                     "world_size": world_size}
        self.epochs, self.start = epochs, start
        self.steps = len(GlobalBatchSampler(**self.args, epoch=0))  # refuses a batch ranks cannot share

    def __len__(self) -> int:
        return self.steps * self.epochs - self.start

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        for epoch in range(self.start // self.steps, self.epochs):
            skip = self.start - epoch * self.steps if epoch == self.start // self.steps else 0
            for batch in GlobalBatchSampler(**self.args, epoch=epoch, start=skip):
                yield [(epoch, i) for i in batch]


class ViewsDataset(Dataset):
    """Items of ``dataset`` turned into views, reproducibly.

    The views of item ``i`` in epoch ``e`` are seeded by ``(seed, e, i)``; the global RNG is forked,
    so the training RNG is untouched. An index is ``(e, i)`` (``RunBatches``) or ``i`` (epoch
    ``self.epoch``).
    """

    def __init__(self, dataset: Dataset, views: Any, seed: int) -> None:
        self.dataset, self.views, self.seed, self.epoch = dataset, views, seed, 0

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: int | tuple[int, int]) -> dict:
        epoch, index = index if isinstance(index, tuple) else (self.epoch, index)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed((self.seed * 1_000_003 + epoch) * 10_000_019 + index)
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
    entry = backbone_entry(variant.backbone)
    patch = variant.backbone_kwargs.get("patch_size", entry.patch_size)
    crops = variant.crops
    if crops.n_global + crops.n_local < 2:
        raise ValueError("self-distillation needs at least two crops per image (n_global + n_local >= 2)")
    sizes = [crops.global_size, crops.local_size, *(getattr(crops, "local_sizes", None) or [])]
    padded = bool(variant.backbone_kwargs.get("dynamic_img_pad", False))  # pads crops up to the patch grid
    if entry.family == "vit" and not padded and any(size % patch for size in sizes):
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


def write_history(history: dict[str, list[float]], steps_per_epoch: int, path: Path,
                  probe: dict[int, dict[str, float]] | None = None) -> Path:
    """Write the per-step metrics as CSV, atomically.

    Columns: ``step``, ``epoch`` (= step / steps per epoch), then one per metric. With ``probe``
    (``{step: {"knn_probe_top1": %, "knn_probe_seconds": s}}``), those columns hold the probe's
    results at the steps it ran (empty elsewhere), and a first row ``step = 0`` holds the values
    before training.
    """
    n = max((len(v) for v in history.values()), default=0)
    frame = pd.DataFrame({"step": np.arange(1, n + 1), "epoch": np.arange(1, n + 1) / steps_per_epoch})
    for name, values in history.items():
        frame[name] = pd.Series(values, dtype="float64")
    if probe:
        if 0 in probe:
            frame = pd.concat([pd.DataFrame({"step": [0], "epoch": [0.0]}), frame], ignore_index=True)
        for name in dict.fromkeys(key for values in probe.values() for key in values):
            frame[name] = frame["step"].map({k: v.get(name) for k, v in probe.items()}).astype("float64")
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
               autocast: bool = False, read: bool = True) -> dict[str, Any]:
    """One update of the student and the EMA teacher; returns the step's metrics (mean over ranks).

    ``read=False`` leaves the loss terms as 0-d device tensors (no host synchronisation; the loop
    reads them in blocks, ``rsdino.train.step_metrics``).
    """
    lr, wd = float(schedules.lr[step]), float(schedules.wd[step])
    momentum, temp = float(schedules.momentum[step]), float(schedules.teacher_temp[step])
    for group in optimizer.param_groups:
        group["lr"] = lr * group.get("lr_multiplier", 1.0)
        group["weight_decay"] = wd * group.get("wd_multiplier", 1.0)
    device_type = batch["global"][0].device.type
    with torch.autocast(device_type=device_type, dtype=torch.bfloat16, enabled=autocast):
        out = model.losses(batch, temp)
    loss = out["total"]
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
    metrics = {"loss": loss.detach(), **{f"loss_{k}": v.detach() for k, v in out.items()
                                         if k not in ("total", "student_std", "teacher_entropy")},
               "student_std": out["student_std"], "teacher_entropy": out["teacher_entropy"],
               "lr": lr, "wd": wd, "momentum": momentum, "teacher_temp": temp}
    if not read:
        return metrics
    pending = StepMetrics()
    pending.add(step, metrics)
    return pending.read()[0][1]


def build_optimizer(model: SelfDistillation, variant: VariantConfig) -> torch.optim.Optimizer:
    """AdamW (or SGD) over the student's parameter groups."""
    groups = param_groups(model.student, layer_decay=variant.optim.layer_decay,
                          patch_embed_lr_mult=variant.optim.patch_embed_lr_mult)
    if variant.optim.optimizer == "adamw":  # fused (one kernel for all parameters) on CUDA
        fused = next(model.student.parameters()).is_cuda or None
        return torch.optim.AdamW(groups, lr=0.0, weight_decay=0.0, fused=fused)
    return torch.optim.SGD(groups, lr=0.0, momentum=0.9)


@holds_output_folder  # one writer per folder (a second one: a one-line error); no debris of a kill
def run_pretraining(variant_name: str, variant: VariantConfig, dataset: Dataset, *, bands: list[str],
                    rgb_bands: list[str], mean: list[float], std: list[float], out_dir: Path,
                    tracker: Tracker, device: str = "cpu", progress: bool = True,
                    gsd: float = 10.0, probe: KnnProbe | None = None) -> Path:
    """Pretrain ``variant`` on ``dataset`` and export the teacher backbone to ``out_dir``.

    Resumes from ``out_dir/checkpoints/last.pt`` when it was written by the same settings (a
    finished run's checkpoint only re-exports). Writes ``model.safetensors``, ``model.json`` and
    timm's ``config.json`` (the teacher backbone), ``student/`` (the student backbone, same layout),
    ``teacher.safetensors``, ``history.csv`` and ``loss.png`` (rank 0); logs per-step metrics
    (``loss`` and ``loss_<term>`` for every term, ``lr``, ``wd``, ``momentum``, ``teacher_temp``,
    ``student_std``, ``teacher_entropy``) to ``tracker``. Returns the path of
    ``model.safetensors``. ``gsd`` is the data's native ground sample distance in metres (a
    sample's own ``gsd`` overrides it). ``probe`` (optional) scores the teacher backbone by kNN at
    step 0 and every ``probe.settings.every_steps`` steps (``knn_probe_top1``; see the module
    docstring).
    """
    check_variant(variant)
    if variant.input_bands is not None:
        dataset, bands, rgb_bands, mean, std = select_bands(dataset, variant.input_bands, bands, rgb_bands,
                                                            mean, std)
    dataset = data_subset(dataset, variant.budget.data_fraction, variant.seed)
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
    budget = Budget(variant, steps)  # epochs, steps or minutes (rsdino.train.budget)
    total_steps = budget.total_steps
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
        model = SelfDistillation(variant, len(bands))
        if variant.init_from is not None:  # continue from an imported training checkpoint
            from rsdino.train.init_from import initialise_from

            initialise_from(model, variant.init_from)
        model = model.to(device)
        if variant.compile:
            compile_blocks(model)
        optimizer = build_optimizer(model, variant)
        schedules = Schedules.of(variant, steps, total_steps)
        step, history, probed = 0, {}, {}
        ckpt = load_latest(ckpt_path)  # last.pt, or previous.pt when last.pt is damaged
        if ckpt is not None:
            if ckpt.get("fingerprint") != fingerprint:
                log.warning("%s: written with other settings; starting %s from scratch",
                            ckpt_path, variant_name)
            else:
                model.load_state_dict(ckpt["model"])
                optimizer.load_state_dict(ckpt["optimizer"])
                set_rng_state(ckpt["rng"])
                step, history = int(ckpt["step"]), {k: list(v) for k, v in ckpt["history"].items()}
                budget.earlier_s = float(ckpt.get("elapsed_s", 0.0))
                probed = {int(k): {m: float(x) for m, x in v.items()}
                          for k, v in ckpt.get("probe", {}).items()}
                log.info("%s: resuming %s at step %d of %d", ckpt_path, variant_name, step, total_steps)

        def run_probe() -> None:
            if probe is None or not info.is_main or step in probed:
                return
            if not (probe.due(step) or step == total_steps):
                return
            probed[step] = result = probe(model.teacher.backbone, device)
            tracker.log_metrics(result, step)
            log.info("%s: step %d of %d, kNN probe top-1 %.1f %% (%.1f s)", variant_name, step,
                     total_steps, result[PROBE_METRIC], result[PROBE_SECONDS])

        if probe is not None:
            probe.check_bands(bands[model.student.s1_bands:])
        run_probe()  # step 0: the curve's random-init point (a resumed run has it already)

        def checkpoint() -> None:
            if info.is_main:
                save_rotating(ckpt_path, {
                    "model": model.state_dict(), "optimizer": optimizer.state_dict(), "step": step,
                    "epoch": step // steps, "rng": rng_state(), "history": history,
                    # no clock readings unless the budget is time: identical runs, identical bytes
                    "probe": {at: {m: v for m, v in result.items() if m != PROBE_SECONDS}
                              for at, result in probed.items()},
                    "fingerprint": fingerprint,
                    **({"elapsed_s": budget.elapsed_s()} if budget.seconds is not None else {})})
            _after_checkpoint(step // steps, step)

        patch = variant.backbone_kwargs.get("patch_size", backbone_entry(variant.backbone).patch_size) or 1
        make_views = view_recipes.build_views(variant.crops, bands=bands, rgb_bands=rgb_bands, mean=mean,
                                              std=std, gsd=gsd, patch_size=patch)
        on_device = variant.views_on == "device"  # workers only draw and crop (rsdino.views.device)
        views = ViewsDataset(dataset, make_views.crop if on_device else make_views, variant.seed)
        autocast = device.startswith("cuda") and variant.precision == "bf16"
        model.train()  # as in DINO: BatchNorm layers (CNNs, conv stem) use batch statistics
        bar = Progress(total_steps, initial=step, desc=variant_name, steps_per_epoch=steps,
                       items_per_step=optim.batch_size, enabled=progress and info.is_main,
                       remaining_s=budget.remaining_s if budget.seconds is not None else None)
        # A time budget has no last epoch: the batches go on until the budget says done.
        batches = RunBatches(n_images, optim.batch_size, seed=variant.seed,
                             epochs=budget.epochs if budget.seconds is None else _OPEN_ENDED_EPOCHS,
                             rank=info.rank, world_size=info.world_size, start=step)
        # One loader iteration for the run (the workers prefetch across epochs; pinned host memory on
        # CUDA); its own generator: creating it (also on resume) leaves the global RNG alone.
        loader = DataLoader(views, batch_sampler=batches, num_workers=variant.num_workers,
                            collate_fn=make_views.collate, worker_init_fn=_seed_worker,
                            pin_memory=device.startswith("cuda"),
                            generator=torch.Generator().manual_seed(variant.seed))
        pending, read_every = StepMetrics(), read_interval(variant.read_metrics_every, device)

        def read_metrics() -> None:  # the pending steps' metrics: one host read, then history and tracker
            for done, metrics in pending.read():
                for key, value in metrics.items():
                    history.setdefault(key, []).append(value)
                if info.is_main:
                    tracker.log_metrics(metrics, done)
                bar.update(metrics)

        if not budget.done(step):
            for batch in loader:
                epoch = step // steps
                batch = (finish_on_device(make_views, batch, device) if on_device
                         else _to_device(batch, device))
                metrics = train_step(model, optimizer, batch, budget.schedule_index(step), schedules, variant,
                                     epoch < optim.freeze_last_layer_epochs, autocast, read=False)
                pending.add(step, metrics)
                step += 1
                run_probe()
                every = variant.checkpoint_every_steps
                finished = budget.done(step)
                due = step % steps == 0 or (every and step % every == 0) or _STOP.is_set() or finished
                if due or len(pending) >= read_every:
                    read_metrics()
                if due:
                    checkpoint()
                if _STOP.is_set():
                    raise TrainingInterrupted(f"{variant_name}: stopped at step {step}; "
                                              f"checkpoint written to {ckpt_path}")
                if finished:
                    break
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
        weights = export_backbone(backbone, out_dir, {**meta, "branch": "teacher"})
        # The student backbone too, in the same layout: the DINOv2-RS seed evaluates the student.
        export_backbone(model.student.backbone, backbone_folder(out_dir, "student"),
                        {**meta, "branch": "student"})
        # The whole teacher (heads, GSD head, S1 backbone and fusion too), for analyses and reuse.
        teacher_state = {k: v.detach().cpu().contiguous() for k, v in model.teacher.state_dict().items()}
        save_safetensors(teacher_state, out_dir / TEACHER_FILE,
                         metadata={"method": variant.method, "variant": variant_name})
        tracker.log_artifact(write_history(history, steps, out_dir / HISTORY_FILE, probed))
        if history:
            tracker.log_artifact(_plot_losses(history, steps, out_dir / "loss.png", variant_name))
    if created_group:
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()
    return weights
