"""Settings of one evaluation (``evaluations.<name>`` in params.yaml), one class per protocol.

Add a protocol: subclass ``FrozenFeatureEvaluation`` (or ``StrictModel``) with a ``protocol``
literal and add it to the ``EvaluationConfig`` union at the end of this module.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator

from rsdino.config.base import StrictModel


class FrozenFeatureEvaluation(StrictModel):
    """What every evaluation on frozen backbone features shares.

    Features are extracted ``batch_size`` images at a time, resized to ``image_size`` (default:
    the model's own size). With ``random_baseline`` the same evaluation runs on a randomly
    initialised backbone of the same architecture (seeded by ``seed``) and is recorded beside the
    pretrained number.
    """

    dataset: str
    variants: list[str]
    batch_size: int = Field(64, ge=1)
    image_size: int | None = None
    random_baseline: bool = True
    seed: int = 0


class KnnEvaluation(FrozenFeatureEvaluation):
    """Weighted kNN on L2-normalised frozen CLS features (DINO protocol)."""

    protocol: Literal["knn"]
    ks: list[int] = Field(default_factory=lambda: [10, 20, 100, 200])
    temperature: float = Field(0.07, gt=0)
    published_protocol: str = "knn_weighted_k20"

    @field_validator("ks")
    @classmethod
    def _positive_ks(cls, value: list[int]) -> list[int]:
        if not value or any(k < 1 for k in value):
            raise ValueError("ks must be a non-empty list of positive integers")
        return value


class LinearEvaluation(FrozenFeatureEvaluation):
    """Logistic-regression linear probe on frozen, standardised CLS features (DINOv2-RS table).

    ``c`` is the inverse L2 regularisation strength (scikit-learn's ``C``).
    """

    protocol: Literal["linear_logistic"]
    c: float = Field(1.0, gt=0)
    max_iter: int = Field(1000, ge=1)
    published_protocol: str = "linear_logistic_90_10"


EvaluationConfig = Annotated[KnnEvaluation | LinearEvaluation, Field(discriminator="protocol")]
