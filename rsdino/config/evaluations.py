"""Settings of one evaluation (``evaluations.<name>`` in params.yaml), one class per kind of protocol.

Each class holds its ``protocol`` name as a plain string: which class validates which name is the
record of that protocol in ``rsdino.config.protocols`` (where ``EvaluationConfig`` is built). A
protocol with settings of its own subclasses ``FrozenFeatureEvaluation`` (or ``EvaluationSettings``) here;
one with the settings of another names that class in its record (``knn_patch_mean``: ``KnnEvaluation``).
"""

from __future__ import annotations

from typing import Literal, get_args

from pydantic import Field, field_validator, model_validator

from rsdino.config.base import StrictModel


class EvaluationSettings(StrictModel):
    """What every evaluation's settings share: their ``protocol`` names a record of this class.

    Params validation picks the class by the record (``rsdino.config.protocols``); settings built
    directly are checked the same way.
    """

    @model_validator(mode="after")
    def _protocol_of_this_class(self) -> EvaluationSettings:
        from rsdino.config.protocols import PROTOCOLS

        protocol = getattr(self, "protocol", None)
        if protocol is None:
            return self
        record = PROTOCOLS.get(protocol)
        if record is None:
            raise ValueError(f"protocol {protocol!r}: expected one of {', '.join(PROTOCOLS)}")
        if not isinstance(self, record.settings):
            raise ValueError(f"protocol {protocol!r} takes {record.settings.__name__} settings, "
                             f"not {type(self).__name__}")
        return self


class FrozenFeatureEvaluation(EvaluationSettings):
    """What every evaluation on frozen backbone features shares.

    Features are extracted ``batch_size`` images at a time, resized to ``image_size`` (default:
    the model's own size). With ``random_baseline`` the same evaluation runs on a randomly
    initialised backbone of the same architecture (seeded by ``seed``) and is recorded beside the
    pretrained number. ``backbone`` chooses the pretrained branch whose backbone is evaluated: the
    EMA ``teacher`` (DINO's protocol, the variant's ``model.safetensors``) or the ``student``
    (``student/model.safetensors``; the DINOv2-RS seed's kNN and logistic probe). ``split`` names the
    dataset's train/test split (``default``, or a key of ``datasets.<name>.splits``).
    """

    dataset: str
    split: str = "default"
    variants: list[str]
    backbone: Literal["teacher", "student"] = "teacher"
    batch_size: int = Field(64, ge=1)
    image_size: int | None = None
    random_baseline: bool = True
    seed: int = 0


KnnTies = Literal["smallest_label", "torch_sort"]
KNN_TIE_RULES: tuple[str, ...] = get_args(KnnTies)


class KnnEvaluation(FrozenFeatureEvaluation):
    """Weighted kNN on L2-normalised frozen features (DINO protocol), of ``knn`` and ``knn_patch_mean``.

    ``knn`` reads the CLS token, ``knn_patch_mean`` the mean patch token (``rsdino.evaluate.knn_patch_mean``).

    ``ties`` orders classes of equal score for top-5: ``smallest_label`` (deterministic) or
    ``torch_sort`` (DINO's code: torch's unstable sort, device-dependent).
    """

    protocol: str
    ks: list[int] = Field(default_factory=lambda: [10, 20, 100, 200])
    temperature: float = Field(0.07, gt=0)
    ties: KnnTies = "smallest_label"
    published_protocol: str = "knn_weighted_k20"

    @field_validator("ks")
    @classmethod
    def _positive_ks(cls, value: list[int]) -> list[int]:
        if not value or any(k < 1 for k in value):
            raise ValueError("ks must be a non-empty list of positive integers")
        return value


class LinearEvaluation(FrozenFeatureEvaluation):
    """Logistic-regression linear probe on frozen CLS features (DINOv2-RS table).

    ``c`` is the inverse L2 regularisation strength (scikit-learn's ``C``); ``max_iter`` bounds the
    L-BFGS iterations. With ``standardize`` (default) every feature dimension d is standardised with
    the training split's statistics before the fit, ``x_d <- (x_d - mean_d) / std_d`` (population
    std; a dimension constant on the training split is only centred), as scikit-learn's
    ``StandardScaler``; with ``standardize: false`` the raw features are fit, as the DINOv2-RS
    seed's ``LogisticRegression(C=0.316, max_iter=1000)`` does.
    """

    protocol: str
    c: float = Field(1.0, gt=0)
    max_iter: int = Field(1000, ge=1)
    standardize: bool = True
    published_protocol: str = "linear_logistic_90_10"


class KnnFaissEvaluation(FrozenFeatureEvaluation):
    """Majority-vote kNN with a FAISS exact L2 index on raw CLS features (DINOv2-RS protocol)."""

    protocol: str
    k: int = Field(20, ge=1)
    published_protocol: str = "knn_faiss_majority_k20_90_10"


class MultiscaleKnnEvaluation(FrozenFeatureEvaluation):
    """SatDINO multi-scale kNN: weighted kNN at several image scales, top-1 averaged over scales.

    Each scale s gives the image size ``floor(s * native_size / patch) * patch`` (at least one
    patch); ``native_size`` defaults to the height of the dataset's first training image.
    """

    protocol: str
    scales: list[float] = Field(default_factory=lambda: [1.0, 0.5, 0.25, 0.125])
    native_size: int | None = Field(None, ge=1)
    k: int = Field(20, ge=1)
    temperature: float = Field(0.07, gt=0)
    published_protocol: str = "knn_multiscale_avg"

    @field_validator("scales")
    @classmethod
    def _positive_scales(cls, value: list[float]) -> list[float]:
        if not value or any(s <= 0 for s in value):
            raise ValueError("scales must be a non-empty list of positive numbers")
        return value


class LinearDinoEvaluation(FrozenFeatureEvaluation):
    """DINO linear probe: SGD (momentum 0.9), cosine schedule, lr = base_lr x train_batch_size / 256.

    ``features`` ``auto`` takes the CLS tokens of the last 4 blocks for a ViT-S (and smaller) and
    the last CLS + the mean patch token for wider ViTs (DINO's choice); or name a variant of
    ``rsdino.evaluate.tokens``. ``optimizer: adamw`` is SatDINO's probe (AdamW, last CLS, 25 epochs,
    lr 1e-5 x B / 256).
    """

    protocol: str
    features: str = "auto"
    optimizer: Literal["sgd", "adamw"] = "sgd"
    epochs: int = Field(100, ge=1)
    base_lr: float = Field(1e-3, gt=0)
    train_batch_size: int = Field(256, ge=1)
    weight_decay: float = Field(0.0, ge=0)
    published_protocol: str = "linear_dino"


class LinearDinov2Evaluation(FrozenFeatureEvaluation):
    """DINOv2 linear grid: lrs x n in ``n_blocks`` x avgpool on/off, best head on a validation split.

    ``val_fraction`` of the training split (stratified, seeded) is held out to choose the head.
    """

    protocol: str
    learning_rates: list[float] = Field(default_factory=lambda: [1e-5, 2e-5, 5e-5, 1e-4, 2e-4, 5e-4, 1e-3,
                                                                 2e-3, 5e-3, 1e-2, 2e-2, 5e-2, 1e-1])
    n_blocks: list[int] = Field(default_factory=lambda: [1, 4])
    epochs: int = Field(10, ge=1)
    train_batch_size: int = Field(128, ge=1)
    val_fraction: float = Field(0.1, gt=0, lt=1)
    published_protocol: str = "linear_dinov2"


class FinetuneEvaluation(EvaluationSettings):
    """Full fine-tuning for scene classification: AdamW, layer-wise lr decay, flips and crops.

    The peak learning rate is ``lr x train_batch_size / 256`` with a linear warm-up then a cosine;
    block i of L gets ``layer_decay ** (L + 1 - i)`` of it (embeddings ``i = 0``, the head 1).
    ``max_train_images`` caps the training split (a seeded subset) for cheap runs.
    """

    protocol: str
    dataset: str
    split: str = "default"
    variants: list[str]
    image_size: int | None = None
    epochs: int = Field(100, ge=1)
    lr: float = Field(5e-4, gt=0)
    layer_decay: float = Field(0.65, gt=0, le=1)
    weight_decay: float = Field(0.05, ge=0)
    warmup_epochs: int = Field(5, ge=0)
    train_batch_size: int = Field(64, ge=1)
    batch_size: int = Field(64, ge=1)
    crop_scale: float = Field(0.5, gt=0, le=1)
    max_train_images: int | None = Field(None, ge=1)
    random_baseline: bool = False
    seed: int = 0
    published_protocol: str = "finetune"


class RetrievalEvaluation(FrozenFeatureEvaluation):
    """Content-based retrieval: each test image queries the rest; precision@k and mAP; a PNG."""

    protocol: str
    index: Literal["flat", "ivfpq", "hnsw"] = "flat"
    ks: list[int] = Field(default_factory=lambda: [1, 5, 10])
    n_plot_queries: int = Field(4, ge=1)
    n_plot_neighbours: int = Field(5, ge=1)
    published_protocol: str = "retrieval"


class AnalysesEvaluation(EvaluationSettings):
    """Property analyses on a few test images: PCA feature maps, feature matching, CLS attention."""

    protocol: str
    dataset: str
    split: str = "default"
    variants: list[str]
    image_size: int | None = None
    n_images: int = Field(4, ge=2)
    n_components: int = Field(3, ge=3, le=3)
    foreground_threshold: float = 0.0
    seed: int = 0


class MultilabelEvaluation(EvaluationSettings):
    """Multi-label classification (BigEarthNet): a linear head or full fine-tuning, micro AP.

    ``train_fraction`` is the share of the training split used (0.1 or 1.0 in DINO-MC);
    ``published_dataset`` names the column in the seeds' table when it is not the dataset's
    ``published_name`` (``BigEarthNet-10%``).
    """

    protocol: str
    published_dataset: str | None = None
    dataset: str
    variants: list[str]
    mode: Literal["linear", "finetune"] = "finetune"
    train_fraction: float = Field(1.0, gt=0, le=1)
    image_size: int | None = None
    epochs: int = Field(100, ge=1)
    lr: float = Field(1e-3, gt=0)
    train_batch_size: int = Field(64, ge=1)
    seed: int = 0
    published_protocol: str = "finetune_multilabel"


class ChangeDetectionEvaluation(EvaluationSettings):
    """OSCD change detection: a Siamese backbone, a light decoder, P/R/F1 of the change class."""

    protocol: str
    dataset: str
    variants: list[str]
    image_size: int = Field(96, ge=8)
    epochs: int = Field(50, ge=1)
    lr: float = Field(1e-4, gt=0)
    freeze_backbone: bool = False
    threshold: float = Field(0.5, gt=0, lt=1)
    train_batch_size: int = Field(16, ge=1)
    seed: int = 0
    published_protocol: str = "change_detection"


class SegmentationEvaluation(EvaluationSettings):
    """Semantic segmentation mIoU: a linear head on frozen patch tokens or a fine-tuned UPerNet head."""

    protocol: str
    dataset: str
    variants: list[str]
    head: Literal["linear", "upernet"] = "upernet"
    image_size: int = Field(224, ge=8)
    epochs: int = Field(50, ge=1)
    lr: float = Field(1e-4, gt=0)
    train_batch_size: int = Field(8, ge=1)
    ignore_index: int | None = 255
    seed: int = 0
    published_protocol: str = "segmentation_224"
