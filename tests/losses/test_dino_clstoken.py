"""The DINO loss against explicit loops, and its centre update."""

from __future__ import annotations

import math

import pytest
import torch

from rsdino.losses import DINOLoss


def _softmax(row: list[float]) -> list[float]:
    top = max(row)
    exps = [math.exp(v - top) for v in row]
    return [e / sum(exps) for e in exps]


def _hand_loss(student: torch.Tensor, teacher: torch.Tensor, center: torch.Tensor, n_global: int,
               tau_s: float, tau_t: float) -> float:
    """The DINO loss with plain Python loops: student (V, B, K), teacher (G, B, K), center (K,)."""
    s, t, c = student.tolist(), teacher.tolist(), center.tolist()
    n_crops, batch = len(s), len(s[0])
    total, pairs = 0.0, 0
    for i in range(n_global):
        for v in range(n_crops):
            if v == i:
                continue
            pair = 0.0
            for b in range(batch):
                q = _softmax([(t[i][b][k] - c[k]) / tau_t for k in range(len(c))])
                p = _softmax([x / tau_s for x in s[v][b]])
                pair += -sum(qk * math.log(pk) for qk, pk in zip(q, p, strict=True))
            total += pair / batch
            pairs += 1
    return total / pairs


@pytest.mark.parametrize(("n_global", "n_crops"), [(2, 4), (3, 5), (1, 2)])
def test_loss_equals_the_hand_computed_value(n_global: int, n_crops: int) -> None:
    generator = torch.Generator().manual_seed(0)
    batch, k = 3, 5
    student = torch.randn(n_crops, batch, k, generator=generator, dtype=torch.float64)
    teacher = torch.randn(n_global, batch, k, generator=generator, dtype=torch.float64)
    loss_fn = DINOLoss(k, n_global_crops=n_global, student_temp=0.1).double()
    loss_fn.center.copy_(torch.randn(1, k, generator=generator, dtype=torch.float64))
    expected = _hand_loss(student, teacher, loss_fn.center[0], n_global, 0.1, 0.04)
    loss = loss_fn(student.reshape(-1, k), teacher.reshape(-1, k), teacher_temp=0.04)
    assert loss.item() == pytest.approx(expected, rel=1e-10)


def test_list_and_stacked_student_outputs_agree() -> None:
    generator = torch.Generator().manual_seed(1)
    student = torch.randn(4, 2, 7, generator=generator)
    teacher = torch.randn(4, 7, generator=generator)
    stacked = DINOLoss(7)(student.reshape(-1, 7), teacher, 0.05)
    listed = DINOLoss(7)(list(student), teacher, 0.05)
    assert torch.allclose(stacked, listed)


def test_center_update_is_the_ema_of_the_teacher_batch_mean() -> None:
    generator = torch.Generator().manual_seed(2)
    teacher = torch.randn(6, 4, generator=generator)  # 2 global crops x batch 3
    loss_fn = DINOLoss(4, n_global_crops=2, center_momentum=0.9)
    old = torch.randn(1, 4, generator=generator)
    loss_fn.center.copy_(old)
    loss_fn(torch.randn(12, 4, generator=generator), teacher, 0.04)
    for k in range(4):
        mean_k = sum(teacher[r, k].item() for r in range(6)) / 6
        assert loss_fn.center[0, k].item() == pytest.approx(0.9 * old[0, k].item() + 0.1 * mean_k, abs=1e-6)


def test_gradient_reaches_the_student_only() -> None:
    student = torch.randn(8, 5, requires_grad=True)
    teacher = torch.randn(4, 5, requires_grad=True)
    DINOLoss(5)(student, teacher, 0.04).backward()
    assert student.grad is not None and student.grad.abs().sum() > 0
    assert teacher.grad is None


def test_center_is_a_buffer_saved_with_the_module() -> None:
    loss_fn = DINOLoss(5)
    assert "center" in loss_fn.state_dict()
    assert not list(loss_fn.parameters())


def test_bad_shapes_are_refused() -> None:
    with pytest.raises(ValueError, match="multiple"):
        DINOLoss(5, n_global_crops=2)(torch.randn(9, 5), torch.randn(3, 5), 0.04)
    with pytest.raises(ValueError, match="at least one other crop"):
        DINOLoss(5, n_global_crops=1)(torch.randn(3, 5), torch.randn(3, 5), 0.04)
