"""Sinkhorn-Knopp centring of teacher outputs: a balanced soft assignment of samples to prototypes."""

from __future__ import annotations

import torch
import torch.distributed as dist


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


@torch.no_grad()
def sinkhorn_knopp(teacher_output: torch.Tensor, teacher_temp: float, n_iterations: int = 3) -> torch.Tensor:
    r"""Teacher targets from a few Sinkhorn-Knopp iterations instead of centring and softmax.

    Caron et al. 2020, "Unsupervised Learning of Visual Features by Contrasting Cluster
    Assignments" (SwAV), section 3.1 and Algorithm 1; used as the teacher centring of Oquab et al.
    2023, "DINOv2: Learning Robust Visual Features without Supervision", section 4
    (``DINOLoss.sinkhorn_knopp_teacher`` in the reference code).

    With ``B`` the number of samples summed over all ranks (the rows of ``teacher_output``),
    ``K`` prototypes, and ``t`` the ``(B_local, K)`` teacher logits::

        Q   = exp(t / tau_t)^T                          (K, B), then Q <- Q / sum(Q)
        repeat n_iterations times:
            Q[k, :] <- Q[k, :] / sum_b Q[k, b] / K      every prototype gets total mass 1/K
            Q[:, b] <- Q[:, b] / sum_k Q[k, b] / B      every sample gets total mass 1/B
        return B * Q^T                                  (B_local, K), each row sums to 1

    The total sum and the per-prototype (row) sums run over all ranks (``all_reduce``), and so does
    the sample count ``B``; the per-sample (column) sums are local. Without an initialised
    ``torch.distributed`` everything is local, so the function runs in a single CPU process.

    For numerical safety the (global) maximum of ``t / tau_t`` is subtracted before the
    exponential; this multiplies ``Q`` by a constant that the first normalisation removes, so the
    result is the reference formula. Half-precision inputs are computed in float32 (as in DINOv2);
    float32 and float64 inputs keep their dtype.

    Args:
        teacher_output: ``(B_local, K)`` raw teacher head outputs (no gradient is taken).
        teacher_temp: ``tau_t``.
        n_iterations: Number of row/column normalisation rounds (3 in DINOv2).

    Returns:
        ``(B_local, K)`` assignment probabilities; rows sum to 1 and, summed over all ranks, every
        prototype receives about ``B / K`` of the mass (exactly after the last row step, then
        approximately once the columns are renormalised).
    """
    if teacher_output.ndim != 2:
        raise ValueError(f"teacher_output must be (B, K), got shape {tuple(teacher_output.shape)}")
    if n_iterations < 1:
        raise ValueError(f"n_iterations must be at least 1, got {n_iterations}")
    if teacher_output.dtype not in (torch.float32, torch.float64):
        teacher_output = teacher_output.float()
    distributed = _distributed()

    logits = teacher_output / teacher_temp
    top = logits.max()
    if distributed:
        dist.all_reduce(top, op=dist.ReduceOp.MAX)
    q = torch.exp(logits - top).t()  # (K, B_local)
    n_prototypes = q.shape[0]
    n_samples = torch.tensor(float(q.shape[1]), dtype=q.dtype, device=q.device)
    if distributed:
        dist.all_reduce(n_samples)

    total = q.sum()
    if distributed:
        dist.all_reduce(total)
    q /= total
    for _ in range(n_iterations):
        row_sums = q.sum(dim=1, keepdim=True)  # per prototype
        if distributed:
            dist.all_reduce(row_sums)
        q /= row_sums
        q /= n_prototypes
        q /= q.sum(dim=0, keepdim=True)  # per sample
        q /= n_samples
    q *= n_samples
    return q.t()
