"""The pretraining methods: one record per method, the only place a method's name is spelled.

Pure data (no torch import), so that the settings validator, the preflight and the Snakemake DAG
read it without loading torch. A record says which meta-architecture trains the method (an import
path, resolved lazily by ``rsdino.train.meta_architecture.build_meta_architecture``), its default
loss weights (a term is on when its weight is > 0; a weight left unset in ``params.yaml`` takes the
record's), its teacher targets and what it needs from the backbone and the data. The views each
method needs (multi-sized locals for DINO-MC, dates for DINO-TP, scale bins and GSDs for SatDINO,
masks for DINOv2 and iBOT, co-registered S1/S2 crops) are set by the variant's ``crops`` settings
(``rsdino.views``).

Adding a method: one record here, and, when no existing meta-architecture trains it, one module
under ``rsdino/train/`` whose class implements ``rsdino.train.meta_architecture.MetaArchitecture``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

#: The meta-architecture of every DINO-family method: student, EMA teacher, switchable loss terms.
SELF_DISTILLATION = "rsdino.train.meta_arch:SelfDistillation"
#: Loss terms a weight can switch on (``loss.<term>_weight`` in params.yaml, ``loss_<term>`` in metrics).
LOSS_TERMS: tuple[str, ...] = ("dino", "ibot", "koleo", "gsd")
#: Terms that read patch or register tokens (iBOT's masked patches, SatDINO's GSD register).
TOKEN_TERMS: tuple[str, ...] = ("ibot", "gsd")


@dataclass(frozen=True)
class MethodRecipe:
    """Structure and defaults of one method.

    Attributes:
        citation: Where the method comes from.
        meta_arch: ``"module:Class"`` of the meta-architecture that trains it (imported lazily).
        teacher: ``ema`` (a momentum teacher the loop updates after each step) or ``none``.
        centering: Default teacher target: ``centering`` (EMA centre + softmax) or ``sinkhorn_knopp``.
        dino_weight: Default weight of the DINO CLS-token self-distillation loss.
        ibot_weight: Default weight of the iBOT masked-patch loss (needs ``crops.mask_p > 0``).
        koleo_weight: Default weight of the KoLeo regulariser on the student's global CLS tokens.
        gsd_weight: Default weight of the GSD regression on a register token.
        needs_patch_tokens: Only ViT backbones (patch tokens, masks, register tokens) can train it.
        multimodal: Two backbones (S1, S2) fused token by token; the data are S1/S2 pairs.
        temporal: Views come from several dates of one location (the sample has a ``series``).
    """

    citation: str
    meta_arch: str = SELF_DISTILLATION
    teacher: Literal["ema", "none"] = "ema"
    centering: Literal["centering", "sinkhorn_knopp"] = "centering"
    dino_weight: float = 1.0
    ibot_weight: float = 0.0
    koleo_weight: float = 0.0
    gsd_weight: float = 0.0
    needs_patch_tokens: bool = False
    multimodal: bool = False
    temporal: bool = False

    def default_weights(self) -> dict[str, float]:
        """``{term: default weight}`` for every term of ``LOSS_TERMS``."""
        return {term: float(getattr(self, f"{term}_weight")) for term in LOSS_TERMS}


#: name -> record. The names are the ``method`` of a variant in params.yaml.
METHODS: dict[str, MethodRecipe] = {
    "dino": MethodRecipe("Caron et al. 2021, Emerging Properties in Self-Supervised Vision Transformers"),
    "dino_mc": MethodRecipe("Wanyan et al. 2023, DINO-MC: multi-sized local crops (crops.local_sizes)"),
    "dino_tp": MethodRecipe("DINO with temporal views from SeCo dates (crops.temporal)", temporal=True),
    "satdino": MethodRecipe("Straka et al. 2025, SatDINO: GSD head and scale-aware local crops",
                            gsd_weight=0.1, needs_patch_tokens=True),
    "dinov2": MethodRecipe("Oquab et al. 2023, DINOv2: iBOT + KoLeo + Sinkhorn-Knopp",
                           centering="sinkhorn_knopp", ibot_weight=1.0, koleo_weight=0.1,
                           needs_patch_tokens=True),
    "dinov2_multimodal": MethodRecipe("DINOv2 on co-registered Sentinel-1/2 pairs with a fusion block",
                                      centering="sinkhorn_knopp", ibot_weight=1.0, koleo_weight=0.1,
                                      needs_patch_tokens=True, multimodal=True),
    "ibot": MethodRecipe("Zhou et al. 2022, iBOT: Image BERT Pre-Training with Online Tokenizer "
                         "(DINO's CLS-token term + masked-patch self-distillation, centred teacher)",
                         ibot_weight=1.0, needs_patch_tokens=True),
}


def method_recipe(method: str) -> MethodRecipe:
    """The record of ``method`` (a one-line error naming the known methods for an unknown name)."""
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; known: {', '.join(METHODS)}")
    return METHODS[method]
