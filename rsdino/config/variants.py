"""Settings of one pretraining variant (``variants.<name>`` in params.yaml)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from rsdino.config.base import StrictModel
from rsdino.config.methods import METHODS
from rsdino.config.views import CropSettings
from rsdino.models.catalog import BACKBONES, backbone_entry
from rsdino.models.importers import FORMATS


class HeadSettings(StrictModel):
    """DINO projection head: MLP hidden-hidden-bottleneck, L2 norm, weight-normed prototypes."""

    out_dim: int = Field(65536, gt=0)
    hidden_dim: int = Field(2048, gt=0)
    bottleneck_dim: int = Field(256, gt=0)
    n_layers: int = Field(3, ge=1)
    norm_last_layer: bool = True


class OptimSettings(StrictModel):
    """Optimisation schedule (DINO recipe defaults; lr is per 256 images, scaled linearly)."""

    epochs: int = Field(100, ge=1)
    batch_size: int = Field(64, ge=1)
    optimizer: Literal["adamw", "sgd"] = "adamw"
    lr: float = Field(5e-4, gt=0)
    min_lr: float = Field(1e-6, ge=0)
    warmup_epochs: int = Field(10, ge=0)
    weight_decay: float = Field(0.04, ge=0)
    weight_decay_end: float = Field(0.4, ge=0)
    clip_grad: float = Field(3.0, ge=0)
    # DINO clips each parameter's gradient to norm clip_grad; DINOv2 clips the global norm.
    clip_mode: Literal["per_parameter", "global"] = "per_parameter"
    # DINO: lr * B / 256; DINOv2: lr * sqrt(B / 1024) (B is the global batch).
    lr_scaling: Literal["linear_256", "sqrt_1024"] = "linear_256"
    # Layer-wise lr decay (ViTs): block i of n gets lr * layer_decay ** (n - i); 1.0 is off (DINO),
    # 0.9 in DINOv2. The patch embedding's lr is further multiplied by patch_embed_lr_mult (DINOv2: 0.2).
    layer_decay: float = Field(1.0, gt=0, le=1)
    patch_embed_lr_mult: float = Field(1.0, gt=0)
    freeze_last_layer_epochs: int = Field(1, ge=0)
    momentum_teacher: float = Field(0.996, ge=0, le=1)


class DinoLossSettings(StrictModel):
    """DINO loss temperatures and centring."""

    student_temp: float = Field(0.1, gt=0)
    warmup_teacher_temp: float = Field(0.04, gt=0)
    teacher_temp: float = Field(0.07, gt=0)
    warmup_teacher_temp_epochs: int = Field(30, ge=0)
    center_momentum: float = Field(0.9, ge=0, le=1)
    # Teacher targets: EMA centring + softmax (DINO) or Sinkhorn-Knopp (DINOv2 option).
    centering: Literal["centering", "sinkhorn_knopp"] | None = None
    sinkhorn_iterations: int = Field(3, ge=1)
    # Loss weights; a term is on when its weight is > 0. None takes the method's default
    # (rsdino.config.methods.METHODS: e.g. dinov2 ibot 1.0 and koleo 0.1, satdino gsd 0.1, ibot
    # ibot 1.0). dino_weight is resolved when the variant loads (VariantConfig), the others by
    # rsdino.train.methods.loss_plan.
    dino_weight: float | None = Field(None, ge=0)
    ibot_weight: float | None = Field(None, ge=0)
    koleo_weight: float | None = Field(None, ge=0)
    gsd_weight: float | None = Field(None, ge=0)
    # iBOT patch head: shared with the DINO head (DINOv2 default) or a separate one of
    # ibot_out_dim prototypes (None: the DINO head's out_dim).
    ibot_separate_head: bool = False
    ibot_out_dim: int | None = Field(None, gt=0)


class MultimodalSettings(StrictModel):
    """Sentinel-1 / Sentinel-2 fusion of ``dinov2_multimodal`` (the S2 backbone is ``backbone``)."""

    # The first s1_bands bands of the data are Sentinel-1, the rest Sentinel-2.
    s1_bands: int = Field(2, ge=1)
    # Backbone of the S1 branch (None: the same architecture as the S2 one).
    s1_backbone: str | None = None
    fusion: Literal["linear", "cross_attention"] = "linear"
    cross_attention_heads: int = Field(4, ge=1)
    cross_attention_layers: int = Field(6, ge=1)


class BudgetSettings(StrictModel):
    """How much pretraining a variant gets (``rsdino.train.budget``).

    By default ``optim.epochs`` epochs; ``steps`` caps the run at that many optimizer steps, or
    ``minutes`` at that much wall-clock training time (at most one of the two). The lr, weight-decay,
    momentum and teacher-temperature schedules span the budget: ``steps`` steps, or, for
    ``minutes``, the fraction of the time spent (a time budget is not reproducible step for step).
    ``data_fraction`` trains on a seeded subset of that share of the pretraining images (the same
    subset on every run and rank: the first ``round(f * n)`` of a permutation seeded by the
    variant's ``seed``).
    """

    steps: int | None = Field(None, ge=1)
    minutes: float | None = Field(None, gt=0)
    data_fraction: float = Field(1.0, gt=0, le=1)

    @model_validator(mode="after")
    def _one_unit(self) -> BudgetSettings:
        if self.steps is not None and self.minutes is not None:
            raise ValueError("set budget.steps or budget.minutes, not both")
        return self


class ResourceSettings(StrictModel):
    """Compute for one pretraining job (used by the cluster profile)."""

    nodes: int = Field(1, ge=1)
    gpus_per_node: int = Field(0, ge=0)
    cpus_per_task: int = Field(2, ge=1)
    mem_mb: int = Field(8000, ge=1)
    runtime_min: int = Field(60, ge=1)


class ProbeSettings(StrictModel):
    """A kNN probe during pretraining: the training curve that says whether pretraining helps.

    Every ``every_steps`` steps (and at step 0) the teacher backbone's features of ``n_train`` images
    of ``dataset``'s train split (the kNN memory) and ``n_test`` of its test split (the queries) are
    scored by the weighted kNN of DINO (``rsdino.evaluate.knn.weighted_knn``, ``k``, ``temperature``);
    top-1 accuracy in percent is logged as ``knn_probe_top1`` (rsdino.train.probe).
    """

    dataset: str
    every_steps: int = Field(gt=0)
    n_train: int = Field(200, ge=1, le=2000)
    n_test: int = Field(100, ge=1, le=2000)
    k: int = Field(20, ge=1)
    temperature: float = Field(0.07, gt=0)
    batch_size: int = Field(128, ge=1)


class PublishedKey(StrictModel):
    """How a variant is named in the seeds' published tables (``seed_tables.csv``)."""

    model: str
    arch: str
    pretrain_data: str


def _known_format(value: str) -> str:
    if value not in FORMATS:
        raise ValueError(f"unknown checkpoint format {value!r}; known: {', '.join(FORMATS)}")
    return value


class ReleasedWeights(StrictModel):
    """Published weights a variant imports instead of pretraining (``rsdino import-weights``).

    Downloaded from ``url`` when its ``sha256`` is published; otherwise read from ``path`` (a local
    file, or where a manual download must be placed: the step then stops with ``manual`` or, without
    it, a line naming ``url``). ``bands`` / ``mean`` / ``std`` describe the inputs; left out, they are
    the variant's pretraining data's bands and training-split statistics.
    """

    format: str
    url: str | None = None
    sha256: str | None = Field(None, pattern=r"^[0-9a-f]{64}$")
    path: str | None = None
    manual: str | None = None
    bands: list[str] | None = None
    mean: list[float] | None = None
    std: list[float] | None = None

    _format = field_validator("format")(_known_format)

    @model_validator(mode="after")
    def _has_source(self) -> ReleasedWeights:
        if not self.path and not (self.url and self.sha256):
            raise ValueError("weights need a path (a local or manually downloaded file), or a url with "
                             "its published sha256")
        if (self.mean is None) != (self.std is None):
            raise ValueError("weights: give both mean and std, or neither")
        return self


class InitFrom(StrictModel):
    """A training checkpoint (student, teacher, heads, centre) pretraining continues from."""

    format: str
    path: str

    _format = field_validator("format")(_known_format)


class VariantConfig(StrictModel):
    """One model variant: method x backbone x pretraining data, with its hyper-parameters."""

    method: str
    backbone: str
    backbone_kwargs: dict[str, Any] = Field(default_factory=dict)
    pretrain_data: str
    crops: CropSettings = Field(default_factory=CropSettings)
    head: HeadSettings = Field(default_factory=HeadSettings)
    optim: OptimSettings = Field(default_factory=OptimSettings)
    # Pretraining budget: optim.epochs by default, or steps, or wall-clock minutes; a data fraction.
    budget: BudgetSettings = Field(default_factory=BudgetSettings)
    loss: DinoLossSettings = Field(default_factory=DinoLossSettings)
    drop_path: float = Field(0.1, ge=0, lt=1)
    multimodal: MultimodalSettings = Field(default_factory=MultimodalSettings)
    # Train on these bands of the pretraining data only (by name, in this order); None: all of them.
    input_bands: list[str] | None = None
    # bf16 autocast on GPU (ignored on CPU, where training stays float32 and reproducible).
    precision: Literal["fp32", "bf16"] = "bf16"
    # torch.compile (inductor) every backbone block and head of student and teacher: fuses the
    # norms, activations and residual adds around the matrix products; the first steps of each
    # crop size pay the compilation. Meant for GPUs: on CPU it needs a C++ compiler and did not
    # pay (benchmarks/README.md).
    compile: bool = False
    # Write the resumable checkpoint every this many steps as well as after every epoch (0: epochs only).
    checkpoint_every_steps: int = Field(0, ge=0)
    seed: int = 0
    num_workers: int = Field(0, ge=0)
    # Read the per-step metrics (loss terms, collapse signals) to the host every this many steps,
    # all steps' rows at once (rsdino.train.step_metrics); 0: every step on CPU, every 25 on a GPU.
    read_metrics_every: int = Field(0, ge=0)
    # Where the photometric part of the views runs: "workers" (per sample, in the DataLoader
    # workers) or "device" (workers draw and crop, the batch's colour/blur/solarisation runs on the
    # training device: rsdino.views.device; the same bits as "workers" on CPU).
    views_on: Literal["workers", "device"] = "workers"
    launcher: Literal["local", "submitit"] = "local"
    resources: ResourceSettings = Field(default_factory=ResourceSettings)
    published: PublishedKey | None = None
    # Released weights imported instead of pretraining (the evaluations are the same).
    weights: ReleasedWeights | None = None
    # Start pretraining from an imported training checkpoint instead of a random initialisation.
    init_from: InitFrom | None = None
    # kNN probe during pretraining (None: off); it never changes the trained weights.
    probe: ProbeSettings | None = None
    description: str = ""

    @field_validator("method")
    @classmethod
    def _known_method(cls, value: str) -> str:
        if value not in METHODS:
            raise ValueError(f"unknown method {value!r}; known: {', '.join(METHODS)}")
        return value

    @field_validator("backbone")
    @classmethod
    def _known_backbone(cls, value: str) -> str:
        if value not in BACKBONES:
            raise ValueError(f"unknown backbone {value!r}; known: {', '.join(BACKBONES)}")
        return value

    @model_validator(mode="after")
    def _method_needs(self) -> VariantConfig:
        s1 = self.multimodal.s1_backbone
        if s1 is not None and s1 not in BACKBONES:
            raise ValueError(f"multimodal.s1_backbone: unknown backbone {s1!r}; "
                             f"known: {', '.join(BACKBONES)}")
        if self.weights is not None and self.init_from is not None:
            raise ValueError("weights (imported, not trained) and init_from (trained from a checkpoint) "
                             "exclude each other")
        record = METHODS[self.method]
        if self.loss.dino_weight is None:  # the number, in dumps and checkpoint fingerprints
            self.loss = self.loss.model_copy(update={"dino_weight": record.dino_weight})
        if record.needs_patch_tokens and backbone_entry(self.backbone).family != "vit":
            raise ValueError(f"method {self.method!r} needs a ViT backbone (patch tokens, masks, "
                             f"registers), not {self.backbone!r}")
        return self
