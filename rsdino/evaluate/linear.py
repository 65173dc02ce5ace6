"""Linear probes of frozen, cached features: logistic regression, the DINO and the DINOv2 protocols.

``logistic_regression_probe`` is the probe of the DINOv2-RS seed's linear table: an L2-regularised
multinomial logistic regression on the raw or (optionally) standardised features, here our own
full-batch L-BFGS in torch with scikit-learn's ``C`` semantics. ``dino_linear_probe`` is the DINO
protocol (Caron et al., ICCV 2021, appendix): one linear layer trained with SGD and a cosine
schedule. ``dinov2_linear_grid`` is the DINOv2 protocol (Oquab et al., "DINOv2: Learning Robust
Visual Features without Supervision", TMLR 2024, section 7 / appendix): many linear heads (learning
rates x feature variants) trained at once, the best chosen on a validation split. All three work on
features already extracted (e.g. by ``rsdino.evaluate.features.extract_features``), so the DINO and
DINOv2 protocols here are their augmentation-free variants: every epoch sees the same feature of
each image, where the papers re-extract features of randomly cropped and flipped images. Accuracies
are in percent, as in ``rsdino.evaluate.knn``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from rsdino.evaluate.metrics import top_k_accuracy

#: The DINOv2 learning-rate grid (before the batch-size scaling lr * batch / 256).
DINOV2_LEARNING_RATES: tuple[float, ...] = (1e-5, 2e-5, 5e-5, 1e-4, 2e-4, 5e-4, 1e-3, 2e-3, 5e-3,
                                             1e-2, 2e-2, 5e-2, 1e-1)


def _check(train_x: Tensor, train_y: Tensor, test_x: Tensor, test_y: Tensor) -> None:
    if train_x.ndim != 2 or test_x.ndim != 2 or train_x.shape[1] != test_x.shape[1]:
        raise ValueError(f"features must be (N, D) with the same D, got {tuple(train_x.shape)} and "
                         f"{tuple(test_x.shape)}")
    if train_y.shape != train_x.shape[:1] or test_y.shape != test_x.shape[:1]:
        raise ValueError("need one label per feature")
    if train_x.shape[0] == 0:
        raise ValueError("no training features")


def _n_classes(n_classes: int | None, *labels: Tensor) -> int:
    return int(n_classes) if n_classes is not None else max(int(y.max()) for y in labels if y.numel()) + 1


def _accuracies(logits: Tensor, labels: Tensor, n_classes: int, prefix: str = "") -> dict[str, float]:
    out = {f"{prefix}top1": 100.0 * top_k_accuracy(logits, labels, 1)}
    if n_classes >= 5:
        out[f"{prefix}top5"] = 100.0 * top_k_accuracy(logits, labels, 5)
    return out


# ------------------------------------------------------------------------ logistic regression


def standardise(train_x: Tensor, *others: Tensor) -> tuple[Tensor, ...]:
    """Standardise with the training mean and (population) standard deviation, float64.

    ``x <- (x - mean_train) / std_train`` per dimension, as scikit-learn's ``StandardScaler``; a
    dimension constant on the training set is only centred (std taken as 1).
    """
    train_x = train_x.detach().cpu().double()
    mean = train_x.mean(dim=0)
    std = train_x.std(dim=0, correction=0)
    std = torch.where(std > 0, std, torch.ones_like(std))
    return tuple((x.detach().cpu().double() - mean) / std for x in (train_x, *others))


def fit_logistic_regression(x: Tensor, y: Tensor, n_classes: int, *, c: float = 1.0,
                            max_iter: int = 1000, tol: float = 1e-8) -> tuple[Tensor, Tensor]:
    r"""Fit an L2-regularised multinomial logistic regression with full-batch L-BFGS (float64).

    Minimises, over weights :math:`W` (D, K) and biases :math:`b` (K,),

    .. math:: \frac{1}{2} \lVert W \rVert_F^2 + C \sum_{i=1}^N
              -\log \mathrm{softmax}(x_i^\top W + b)_{y_i},

    the objective of scikit-learn's ``LogisticRegression(C=C)`` with the multinomial loss and the
    lbfgs solver (the bias is not penalised), so ``c`` here is scikit-learn's ``C``: the inverse
    regularisation strength. For conditioning it is minimised divided by :math:`CN`, i.e. mean
    cross-entropy :math:`+ \lVert W \rVert^2 / (2CN)` (same minimiser). Features are used as given.

    Args:
        x: (N, D) features.
        y: (N,) int in [0, n_classes).
        n_classes: K.
        c: inverse regularisation strength C > 0.
        max_iter: L-BFGS iterations.
        tol: stop when the largest absolute gradient entry falls below this.

    Returns:
        ``(weight (D, K), bias (K,))`` float64.
    """
    if c <= 0:
        raise ValueError(f"c must be positive, got {c}")
    x, y = x.detach().cpu().double(), y.detach().cpu().long()
    weight = torch.zeros(x.shape[1], n_classes, dtype=torch.float64, requires_grad=True)
    bias = torch.zeros(n_classes, dtype=torch.float64, requires_grad=True)
    penalty = 1.0 / (2.0 * c * x.shape[0])
    optimizer = torch.optim.LBFGS([weight, bias], lr=1.0, max_iter=max_iter, tolerance_grad=tol,
                                  tolerance_change=1e-14, history_size=20, line_search_fn="strong_wolfe")

    def closure() -> Tensor:
        optimizer.zero_grad()
        loss = F.cross_entropy(x @ weight + bias, y) + penalty * weight.pow(2).sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    return weight.detach(), bias.detach()


def logistic_regression_probe(train_x: Tensor, train_y: Tensor, test_x: Tensor, test_y: Tensor, *,
                              c: float = 1.0, max_iter: int = 1000, standardize: bool = True,
                              n_classes: int | None = None) -> dict[str, float]:
    """Logistic-regression linear probe, the DINOv2-RS protocol.

    With ``standardize`` the features are first standardised with the training statistics
    (``standardise``: ``x <- (x - mean_train) / std_train`` per dimension); without it they are used
    raw, as the DINOv2-RS seed's code does. Then ``fit_logistic_regression`` (objective and the
    ``c`` = scikit-learn ``C`` mapping there) is fit on the training set and the test set is
    classified by the largest logit. Equivalent to scikit-learn's
    ``make_pipeline(StandardScaler(), LogisticRegression(C=c))``, or without ``standardize`` to
    ``LogisticRegression(C=c)`` on the raw features (both at convergence: the optimum is unique).

    Args:
        train_x: (N, D) training features.
        train_y: (N,) int labels.
        test_x: (M, D) test features.
        test_y: (M,) int labels.
        c: inverse regularisation strength (scikit-learn's ``C``).
        max_iter: L-BFGS iterations.
        standardize: standardise the features with the training statistics first.
        n_classes: number of classes; by default the largest label + 1.

    Returns:
        ``{"top1": ..., "top5": ..., "train_top1": ...}`` in percent (``top5`` only for >= 5
        classes).
    """
    _check(train_x, train_y, test_x, test_y)
    k = _n_classes(n_classes, train_y, test_y)
    if standardize:
        train, test = standardise(train_x, test_x)
    else:
        train, test = (x.detach().cpu().double() for x in (train_x, test_x))
    weight, bias = fit_logistic_regression(train, train_y, k, c=c, max_iter=max_iter)
    metrics = _accuracies(test @ weight + bias, test_y, k)
    metrics["train_top1"] = 100.0 * top_k_accuracy(train @ weight + bias, train_y, 1)
    return metrics


# ------------------------------------------------------------------ SGD-trained linear heads


def _cosine_lr(base: Tensor | float, step: int, total: int) -> Tensor | float:
    """Cosine annealing to 0 (``torch.optim.lr_scheduler.CosineAnnealingLR`` with eta_min 0)."""
    return base * 0.5 * (1.0 + math.cos(math.pi * step / total))


ADAM_BETAS, ADAM_EPS = (0.9, 0.999), 1e-8


def _train_heads(features: Mapping[str, Tensor], labels: Tensor, n_classes: int, lrs: Tensor, *,
                 epochs: int, batch_size: int, momentum: float, weight_decay: float, seed: int,
                 per_iteration: bool, optimizer: str = "sgd") -> dict[str, tuple[Tensor, Tensor]]:
    """Train ``len(lrs)`` linear heads on every feature variant at once with SGD + momentum or AdamW.

    Every head is a linear layer initialised as in DINO / DINOv2 (weights N(0, 0.01^2), bias 0).
    All heads see the same shuffled mini-batches; their cross-entropy losses are summed, so each
    head gets its own gradient. ``lr_t`` is the head's learning rate annealed by a cosine to 0,
    stepped every iteration (DINOv2) or every epoch (DINO). ``optimizer`` ``sgd`` is PyTorch's SGD
    (dampening 0, no Nesterov): ``v <- momentum v + g + weight_decay p``, ``p <- p - lr_t v``;
    ``adamw`` is PyTorch's AdamW (betas 0.9, 0.999, eps 1e-8; SatDINO's probe):
    ``p <- p (1 - lr_t weight_decay)``, ``m <- b1 m + (1 - b1) g``, ``u <- b2 u + (1 - b2) g^2``,
    ``p <- p - lr_t (m / (1 - b1^t)) / (sqrt(u / (1 - b2^t)) + eps)`` at update ``t``.

    Returns:
        ``{variant: (weight (L, D, K), bias (L, K))}`` for the L learning rates.
    """
    init = torch.Generator().manual_seed(seed)
    gen = torch.Generator().manual_seed(seed + 1)  # shuffling, independent of the number of heads
    n = labels.shape[0]
    heads: dict[str, list[Tensor]] = {}
    for name, x in features.items():
        weight = torch.stack([torch.randn(x.shape[1], n_classes, generator=init) * 0.01 for _ in lrs])
        heads[name] = [weight.requires_grad_(), torch.zeros(len(lrs), n_classes, requires_grad=True)]
    if optimizer not in ("sgd", "adamw"):
        raise ValueError(f"optimizer must be 'sgd' or 'adamw', got {optimizer!r}")
    buffers = {name: [torch.zeros_like(p) for p in params] for name, params in heads.items()}
    second = {name: [torch.zeros_like(p) for p in params] for name, params in heads.items()}
    steps_per_epoch = math.ceil(n / batch_size)
    total = epochs * steps_per_epoch if per_iteration else epochs
    step = 0
    for epoch in range(epochs):
        order = torch.randperm(n, generator=gen)
        for start in range(0, n, batch_size):
            lr = _cosine_lr(lrs, step if per_iteration else epoch, total)
            batch = order[start:start + batch_size]
            target = labels[batch]
            loss = torch.zeros(())
            for name, (weight, bias) in heads.items():
                logits = torch.einsum("bd,ldk->lbk", features[name][batch], weight) + bias[:, None]
                # Mean cross-entropy per head, summed over the heads.
                loss = loss + F.cross_entropy(logits.flatten(0, 1), target.repeat(len(lrs)),
                                              reduction="sum") / len(batch)
            grads = torch.autograd.grad(loss, [p for params in heads.values() for p in params])
            with torch.no_grad():
                flat = iter(grads)
                for name, params in heads.items():
                    for param, buffer, squares in zip(params, buffers[name], second[name], strict=True):
                        rate = lr.view(-1, *[1] * (param.ndim - 1))
                        if optimizer == "sgd":
                            buffer.mul_(momentum).add_(next(flat) + weight_decay * param)
                            param.sub_(rate * buffer)
                            continue
                        grad, (b1, b2), t = next(flat), ADAM_BETAS, step + 1
                        param.mul_(1 - rate * weight_decay)
                        buffer.mul_(b1).add_(grad, alpha=1 - b1)
                        squares.mul_(b2).addcmul_(grad, grad, value=1 - b2)
                        denom = (squares / (1 - b2**t)).sqrt_().add_(ADAM_EPS)
                        param.sub_(rate * (buffer / (1 - b1**t)) / denom)
            step += 1
    return {name: (weight.detach(), bias.detach()) for name, (weight, bias) in heads.items()}


def _logits(x: Tensor, weight: Tensor, bias: Tensor) -> Tensor:
    return torch.einsum("bd,ldk->lbk", x, weight) + bias[:, None]  # (L, B, K)


def dino_linear_probe(train_x: Tensor, train_y: Tensor, test_x: Tensor, test_y: Tensor, *,
                      epochs: int = 100, base_lr: float = 1e-3, batch_size: int = 256,
                      momentum: float = 0.9, weight_decay: float = 0.0, seed: int = 0,
                      n_classes: int | None = None, optimizer: str = "sgd") -> dict[str, float]:
    r"""Linear probe of the DINO protocol, on cached features (augmentation-free variant).

    One linear layer :math:`z \mapsto W^\top z + b` (no BatchNorm on the features; W ~ N(0, 0.01^2),
    b = 0) is trained to minimise the mean cross-entropy with SGD, momentum 0.9, weight decay 0,
    learning rate :math:`\eta = \eta_\text{base} \cdot B / 256` annealed per epoch by a cosine,
    :math:`\eta_e = \frac{\eta}{2}(1 + \cos(\pi e / E))`, for E epochs of shuffled mini-batches of
    size B (Caron et al., "Emerging Properties in Self-Supervised Vision Transformers", ICCV 2021,
    appendix; defaults E = 100, base lr 0.001). DINO trains on random-resized-crop + flip
    augmented images and extracts features on the fly; here the same cached feature of each image is
    used every epoch, so numbers can differ from DINO's. The features are whatever the caller gives,
    e.g. the concatenated CLS tokens of the last 4 blocks (ViT-S) or of the last block + the mean
    patch token (ViT-B). The test accuracy is that of the final epoch (DINO logs the best over its
    validation passes).

    Args:
        train_x: (N, D) training features.
        train_y: (N,) int labels.
        test_x: (M, D) test features.
        test_y: (M,) int labels.
        epochs: E.
        base_lr: base learning rate, scaled by B / 256.
        batch_size: B.
        momentum: SGD momentum.
        weight_decay: L2 weight decay of SGD (decoupled decay of AdamW).
        seed: seeds the initialisation and the shuffling.
        n_classes: number of classes; by default the largest label + 1.
        optimizer: ``sgd`` (DINO) or ``adamw`` (SatDINO's probe: AdamW, weight decay 0, same
            scaling and cosine; ``_train_heads`` has the update).

    Returns:
        ``{"top1": ..., "top5": ..., "lr": scaled lr}`` (accuracies in percent; ``top5`` only for
        >= 5 classes).
    """
    _check(train_x, train_y, test_x, test_y)
    k = _n_classes(n_classes, train_y, test_y)
    lr = base_lr * batch_size / 256.0
    heads = _train_heads({"x": train_x.detach().cpu().float()}, train_y.detach().cpu().long(), k,
                         torch.tensor([lr]), epochs=epochs, batch_size=batch_size, momentum=momentum,
                         weight_decay=weight_decay, seed=seed, per_iteration=False, optimizer=optimizer)
    logits = _logits(test_x.detach().cpu().float(), *heads["x"])[0]
    return {**_accuracies(logits, test_y, k), "lr": lr}


def dinov2_linear_grid(train_features: Mapping[str, Tensor], train_y: Tensor,
                       val_features: Mapping[str, Tensor], val_y: Tensor,
                       test_features: Mapping[str, Tensor], test_y: Tensor, *,
                       learning_rates: Sequence[float] = DINOV2_LEARNING_RATES, epochs: int = 10,
                       batch_size: int = 128, momentum: float = 0.9, weight_decay: float = 0.0,
                       seed: int = 0, n_classes: int | None = None) -> dict[str, Any]:
    r"""The DINOv2 linear-evaluation grid on cached features (augmentation-free variant).

    For every feature variant v (a key of ``train_features``, e.g. ``"cls_n1"``, ``"cls_n4"`` = the
    concatenated CLS tokens of the last 1 or 4 blocks, ``"cls_n1_avgpool"`` = + the mean patch token)
    and every learning rate :math:`\eta` of the grid, a linear head is trained on the training
    features, all heads at once on the same mini-batches: SGD, momentum 0.9, weight decay 0,
    learning rate :math:`\eta \cdot B / 256` annealed per iteration by a cosine to 0 over E epochs,
    mean cross-entropy (Oquab et al., "DINOv2: Learning Robust Visual Features without
    Supervision", TMLR 2024; grid 1e-5 ... 0.1, n in {1, 4}, avgpool on/off). The head with the best
    validation top-1 (ties: the first in grid order, variants in dict order, then learning rates) is
    then scored on the test features. DINOv2 trains on augmented images and 12,500 iterations; here
    cached features are reused every epoch.

    Args:
        train_features: ``{variant: (N, D_v)}``.
        train_y: (N,) int labels.
        val_features: ``{variant: (N_val, D_v)}``, the same keys.
        val_y: (N_val,) labels of the validation split used to choose the head.
        test_features: ``{variant: (M, D_v)}``, the same keys.
        test_y: (M,) labels.
        learning_rates: the grid of base learning rates.
        epochs: E.
        batch_size: B.
        momentum: SGD momentum.
        weight_decay: L2 weight decay.
        seed: seeds the initialisation and the shuffling.
        n_classes: number of classes; by default the largest label + 1.

    Returns:
        ``{"top1", "top5" (>= 5 classes), "val_top1", "best_variant", "best_lr" (base),
        "grid": {"<variant>/lr<base lr>": val top-1}}``; accuracies in percent.
    """
    if not train_features or set(train_features) != set(val_features) or \
            set(train_features) != set(test_features):
        raise ValueError("train, val and test features need the same, non-empty, variant keys")
    for name in train_features:
        _check(train_features[name], train_y, test_features[name], test_y)
        _check(train_features[name], train_y, val_features[name], val_y)
    k = _n_classes(n_classes, train_y, val_y, test_y)
    base = torch.tensor([float(lr) for lr in learning_rates])
    train = {name: x.detach().cpu().float() for name, x in train_features.items()}
    heads = _train_heads(train, train_y.detach().cpu().long(), k, base * batch_size / 256.0,
                         epochs=epochs, batch_size=batch_size, momentum=momentum,
                         weight_decay=weight_decay, seed=seed, per_iteration=True)
    grid: dict[str, float] = {}
    best: tuple[float, str, int] | None = None
    for name, (weight, bias) in heads.items():
        logits = _logits(val_features[name].detach().cpu().float(), weight, bias)  # (L, N_val, K)
        for i, lr in enumerate(learning_rates):
            accuracy = 100.0 * top_k_accuracy(logits[i], val_y, 1)
            grid[f"{name}/lr{lr:g}"] = accuracy
            if best is None or accuracy > best[0]:
                best = (accuracy, name, i)
    assert best is not None
    val_top1, name, i = best
    weight, bias = heads[name]
    logits = _logits(test_features[name].detach().cpu().float(), weight[i:i + 1], bias[i:i + 1])[0]
    return {**_accuracies(logits, test_y, k), "val_top1": val_top1, "best_variant": name,
            "best_lr": float(learning_rates[i]), "grid": grid}
