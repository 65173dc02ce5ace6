"""Evaluation jobs of the frozen-feature protocols beyond the DINO weighted kNN and logistic probe.

Each ``run_*`` function is a protocol runner, ``run(context, settings, tracker)``
(``rsdino.config.protocols``): it evaluates the backbone of ``context.model_dir`` on the train/test
parts of a scene dataset (items ``{"image", "label"}``, ``feature_source``) with the settings of one
``evaluations.<name>`` entry and returns ``{"metrics": {...}, "baselines": {"random_init": {...}}}``
(accuracies in percent), logging to the tracker. Features come from ``extract_feature_sets``
(cached, when a ``cache_dir`` is given, under a key of the weights, split files, statistics and
transform: ``feature_cache``).

* ``knn_faiss``: DINOv2-RS majority-vote kNN (``rsdino.evaluate.knn.majority_knn_faiss``).
* ``knn_multiscale``: SatDINO multi-scale weighted kNN (``multiscale_sizes``).
* ``linear_dino``: DINO linear probe (``rsdino.evaluate.linear.dino_linear_probe``).
* ``linear_dinov2``: DINOv2 linear grid (``rsdino.evaluate.linear.dinov2_linear_grid``).
* ``retrieval``: FAISS retrieval, precision@k, mAP and a PNG (``rsdino.evaluate.retrieval``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import Dataset

from rsdino.evaluate.context import EvaluationContext, cache_name
from rsdino.evaluate.feature_cache import build_record, cache_key
from rsdino.evaluate.features import extract_feature_sets, with_dataset_statistics
from rsdino.evaluate.knn import _load_backbone, _n_classes, _random_backbone, majority_knn_faiss, weighted_knn
from rsdino.evaluate.linear import dino_linear_probe, dinov2_linear_grid
from rsdino.tracking import Tracker

Evaluate = Callable[[nn.Module, str], dict[str, float]]


class FeatureSource:
    """Extracts (and caches) feature variants of one model folder for the splits of a dataset.

    Args:
        model_dir: the exported backbone (``model.safetensors`` + ``model.json``).
        datasets: ``{split: dataset}``.
        dataset_name: the dataset's name in params.yaml (in the cache folder's name).
        batch_size: images per forward pass.
        image_size: default square size (None: the model's ``img_size``).
        device: where the model runs.
        progress: progress bars on a terminal, log lines in a log file (``rsdino.progress``).
        cache_dir: root of the feature cache, or None.
    """

    def __init__(self, model_dir: Path, datasets: dict[str, Dataset], *, dataset_name: str,
                 batch_size: int = 64, image_size: int | None = None, device: str | torch.device = "cpu",
                 progress: bool = True, cache_dir: Path | None = None) -> None:
        self.model_dir = Path(model_dir)
        self.model, self.meta = _load_backbone(self.model_dir)
        bands = getattr(next(iter(datasets.values())), "bands", None)
        if bands is not None and self.meta.get("bands") and list(bands) != list(self.meta["bands"]):
            raise ValueError(f"{self.model_dir}: the model was trained on bands {self.meta['bands']}, "
                             f"the evaluation dataset has {list(bands)}")
        self.datasets = datasets
        self.meta = with_dataset_statistics(self.meta, datasets.get("train", next(iter(datasets.values()))))
        self.dataset_name = dataset_name
        self.batch_size = batch_size
        self.image_size = image_size or self.meta.get("img_size")
        self.device = device
        self.progress = progress
        self.cache_dir = cache_dir
        #: The dataset's native image size (``datasets.<name>.native_size``), when known.
        self.native_size: int | None = None

    def features(self, model: nn.Module, split: str, variants: Sequence[str], *,
                 image_size: int | None = None, cached: bool = True) -> tuple[dict[str, Tensor], Tensor]:
        """``({variant: (N, D)}, labels)`` of ``split`` for ``model`` at ``image_size``."""
        size = image_size or self.image_size
        cache, record = None, None
        if cached and self.cache_dir is not None and model is self.model:
            record = build_record(checkpoint=self.model_dir, dataset=self.datasets[split],
                                  dataset_name=self.dataset_name, split=split, resolution=size,
                                  mean=self.meta["mean"], std=self.meta["std"], variants=variants)
            cache = Path(self.cache_dir) / f"{self.dataset_name}_{split}_{size}_{cache_key(record)}"
        return extract_feature_sets(model, self.datasets[split], variants, mean=self.meta["mean"],
                                    std=self.meta["std"], batch_size=self.batch_size, image_size=size,
                                    device=self.device, progress=self.progress, cache_dir=cache,
                                    record=record)

    def n_classes(self, *labels: Tensor) -> int:
        """Number of classes of the dataset (its ``classes``, else the largest label + 1)."""
        return _n_classes(next(iter(self.datasets.values())), *labels)

    def random_model(self, seed: int) -> nn.Module:
        """A randomly initialised backbone of the same architecture, after ``torch.manual_seed(seed)``."""
        return _random_backbone(self.meta, seed)


def feature_source(context: EvaluationContext, settings: Any) -> FeatureSource:
    """The ``FeatureSource`` of an evaluation job: the train/test parts of its split, its cache."""
    datasets = {part: context.open_part(settings, part) for part in ("train", "test")}
    source = FeatureSource(context.model_dir, datasets, dataset_name=cache_name(settings),
                           batch_size=getattr(settings, "batch_size", 64),
                           image_size=getattr(settings, "image_size", None), device=context.device,
                           progress=context.progress, cache_dir=context.cache_dir)
    source.native_size = context.native_size
    return source


def _with_baseline(source: FeatureSource, evaluate: Evaluate, settings: Any,
                   tracker: Tracker) -> dict[str, Any]:
    metrics = evaluate(source.model, "pretrained")
    tracker.log_metrics(metrics)
    result: dict[str, Any] = {"metrics": metrics, "baselines": {}}
    if getattr(settings, "random_baseline", False):
        baseline = evaluate(source.random_model(settings.seed), "random_init")
        result["baselines"]["random_init"] = baseline
        tracker.log_metrics({f"random_init/{k}": v for k, v in baseline.items()})
    return result


# ---------------------------------------------------------------------------------- kNN variants


def run_knn_faiss(context: EvaluationContext, settings: Any, tracker: Tracker) -> dict[str, Any]:
    """DINOv2-RS kNN: FAISS L2 on raw CLS features, majority vote among k (``top1_k<k>``)."""
    source = feature_source(context, settings)

    def evaluate(model: nn.Module, _: str) -> dict[str, float]:
        train_x, train_y = source.features(model, "train", ["cls"])
        test_x, test_y = source.features(model, "test", ["cls"])
        return majority_knn_faiss(train_x["cls"], train_y, test_x["cls"], test_y, k=settings.k,
                                  n_classes=source.n_classes(train_y, test_y))

    return _with_baseline(source, evaluate, settings, tracker)


def patch_size_of(model: nn.Module) -> int:
    """The ViT patch size, or 32 (the total stride of timm CNNs) for other backbones."""
    embed = getattr(model, "patch_embed", None)
    size = getattr(embed, "patch_size", None)
    if size is None:
        return 32
    return int(size[0] if isinstance(size, tuple | list) else size)


def multiscale_sizes(native_size: int, patch_size: int, scales: Sequence[float]) -> list[int]:
    r"""Image sizes of the SatDINO multi-scale kNN.

    :math:`s_i = \max(p, \lfloor \sigma_i n / p \rfloor p)` for native size n, patch size p and
    scale :math:`\sigma_i` (Zvara et al., "SatDINO", 2025: scales 1, 0.5, 0.25, 0.125).
    """
    if native_size < 1 or patch_size < 1:
        raise ValueError(f"native_size {native_size} and patch_size {patch_size} must be positive")
    return [max(patch_size, int(math.floor(s * native_size / patch_size)) * patch_size) for s in scales]


def run_knn_multiscale(context: EvaluationContext, settings: Any, tracker: Tracker) -> dict[str, Any]:
    r"""SatDINO multi-scale kNN: weighted kNN (k, T) at every scale, top-1 averaged.

    Metrics: ``top1_s<size>`` per scale and ``top1`` :math:`= \frac{1}{S} \sum_i \mathrm{top1}(s_i)`.
    """
    source = feature_source(context, settings)
    native = settings.native_size or source.native_size or int(source.datasets["train"][0]["image"].shape[-2])
    sizes = multiscale_sizes(native, patch_size_of(source.model), settings.scales)
    tracker.log_params({"multiscale_sizes": sizes})

    def evaluate(model: nn.Module, _: str) -> dict[str, float]:
        metrics: dict[str, float] = {}
        for size in sizes:
            train_x, train_y = source.features(model, "train", ["cls"], image_size=size)
            test_x, test_y = source.features(model, "test", ["cls"], image_size=size)
            scores = weighted_knn(train_x["cls"], train_y, test_x["cls"], test_y, ks=[settings.k],
                                  temperature=settings.temperature,
                                  n_classes=source.n_classes(train_y, test_y))
            metrics[f"top1_s{size}"] = scores[f"top1_k{settings.k}"]
        metrics["top1"] = sum(metrics[f"top1_s{s}"] for s in sizes) / len(sizes)
        return metrics

    return _with_baseline(source, evaluate, settings, tracker)


# ------------------------------------------------------------------------------- linear protocols


def dino_feature_variant(model: nn.Module, requested: str) -> str:
    """DINO's linear-probe feature variant for ``model`` when ``requested`` is ``auto``.

    ``cls_n4`` for ViT-S and smaller, ``cls_n1_avgpool`` for wider ViTs, ``cls`` (the pooled
    feature map) for other backbones.
    """
    if requested != "auto":
        return requested
    width = int(getattr(model, "embed_dim", 0) or 0)
    if not width or not hasattr(model, "blocks"):
        return "cls"
    return "cls_n4" if width <= 384 else "cls_n1_avgpool"


def run_linear_dino(context: EvaluationContext, settings: Any, tracker: Tracker) -> dict[str, Any]:
    """DINO linear probe on cached features (``top1``, ``top5``)."""
    source = feature_source(context, settings)
    variant = dino_feature_variant(source.model, settings.features)
    tracker.log_params({"linear_dino_features": variant})

    def evaluate(model: nn.Module, _: str) -> dict[str, float]:
        train_x, train_y = source.features(model, "train", [variant])
        test_x, test_y = source.features(model, "test", [variant])
        return dino_linear_probe(train_x[variant], train_y, test_x[variant], test_y, epochs=settings.epochs,
                                 base_lr=settings.base_lr, batch_size=settings.train_batch_size,
                                 weight_decay=settings.weight_decay, seed=settings.seed,
                                 n_classes=source.n_classes(train_y, test_y), optimizer=settings.optimizer)

    return _with_baseline(source, evaluate, settings, tracker)


def stratified_split(labels: Tensor, fraction: float, seed: int) -> tuple[Tensor, Tensor]:
    """Indices ``(keep, held_out)`` of a seeded, stratified hold-out.

    ``round(fraction * n_c)`` of each class c are held out (>= 1 when the class has at least 2
    items), chosen by a seeded permutation.
    """
    gen = torch.Generator().manual_seed(seed)
    held: list[Tensor] = []
    for c in torch.unique(labels):
        members = torch.nonzero(labels == c).flatten()
        members = members[torch.randperm(len(members), generator=gen)]
        n = round(fraction * len(members))
        n = max(n, 1) if len(members) >= 2 else 0
        held.append(members[:n])
    held_out = torch.sort(torch.cat(held)).values if held else torch.empty(0, dtype=torch.int64)
    mask = torch.ones(len(labels), dtype=torch.bool)
    mask[held_out] = False
    return torch.nonzero(mask).flatten(), held_out


def run_linear_dinov2(context: EvaluationContext, settings: Any, tracker: Tracker) -> dict[str, Any]:
    """DINOv2 linear grid on cached features; head chosen on a held-out part of the training split."""
    source = feature_source(context, settings)
    variants = [f"cls_n{n}{suffix}" for n in settings.n_blocks for suffix in ("", "_avgpool")]

    def evaluate(model: nn.Module, kind: str) -> dict[str, float]:
        train_x, train_y = source.features(model, "train", variants)
        test_x, test_y = source.features(model, "test", variants)
        keep, val = stratified_split(train_y, settings.val_fraction, settings.seed)
        out = dinov2_linear_grid({v: x[keep] for v, x in train_x.items()}, train_y[keep],
                                 {v: x[val] for v, x in train_x.items()}, train_y[val], test_x, test_y,
                                 learning_rates=settings.learning_rates, epochs=settings.epochs,
                                 batch_size=settings.train_batch_size, seed=settings.seed,
                                 n_classes=source.n_classes(train_y, test_y))
        tracker.log_params({f"linear_dinov2_best_{kind}": f"{out['best_variant']} lr={out['best_lr']:g}"})
        return {k: float(v) for k, v in out.items() if isinstance(v, int | float)}

    return _with_baseline(source, evaluate, settings, tracker)


# ---------------------------------------------------------------------------------------- retrieval


def run_retrieval(context: EvaluationContext, settings: Any, tracker: Tracker) -> dict[str, Any]:
    """Retrieval on the test split: every image queries the others.

    Metrics ``precision_at_<k>`` and ``map`` in percent; a PNG of the first ``n_plot_queries``
    queries with their nearest neighbours, in ``context.artifact_dir`` when given.
    """
    from rsdino.evaluate.retrieval import build_index, evaluate_retrieval, plot_retrieval_grid, retrieve

    source = feature_source(context, settings)
    artifact_dir = context.artifact_dir

    def evaluate(model: nn.Module, kind: str) -> dict[str, float]:
        x, y = source.features(model, "test", ["cls"])
        metrics = evaluate_retrieval(x["cls"], y.numpy(), ks=settings.ks, kind=settings.index)
        if kind == "pretrained" and artifact_dir is not None:
            n_q = min(settings.n_plot_queries, len(y))
            gen = torch.Generator().manual_seed(settings.seed)
            queries = torch.randperm(len(y), generator=gen)[:n_q]
            index = build_index(x["cls"], settings.index)
            _, ids = retrieve(index, x["cls"], min(settings.n_plot_neighbours, len(y) - 1), exclude_self=True)
            data = source.datasets["test"]
            rows = [[data[int(j)]["image"] for j in ids[int(q)] if j >= 0] for q in queries]
            png = plot_retrieval_grid([data[int(q)]["image"] for q in queries], rows,
                                      Path(artifact_dir) / "retrieval.png",
                                      query_labels=[int(y[q]) for q in queries],
                                      neighbour_labels=[[int(y[j]) for j in ids[int(q)] if j >= 0]
                                                        for q in queries],
                                      title=f"retrieval ({settings.index})")
            tracker.log_artifact(png)
        return {k: 100.0 * v for k, v in metrics.items()}

    return _with_baseline(source, evaluate, settings, tracker)


# -------------------------------------------------------------------------------------- fine-tuning


def run_finetune(context: EvaluationContext, settings: Any, tracker: Tracker) -> dict[str, Any]:
    """Full fine-tuning (``rsdino.evaluate.finetune.finetune_classifier``): ``top1``, ``top5``."""
    source = feature_source(context, settings)
    from rsdino.evaluate.finetune import finetune_classifier

    train = source.datasets["train"]
    if settings.max_train_images is not None and settings.max_train_images < len(train):
        gen = torch.Generator().manual_seed(settings.seed)
        subset = torch.randperm(len(train), generator=gen)[:settings.max_train_images].sort().values
        train = torch.utils.data.Subset(train, subset.tolist())
    classes = getattr(source.datasets["train"], "classes", None)
    n_classes = len(classes) if classes is not None else 1 + max(
        int(source.datasets[split][i]["label"]) for split in ("train", "test")
        for i in range(len(source.datasets[split])))

    def evaluate(model: nn.Module, _: str) -> dict[str, float]:
        return finetune_classifier(model, train, source.datasets["test"], n_classes=n_classes,
                                   mean=source.meta["mean"], std=source.meta["std"],
                                   image_size=settings.image_size or source.image_size,
                                   epochs=settings.epochs,
                                   lr=settings.lr, layer_decay=settings.layer_decay,
                                   weight_decay=settings.weight_decay, warmup_epochs=settings.warmup_epochs,
                                   batch_size=settings.train_batch_size, eval_batch_size=settings.batch_size,
                                   crop_scale=settings.crop_scale, seed=settings.seed, device=source.device,
                                   progress=source.progress)

    return _with_baseline(source, evaluate, settings, tracker)
