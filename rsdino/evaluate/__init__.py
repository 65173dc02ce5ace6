"""Evaluation protocols on frozen or fine-tuned backbones; see docs/architecture.md.

``rsdino.config.protocols.PROTOCOLS`` holds one record per protocol name of params.yaml, naming
its runner ``run(context, settings, tracker)`` in this package (``context.EvaluationContext``);
``run.run_evaluation`` runs one and writes its metrics file.
"""

from rsdino.evaluate.features import extract_feature_sets, extract_features
from rsdino.evaluate.knn import majority_knn_faiss, run_knn_evaluation, weighted_knn

__all__ = ["extract_feature_sets", "extract_features", "majority_knn_faiss", "run_knn_evaluation",
           "weighted_knn"]
