"""k-nearest-neighbour classification of frozen features: the DINO and the DINOv2-RS protocols.

``weighted_knn`` is the protocol of DINO (Caron et al., "Emerging Properties in Self-Supervised
Vision Transformers", ICCV 2021, section 4.1 and appendix; after Wu et al., "Unsupervised Feature
Learning via Non-Parametric Instance Discrimination", CVPR 2018): cosine similarity of
L2-normalised features and a temperature-weighted vote. ``majority_knn_faiss`` is the protocol of
the DINOv2-RS seed (000): a FAISS exact L2 index on the raw features and a plain majority vote
among k = 20 neighbours. ``run_knn_evaluation`` runs both for one model folder (and for a randomly
initialised backbone of the same architecture as a baseline) and logs the results.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import Dataset

from rsdino.config import KnnEvaluation
from rsdino.config.evaluations import KNN_TIE_RULES
from rsdino.evaluate.context import EvaluationContext
from rsdino.evaluate.features import FeaturesFn, extract_features, with_dataset_statistics
from rsdino.tracking import Tracker

#: Prefix of the DINOv2-RS majority-vote metrics in ``run_knn_evaluation``'s results.
MAJORITY_PREFIX = "faiss_majority_"


def _check_inputs(train_features: Tensor, train_labels: Tensor, test_features: Tensor,
                  n_classes: int) -> None:
    if train_features.ndim != 2 or test_features.ndim != 2:
        raise ValueError("features must be 2-D (N, D)")
    if train_features.shape[1] != test_features.shape[1]:
        raise ValueError(f"feature sizes differ: train {train_features.shape[1]}, "
                         f"test {test_features.shape[1]}")
    if train_features.shape[0] != train_labels.shape[0] or train_features.shape[0] == 0:
        raise ValueError("need one label per training feature, and at least one training feature")
    if int(train_labels.min()) < 0 or int(train_labels.max()) >= n_classes:
        raise ValueError(f"training labels must lie in [0, {n_classes})")


def _rank_classes(neighbour_labels: Tensor, weights: Tensor, n_classes: int, ties: str) -> Tensor:
    """All classes (B, n_classes) ordered by summed vote weight, best first (see ``weighted_knn``)."""
    if ties == "smallest_label":
        scores = torch.zeros(weights.shape[0], n_classes, dtype=torch.float64)
        scores.scatter_add_(1, neighbour_labels, weights.double())  # (B, n_classes)
        return torch.sort(scores, dim=1, descending=True, stable=True).indices
    # "torch_sort": the reference's arithmetic (float32 one-hot products summed over the k
    # neighbours) and its unstable descending sort, whose order of equal scores is torch's own.
    batch, k = neighbour_labels.shape
    one_hot = torch.zeros(batch * k, n_classes, dtype=torch.float32)
    one_hot.scatter_(1, neighbour_labels.reshape(-1, 1), 1)
    scores = torch.sum(one_hot.view(batch, k, n_classes) * weights.float().view(batch, k, 1), 1)
    return scores.sort(1, True).indices


def weighted_knn_ranked(train_features: Tensor, train_labels: Tensor, test_features: Tensor, *,
                        ks: Sequence[int], temperature: float, n_classes: int,
                        batch_size: int = 256, ties: str = "smallest_label") -> dict[int, Tensor]:
    """Classes ranked by weighted-kNN score, for every k in ``ks`` (see ``weighted_knn``).

    Returns ``{k: ranked}`` with ``ranked`` (M, min(5, n_classes)) int64: the best classes of each
    test feature, best first. A ``k`` larger than the number of training features N uses all N
    neighbours. ``ties`` orders equal scores: ``"smallest_label"`` (deterministic, scores in
    float64) or ``"torch_sort"`` (float32 scores and torch's unstable sort, as in DINO's
    ``eval_knn.knn_classifier``; the order of equal scores then depends on torch and the device).
    """
    if ties not in KNN_TIE_RULES:
        raise ValueError(f"ties must be one of {KNN_TIE_RULES}, got {ties!r}")
    _check_inputs(train_features, train_labels, test_features, n_classes)
    train = F.normalize(train_features.float(), dim=1)
    test = F.normalize(test_features.float(), dim=1)
    labels = train_labels.long()
    k_max = min(max(ks), train.shape[0])
    n_ranked = min(5, n_classes)
    ranked: dict[int, list[Tensor]] = {k: [] for k in ks}
    for start in range(0, test.shape[0], batch_size):
        similarity = test[start:start + batch_size] @ train.T  # (B, N) cosine similarities
        sims, index = similarity.topk(k_max, dim=1, largest=True, sorted=True)  # (B, k_max)
        neighbour_labels = labels[index]  # (B, k_max)
        # exp(s_i / T), (B, k_max); float32 like the reference when its tie order is wanted.
        weights = torch.exp((sims.double() if ties == "smallest_label" else sims) / temperature)
        for k in ks:
            kk = min(k, k_max)
            order = _rank_classes(neighbour_labels[:, :kk], weights[:, :kk], n_classes, ties)
            ranked[k].append(order[:, :n_ranked])
    return {k: torch.cat(parts) if parts else torch.empty(0, n_ranked, dtype=torch.int64)
            for k, parts in ranked.items()}


def _accuracies(ranked: Tensor, test_labels: Tensor, k: int, n_classes: int) -> dict[str, float]:
    """Top-1 (and top-5 when n_classes >= 5) accuracy in percent of ranked predictions."""
    hits = ranked == test_labels.long().view(-1, 1)  # (M, r)
    out = {f"top1_k{k}": 100.0 * hits[:, 0].double().mean().item()}
    if n_classes >= 5:
        # As in DINO: with fewer than 5 neighbours only the first k ranked classes count.
        out[f"top5_k{k}"] = 100.0 * hits[:, :min(5, k)].any(dim=1).double().mean().item()
    return out


def weighted_knn(train_features: Tensor, train_labels: Tensor, test_features: Tensor,
                 test_labels: Tensor, *, ks: Sequence[int] = (10, 20, 100, 200),
                 temperature: float = 0.07, n_classes: int, batch_size: int = 256,
                 ties: str = "smallest_label") -> dict[str, float]:
    r"""Weighted k-nearest-neighbour accuracy, the DINO protocol.

    Features are L2-normalised, :math:`\hat z = z / \lVert z \rVert_2`. For a test feature
    :math:`\hat z` the k training features with the largest cosine similarity
    :math:`s_i = \hat z^\top \hat z_i` are its neighbours :math:`N_k`, and class :math:`c` scores

    .. math:: \mathrm{score}(c) = \sum_{i \in N_k} \mathbb{1}[y_i = c] \, \exp(s_i / T).

    The prediction is :math:`\arg\max_c \mathrm{score}(c)`. Top-1 accuracy is the percentage of
    test features whose label is the prediction; top-5 the percentage whose label is among the five
    best-scored classes (only the first min(5, k) count, as in DINO). Equal scores, mostly the zero
    scores of classes no neighbour voted for when fewer than five classes got votes, are ordered by
    ``ties``: the smallest label first (default), or torch's unstable sort as DINO's code does,
    which reproduces its top-5 on the same device but is not defined by the formula.
    Caron et al., "Emerging Properties in Self-Supervised Vision Transformers", ICCV 2021 (k = 20,
    T = 0.07), after Wu et al., CVPR 2018.

    Args:
        train_features: (N, D) float.
        train_labels: (N,) int in [0, n_classes).
        test_features: (M, D) float.
        test_labels: (M,) int.
        ks: numbers of neighbours; a k above N uses all N training features.
        temperature: T in the vote weight.
        n_classes: number of classes.
        batch_size: test features per similarity block (memory: batch_size x N).
        ties: ``"smallest_label"`` or ``"torch_sort"`` (see above).

    Returns:
        ``{"top1_k20": ..., "top5_k20": ..., "top1_k10": ...}`` in percent; ``top5_*`` only when
        n_classes >= 5.
    """
    ranked = weighted_knn_ranked(train_features, train_labels, test_features, ks=ks,
                                 temperature=temperature, n_classes=n_classes, batch_size=batch_size,
                                 ties=ties)
    metrics: dict[str, float] = {}
    for k in ks:
        metrics.update(_accuracies(ranked[k], test_labels, k, n_classes))
    return metrics


def majority_knn_faiss_predict(train_features: Tensor, train_labels: Tensor, test_features: Tensor, *,
                               k: int = 20, n_classes: int) -> Tensor:
    """Majority-vote predictions (M,) int64 among the k L2-nearest training features (FAISS)."""
    import faiss  # imported here: only this protocol needs it

    _check_inputs(train_features, train_labels, test_features, n_classes)
    train = np.ascontiguousarray(train_features.detach().cpu().numpy(), dtype=np.float32)
    test = np.ascontiguousarray(test_features.detach().cpu().numpy(), dtype=np.float32)
    index = faiss.IndexFlatL2(train.shape[1])
    index.add(train)
    kk = min(k, train.shape[0])
    _, neighbours = index.search(test, kk)  # (M, kk), nearest first
    neighbour_labels = train_labels.long().cpu().numpy()[neighbours]
    votes = np.zeros((test.shape[0], n_classes), dtype=np.int64)
    np.add.at(votes, (np.arange(test.shape[0])[:, None], neighbour_labels), 1)
    return torch.from_numpy(votes.argmax(axis=1))  # argmax takes the first, i.e. smallest, label


def majority_knn_faiss(train_features: Tensor, train_labels: Tensor, test_features: Tensor,
                       test_labels: Tensor, *, k: int = 20, n_classes: int) -> dict[str, float]:
    r"""Majority-vote kNN on raw features with a FAISS exact L2 index, the DINOv2-RS protocol.

    Features are used as they are (no normalisation). The k training features with the smallest
    squared Euclidean distance :math:`\lVert z - z_i \rVert_2^2` (``faiss.IndexFlatL2``) vote with
    equal weight, :math:`\hat y = \arg\max_c \sum_{i \in N_k} \mathbb{1}[y_i = c]`, ties broken by
    the smallest label. Top-1 accuracy in percent. As in the DINOv2-RS seed (000_3c1603fd0c612d3c,
    "k-nn" table, k = 20); a k above N uses all N training features.

    Args:
        train_features: (N, D), used as they are.
        train_labels: (N,) int in [0, n_classes).
        test_features: (M, D).
        test_labels: (M,) int.
        k: number of neighbours.
        n_classes: number of classes.

    Returns:
        ``{"top1_k<k>": accuracy}``.
    """
    predictions = majority_knn_faiss_predict(train_features, train_labels, test_features, k=k,
                                             n_classes=n_classes)
    return {f"top1_k{k}": 100.0 * (predictions == test_labels.long().cpu()).double().mean().item()}


# ----------------------------------------------------------------------------- the evaluation job


def _load_backbone(model_dir: Path) -> tuple[nn.Module, dict[str, Any]]:
    from rsdino.models.backbones import load_backbone

    return load_backbone(model_dir)


def _random_backbone(meta: dict[str, Any], seed: int) -> nn.Module:
    """A randomly initialised backbone of the architecture in ``meta`` (seeded)."""
    from rsdino.models.backbones import build_backbone

    overrides = {key: value for key, value in (meta.get("timm_kwargs") or {}).items()
                 if key not in {"in_chans", "img_size", "pretrained", "drop_path_rate", "num_classes"}}
    torch.manual_seed(seed)
    return build_backbone(meta["backbone"], meta["in_chans"], meta["img_size"], **overrides)


def _n_classes(dataset: Dataset, *labels: Tensor) -> int:
    classes = getattr(dataset, "classes", None)
    if classes is not None:
        return len(classes)
    return int(max(int(t.max()) for t in labels)) + 1


def _score(train: tuple[Tensor, Tensor], test: tuple[Tensor, Tensor], settings: KnnEvaluation,
           n_classes: int, k_plot: int) -> tuple[dict[str, float], Tensor]:
    """Weighted-kNN metrics for every k, the majority-vote k=20 metric, and predictions at k_plot."""
    ranked = weighted_knn_ranked(train[0], train[1], test[0], ks=settings.ks,
                                 temperature=settings.temperature, n_classes=n_classes,
                                 ties=settings.ties)
    metrics: dict[str, float] = {}
    for k in settings.ks:
        metrics.update(_accuracies(ranked[k], test[1], k, n_classes))
    majority = majority_knn_faiss(train[0], train[1], test[0], test[1], k=20, n_classes=n_classes)
    metrics.update({MAJORITY_PREFIX + key: value for key, value in majority.items()})
    return metrics, ranked[k_plot][:, 0]


def confusion_matrix(labels: Tensor, predictions: Tensor, n_classes: int) -> Tensor:
    """Counts (n_classes, n_classes) int64: row = true class, column = predicted class."""
    flat = labels.long() * n_classes + predictions.long()
    return torch.bincount(flat, minlength=n_classes * n_classes).view(n_classes, n_classes)


def plot_confusion_matrix(matrix: Tensor, classes: Sequence[str], out_png: Path, title: str) -> Path:
    """Write a row-normalised confusion-matrix heat map (PNG, matplotlib's Agg canvas)."""
    from matplotlib.figure import Figure

    from rsdino.io import atomic_path

    counts = matrix.double()
    rates = counts / counts.sum(dim=1, keepdim=True).clamp(min=1)
    n = len(classes)
    fig = Figure(figsize=(max(4.0, 0.35 * n + 2), max(3.5, 0.35 * n + 1.5)), layout="constrained")
    ax = fig.add_subplot()
    image = ax.imshow(rates.numpy(), vmin=0, vmax=1, cmap="Blues")
    ax.set_xticks(range(n), list(classes), rotation=90, fontsize=7)
    ax.set_yticks(range(n), list(classes), fontsize=7)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title, fontsize=9)
    fig.colorbar(image, ax=ax, label="fraction of the true class")
    with atomic_path(out_png, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    return Path(out_png)


def run_knn_evaluation(model_dir: Path, train_dataset: Dataset, test_dataset: Dataset,
                       settings: KnnEvaluation, tracker: Tracker, *, device: str | torch.device = "cpu",
                       progress: bool = True, artifact_dir: Path | None = None,
                       features_fn: FeaturesFn | None = None) -> dict[str, Any]:
    """kNN-evaluate the backbone in ``model_dir`` (and a random-init baseline) on a scene dataset.

    Features: ``extract_features`` with the model's own normalisation (``mean``/``std`` of
    ``model.json``), images resized to ``settings.image_size`` or else the model's ``img_size``.
    Metrics: ``weighted_knn`` for every k in ``settings.ks`` (``top1_k20``, ``top5_k20``, ...) and
    ``majority_knn_faiss`` at k = 20 (``faiss_majority_top1_k20``). With
    ``settings.random_baseline``, a backbone of the same architecture, initialised after
    ``torch.manual_seed(settings.seed)``, is evaluated the same way.

    Logs the metrics (baseline ones prefixed ``random_init/``) and a confusion-matrix PNG at k = 20
    (or the first k) to ``tracker``; the PNG is written to ``artifact_dir`` when given.

    Returns:
        ``{"metrics": {...}, "baselines": {"random_init": {...}}}`` (``baselines`` empty without
        the random baseline).
    """
    model, meta = _load_backbone(Path(model_dir))
    dataset_bands = getattr(train_dataset, "bands", None)
    if dataset_bands is not None and meta.get("bands") and list(dataset_bands) != list(meta["bands"]):
        raise ValueError(f"{model_dir}: the model was trained on bands {meta['bands']}, "
                         f"the evaluation dataset has {list(dataset_bands)}")
    meta = with_dataset_statistics(meta, train_dataset)
    extract = {"mean": meta["mean"], "std": meta["std"], "batch_size": settings.batch_size,
               "image_size": settings.image_size or meta.get("img_size"), "device": device,
               "progress": progress, "features_fn": features_fn}
    k_plot = 20 if 20 in settings.ks else settings.ks[0]

    def evaluate(backbone: nn.Module) -> tuple[dict[str, float], Tensor, Tensor]:
        train = extract_features(backbone, train_dataset, **extract)
        test = extract_features(backbone, test_dataset, **extract)
        n_classes = _n_classes(train_dataset, train[1], test[1])
        metrics, predictions = _score(train, test, settings, n_classes, k_plot)
        return metrics, test[1], predictions

    metrics, test_labels, predictions = evaluate(model)
    result: dict[str, Any] = {"metrics": metrics, "baselines": {}}
    tracker.log_params({"knn_ks": list(settings.ks), "knn_temperature": settings.temperature,
                        "knn_image_size": extract["image_size"],
                        "knn_random_baseline": settings.random_baseline})
    tracker.log_metrics(metrics)
    if settings.random_baseline:
        baseline, _, _ = evaluate(_random_backbone(meta, settings.seed))
        result["baselines"]["random_init"] = baseline
        tracker.log_metrics({f"random_init/{key}": value for key, value in baseline.items()})

    n_classes = _n_classes(train_dataset, test_labels, predictions)
    classes = list(getattr(train_dataset, "classes", None) or [str(c) for c in range(n_classes)])
    title = f"{meta.get('variant', Path(model_dir).name)}: weighted kNN, k={k_plot}"
    with tempfile.TemporaryDirectory() as tmp:
        out_dir = Path(artifact_dir) if artifact_dir is not None else Path(tmp)
        png = plot_confusion_matrix(confusion_matrix(test_labels, predictions, n_classes), classes,
                                    out_dir / f"confusion_knn_k{k_plot}.png", title)
        tracker.log_artifact(png)
    return result


def run_knn(context: EvaluationContext, settings: KnnEvaluation, tracker: Tracker) -> dict[str, Any]:
    """Protocol ``knn``: ``run_knn_evaluation`` on the CLS features of the train/test parts of the split."""
    train = context.open_part(settings, "train")
    test = context.open_part(settings, "test")
    return run_knn_evaluation(context.model_dir, train, test, settings, tracker, device=context.device,
                              progress=context.progress)
