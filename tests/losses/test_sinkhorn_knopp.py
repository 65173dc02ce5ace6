"""Sinkhorn-Knopp centring against explicit loops, and its balancing properties."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from rsdino.losses.sinkhorn_knopp import sinkhorn_knopp


def _hand_sinkhorn(t: list[list[float]], tau: float, n_iterations: int) -> list[list[float]]:
    """The DINOv2 algorithm with Python loops on a (B, K) list; returns (B, K)."""
    n_samples, n_protos = len(t), len(t[0])
    q = [[math.exp(t[b][k] / tau) for b in range(n_samples)] for k in range(n_protos)]  # (K, B)
    total = sum(sum(row) for row in q)
    q = [[v / total for v in row] for row in q]
    for _ in range(n_iterations):
        for k in range(n_protos):
            row_sum = sum(q[k])
            q[k] = [v / row_sum / n_protos for v in q[k]]
        for b in range(n_samples):
            col_sum = sum(q[k][b] for k in range(n_protos))
            for k in range(n_protos):
                q[k][b] = q[k][b] / col_sum / n_samples
    return [[q[k][b] * n_samples for k in range(n_protos)] for b in range(n_samples)]


@pytest.mark.parametrize(("batch", "k", "n_iterations"), [(4, 3, 3), (3, 5, 1), (2, 4, 5)])
def test_equals_the_hand_computed_assignment(batch: int, k: int, n_iterations: int) -> None:
    generator = torch.Generator().manual_seed(batch * 10 + k)
    teacher = torch.randn(batch, k, generator=generator, dtype=torch.float64)
    expected = np.array(_hand_sinkhorn(teacher.tolist(), 0.5, n_iterations))
    got = sinkhorn_knopp(teacher, teacher_temp=0.5, n_iterations=n_iterations)
    assert got.shape == (batch, k) and got.dtype == torch.float64
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-12, atol=1e-14)


def test_rows_sum_to_one_and_prototypes_are_balanced() -> None:
    generator = torch.Generator().manual_seed(3)
    teacher = 0.3 * torch.randn(64, 4, generator=generator, dtype=torch.float64)
    teacher[:, 0] += 0.5  # the plain softmax would send most of the mass to prototype 0
    q = sinkhorn_knopp(teacher, teacher_temp=0.1, n_iterations=100)
    torch.testing.assert_close(q.sum(dim=1), torch.ones(64, dtype=torch.float64))
    torch.testing.assert_close(q.sum(dim=0), torch.full((4,), 64 / 4, dtype=torch.float64), rtol=1e-6, atol=0)
    assert (q >= 0).all()
    # with the default 3 iterations the columns are already much more even than the softmax's
    q3 = sinkhorn_knopp(teacher, teacher_temp=0.1)
    softmax = torch.softmax(teacher / 0.1, dim=-1)
    assert q3.sum(dim=0).std() < 0.25 * softmax.sum(dim=0).std()


def test_large_logits_do_not_overflow() -> None:
    teacher = torch.tensor([[4.0, 3.5, 3.2], [3.8, 3.9, 3.0]])  # exp(4 / 0.04) overflows float32
    assert not torch.isfinite(torch.exp(teacher / 0.04)).all()
    q = sinkhorn_knopp(teacher, teacher_temp=0.04)
    expected = sinkhorn_knopp(teacher.double(), teacher_temp=0.04)
    torch.testing.assert_close(q.double(), expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(q.sum(dim=1), torch.ones(2))


def test_half_precision_is_computed_in_float32_and_no_gradient_is_taken() -> None:
    teacher = torch.randn(4, 3, dtype=torch.bfloat16, requires_grad=True)
    q = sinkhorn_knopp(teacher, teacher_temp=0.1)
    assert q.dtype == torch.float32 and not q.requires_grad


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match=r"\(B, K\)"):
        sinkhorn_knopp(torch.randn(2, 3, 4), 0.1)
    with pytest.raises(ValueError, match="n_iterations"):
        sinkhorn_knopp(torch.randn(2, 3), 0.1, n_iterations=0)
