"""Continue pretraining from an imported training checkpoint (``init_from:`` of a variant).

``initialise_from`` reads the checkpoint with the importer of its format (safe loading, key layout
mapping: ``rsdino.models.importers``) and copies into a fresh ``SelfDistillation``: the student and
teacher backbones, their DINO heads (and SatDINO's GSD head when the file has one) and the DINO loss
centre. A part the file does not have keeps its fresh initialisation (a backbone-only file gives
both branches the same backbone and new heads); a part whose shape differs is refused with one
line naming the file.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from rsdino.config.variants import InitFrom
from rsdino.models.importers.folder import load_imported
from rsdino.train.meta_arch import SelfDistillation
from rsdino.train.meta_architecture import MetaArchitecture

log = logging.getLogger(__name__)


def initialise_from(model: MetaArchitecture, init: InitFrom) -> list[str]:
    """Load ``init``'s checkpoint into ``model`` in place; return the parts loaded (for the log)."""
    path = Path(init.path)
    if not isinstance(model, SelfDistillation):
        raise ValueError(f"{path}: init_from loads self-distillation checkpoints (student, teacher); "
                         f"this method trains a {type(model).__name__}")
    imported = load_imported(init.format, path)
    loaded = []
    for name, branch in (("student", model.student), ("teacher", model.teacher)):
        source = name if name in imported.backbones else "teacher"
        state = imported.backbones[source]
        if imported.convert is not None:
            state = imported.convert(state, branch.backbone)
        heads = imported.heads.get(source, {})
        try:
            branch.backbone.load_state_dict(state, strict=True)
            result = branch.load_state_dict(heads, strict=False)
        except RuntimeError as error:
            first = str(error).strip().splitlines()
            raise ValueError(f"{path}: does not fit the variant's {name}: "
                             f"{first[1].strip() if len(first) > 1 else first[0]}") from None
        if result.unexpected_keys:
            raise ValueError(f"{path}: the {name} has parts the variant lacks: {result.unexpected_keys[:3]}")
        loaded.append(f"{name} backbone (from the {source})")
        loaded += [f"{name} {part}" for part in sorted({key.split(".")[0] for key in heads})]
    if imported.centre is not None:
        if imported.centre.shape != model.dino_loss.center.shape:
            raise ValueError(f"{path}: centre of shape {tuple(imported.centre.shape)} does not fit the "
                             f"variant's head ({tuple(model.dino_loss.center.shape)})")
        with torch.no_grad():
            model.dino_loss.center.copy_(imported.centre)
        loaded.append("centre")
    log.info("%s: initialised %s", path, ", ".join(loaded))
    return loaded
