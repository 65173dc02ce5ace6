"""One reader per published checkpoint format: the loaded object -> ``ImportedWeights``.

Each reader knows one key layout (read from the authors' code) and returns the backbone(s) in timm's
key layout, the heads in rsdino's ``Branch`` names, the DINO centre and the training arguments:

- ``dino``: a facebookresearch/dino training checkpoint (``student`` / ``teacher`` wrapper state
  dicts, ``dino_loss`` centre, ``args`` Namespace). The ViT keys are already timm's; ResNets are
  torchvision's, which are timm's too.
- ``dino_backbone``: DINO's released backbone-only file (a bare backbone state dict).
- ``dino_mc``: DINO-MC / DINO-TP releases: the DINO training layout (their code is DINO's); a bare
  backbone is accepted too. Their Swin-T is torchvision's Swin, which timm cannot load (refused).
- ``satdino``: SatDINO releases (``teacher`` = bare backbone, optional ``gsd_head``, ``linear_head``)
  or training checkpoints (DINO layout). Its GSD register is the last token and has the last
  position embedding; timm puts a register after the CLS token, so the register becomes timm's
  ``reg_token`` and the position embeddings are reordered ``[cls, patches, reg] -> [cls, reg, patches]``
  (attention does not depend on the token order, so the features are unchanged).
- ``dinov2``: DINOv2 hub backbones (registers, layer scale), converted by timm's own
  ``checkpoint_filter_fn`` once the model is built.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from rsdino.models.importers.layouts import (
    Tensors,
    dino_head_state,
    namespace_dict,
    split_wrapper,
    strip_prefix,
    tensors_only,
    without_ddp,
)


@dataclass
class ImportedWeights:
    """What a reader found in a checkpoint.

    Attributes:
        backbones: ``branch -> state dict`` (``teacher`` always, ``student`` when present), timm keys
            (before ``convert``).
        heads: ``branch -> state dict`` of the rest of rsdino's ``Branch`` (``dino_head.*``,
            ``gsd_head.*``); empty when the file has none.
        timm_kwargs: Architecture settings the weight shapes do not show (``reg_tokens``, ...).
        img_size: The pretraining image size (from the position embeddings), ``None`` for CNNs.
        centre: The DINO loss centre ``(1, K)``, or ``None``.
        args: The training arguments (a pickled Namespace), as a plain dict.
        convert: Applied to each backbone state dict once the timm model is built (DINOv2).
    """

    backbones: dict[str, Tensors]
    heads: dict[str, Tensors] = field(default_factory=dict)
    timm_kwargs: dict[str, Any] = field(default_factory=dict)
    img_size: int | None = None
    centre: torch.Tensor | None = None
    args: dict[str, Any] = field(default_factory=dict)
    convert: Callable[[Tensors, nn.Module], Tensors] | None = None


def _vit_img_size(state: Tensors, tokens_in_pos_embed: int) -> int | None:
    """Image size of a ViT from its position embeddings: ``sqrt(len - tokens_in_pos_embed) * patch``."""
    if "pos_embed" not in state or "patch_embed.proj.weight" not in state:
        return None
    n_patches = state["pos_embed"].shape[1] - tokens_in_pos_embed
    grid = math.isqrt(max(n_patches, 0))
    if grid * grid != n_patches:
        raise ValueError(f"pos_embed of {state['pos_embed'].shape[1]} tokens is not a square grid "
                         f"plus {tokens_in_pos_embed} prefix tokens")
    return grid * int(state["patch_embed.proj.weight"].shape[-1])


def _refuse_torchvision_swin(state: Tensors) -> None:
    if any(re.match(r"features\.\d+\.\d+\.attn\.", key) for key in state):
        raise ValueError("a torchvision Swin backbone (DINO-MC swin_t): timm cannot load its layout; "
                         "not supported")


def _training_checkpoint(obj: dict, tokens_in_pos_embed: int = 1) -> ImportedWeights:
    """The DINO training layout: ``student`` / ``teacher`` wrappers, ``dino_loss``, ``args``."""
    backbones: dict[str, Tensors] = {}
    heads: dict[str, Tensors] = {}
    for branch in ("teacher", "student"):
        if branch not in obj:
            continue
        backbone, head = split_wrapper(tensors_only(obj[branch], f"checkpoint[{branch!r}]"))
        _refuse_torchvision_swin(backbone)
        backbones[branch] = backbone
        mapped = dino_head_state(head)
        if mapped:
            heads[branch] = {f"dino_head.{key}": value for key, value in mapped.items()}
    if "teacher" not in backbones:
        backbones["teacher"] = backbones.pop("student")
        heads = {"teacher": heads["student"]} if "student" in heads else {}
    loss = obj.get("dino_loss")
    centre = loss.get("center") if isinstance(loss, dict) else None
    return ImportedWeights(backbones=backbones, heads=heads,
                           img_size=_vit_img_size(backbones["teacher"], tokens_in_pos_embed),
                           centre=centre if isinstance(centre, torch.Tensor) else None,
                           args=namespace_dict(obj.get("args")))


def _bare_backbone(obj: Any) -> ImportedWeights:
    state = without_ddp(tensors_only(obj, "the checkpoint"))
    if any(key.startswith("backbone.") for key in state):
        state = strip_prefix(state, "backbone.")
    _refuse_torchvision_swin(state)
    return ImportedWeights(backbones={"teacher": state}, img_size=_vit_img_size(state, 1))


def _is_training(obj: Any) -> bool:
    return isinstance(obj, dict) and any(isinstance(obj.get(k), dict) for k in ("teacher", "student"))


def read_dino(obj: Any) -> ImportedWeights:
    """facebookresearch/dino ``checkpoint.pth`` (``student``, ``teacher``, ``dino_loss``, ``args``)."""
    if not _is_training(obj):
        raise ValueError("not a DINO training checkpoint (no 'student' / 'teacher' state dicts); "
                         "a backbone-only file is format dino_backbone")
    return _training_checkpoint(obj)


def read_dino_backbone(obj: Any) -> ImportedWeights:
    """DINO's released backbone-only ``.pth`` (a bare ViT or ResNet state dict)."""
    if _is_training(obj):
        raise ValueError("a training checkpoint (it has 'student' / 'teacher'): use format dino")
    return _bare_backbone(obj)


def read_dino_mc(obj: Any) -> ImportedWeights:
    """DINO-MC / DINO-TP releases: DINO's training layout, or a bare backbone."""
    return _training_checkpoint(obj) if _is_training(obj) else _bare_backbone(obj)


def _satdino_to_timm(state: Tensors) -> Tensors:
    """SatDINO's ``gsd_register`` (last token) -> timm's ``reg_token`` (right after the CLS token)."""
    if "gsd_register" not in state:
        raise ValueError("no gsd_register: not a SatDINO backbone (use format dino)")
    state = dict(state)
    state["reg_token"] = state.pop("gsd_register")
    pos = state["pos_embed"]
    state["pos_embed"] = torch.cat([pos[:, :1], pos[:, -1:], pos[:, 1:-1]], dim=1)
    return state


def read_satdino(obj: Any) -> ImportedWeights:
    """SatDINO: a release (``teacher`` bare backbone, ``gsd_head``) or a training checkpoint."""
    if not isinstance(obj, dict) or not isinstance(obj.get("teacher"), dict):
        raise ValueError("not a SatDINO checkpoint (no 'teacher' state dict)")
    imported = _training_checkpoint(obj, tokens_in_pos_embed=2)
    imported.backbones = {branch: _satdino_to_timm(state) for branch, state in imported.backbones.items()}
    imported.timm_kwargs = {"reg_tokens": 1}
    gsd = obj.get("gsd_head")
    if isinstance(gsd, dict) and gsd:
        gsd = tensors_only(gsd, "checkpoint['gsd_head']")
        gsd = strip_prefix(gsd, "gsd_head.") or gsd  # SatDINO's GSDHead wraps one Linear as gsd_head
        teacher_heads = imported.heads.setdefault("teacher", {})
        teacher_heads.update({f"gsd_head.{key}": value for key, value in gsd.items()})
    return imported


def _dinov2_filter(state: Tensors, model: nn.Module) -> Tensors:
    from timm.models.vision_transformer import checkpoint_filter_fn

    return checkpoint_filter_fn(dict(state), model)


def read_dinov2(obj: Any) -> ImportedWeights:
    """A DINOv2 hub backbone (``register_tokens``, ``blocks.i.ls1.gamma``, ``mask_token``)."""
    state = tensors_only(obj, "the checkpoint")
    if any(".w12." in key for key in state):
        raise ValueError("a SwiGLU DINOv2 (ViT-g) backbone: not in the catalogue, not supported")
    if "mask_token" not in state or "cls_token" not in state:
        raise ValueError("not a DINOv2 hub backbone (no mask_token / cls_token)")
    kwargs: dict[str, Any] = {}
    if "register_tokens" in state:
        kwargs.update(reg_tokens=int(state["register_tokens"].shape[1]), no_embed_class=True)
    if "blocks.0.ls1.gamma" in state:
        kwargs["init_values"] = 1e-5  # layer scale on (its value is loaded)
    return ImportedWeights(backbones={"teacher": state}, timm_kwargs=kwargs,
                           img_size=_vit_img_size(state, 1), convert=_dinov2_filter)


#: format name -> reader of the loaded checkpoint object.
READERS: dict[str, Callable[[Any], ImportedWeights]] = {
    "dino": read_dino,
    "dino_backbone": read_dino_backbone,
    "dino_mc": read_dino_mc,
    "satdino": read_satdino,
    "dinov2": read_dinov2,
}
