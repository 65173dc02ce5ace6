"""Evaluation protocols on frozen or fine-tuned backbones (kNN so far); see docs/architecture.md."""

from rsdino.evaluate.features import extract_features
from rsdino.evaluate.knn import majority_knn_faiss, run_knn_evaluation, weighted_knn

__all__ = ["extract_features", "majority_knn_faiss", "run_knn_evaluation", "weighted_knn"]
