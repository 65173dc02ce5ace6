"""The iBOT masked-patch self-distillation loss, with teacher centring of the patch outputs."""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


class iBOTPatchLoss(nn.Module):  # noqa: N801 - the paper's and DINOv2's spelling
    r"""Cross-entropy between teacher and student outputs on the patches masked in the student's input.

    Zhou et al. 2022, "iBOT: Image BERT Pre-Training with Online Tokenizer", eq. 2; in the form of
    Oquab et al. 2023 (DINOv2), ``iBOTPatchLoss.forward_masked``.

    The student sees global crops whose patches ``masks[b, n] = True`` were replaced by a mask
    token; the teacher sees them unmasked. With ``B`` images (all global crops, masked or not),
    ``N`` patches per image, ``K`` prototypes, ``M = masks.sum()`` masked patches and
    ``m_b = sum_n masks[b, n]``::

        q_bn = softmax((t_bn - c) / tau_t)       teacher probabilities (or Sinkhorn-Knopp ones)
        p_bn = log_softmax(s_bn / tau_s)         student
        L    = 1 / B * sum_b 1 / max(m_b, 1) * sum_{n : masks[b, n]} [ - sum_k q_bn[k] * p_bn[k] ]

    i.e. the loss is averaged over the masked patches of each image (``masks_weight`` =
    ``1 / m_b`` in DINOv2), then over all ``B`` images; images with no masked patch count in ``B``
    and contribute 0. Unmasked patches never enter the loss.

    Patch outputs may be passed either as the masked rows only, ``(M, K)`` in the row-major order of
    ``masks`` (``tokens[masks]``, DINOv2's ``mask_indices_list``), or as full ``(B, N, K)`` tensors
    from which the masked rows are taken.

    The centre ``c`` (a ``(1, K)`` buffer) follows the teacher's masked-patch outputs; as in DINOv2
    each rank contributes the mean over its own ``M`` masked rows (not the global mean)::

        c <- m * c + (1 - m) * (sum over ranks of mean_{masked rows} t) / ranks

    The sum is all-reduced only when ``torch.distributed`` is initialised.

    Args:
        patch_out_dim: Number of prototypes ``K`` of the patch head.
        student_temp: ``tau_s``.
        center_momentum: ``m``.
    """

    center: torch.Tensor

    def __init__(self, patch_out_dim: int, student_temp: float = 0.1, center_momentum: float = 0.9) -> None:
        super().__init__()
        self.student_temp = student_temp
        self.center_momentum = center_momentum
        self.register_buffer("center", torch.zeros(1, patch_out_dim))

    @staticmethod
    def masked_rows(tokens: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        """``(B, N, K) -> (M, K)`` rows where ``masks (B, N)`` is true; ``(M, K)`` passes through."""
        if tokens.ndim == 3:
            if tokens.shape[:2] != masks.shape:
                raise ValueError(f"tokens {tuple(tokens.shape)} do not match masks {tuple(masks.shape)}")
            return tokens[masks]
        n_masked = int(masks.sum())
        if tokens.ndim != 2 or tokens.shape[0] != n_masked:
            raise ValueError(f"expected ({n_masked}, K) masked rows or (B, N, K) tokens, "
                             f"got shape {tuple(tokens.shape)}")
        return tokens

    @staticmethod
    def masks_weight(masks: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """``1 / max(m_b, 1)`` for every masked row, ``(B, N) -> (M,)``, in the order of ``masks``."""
        per_image = 1.0 / masks.sum(dim=-1).to(dtype).clamp(min=1.0)
        return per_image.unsqueeze(-1).expand_as(masks)[masks]

    @torch.no_grad()
    def teacher_probs(self, teacher_patch_tokens: torch.Tensor, teacher_temp: float) -> torch.Tensor:
        """``softmax((t - c) / tau_t)`` row-wise with the current centre, ``(..., K) -> (..., K)``."""
        return F.softmax((teacher_patch_tokens - self.center) / teacher_temp, dim=-1)

    def forward(self, student_patch_tokens: torch.Tensor, teacher_probs: torch.Tensor, masks: torch.Tensor,
                masks_weight: torch.Tensor | None = None) -> torch.Tensor:
        """Return the scalar loss from teacher probabilities (centred softmax or Sinkhorn-Knopp).

        Leaves the centre unchanged.

        Args:
            student_patch_tokens: ``(M, K)`` masked rows or ``(B, N, K)`` student head outputs.
            teacher_probs: ``(M, K)`` or ``(B, N, K)`` teacher probabilities (no gradient is taken).
            masks: ``(B, N)`` boolean, true where the student's patch was masked.
            masks_weight: ``(M,)`` weight per masked row; ``1 / m_b`` when ``None``.
        """
        masks = masks.bool()
        student = self.masked_rows(student_patch_tokens, masks)
        teacher = self.masked_rows(teacher_probs, masks).detach()
        cross = (teacher * F.log_softmax(student / self.student_temp, dim=-1)).sum(dim=-1)  # (M,)
        if masks_weight is None:
            masks_weight = self.masks_weight(masks, cross.dtype)
        return -(cross * masks_weight.to(cross.dtype)).sum() / masks.shape[0]

    def forward_logits(self, student_patch_tokens: torch.Tensor, teacher_patch_tokens: torch.Tensor,
                       masks: torch.Tensor, teacher_temp: float) -> torch.Tensor:
        """Return the scalar loss from raw teacher outputs, centred by ``c``, then update ``c``.

        Args:
            student_patch_tokens: ``(M, K)`` masked rows or ``(B, N, K)`` student head outputs.
            teacher_patch_tokens: ``(M, K)`` or ``(B, N, K)`` raw teacher head outputs.
            masks: ``(B, N)`` boolean, true where the student's patch was masked.
            teacher_temp: ``tau_t`` for this step.
        """
        masks = masks.bool()
        teacher = self.masked_rows(teacher_patch_tokens, masks).detach()
        loss = self(student_patch_tokens, self.teacher_probs(teacher, teacher_temp), masks)
        self.update_center(teacher)
        return loss

    @torch.no_grad()
    def update_center(self, teacher_patch_tokens: torch.Tensor) -> None:
        """EMA of the centre with the mean of the masked teacher rows ``(M, K)``, averaged over ranks.

        A rank with no masked rows contributes nothing (DINOv2 would produce NaN); when no rank has
        any, the centre is left as it is.
        """
        rows = teacher_patch_tokens.reshape(-1, teacher_patch_tokens.shape[-1])
        stats = torch.zeros(1, rows.shape[1] + 1, dtype=rows.dtype, device=rows.device)
        if rows.shape[0]:
            stats[0, :-1] = rows.mean(dim=0)
            stats[0, -1] = 1.0
        if _distributed():
            dist.all_reduce(stats)
        n_ranks = stats[0, -1].item()
        if n_ranks == 0:
            return
        batch_center = stats[:, :-1] / n_ranks
        self.center.mul_(self.center_momentum).add_(batch_center, alpha=1 - self.center_momentum)
