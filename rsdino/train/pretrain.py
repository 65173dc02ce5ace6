"""The pretraining loop of every method: resumable, data parallel, bf16 on GPU, logged every step.

One loop for all methods: it builds the meta-architecture named by the method's record
(``rsdino.config.methods``; for the DINO family ``rsdino.train.meta_arch.SelfDistillation``: student,
EMA teacher and the loss terms the method switches on) and talks to it only through
``rsdino.train.meta_architecture.MetaArchitecture``; ``rsdino.views`` draws the views.
``run_pretraining`` is ``resume`` (the checkpoint, if any), ``train_loop`` and
``rsdino.train.export.export_model``. The loop:

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
- clips gradients per parameter (DINO) or globally (DINOv2), freezes the prototype layers
  (``last_layers()``) during the first epoch(s), updates the teacher after each optimiser step
  (``update_teacher``), runs under bf16 autocast on CUDA;
- exports what ``export_modules()`` names: for self-distillation the teacher backbone
  (``model.safetensors`` + ``model.json``) and the student backbone (``student/``, same layout);
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
- with a ``probe`` (``variant.probe``, ``rsdino.train.probe.KnnProbe``), scores the exported backbone
  (the teacher's) by kNN on a small held-out labelled set at step 0 and every ``probe.every_steps``
  steps, logged as ``knn_probe_top1`` beside the losses (a step-0 row in ``history.csv`` holds the
  value before training); the probe leaves the RNGs and so the trained weights untouched;
- keeps the per-step metrics on the device and reads them in blocks of ``read_metrics_every`` steps
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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from rsdino import views as view_recipes
from rsdino.config.methods import method_recipe
from rsdino.config.variants import VariantConfig
from rsdino.models.catalog import backbone_entry
from rsdino.progress import Progress
from rsdino.tracking import Tracker
from rsdino.train import distributed
from rsdino.train.batches import (  # noqa: F401 (GlobalBatchSampler, ViewsDataset: re-exported)
    GlobalBatchSampler,
    RunBatches,
    ViewsDataset,
    seed_worker,
    select_bands,
)
from rsdino.train.budget import Budget, data_subset
from rsdino.train.checkpoint import rng_state, set_rng_state
from rsdino.train.checkpointing import holds_output_folder, load_latest, save_rotating
from rsdino.train.export import HISTORY_FILE, TEACHER_FILE, export_model  # noqa: F401 (re-exported)
from rsdino.train.meta_architecture import MetaArchitecture, build_meta_architecture
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


class TrainingInterrupted(RuntimeError):
    """Raised after ``request_stop()``: the checkpoint of the last finished step is on disk."""


def request_stop() -> None:
    """Ask the running loop to finish its step, write its checkpoint and raise ``TrainingInterrupted``.

    Safe to call from a signal handler or another thread (it only sets a flag).
    """
    _STOP.set()


def _after_checkpoint(epoch: int, step: int) -> None:
    """Called after each checkpoint (``epoch`` 0-based, ``step`` = steps done); a test hook."""


def check_variant(variant: VariantConfig) -> None:
    """Refuse settings the loop cannot train (clear messages, before anything is built)."""
    method_recipe(variant.method)
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


def _to_device(batch: Any, device: str) -> Any:
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: _to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, list | tuple):
        return [_to_device(v, device) for v in batch]
    return batch


def train_step(model: MetaArchitecture, optimizer: torch.optim.Optimizer, batch: dict, step: int,
               schedules: Schedules, variant: VariantConfig, freeze_last_layer: bool,
               autocast: bool = False, read: bool = True) -> dict[str, Any]:
    """One update of the trained module and the teacher; returns the step's metrics (mean over ranks).

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
    trained = model.trained_module()
    distributed.average_gradients(trained)
    if variant.optim.clip_grad > 0:
        _clip_gradients(list(trained.parameters()), variant.optim.clip_grad, variant.optim.clip_mode)
    if freeze_last_layer:  # as in DINO: no gradient at all, so not even weight decay moves the prototypes
        for layer in model.last_layers():
            for param in layer.parameters():
                param.grad = None
    optimizer.step()
    model.update_teacher(momentum)
    metrics = {"loss": loss.detach(), **{f"loss_{k}": v.detach() for k, v in out.items()
                                         if k != "total" and k not in model.statistics},
               **{k: out[k] for k in model.statistics},
               "lr": lr, "wd": wd, "momentum": momentum, "teacher_temp": temp}
    if not read:
        return metrics
    pending = StepMetrics()
    pending.add(step, metrics)
    return pending.read()[0][1]


def build_optimizer(model: MetaArchitecture, variant: VariantConfig) -> torch.optim.Optimizer:
    """AdamW (or SGD) over the parameter groups of the trained module."""
    trained = model.trained_module()
    groups = param_groups(trained, layer_decay=variant.optim.layer_decay,
                          patch_embed_lr_mult=variant.optim.patch_embed_lr_mult)
    if variant.optim.optimizer == "adamw":  # fused (one kernel for all parameters) on CUDA
        fused = next(trained.parameters()).is_cuda or None
        return torch.optim.AdamW(groups, lr=0.0, weight_decay=0.0, fused=fused)
    return torch.optim.SGD(groups, lr=0.0, momentum=0.9)


@dataclass
class Run:
    """The fixed facts of one pretraining run, shared by its resume, loop and checkpoints.

    Attributes:
        name: The variant's name (logs, progress, exported metadata).
        variant: Its settings.
        out_dir: The model folder.
        device: Where it trains (``cuda:<local rank>`` under data parallelism on GPUs).
        info: This process's rank and the world size.
        steps_per_epoch: Global batches in one epoch.
        budget: How long it runs (``rsdino.train.budget``).
        fingerprint: What a checkpoint must have been written with to be resumed from.
        tracker: Where metrics go.
    """

    name: str
    variant: VariantConfig
    out_dir: Path
    device: str
    info: distributed.DistInfo
    steps_per_epoch: int
    budget: Budget
    fingerprint: str
    tracker: Tracker

    @property
    def checkpoint_path(self) -> Path:
        """``checkpoints/last.pt`` in the model folder (``previous.pt`` beside it)."""
        return self.out_dir / "checkpoints" / "last.pt"


@dataclass
class RunState:
    """Where a run stands, besides its model and optimiser: what a checkpoint adds to them.

    Attributes:
        step: Steps done.
        history: ``{metric: [value of step 1, 2, ...]}``.
        probed: ``{step: {"knn_probe_top1": ..., ...}}`` of the kNN probe.
    """

    step: int = 0
    history: dict[str, list[float]] = field(default_factory=dict)
    probed: dict[int, dict[str, float]] = field(default_factory=dict)


def resume(run: Run, model: MetaArchitecture, optimizer: torch.optim.Optimizer) -> RunState:
    """Load the latest checkpoint into ``model``, ``optimizer`` and the RNGs; return where it stood.

    ``last.pt``, or ``previous.pt`` when ``last.pt`` is damaged; a fresh ``RunState`` when there is
    none, or when it was written with other settings (its fingerprint differs: a warning).
    """
    ckpt = load_latest(run.checkpoint_path)
    if ckpt is None:
        return RunState()
    if ckpt.get("fingerprint") != run.fingerprint:
        log.warning("%s: written with other settings; starting %s from scratch", run.checkpoint_path,
                    run.name)
        return RunState()
    model.load_state_dict(ckpt["model"])
    optimizer.load_state_dict(ckpt["optimizer"])
    set_rng_state(ckpt["rng"])
    state = RunState(step=int(ckpt["step"]), history={k: list(v) for k, v in ckpt["history"].items()},
                     probed={int(k): {m: float(x) for m, x in v.items()}
                             for k, v in ckpt.get("probe", {}).items()})
    run.budget.earlier_s = float(ckpt.get("elapsed_s", 0.0))
    log.info("%s: resuming %s at step %d of %d", run.checkpoint_path, run.name, state.step,
             run.budget.total_steps)
    return state


def save_checkpoint(run: Run, model: MetaArchitecture, optimizer: torch.optim.Optimizer,
                    state: RunState) -> None:
    """Write ``last.pt`` (rank 0; the one before becomes ``previous.pt``), then call the test hook."""
    step, steps = state.step, run.steps_per_epoch
    if run.info.is_main:
        save_rotating(run.checkpoint_path, {
            "model": model.state_dict(), "optimizer": optimizer.state_dict(), "step": step,
            "epoch": step // steps, "rng": rng_state(), "history": state.history,
            # no clock readings unless the budget is time: identical runs, identical bytes
            "probe": {at: {m: v for m, v in result.items() if m != PROBE_SECONDS}
                      for at, result in state.probed.items()},
            "fingerprint": run.fingerprint,
            **({"elapsed_s": run.budget.elapsed_s()} if run.budget.seconds is not None else {})})
    _after_checkpoint(step // steps, step)


def run_probe(run: Run, model: MetaArchitecture, state: RunState, probe: KnnProbe | None) -> None:
    """Score the exported backbone by kNN when the probe is due (rank 0, once per step)."""
    step = state.step
    if probe is None or not run.info.is_main or step in state.probed:
        return
    if not (probe.due(step) or step == run.budget.total_steps):
        return
    state.probed[step] = result = probe(model.export_modules().main, run.device)
    run.tracker.log_metrics(result, step)
    log.info("%s: step %d of %d, kNN probe top-1 %.1f %% (%.1f s)", run.name, step, run.budget.total_steps,
             result[PROBE_METRIC], result[PROBE_SECONDS])


def train_loop(run: Run, model: MetaArchitecture, optimizer: torch.optim.Optimizer, state: RunState,
               dataset: Dataset, make_views: Any, probe: KnnProbe | None, progress: bool) -> None:
    """Train from ``state.step`` until the budget is spent, checkpointing as the module docstring says.

    ``make_views`` is the variant's ``rsdino.views`` builder. Raises ``TrainingInterrupted`` after
    ``request_stop()``, once the checkpoint of the last finished step is written.
    """
    variant, device, info, budget = run.variant, run.device, run.info, run.budget
    optim, steps = variant.optim, run.steps_per_epoch
    schedules = Schedules.of(variant, steps, budget.total_steps)
    on_device = variant.views_on == "device"  # workers only draw and crop (rsdino.views.device)
    views = ViewsDataset(dataset, make_views.crop if on_device else make_views, variant.seed)
    autocast = device.startswith("cuda") and variant.precision == "bf16"
    model.train()  # as in DINO: BatchNorm layers (CNNs, conv stem) use batch statistics
    bar = Progress(budget.total_steps, initial=state.step, desc=run.name, steps_per_epoch=steps,
                   items_per_step=optim.batch_size, enabled=progress and info.is_main,
                   remaining_s=budget.remaining_s if budget.seconds is not None else None)
    # A time budget has no last epoch: the batches go on until the budget says done.
    batches = RunBatches(len(dataset), optim.batch_size, seed=variant.seed,  # type: ignore[arg-type]
                         epochs=budget.epochs if budget.seconds is None else _OPEN_ENDED_EPOCHS,
                         rank=info.rank, world_size=info.world_size, start=state.step)
    # One loader iteration for the run (the workers prefetch across epochs; pinned host memory on
    # CUDA); its own generator: creating it (also on resume) leaves the global RNG alone.
    loader = DataLoader(views, batch_sampler=batches, num_workers=variant.num_workers,
                        collate_fn=make_views.collate, worker_init_fn=seed_worker,
                        pin_memory=device.startswith("cuda"),
                        generator=torch.Generator().manual_seed(variant.seed))
    pending, read_every = StepMetrics(), read_interval(variant.read_metrics_every, device)

    def read_metrics() -> None:  # the pending steps' metrics: one host read, then history and tracker
        for done, metrics in pending.read():
            for key, value in metrics.items():
                state.history.setdefault(key, []).append(value)
            if info.is_main:
                run.tracker.log_metrics(metrics, done)
            bar.update(metrics)

    if not budget.done(state.step):
        for batch in loader:
            epoch = state.step // steps
            batch = (finish_on_device(make_views, batch, device) if on_device
                     else _to_device(batch, device))
            metrics = train_step(model, optimizer, batch, budget.schedule_index(state.step), schedules,
                                 variant, epoch < optim.freeze_last_layer_epochs, autocast, read=False)
            pending.add(state.step, metrics)
            state.step += 1
            run_probe(run, model, state, probe)
            every = variant.checkpoint_every_steps
            finished = budget.done(state.step)
            due = (state.step % steps == 0 or (every and state.step % every == 0) or _STOP.is_set()
                   or finished)
            if due or len(pending) >= read_every:
                read_metrics()
            if due:
                save_checkpoint(run, model, optimizer, state)
            if _STOP.is_set():
                raise TrainingInterrupted(f"{run.name}: stopped at step {state.step}; "
                                          f"checkpoint written to {run.checkpoint_path}")
            if finished:
                break
    bar.close()


@holds_output_folder  # one writer per folder (a second one: a one-line error); no debris of a kill
def run_pretraining(variant_name: str, variant: VariantConfig, dataset: Dataset, *, bands: list[str],
                    rgb_bands: list[str], mean: list[float], std: list[float], out_dir: Path,
                    tracker: Tracker, device: str = "cpu", progress: bool = True,
                    gsd: float = 10.0, probe: KnnProbe | None = None) -> Path:
    """Pretrain ``variant`` on ``dataset`` and export its backbones to ``out_dir``.

    Resumes from ``out_dir/checkpoints/last.pt`` when it was written by the same settings (a
    finished run's checkpoint only re-exports: ``resume``), trains (``train_loop``) and exports
    (``rsdino.train.export.export_model``): for self-distillation ``model.safetensors``,
    ``model.json`` and timm's ``config.json`` (the teacher backbone), ``student/`` (the student
    backbone, same layout), ``teacher.safetensors``, ``history.csv`` and ``loss.png`` (rank 0); logs
    per-step metrics (``loss`` and ``loss_<term>`` for every term, ``lr``, ``wd``, ``momentum``,
    ``teacher_temp`` and the meta-architecture's ``statistics``: ``student_std``,
    ``teacher_entropy``) to ``tracker``. Returns the path of ``model.safetensors``. ``gsd`` is the
    data's native ground sample distance in metres (a sample's own ``gsd`` overrides it). ``probe``
    (optional) scores the exported backbone by kNN at step 0 and every
    ``probe.settings.every_steps`` steps (``knn_probe_top1``; see the module docstring).
    """
    check_variant(variant)
    if variant.input_bands is not None:
        dataset, bands, rgb_bands, mean, std = select_bands(dataset, variant.input_bands, bands, rgb_bands,
                                                            mean, std)
    dataset = data_subset(dataset, variant.budget.data_fraction, variant.seed)
    out_dir = Path(out_dir)
    info, created_group = distributed.init_from_env(device)
    if device.startswith("cuda") and info.world_size > 1:
        device = f"cuda:{info.local_rank}"
        torch.cuda.set_device(device)
    n_images = len(dataset)  # type: ignore[arg-type]
    steps = n_images // variant.optim.batch_size
    if steps == 0:
        raise ValueError(f"{variant_name}: {n_images} images are fewer than one batch of "
                         f"{variant.optim.batch_size}")
    fingerprint = json.dumps({"variant": variant.model_dump(mode="json", exclude=_NOT_TRAINING),
                              "bands": bands, "mean": mean, "std": std, "n_images": n_images, "gsd": gsd},
                             sort_keys=True)
    budget = Budget(variant, steps)  # epochs, steps or minutes (rsdino.train.budget)
    run = Run(variant_name, variant, out_dir, device, info, steps, budget, fingerprint, tracker)
    was_deterministic = torch.are_deterministic_algorithms_enabled()
    was_warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    if device == "cpu":  # bitwise reproducible resume on CPU; GPUs keep their fast kernels
        torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        torch.manual_seed(variant.seed)
        np.random.seed(variant.seed)
        random.seed(variant.seed)
        model = build_meta_architecture(variant, len(bands))
        if variant.init_from is not None:  # continue from an imported training checkpoint
            from rsdino.train.init_from import initialise_from

            initialise_from(model, variant.init_from)
        model = model.to(device)
        if variant.compile:
            model.compile_blocks()
        optimizer = build_optimizer(model, variant)
        state = resume(run, model, optimizer)
        if probe is not None:
            probe.check_bands(bands[model.export_modules().skip_bands:])
        run_probe(run, model, state, probe)  # step 0: the curve's random-init point (a resumed run has it)
        patch = variant.backbone_kwargs.get("patch_size", backbone_entry(variant.backbone).patch_size) or 1
        make_views = view_recipes.build_views(variant.crops, bands=bands, rgb_bands=rgb_bands, mean=mean,
                                              std=std, gsd=gsd, patch_size=patch)
        train_loop(run, model, optimizer, state, dataset, make_views, probe, progress)
    finally:
        torch.use_deterministic_algorithms(was_deterministic, warn_only=was_warn_only)
        _STOP.clear()  # a stop requested during start-up (imports, MLflow) still stops this run

    weights = out_dir / "model.safetensors"
    if info.is_main:
        weights = export_model(model, out_dir, variant=variant, variant_name=variant_name, bands=bands,
                               mean=mean, std=std, history=state.history, steps_per_epoch=steps,
                               probed=state.probed, tracker=tracker)
    if created_group:
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()
    return weights
