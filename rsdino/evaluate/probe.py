"""The linear-probe evaluation job: frozen CLS features of a pretrained backbone, a linear classifier.

Protocol ``linear_logistic`` (the DINOv2-RS table): features of the training and test splits with
the model's own normalisation, standardised with the training statistics unless the settings say
``standardize: false`` (the DINOv2-RS evaluations: raw features, as the seed's code), then an
L2-regularised multinomial logistic regression (``rsdino.evaluate.linear.logistic_regression_probe``;
``c`` is scikit-learn's ``C``). The same evaluation of a randomly initialised backbone of the same
architecture is recorded beside it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from rsdino.config import LinearEvaluation
from rsdino.evaluate.context import EvaluationContext
from rsdino.evaluate.features import extract_features, with_dataset_statistics
from rsdino.evaluate.knn import _load_backbone, _n_classes, _random_backbone
from rsdino.evaluate.linear import logistic_regression_probe
from rsdino.tracking import Tracker


def run_linear_evaluation(model_dir: Path, train_dataset: Dataset, test_dataset: Dataset,
                          settings: LinearEvaluation, tracker: Tracker, *,
                          device: str | torch.device = "cpu", progress: bool = True) -> dict[str, Any]:
    """Linear-probe the backbone in ``model_dir`` (and a random-init baseline) on a scene dataset.

    Returns ``{"metrics": {"top1", "top5", "train_top1"}, "baselines": {"random_init": {...}}}``
    with accuracies in percent, and logs them (baseline keys prefixed ``random_init/``).
    """
    model, meta = _load_backbone(Path(model_dir))
    meta = with_dataset_statistics(meta, train_dataset)
    extract = {"mean": meta["mean"], "std": meta["std"], "batch_size": settings.batch_size,
               "image_size": settings.image_size or meta.get("img_size"), "device": device,
               "progress": progress}

    def evaluate(backbone: torch.nn.Module) -> dict[str, float]:
        train_x, train_y = extract_features(backbone, train_dataset, **extract)
        test_x, test_y = extract_features(backbone, test_dataset, **extract)
        n_classes = _n_classes(train_dataset, train_y, test_y)
        return logistic_regression_probe(train_x.double(), train_y, test_x.double(), test_y,
                                         c=settings.c, max_iter=settings.max_iter,
                                         standardize=settings.standardize, n_classes=n_classes)

    metrics = evaluate(model)
    tracker.log_metrics(metrics)
    result: dict[str, Any] = {"metrics": metrics, "baselines": {}}
    if settings.random_baseline:
        baseline = evaluate(_random_backbone(meta, settings.seed))
        result["baselines"]["random_init"] = baseline
        tracker.log_metrics({f"random_init/{key}": value for key, value in baseline.items()})
    return result


def run_linear_logistic(context: EvaluationContext, settings: LinearEvaluation,
                        tracker: Tracker) -> dict[str, Any]:
    """Protocol ``linear_logistic``: ``run_linear_evaluation`` on the train/test parts of the split."""
    train = context.open_part(settings, "train")
    test = context.open_part(settings, "test")
    return run_linear_evaluation(context.model_dir, train, test, settings, tracker, device=context.device,
                                 progress=context.progress)
