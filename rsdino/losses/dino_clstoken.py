"""The DINO self-distillation loss on image-level (CLS) outputs, with teacher centring."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def _at_least_fp32(x: torch.Tensor) -> torch.Tensor:
    """``x`` in float32, or float64 if it is already (bf16 head outputs are reduced in float32)."""
    return x.to(torch.promote_types(x.dtype, torch.float32))


class DINOLoss(nn.Module):
    r"""Cross-entropy between the centred, sharpened teacher and the student over crop pairs.

    Caron et al. 2021, "Emerging Properties in Self-Supervised Vision Transformers" (DINO), eq. 1-2.

    With ``G`` global crops (seen by the teacher), ``V >= G`` crops seen by the student (the first
    ``G`` of them are the same global views, in the same order), batch size ``B`` and ``K``
    prototypes::

        q_i = softmax((t_i - c) / tau_t)        teacher, global crop i       (B, K), no gradient
        p_v = log_softmax(s_v / tau_s)          student, crop v              (B, K)
        L   = 1 / |P| * sum_{(i, v) in P} mean_b [ - sum_k q_i[b, k] * p_v[b, k] ]
        P   = {(i, v) : 0 <= i < G, 0 <= v < V, v != i}                      |P| = G (V - 1)

    After the loss the centre ``c`` (a ``(1, K)`` buffer) moves towards the batch mean of the raw
    teacher outputs::

        c <- m * c + (1 - m) * (sum over the G*B rows of t, summed over ranks) / (G * B * ranks)

    The sum is all-reduced only when ``torch.distributed`` is initialised, so the loss runs in a
    single CPU process unchanged.

    Args:
        out_dim: Number of prototypes ``K``.
        n_global_crops: ``G``, the number of crops the teacher sees.
        student_temp: ``tau_s``.
        center_momentum: ``m``.
    """

    center: torch.Tensor

    def __init__(self, out_dim: int, n_global_crops: int = 2, student_temp: float = 0.1,
                 center_momentum: float = 0.9) -> None:
        super().__init__()
        if n_global_crops < 1:
            raise ValueError(f"n_global_crops must be at least 1, got {n_global_crops}")
        self.n_global_crops = n_global_crops
        self.student_temp = student_temp
        self.center_momentum = center_momentum
        self.register_buffer("center", torch.zeros(1, out_dim))

    @torch.no_grad()
    def teacher_probs(self, teacher_out: torch.Tensor, teacher_temp: float) -> torch.Tensor:
        """``softmax((t - c) / tau_t)`` row-wise, ``(G*B, K) -> (G*B, K)``, with the current centre."""
        return F.softmax((_at_least_fp32(teacher_out) - self.center) / teacher_temp, dim=-1)

    def forward(self, student_out: Sequence[torch.Tensor] | torch.Tensor, teacher_out: torch.Tensor,
                teacher_temp: float) -> torch.Tensor:
        """Return the scalar loss and update the centre.

        Args:
            student_out: ``V`` tensors ``(B, K)``, or one ``(V*B, K)`` tensor with crops stacked in order.
            teacher_out: ``(G*B, K)`` raw teacher head outputs, global crops stacked in order.
            teacher_temp: ``tau_t`` for this step.
        """
        loss = self.from_probs(student_out, self.teacher_probs(teacher_out, teacher_temp))
        self.update_center(teacher_out)
        return loss

    def from_probs(self, student_out: Sequence[torch.Tensor] | torch.Tensor,
                   teacher_probs: torch.Tensor) -> torch.Tensor:
        """The loss ``L`` above for given teacher probabilities ``q``; the centre is left unchanged.

        ``q`` is the centred softmax or the Sinkhorn-Knopp targets.

        Args:
            student_out: ``V`` tensors ``(B, K)``, or one ``(V*B, K)`` tensor with crops stacked in order.
            teacher_probs: ``(G*B, K)`` teacher probabilities, global crops stacked in order.
        """
        n_global = self.n_global_crops
        if teacher_probs.shape[0] % n_global:
            raise ValueError(f"teacher output has {teacher_probs.shape[0]} rows, not a multiple of "
                             f"{n_global} global crops")
        batch = teacher_probs.shape[0] // n_global
        if isinstance(student_out, torch.Tensor):
            student = student_out.reshape(-1, batch, student_out.shape[-1])
        else:
            student = torch.stack(list(student_out))
        n_crops = student.shape[0]
        if n_crops < n_global or n_crops < 2:
            raise ValueError(f"the student needs the {n_global} global crops and at least one other "
                             f"crop, got {n_crops}")

        log_p = F.log_softmax(_at_least_fp32(student) / self.student_temp, dim=-1)  # (V, B, K)
        q = _at_least_fp32(teacher_probs.detach()).reshape(n_global, batch, -1)  # (G, B, K)
        # sum over v != i of <q_i, log p_v> = <q_i, sum_v log p_v> - <q_i, log p_i>
        log_p_sum = log_p.sum(dim=0)  # (B, K)
        cross = (q * (log_p_sum.unsqueeze(0) - log_p[:n_global])).sum(dim=-1)  # (G, B)
        return -cross.mean(dim=1).sum() / (n_global * (n_crops - 1))

    @torch.no_grad()
    def update_center(self, teacher_out: torch.Tensor) -> None:
        """EMA of the centre with the (all-ranks) batch mean of ``teacher_out (N, K)``."""
        batch_sum = _at_least_fp32(teacher_out).sum(dim=0, keepdim=True)
        count = teacher_out.shape[0]
        if _distributed():
            dist.all_reduce(batch_sum)
            count *= dist.get_world_size()
        self.center.mul_(self.center_momentum).add_(batch_sum / count, alpha=1 - self.center_momentum)
