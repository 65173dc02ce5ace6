"""Per-step schedules (learning rate, weight decay, teacher momentum, teacher temperature)."""

from __future__ import annotations

import numpy as np


def cosine_schedule(base: float, final: float, epochs: int, steps_per_epoch: int,
                    warmup_epochs: int = 0, start_warmup_value: float = 0.0) -> np.ndarray:
    """One value per step: linear warm-up, then a half cosine from ``base`` to ``final``.

    With ``W = warmup_epochs * steps_per_epoch`` warm-up steps and ``N`` cosine steps
    (``epochs * steps_per_epoch - W``)::

        v[s]     = start + (base - start) * s / W                       0 <= s < W
        v[W + j] = final + (base - final) * (1 + cos(pi * j / (N - 1))) / 2    0 <= j < N

    so the first cosine step is ``base`` and the last step is exactly ``final``. A warm-up longer
    than the run is cut at the last step.
    """
    total = epochs * steps_per_epoch
    if total <= 0:
        raise ValueError(f"a schedule needs at least one step (epochs={epochs}, "
                         f"steps_per_epoch={steps_per_epoch})")
    n_warmup = min(warmup_epochs * steps_per_epoch, total)
    warmup = start_warmup_value + (base - start_warmup_value) * np.arange(n_warmup) / max(n_warmup, 1)
    n_cosine = total - n_warmup
    phase = np.arange(n_cosine) / max(n_cosine - 1, 1)
    cosine = final + 0.5 * (base - final) * (1 + np.cos(np.pi * phase))
    return np.concatenate([warmup, cosine]).astype(np.float64)


def teacher_temp_schedule(warmup_temp: float, temp: float, warmup_epochs: int, epochs: int,
                          steps_per_epoch: int = 1) -> np.ndarray:
    """Teacher temperature per step: linear ``warmup_temp -> temp`` over epochs, then constant.

    As in DINO the value changes once per epoch (epoch ``e < warmup_epochs`` uses
    ``warmup_temp + (temp - warmup_temp) * e / (warmup_epochs - 1)``, so the last warm-up epoch
    already reaches ``temp``); each epoch's value is repeated for its ``steps_per_epoch`` steps.
    """
    if epochs <= 0 or steps_per_epoch <= 0:
        raise ValueError("a schedule needs at least one epoch and one step per epoch")
    per_epoch = np.full(epochs, temp, dtype=np.float64)
    n_warmup = min(warmup_epochs, epochs)
    if warmup_epochs > 0:
        per_epoch[:n_warmup] = np.linspace(warmup_temp, temp, warmup_epochs)[:n_warmup]
    return np.repeat(per_epoch, steps_per_epoch)
