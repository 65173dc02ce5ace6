"""Per-step schedules (learning rate, weight decay, teacher momentum, teacher temperature)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rsdino.config.variants import VariantConfig


def cosine_schedule(base: float, final: float, epochs: int, steps_per_epoch: int,
                    warmup_epochs: int = 0, start_warmup_value: float = 0.0) -> np.ndarray:
    """One value per step: linear warm-up, then a half cosine from ``base`` towards ``final``.

    The step convention of DINO's ``utils.cosine_scheduler`` (Caron et al., ICCV 2021), used there
    for the learning rate, the weight decay and the teacher momentum. With ``T = epochs *
    steps_per_epoch`` steps, ``W = warmup_epochs * steps_per_epoch`` warm-up steps and
    ``N = T - W`` cosine steps::

        v[s]     = start + (base - start) * s / (W - 1)                  0 <= s < W   (v[0] = start if W = 1)
        v[W + j] = final + (base - final) * (1 + cos(pi * j / N)) / 2    0 <= j < N

    so the last warm-up step is exactly ``base``, the first cosine step is ``base`` again, and the
    last step is ``final + (base - final) * (1 - cos(pi / N)) / 2``, one step short of ``final``.
    A warm-up longer than the run (``W > T``, which DINO refuses) keeps the first ``T`` values of the
    ramp to ``base`` over ``W`` steps, so a shortened run follows the planned ramp.
    """
    total = epochs * steps_per_epoch
    if total <= 0:
        raise ValueError(f"a schedule needs at least one step (epochs={epochs}, "
                         f"steps_per_epoch={steps_per_epoch})")
    if warmup_epochs < 0:
        raise ValueError(f"warmup_epochs must be >= 0, got {warmup_epochs}")
    n_warmup = warmup_epochs * steps_per_epoch
    ramp = np.linspace(start_warmup_value, base, n_warmup, dtype=np.float64)[:total]
    n_cosine = total - len(ramp)
    angle = np.pi * np.arange(n_cosine, dtype=np.float64) / max(n_cosine, 1)
    cosine = final + (base - final) * (1.0 + np.cos(angle)) / 2.0
    return np.concatenate([ramp, cosine])


def teacher_temp_schedule(warmup_temp: float, temp: float, warmup_epochs: int, epochs: int,
                          steps_per_epoch: int = 1) -> np.ndarray:
    """Teacher temperature per step: linear ``warmup_temp -> temp`` over epochs, then constant.

    As in DINO the value changes once per epoch: epoch ``e < warmup_epochs`` uses
    ``warmup_temp + (temp - warmup_temp) * e / (warmup_epochs - 1)`` (``warmup_temp`` for a one-epoch
    warm-up), so the last epoch of a longer warm-up already reaches ``temp``; each epoch's value is
    repeated for its ``steps_per_epoch`` steps.
    A warm-up longer than the run (which DINO refuses) keeps the first ``epochs`` values of the ramp.
    """
    if epochs <= 0 or steps_per_epoch <= 0:
        raise ValueError("a schedule needs at least one epoch and one step per epoch")
    per_epoch = np.full(epochs, temp, dtype=np.float64)
    n_warmup = min(warmup_epochs, epochs)
    if warmup_epochs > 0:
        per_epoch[:n_warmup] = np.linspace(warmup_temp, temp, warmup_epochs)[:n_warmup]
    return np.repeat(per_epoch, steps_per_epoch)


def scaled_lr(lr: float, batch_size: int, rule: str) -> float:
    """Peak learning rate for a global batch ``B``.

    ``lr * B / 256`` (DINO, ``linear_256``) or ``lr * sqrt(B / 1024)`` (DINOv2, ``sqrt_1024``).
    """
    if rule == "linear_256":
        return lr * batch_size / 256
    if rule == "sqrt_1024":
        return lr * (batch_size / 1024) ** 0.5
    raise ValueError(f"unknown lr scaling rule {rule!r} (linear_256 or sqrt_1024)")


@dataclass
class Schedules:
    """Per-step values of lr, weight decay, teacher momentum and teacher temperature of a variant."""

    lr: np.ndarray
    wd: np.ndarray
    momentum: np.ndarray
    teacher_temp: np.ndarray

    @classmethod
    def of(cls, variant: VariantConfig, steps: int, total_steps: int | None = None) -> Schedules:
        """The schedules of ``variant`` for ``steps`` steps per epoch over ``total_steps`` steps.

        ``total_steps`` (default ``optim.epochs * steps``) is the budget's plan
        (``rsdino.train.budget``): the cosines span ``T = total_steps`` steps with
        ``warmup_epochs * steps`` warm-up steps, and the teacher temperature keeps its per-epoch
        values over ``ceil(T / steps)`` epochs, cut at ``T``.
        """
        optim, loss = variant.optim, variant.loss
        total = optim.epochs * steps if total_steps is None else total_steps
        epochs = -(-total // steps)
        peak = scaled_lr(optim.lr, optim.batch_size, optim.lr_scaling)
        warmup = optim.warmup_epochs * steps
        # a schedule of T "epochs" of one step each: the cosines over exactly T steps
        return cls(lr=cosine_schedule(peak, optim.min_lr, total, 1, warmup),
                   wd=cosine_schedule(optim.weight_decay, optim.weight_decay_end, total, 1),
                   momentum=cosine_schedule(optim.momentum_teacher, 1.0, total, 1),
                   teacher_temp=teacher_temp_schedule(loss.warmup_teacher_temp, loss.teacher_temp,
                                                      loss.warmup_teacher_temp_epochs, epochs, steps)[:total])
