"""Views on the accelerator: workers draw and crop, the device does the photometric part batched.

``ViewBuilder.crop`` (in a DataLoader worker) makes every random draw of a sample and its crops;
``ViewBuilder.collate`` batches them; ``finish_on_device`` moves the crops (uint8 stays uint8: a
quarter of the float32 bytes) and the speckle to the device and runs ``ViewBuilder.finish`` there:
colour rules, blur, solarisation and standardisation of the whole batch, a few kernels per crop
size. The small draws stay on the host, so nothing waits for the device. ``finish`` applies the
same draws with the same operations as the per-sample views, so the result equals the collated
per-sample views bit for bit on the same device (tests/views/test_device.py).
"""

from __future__ import annotations

from typing import Any

import torch

from rsdino.views.builder import ViewBuilder

#: The parts that go to the device (the pixels); the other draws are read on the host.
ON_DEVICE = ("crops", "speckle")


def parts_to_device(parts: dict, device: str | torch.device) -> dict:
    """``parts`` with the crops and the speckle on ``device`` (non-blocking from pinned memory)."""
    return {k: [t.to(device, non_blocking=True) for t in v] if k in ON_DEVICE else v
            for k, v in parts.items()}


def finish_on_device(views: ViewBuilder, parts: dict, device: str | torch.device) -> dict[str, Any]:
    """The views batch of the collated ``crop`` results ``parts``, made on ``device``."""
    batch = views.finish(parts_to_device(parts, device))
    return {k: [t.to(device, non_blocking=True) for t in v] if isinstance(v, list)
            else v.to(device, non_blocking=True) for k, v in batch.items()}
