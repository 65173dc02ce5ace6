"""Settings of one pretraining variant (``variants.<name>`` in params.yaml)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator

from rsdino.config.base import StrictModel
from rsdino.config.views import CropSettings
from rsdino.models.catalog import BACKBONES, METHODS


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
    freeze_last_layer_epochs: int = Field(1, ge=0)
    momentum_teacher: float = Field(0.996, ge=0, le=1)


class DinoLossSettings(StrictModel):
    """DINO loss temperatures and centring."""

    student_temp: float = Field(0.1, gt=0)
    warmup_teacher_temp: float = Field(0.04, gt=0)
    teacher_temp: float = Field(0.07, gt=0)
    warmup_teacher_temp_epochs: int = Field(30, ge=0)
    center_momentum: float = Field(0.9, ge=0, le=1)


class ResourceSettings(StrictModel):
    """Compute for one pretraining job (used by the cluster profile)."""

    nodes: int = Field(1, ge=1)
    gpus_per_node: int = Field(0, ge=0)
    cpus_per_task: int = Field(2, ge=1)
    mem_mb: int = Field(8000, ge=1)
    runtime_min: int = Field(60, ge=1)


class PublishedKey(StrictModel):
    """How a variant is named in the seeds' published tables (``seed_tables.csv``)."""

    model: str
    arch: str
    pretrain_data: str


class VariantConfig(StrictModel):
    """One model variant: method x backbone x pretraining data, with its hyper-parameters."""

    method: str
    backbone: str
    backbone_kwargs: dict[str, Any] = Field(default_factory=dict)
    pretrain_data: str
    crops: CropSettings = Field(default_factory=CropSettings)
    head: HeadSettings = Field(default_factory=HeadSettings)
    optim: OptimSettings = Field(default_factory=OptimSettings)
    loss: DinoLossSettings = Field(default_factory=DinoLossSettings)
    drop_path: float = Field(0.1, ge=0, lt=1)
    seed: int = 0
    num_workers: int = Field(0, ge=0)
    launcher: Literal["local", "submitit"] = "local"
    resources: ResourceSettings = Field(default_factory=ResourceSettings)
    published: PublishedKey | None = None
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
