"""What the training loop talks to: the meta-architecture of a method, whatever it is.

``rsdino.train.pretrain`` builds the method's meta-architecture from its record
(``rsdino.config.methods``: ``meta_arch`` is a ``"module:Class"`` path) and then uses only this
interface:

- ``losses(batch, teacher_temp)``: one step's forward, ``{"total": ..., <term>: ..., <statistic>: ...}``
  (``statistics`` names the entries that are logged but are not loss terms);
- ``trained_module()``: the module the optimiser updates (gradients averaged over ranks, clipped);
- ``last_layers()``: layers whose gradients are dropped during ``optim.freeze_last_layer_epochs``;
- ``update_teacher(momentum)``: after the optimiser step (a no-op for a method without a teacher);
- ``export_modules()``: what goes into the model folder (``ExportModules``);
- ``state_dict()`` / ``load_state_dict()`` (``nn.Module``'s): everything a checkpoint resumes from,
  loss centres included.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from rsdino.config.methods import method_recipe
from rsdino.config.variants import VariantConfig
from rsdino.imports import import_object


@dataclass
class ExportModules:
    """What a trained meta-architecture writes into its model folder.

    Attributes:
        backbones: ``{branch: backbone}``; the first goes to the folder root (the one evaluations and
            the kNN probe read), each other one to ``<folder>/<branch>/`` (same layout); ``branch``
            is recorded in each ``model.json``.
        whole: The whole branch of the first backbone (heads, fusion, ...), saved as
            ``teacher.safetensors`` for analyses and reuse.
        timm_kwargs: The backbones' timm overrides as built (``model.json``'s ``timm_kwargs``; e.g.
            one more register token than ``backbone_kwargs`` when the GSD term is on).
        skip_bands: Leading input bands the exported backbones do not read (S1 of multimodal data).
    """

    backbones: dict[str, nn.Module]
    whole: nn.Module
    timm_kwargs: dict[str, Any] = field(default_factory=dict)
    skip_bands: int = 0

    @property
    def main(self) -> nn.Module:
        """The backbone at the folder root."""
        return next(iter(self.backbones.values()))


class MetaArchitecture(nn.Module, ABC):
    """The interface every method's meta-architecture implements (see the module docstring)."""

    #: Entries of ``losses()`` that are logged as they are, not as ``loss_<term>``.
    statistics: tuple[str, ...] = ()

    @abstractmethod
    def losses(self, batch: dict, teacher_temp: float) -> dict[str, torch.Tensor]:
        """Forward one batch; ``total`` (to back-propagate), every term, then ``statistics``."""

    @abstractmethod
    def trained_module(self) -> nn.Module:
        """The module whose parameters the optimiser updates."""

    def last_layers(self) -> list[nn.Module]:
        """Layers frozen (no gradient) during the first ``optim.freeze_last_layer_epochs`` epochs."""
        return []

    def update_teacher(self, momentum: float) -> None:  # noqa: B027 (a no-op unless there is a teacher)
        """Move the teacher towards the trained module (nothing for a method without a teacher)."""

    @abstractmethod
    def export_modules(self) -> ExportModules:
        """What goes into the model folder."""

    def compile_blocks(self) -> int:
        """``torch.compile`` the repeated blocks in place; returns how many (0: nothing compiled)."""
        return 0


def meta_architecture_class(method: str) -> type[MetaArchitecture]:
    """The class named by ``method``'s record (imported here, so the record stays torch-free)."""
    path = method_recipe(method).meta_arch
    try:
        cls = import_object(path)
    except AttributeError:
        cls = None
    if not (isinstance(cls, type) and issubclass(cls, MetaArchitecture)):
        raise TypeError(f"method {method!r}: {path} is not a MetaArchitecture")
    return cls


def build_meta_architecture(variant: VariantConfig, in_chans: int) -> MetaArchitecture:
    """The meta-architecture of ``variant.method``, built for ``in_chans`` input bands."""
    return meta_architecture_class(variant.method)(variant, in_chans)
