"""Key layouts of published checkpoints -> the layouts rsdino stores.

A DINO-family training checkpoint holds ``student`` and ``teacher`` state dicts of a
``MultiCropWrapper``: ``backbone.<timm-like key>`` and ``head.<DINO head key>``, the student's (and,
for ResNets, the teacher's) behind DistributedDataParallel's ``module.`` prefix. ``dino_loss`` holds
the centre. rsdino's ``Branch`` names the same head ``dino_head`` and keeps the weight-norm
magnitude and direction under torch's parametrisation names.
"""

from __future__ import annotations

import argparse
from typing import Any

import torch

Tensors = dict[str, torch.Tensor]

#: Old ``nn.utils.weight_norm`` names -> ``nn.utils.parametrizations.weight_norm`` names.
WEIGHT_NORM_KEYS = {"last_layer.weight_g": "last_layer.parametrizations.weight.original0",
                    "last_layer.weight_v": "last_layer.parametrizations.weight.original1"}


def tensors_only(state: Any, where: str) -> Tensors:
    """``state`` if it is a ``{str: Tensor}`` mapping (what a state dict is), else a ``ValueError``."""
    if not isinstance(state, dict) or not state:
        raise ValueError(f"{where} is not a state dict (got {type(state).__name__})")
    bad = [key for key, value in state.items()
           if not isinstance(key, str) or not isinstance(value, torch.Tensor)]
    if bad:
        raise ValueError(f"{where} is not a state dict (entry {bad[0]!r} is not a tensor)")
    return dict(state)


def strip_prefix(state: Tensors, prefix: str) -> Tensors:
    """The entries whose key starts with ``prefix``, with the prefix removed."""
    return {key[len(prefix):]: value for key, value in state.items() if key.startswith(prefix)}


def without_ddp(state: Tensors) -> Tensors:
    """``state`` with DistributedDataParallel's ``module.`` prefix removed where every key has it."""
    if state and all(key.startswith("module.") for key in state):
        return strip_prefix(state, "module.")
    return state


def split_wrapper(state: Tensors) -> tuple[Tensors, Tensors]:
    """``(backbone, head)`` of a ``MultiCropWrapper`` state dict (``backbone.*`` / ``head.*``).

    A state dict without the ``backbone.`` prefix is taken as a bare backbone (no head).
    """
    state = without_ddp(state)
    if any(key.startswith("backbone.") for key in state):
        return strip_prefix(state, "backbone."), strip_prefix(state, "head.")
    return state, {}


def dino_head_state(head: Tensors) -> Tensors:
    """A DINO head's state dict in rsdino's ``DINOHead`` names (``{}`` when it cannot be mapped).

    The MLP keeps its ``mlp.<i>`` indices (Linear-GELU-...-Linear, as in rsdino); heads with
    BatchNorm layers (``use_bn_in_head``) have other indices and are not mapped.
    """
    if not head or any(key.endswith("running_mean") for key in head):
        return {}
    return {WEIGHT_NORM_KEYS.get(key, key): value for key, value in head.items()}


def namespace_dict(args: Any) -> dict[str, Any]:
    """The plain ``{name: value}`` of a pickled ``argparse.Namespace`` (``{}`` for anything else)."""
    if isinstance(args, argparse.Namespace):
        return {key: value for key, value in vars(args).items()
                if isinstance(value, str | int | float | bool | type(None) | list | tuple)}
    return dict(args) if isinstance(args, dict) else {}
