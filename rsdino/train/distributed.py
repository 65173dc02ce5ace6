"""``torch.distributed`` from the standard environment (torchrun, submitit, SLURM launcher).

``init_from_env(device)`` reads ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and
``MASTER_PORT``; with ``WORLD_SIZE > 1`` it initialises the default process group (NCCL on CUDA,
gloo on CPU) unless one exists. Every helper here works unchanged in a single process.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    """Where this process stands: ``rank`` of ``world_size``, ``local_rank`` on its node."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """Rank 0 writes checkpoints, exports and logs."""
        return self.rank == 0


def initialized() -> bool:
    """Whether a default process group exists."""
    return dist.is_available() and dist.is_initialized()


def init_from_env(device: str = "cpu") -> tuple[DistInfo, bool]:
    """Initialise the process group from the environment; return the info and whether we created it."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo(), False
    rank, local = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    for var in ("MASTER_ADDR", "MASTER_PORT"):
        if var not in os.environ:
            raise RuntimeError(f"WORLD_SIZE={world} but {var} is not set: cannot start torch.distributed")
    if initialized():
        return DistInfo(dist.get_rank(), dist.get_world_size(), local), False
    backend = "nccl" if device.startswith("cuda") else "gloo"
    dist.init_process_group(backend=backend, rank=rank, world_size=world)
    return DistInfo(rank, world, local), True


def average_gradients(module: torch.nn.Module) -> None:
    """Mean of every gradient over ranks (one flat all-reduce per dtype); no-op in one process.

    The loss of each rank is a mean over its own images, so the mean over ranks is the gradient of
    the mean over the global batch: the update equals one process on the whole batch.
    """
    if not initialized() or dist.get_world_size() == 1:
        return
    grads = [p.grad for p in module.parameters() if p.grad is not None]
    by_dtype: dict[torch.dtype, list[torch.Tensor]] = {}
    for grad in grads:
        by_dtype.setdefault(grad.dtype, []).append(grad)
    world = dist.get_world_size()
    for tensors in by_dtype.values():
        flat = torch.cat([t.reshape(-1) for t in tensors])
        dist.all_reduce(flat)
        flat.div_(world)
        offset = 0
        for t in tensors:
            t.copy_(flat[offset: offset + t.numel()].view_as(t))
            offset += t.numel()


def mean_over_ranks(values: dict[str, float]) -> dict[str, float]:
    """Average scalar metrics over ranks (for logging); identity in one process."""
    if not initialized() or dist.get_world_size() == 1 or not values:
        return values
    keys = sorted(values)
    tensor = torch.tensor([values[k] for k in keys], dtype=torch.float64)
    dist.all_reduce(tensor)
    tensor /= dist.get_world_size()
    return dict(zip(keys, tensor.tolist(), strict=True))


def mean_tensor_over_ranks(values: torch.Tensor) -> torch.Tensor:
    """The mean of ``values`` over ranks, one all-reduce on its device; ``values`` in one process."""
    if not initialized() or dist.get_world_size() == 1:
        return values
    values = values.clone()
    dist.all_reduce(values)
    return values.div_(dist.get_world_size())
