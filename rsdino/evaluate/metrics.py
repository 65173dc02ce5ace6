"""Scores of the downstream tasks: segmentation mIoU, change detection, multi-label AP, top-k accuracy.

Every function takes tensors (or anything ``torch.as_tensor`` accepts) and returns plain Python
floats, as fractions in [0, 1] (multiply by 100 for the tables). The confusion-matrix convention is
the one of ``rsdino.evaluate.knn``: row = true class, column = predicted class.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor


def _as_long(x: Tensor | object) -> Tensor:
    return torch.as_tensor(x).detach().cpu().long()


def confusion_matrix(pred: Tensor, target: Tensor, n_classes: int,
                     ignore_index: int | None = None) -> Tensor:
    r"""Counts of (true, predicted) class pairs, (n_classes, n_classes) int64.

    :math:`M_{ij} = |\{p : t_p = i, \hat y_p = j\}|` over all elements :math:`p` of ``target``
    (row = true class, column = predicted class), skipping elements whose target equals
    ``ignore_index``.

    Args:
        pred: predicted classes, any shape, int in [0, n_classes).
        target: true classes, the same shape, int in [0, n_classes) or ``ignore_index``.
        n_classes: number of classes.
        ignore_index: target value of elements that are not scored (e.g. 255 for "no label").

    Raises:
        ValueError: on a shape mismatch or a class outside [0, n_classes).
    """
    pred, target = _as_long(pred), _as_long(target)
    if pred.shape != target.shape:
        raise ValueError(f"pred {tuple(pred.shape)} and target {tuple(target.shape)} differ in shape")
    pred, target = pred.reshape(-1), target.reshape(-1)
    if ignore_index is not None:
        keep = target != ignore_index
        pred, target = pred[keep], target[keep]
    for name, values in (("pred", pred), ("target", target)):
        if values.numel() and (int(values.min()) < 0 or int(values.max()) >= n_classes):
            raise ValueError(f"{name} has classes outside [0, {n_classes})")
    flat = target * n_classes + pred
    return torch.bincount(flat, minlength=n_classes * n_classes).view(n_classes, n_classes)


def mean_iou(pred: Tensor, target: Tensor, n_classes: int,
             ignore_index: int | None = None) -> tuple[float, Tensor]:
    r"""Mean intersection over union of semantic-segmentation masks.

    From the confusion matrix :math:`M` summed over all pixels of all images (not averaged per
    image), for every class :math:`c`

    .. math:: \mathrm{IoU}_c = \frac{TP_c}{TP_c + FP_c + FN_c}
              = \frac{M_{cc}}{\sum_j M_{cj} + \sum_i M_{ic} - M_{cc}},

    and :math:`\mathrm{mIoU} = \frac{1}{|C'|} \sum_{c \in C'} \mathrm{IoU}_c`, where :math:`C'` are
    the classes present in the prediction or in the target (union > 0). A class absent from both
    has IoU NaN and is left out of the mean (the convention of mmsegmentation's ``nanmean``, used
    by the Potsdam / Vaihingen / LoveDA tables of SatDINO, Zvara et al. 2025). Pixels whose target
    is ``ignore_index`` are not scored. Everingham et al., "The PASCAL Visual Object Classes
    Challenge", IJCV 2010.

    Args:
        pred: predicted classes, e.g. (B, H, W) int.
        target: true classes, the same shape.
        n_classes: number of classes.
        ignore_index: target value that is not scored.

    Returns:
        ``(miou, per_class_iou)``: a float in [0, 1] (NaN when no class is present at all) and a
        (n_classes,) float64 tensor with NaN for the absent classes.
    """
    matrix = confusion_matrix(pred, target, n_classes, ignore_index).double()
    tp = matrix.diag()
    union = matrix.sum(dim=1) + matrix.sum(dim=0) - tp  # TP + FN + FP
    iou = torch.where(union > 0, tp / union.clamp(min=1), torch.full_like(tp, float("nan")))
    return float(iou.nanmean()), iou


def change_detection_scores(prob_or_pred: Tensor, target: Tensor, threshold: float = 0.5,
                            ignore_index: int | None = None) -> dict[str, float]:
    r"""Precision, recall and F1 of the change class of binary change masks.

    A floating-point input is a change probability and is thresholded, :math:`\hat y = [p > t]`
    (so p = t, e.g. equal two-class softmax scores, is "no change", as with an argmax); a bool or
    integer input is used as the predicted mask (non-zero = change). Over all pixels of all images,

    .. math:: P = \frac{TP}{TP + FP}, \quad R = \frac{TP}{TP + FN}, \quad F_1 = \frac{2PR}{P + R},

    with change = positive, and 0 for any 0/0 (as scikit-learn's ``zero_division=0``). The OSCD
    metrics of Daudt et al., "Urban Change Detection for Multispectral Earth Observation Using
    Convolutional Neural Networks", IGARSS 2018, reported by DINO-MC (Wanyan et al. 2023).

    Args:
        prob_or_pred: (B, H, W) change probabilities (float) or predicted masks (bool / int).
        target: (B, H, W) true masks, 1 = change, 0 = no change (or ``ignore_index``).
        threshold: t, for probabilities.
        ignore_index: target value that is not scored.

    Returns:
        ``{"precision": ..., "recall": ..., "f1": ...}`` in [0, 1].
    """
    x = torch.as_tensor(prob_or_pred).detach().cpu()
    pred = x > threshold if x.is_floating_point() else x != 0
    target = _as_long(target)
    if pred.shape != target.shape:
        raise ValueError(f"prediction {tuple(pred.shape)} and target {tuple(target.shape)} differ in shape")
    keep = target != ignore_index if ignore_index is not None else torch.ones_like(pred)
    if not bool(((target[keep] == 0) | (target[keep] == 1)).all()):
        raise ValueError("target must be 0 (no change) or 1 (change)")
    truth = target == 1
    tp = int((pred & truth & keep).sum())
    fp = int((pred & ~truth & keep).sum())
    fn = int((~pred & truth & keep).sum())
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1}


def _average_precision(scores: Tensor, targets: Tensor) -> float:
    """AP of one ranking (1-D float64 scores, 1-D bool targets with at least one positive)."""
    order = torch.argsort(scores, descending=True, stable=True)
    scores, targets = scores[order], targets[order].double()
    # The last position of every group of equal scores: one threshold per distinct score.
    last = torch.ones_like(scores, dtype=torch.bool)
    last[:-1] = scores[1:] != scores[:-1]
    tp = targets.cumsum(0)[last]
    seen = torch.arange(1, scores.numel() + 1, dtype=torch.float64)[last]
    precision = tp / seen
    recall = tp / tp[-1]
    previous = torch.cat([recall.new_zeros(1), recall[:-1]])
    return float(((recall - previous) * precision).sum())


def multilabel_average_precision(scores: Tensor, targets: Tensor,
                                 average: Literal["micro", "macro"] = "micro") -> float:
    r"""Average precision of multi-label scores (micro: over all (sample, label) pairs).

    For one ranking of scores with binary relevance, thresholds at every distinct score
    :math:`s_1 > s_2 > \dots` give precision :math:`P_n` and recall :math:`R_n` (tied scores enter
    together), and

    .. math:: \mathrm{AP} = \sum_n (R_n - R_{n-1}) P_n, \quad R_0 = 0,

    the step-wise (non-interpolated) area under the precision-recall curve, as scikit-learn's
    ``average_precision_score``. ``average="micro"`` ranks all N x L (sample, label) pairs as one
    list (equal to ``average_precision_score(targets, scores, average="micro")``), the BigEarthNet
    metric of DINO-MC (Wanyan et al. 2023) and SeCo (Mañas et al., ICCV 2021). ``average="macro"``
    is the mean of the per-label APs over labels with at least one positive (labels without one
    are left out, where scikit-learn would warn and count 0).

    Args:
        scores: (N, L) float scores (logits or probabilities; only the order matters).
        targets: (N, L) {0, 1}.
        average: "micro" or "macro".

    Returns:
        AP in [0, 1]; NaN when there is no positive at all.
    """
    scores = torch.as_tensor(scores).detach().cpu().double()
    targets = torch.as_tensor(targets).detach().cpu()
    if scores.shape != targets.shape or scores.ndim != 2:
        raise ValueError(f"scores {tuple(scores.shape)} and targets {tuple(targets.shape)} "
                         "must both be (N, L)")
    positive = targets != 0
    if average == "micro":
        if not bool(positive.any()):
            return float("nan")
        return _average_precision(scores.reshape(-1), positive.reshape(-1))
    if average == "macro":
        aps = [_average_precision(scores[:, j], positive[:, j])
               for j in range(scores.shape[1]) if bool(positive[:, j].any())]
        return sum(aps) / len(aps) if aps else float("nan")
    raise ValueError(f"average must be 'micro' or 'macro', got {average!r}")


def top_k_accuracy(logits: Tensor, target: Tensor, k: int = 1) -> float:
    r"""Fraction of samples whose true class is among the k highest-scored classes.

    :math:`\frac{1}{N} \sum_i \mathbb{1}[y_i \in \mathrm{top}_k(z_i)]`; equal scores are ranked by
    ``torch.topk`` (implementation-defined). A k above the number of classes counts every sample.

    Args:
        logits: (N, C) class scores.
        target: (N,) int in [0, C).
        k: number of best classes that count.
    """
    logits = torch.as_tensor(logits).detach()
    target = _as_long(target).to(logits.device)
    if logits.ndim != 2 or target.shape != logits.shape[:1]:
        raise ValueError(f"logits {tuple(logits.shape)} must be (N, C) and target {tuple(target.shape)} (N,)")
    if logits.shape[0] == 0:
        return float("nan")
    best = logits.topk(min(k, logits.shape[1]), dim=1).indices  # (N, k)
    return float((best == target[:, None]).any(dim=1).double().mean())
