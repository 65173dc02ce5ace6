"""Per-step metrics kept on the device and read in blocks, so the step never waits for the host.

A ``.item()`` per step makes the host wait for the accelerator to finish the step before it can
queue the next one. ``StepMetrics`` holds each step's metric tensors (0-d, on the device) and
reads them every ``every`` steps: one stacked ``(steps, metrics)`` tensor, one copy to the host,
one all-reduce over ranks (the mean), one finiteness check. History and tracker get every step's
row, as before; only the time they get it moves.

``read_interval(setting, device)``: the setting, or with 0 (auto) every step on CPU (where an
operation finishes before the next one starts, so reading costs nothing) and every
``GPU_READ_EVERY`` steps on an accelerator.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from rsdino.train import distributed

GPU_READ_EVERY = 25


def read_interval(setting: int, device: str) -> int:
    """Steps between two reads (``setting``, or the auto rule of the module docstring for 0)."""
    if setting > 0:
        return setting
    return 1 if device == "cpu" else GPU_READ_EVERY


class StepMetrics:
    """Pending per-step metrics: device tensors plus host floats (lr, wd, ...), read in blocks."""

    def __init__(self) -> None:
        self.steps: list[int] = []
        self.names: list[str] | None = None
        self.device_values: list[torch.Tensor] = []
        self.host_values: list[dict[str, float]] = []

    def __len__(self) -> int:
        return len(self.steps)

    def add(self, step: int, metrics: dict[str, Any]) -> None:
        """Queue the metrics of ``step`` (0-d tensors stay on the device; numbers are host values)."""
        tensors = {k: v for k, v in metrics.items() if isinstance(v, torch.Tensor)}
        names = list(tensors)
        if self.names is None:
            self.names = names
        elif names != self.names:
            raise ValueError(f"step {step} logs {names}, earlier steps {self.names}")
        if names:
            self.device_values.append(torch.stack([tensors[k].detach().float() for k in names]))
        self.host_values.append({k: float(v) for k, v in metrics.items() if k not in tensors})
        self.steps.append(step)

    def read(self) -> list[tuple[int, dict[str, float]]]:
        """Every pending step's ``(step, metrics)``, averaged over ranks; empties the queue.

        Raises:
            FloatingPointError: naming the first step whose loss is not finite.
        """
        if not self.steps:
            return []
        names = self.names or []
        rows = [[] for _ in self.steps] if not names else torch.stack(self.device_values).double()
        if names:
            rows = distributed.mean_tensor_over_ranks(rows).cpu().tolist()
        out = []
        for step, values, host in zip(self.steps, rows, self.host_values, strict=True):
            metrics = dict(zip(names, values, strict=True))
            if "loss" in metrics and not math.isfinite(metrics["loss"]):
                self.__init__()
                raise FloatingPointError(f"loss is {metrics['loss']} at step {step} (terms: {metrics})")
            out.append((step, {**metrics, **host}))
        self.__init__()
        return out
