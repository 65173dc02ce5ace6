r"""Protocol ``knn_patch_mean``: DINO's weighted kNN on the mean patch token instead of the CLS token.

The feature of an image is the mean of the final layer's patch tokens (after the final norm, prefix
tokens such as CLS and registers dropped), of shape ``(D,)`` for ``N`` patch tokens
``t_1 .. t_N`` of shape ``(D,)`` each:

.. math:: f = \frac{1}{N} \sum_{i=1}^{N} t_i

(for a CNN, the positions of its last feature map: its average-pooled feature). The vote is the
``knn`` protocol's (``rsdino.evaluate.knn.weighted_knn``, Wu et al. 2018 as in DINO): features are
L2-normalised, the k training images of highest cosine similarity :math:`s_j` to a test image vote
for their class with weight :math:`\exp(s_j / T)`, and the class of largest total weight is the
prediction (``top1_k<k>``, ``top5_k<k>`` in percent, plus the FAISS majority vote at k = 20).
Settings: ``KnnEvaluation`` (``ks``, ``temperature``, ``ties``, ``random_baseline``).
"""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from rsdino.config import KnnEvaluation
from rsdino.evaluate.context import EvaluationContext
from rsdino.evaluate.knn import run_knn_evaluation
from rsdino.evaluate.tokens import patch_tokens
from rsdino.tracking import Tracker


def patch_mean_features(model: nn.Module, x: Tensor) -> Tensor:
    """Mean final-layer patch token of each image, ``(B, C, H, W) -> (B, D)`` (module docstring)."""
    tokens, _ = patch_tokens(model, x)
    return tokens.mean(dim=1)


def run_knn_patch_mean(context: EvaluationContext, settings: KnnEvaluation,
                       tracker: Tracker) -> dict[str, Any]:
    """Weighted kNN (``run_knn_evaluation``) on ``patch_mean_features`` of the train/test parts."""
    train = context.open_part(settings, "train")
    test = context.open_part(settings, "test")
    return run_knn_evaluation(context.model_dir, train, test, settings, tracker, device=context.device,
                              progress=context.progress, features_fn=patch_mean_features)
