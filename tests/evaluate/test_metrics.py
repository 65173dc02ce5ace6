"""Downstream metrics against values computed by hand on tiny masks, and against scikit-learn."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from rsdino.evaluate.metrics import (
    change_detection_scores,
    confusion_matrix,
    mean_iou,
    multilabel_average_precision,
    top_k_accuracy,
)


def test_confusion_matrix_rows_are_truth_and_ignore_index_is_skipped():
    target = torch.tensor([0, 0, 1, 2, 255])
    pred = torch.tensor([0, 1, 1, 0, 2])
    got = confusion_matrix(pred, target, 3, ignore_index=255)
    assert got.tolist() == [[1, 1, 0], [0, 1, 0], [1, 0, 0]]
    with pytest.raises(ValueError, match="outside"):
        confusion_matrix(pred, target, 3)


def test_mean_iou_hand_computed():
    # 3 x 3 mask, 4 classes; class 3 appears nowhere and is excluded from the mean.
    target = torch.tensor([[0, 0, 1],
                           [0, 1, 1],
                           [2, 2, 2]])
    pred = torch.tensor([[0, 1, 1],
                         [0, 1, 2],
                         [2, 2, 0]])
    # class 0: TP 2 (two of the three 0s), FN 1, FP 1 (bottom right)   -> 2 / 4
    # class 1: TP 2, FN 1 (pixel (1,2) -> 2), FP 1 (pixel (0,1))      -> 2 / 4
    # class 2: TP 2, FN 1 (pixel (2,2) -> 0), FP 1 (pixel (1,2))      -> 2 / 4
    miou, per_class = mean_iou(pred[None], target[None], 4)
    assert per_class[:3].tolist() == pytest.approx([0.5, 0.5, 0.5])
    assert math.isnan(per_class[3])
    assert miou == pytest.approx(0.5)


def test_mean_iou_uneven_classes_and_ignore_index():
    target = torch.tensor([0, 0, 0, 1, 255, 255])
    pred = torch.tensor([0, 0, 1, 1, 0, 2])  # the ignored pixels predict 0 and 2: not scored
    # class 0: TP 2, FN 1, FP 0 -> 2/3; class 1: TP 1, FP 1 -> 1/2; class 2: absent from both -> NaN
    miou, per_class = mean_iou(pred, target, 3, ignore_index=255)
    assert per_class[:2].tolist() == pytest.approx([2 / 3, 1 / 2])
    assert math.isnan(per_class[2])
    assert miou == pytest.approx((2 / 3 + 1 / 2) / 2)
    # A class predicted but absent from the target counts, with IoU 0.
    miou, per_class = mean_iou(torch.tensor([0, 2]), torch.tensor([0, 0]), 3)
    assert per_class[0] == pytest.approx(0.5) and per_class[2] == 0.0
    assert miou == pytest.approx(0.25)


def test_change_detection_hand_computed():
    target = torch.tensor([[1, 1, 0, 0],
                           [1, 0, 0, 0]])
    prob = torch.tensor([[0.9, 0.2, 0.7, 0.1],
                         [0.5, 0.4, 0.8, 0.0]])
    # > 0.5: change at (0,0), (0,2), (1,2). TP 1, FP 2, FN 2 (0.5 itself is "no change").
    got = change_detection_scores(prob, target)
    assert got["precision"] == pytest.approx(1 / 3)
    assert got["recall"] == pytest.approx(1 / 3)
    assert got["f1"] == pytest.approx(1 / 3)
    # Threshold 0.3: predicted (0,0), (0,2), (1,0), (1,1), (1,2); TP 2, FP 3, FN 1.
    got = change_detection_scores(prob, target, threshold=0.3)
    p, r = 2 / 5, 2 / 3
    assert got == pytest.approx({"precision": p, "recall": r, "f1": 2 * p * r / (p + r)})
    # Integer predictions are used as masks; no predicted change gives 0, not NaN.
    assert change_detection_scores(torch.zeros(2, 4, dtype=torch.long), target) == {
        "precision": 0.0, "recall": 0.0, "f1": 0.0}


def test_change_detection_matches_sklearn():
    from sklearn.metrics import f1_score, precision_score, recall_score

    gen = torch.Generator().manual_seed(0)
    prob = torch.rand(3, 8, 8, generator=gen)
    target = (torch.rand(3, 8, 8, generator=gen) > 0.7).long()
    got = change_detection_scores(prob, target)
    y, p = target.reshape(-1).numpy(), (prob > 0.5).reshape(-1).numpy()
    assert got == pytest.approx({"precision": precision_score(y, p), "recall": recall_score(y, p),
                                 "f1": f1_score(y, p)})


def test_multilabel_ap_hand_computed_with_ties():
    scores = torch.tensor([[0.9, 0.5], [0.5, 0.1]])
    targets = torch.tensor([[1, 0], [1, 0]])
    # Ranked pairs: 0.9 (pos), {0.5 pos, 0.5 neg} tied, 0.1 (neg); 2 positives.
    # Thresholds: 0.9 -> P 1, R 1/2; 0.5 -> P 2/3, R 1.  AP = 1/2 * 1 + 1/2 * 2/3 = 5/6.
    assert multilabel_average_precision(scores, targets) == pytest.approx(5 / 6)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_multilabel_micro_ap_matches_sklearn_with_ties(seed):
    from sklearn.metrics import average_precision_score

    rng = np.random.default_rng(seed)
    scores = rng.integers(0, 6, size=(40, 7)) / 5.0  # few distinct values: many ties
    targets = (rng.random((40, 7)) < 0.3).astype(np.int64)
    targets[0, :] = 1  # every label has a positive, for the macro comparison
    for average in ("micro", "macro"):
        got = multilabel_average_precision(torch.from_numpy(scores), torch.from_numpy(targets), average)
        assert got == pytest.approx(average_precision_score(targets, scores, average=average), abs=1e-12)
    continuous = rng.random((40, 7))
    assert multilabel_average_precision(torch.from_numpy(continuous), torch.from_numpy(targets)) == \
        pytest.approx(average_precision_score(targets, continuous, average="micro"), abs=1e-12)


def test_top_k_accuracy_hand_computed():
    logits = torch.tensor([[0.1, 0.7, 0.2],
                           [0.5, 0.3, 0.2],
                           [0.2, 0.3, 0.5]])
    target = torch.tensor([1, 2, 1])
    assert top_k_accuracy(logits, target, 1) == pytest.approx(1 / 3)
    assert top_k_accuracy(logits, target, 2) == pytest.approx(2 / 3)
    assert top_k_accuracy(logits, target, 5) == 1.0
