"""The iBOT masked-patch loss against explicit loops, its masking, weighting and centre update."""

from __future__ import annotations

import math

import pytest
import torch

from rsdino.losses.ibot_patch import iBOTPatchLoss
from rsdino.losses.sinkhorn_knopp import sinkhorn_knopp

MASKS = torch.tensor([
    [True, False, True, True],    # 3 masked patches
    [False, False, False, False],  # none: counts in B, contributes 0
    [False, True, False, False],   # 1 masked patch
])
B, N, K = 3, 4, 5


def _softmax(row: list[float]) -> list[float]:
    top = max(row)
    exps = [math.exp(v - top) for v in row]
    return [e / sum(exps) for e in exps]


def _hand_loss(student: torch.Tensor, q: list[list[list[float]]], masks: torch.Tensor, tau_s: float) -> float:
    """-1/B sum_b 1/m_b sum_{masked n} sum_k q[b][n][k] log softmax(s[b][n] / tau_s)[k], with loops."""
    s, m = student.tolist(), masks.tolist()
    total = 0.0
    for b in range(len(s)):
        n_masked = sum(m[b])
        image = 0.0
        for n in range(len(s[b])):
            if not m[b][n]:
                continue
            p = _softmax([v / tau_s for v in s[b][n]])
            image += -sum(qk * math.log(pk) for qk, pk in zip(q[b][n], p, strict=True))
        total += image / max(n_masked, 1)
    return total / len(s)


def _tokens(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return (torch.randn(B, N, K, generator=generator, dtype=torch.float64),
            torch.randn(B, N, K, generator=generator, dtype=torch.float64))


def test_loss_from_raw_teacher_logits_equals_the_hand_value() -> None:
    student, teacher = _tokens(0)
    loss_fn = iBOTPatchLoss(K, student_temp=0.1).double()
    loss_fn.center.copy_(torch.randn(1, K, generator=torch.Generator().manual_seed(9), dtype=torch.float64))
    c = loss_fn.center[0].tolist()
    q = [[_softmax([(teacher[b, n, k].item() - c[k]) / 0.04 for k in range(K)]) for n in range(N)]
         for b in range(B)]
    expected = _hand_loss(student, q, MASKS, 0.1)
    loss = loss_fn.forward_logits(student, teacher, MASKS, teacher_temp=0.04)
    assert loss.item() == pytest.approx(expected, rel=1e-10)


def test_masked_rows_and_full_tokens_give_the_same_loss() -> None:
    student, teacher = _tokens(1)
    probs = torch.softmax(teacher / 0.07, dim=-1)
    loss_fn = iBOTPatchLoss(K).double()
    full = loss_fn(student, probs, MASKS)
    rows = loss_fn(student[MASKS], probs[MASKS], MASKS)
    assert full.item() == pytest.approx(rows.item(), rel=1e-12)
    assert full.item() == pytest.approx(_hand_loss(student, probs.tolist(), MASKS, 0.1), rel=1e-10)


def test_sinkhorn_knopp_probabilities_are_accepted() -> None:
    student, teacher = _tokens(2)
    probs = sinkhorn_knopp(teacher[MASKS], teacher_temp=0.05)  # (M, K), as DINOv2 passes them
    full = torch.zeros(B, N, K, dtype=torch.float64)
    full[MASKS] = probs
    loss = iBOTPatchLoss(K).double()(student[MASKS], probs, MASKS)
    assert loss.item() == pytest.approx(_hand_loss(student, full.tolist(), MASKS, 0.1), rel=1e-10)


def test_unmasked_patches_change_nothing() -> None:
    student, teacher = _tokens(3)
    loss_fn = iBOTPatchLoss(K).double()
    before = loss_fn(student, torch.softmax(teacher, dim=-1), MASKS)
    student2, teacher2 = student.clone(), teacher.clone()
    noise_s, noise_t = _tokens(4)
    student2[~MASKS] += 10 * noise_s[~MASKS]
    teacher2[~MASKS] += 10 * noise_t[~MASKS]
    after = loss_fn(student2, torch.softmax(teacher2, dim=-1), MASKS)
    assert after.item() == before.item()


def test_images_are_weighted_by_one_over_their_masked_patches() -> None:
    # constant per-patch cross-entropy x: image 0 contributes x (3 patches x 1/3), image 1 nothing,
    # image 2 x, so L = 2x / 3 -- not 4x / 4 as a mean over all masked patches would give
    student = torch.zeros(B, N, K, dtype=torch.float64)
    probs = torch.full((B, N, K), 1.0 / K, dtype=torch.float64)
    loss = iBOTPatchLoss(K).double()(student, probs, MASKS)
    assert loss.item() == pytest.approx(2 * math.log(K) / 3, rel=1e-12)
    weights = iBOTPatchLoss.masks_weight(MASKS, torch.float64)
    torch.testing.assert_close(weights, torch.tensor([1 / 3, 1 / 3, 1 / 3, 1.0], dtype=torch.float64))
    # an explicit masks_weight (DINOv2's collate output) is used as given
    doubled = iBOTPatchLoss(K).double()(student[MASKS], probs[MASKS], MASKS, masks_weight=2 * weights)
    assert doubled.item() == pytest.approx(2 * loss.item(), rel=1e-12)


def test_centre_update_is_the_ema_of_the_masked_teacher_mean() -> None:
    student, teacher = _tokens(5)
    loss_fn = iBOTPatchLoss(K, center_momentum=0.9).double()
    old = torch.randn(1, K, generator=torch.Generator().manual_seed(6), dtype=torch.float64)
    loss_fn.center.copy_(old)
    loss_fn.forward_logits(student, teacher, MASKS, teacher_temp=0.04)
    masked = [(b, n) for b in range(B) for n in range(N) if MASKS[b, n]]
    for k in range(K):
        mean_k = sum(teacher[b, n, k].item() for b, n in masked) / len(masked)
        assert loss_fn.center[0, k].item() == pytest.approx(0.9 * old[0, k].item() + 0.1 * mean_k, rel=1e-12)


def test_probability_path_leaves_the_centre_alone_and_no_masks_leave_it_finite() -> None:
    student, teacher = _tokens(7)
    loss_fn = iBOTPatchLoss(K)
    loss_fn(student.float(), torch.softmax(teacher.float(), dim=-1), MASKS)
    assert torch.equal(loss_fn.center, torch.zeros(1, K))
    none = torch.zeros(B, N, dtype=torch.bool)
    loss = loss_fn.forward_logits(student.float(), teacher.float(), none, teacher_temp=0.04)
    assert loss.item() == 0.0 and torch.equal(loss_fn.center, torch.zeros(1, K))


def test_gradient_reaches_the_student_only() -> None:
    student = torch.randn(B, N, K, requires_grad=True)
    teacher = torch.randn(B, N, K, requires_grad=True)
    iBOTPatchLoss(K).forward_logits(student, teacher, MASKS, teacher_temp=0.04).backward()
    assert student.grad is not None and student.grad[MASKS].abs().sum() > 0
    assert student.grad[~MASKS].abs().sum() == 0
    assert teacher.grad is None


def test_centre_is_a_buffer_and_bad_shapes_are_refused() -> None:
    loss_fn = iBOTPatchLoss(K)
    assert "center" in loss_fn.state_dict() and not list(loss_fn.parameters())
    with pytest.raises(ValueError, match="do not match"):
        loss_fn(torch.randn(B, N + 1, K), torch.randn(B, N + 1, K), MASKS)
    with pytest.raises(ValueError, match=r"\(4, K\)"):
        loss_fn(torch.randn(3, K), torch.randn(3, K), MASKS)
