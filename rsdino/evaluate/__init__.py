"""Evaluation protocols on frozen or fine-tuned backbones; see docs/architecture.md.

``run.PROTOCOLS`` maps each protocol name of params.yaml to its runner: ``knn`` (DINO weighted
kNN), ``knn_faiss`` (DINOv2-RS majority vote), ``knn_multiscale`` (SatDINO), ``linear_logistic``,
``linear_dino``, ``linear_dinov2``, ``finetune``, ``retrieval``, ``analyses`` (``rsdino.analysis``),
``multilabel``, ``change_detection`` and ``segmentation`` (``dense``).
"""

from rsdino.evaluate.features import extract_feature_sets, extract_features
from rsdino.evaluate.knn import majority_knn_faiss, run_knn_evaluation, weighted_knn

__all__ = ["extract_feature_sets", "extract_features", "majority_knn_faiss", "run_knn_evaluation",
           "weighted_knn"]
