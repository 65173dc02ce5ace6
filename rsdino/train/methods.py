"""The pretraining methods: what each one switches on, as data (a registry, not if/elif chains).

Every method is the same self-distillation meta-architecture (``rsdino.train.meta_arch``) with some
terms switched on; the views each method needs (multi-sized locals for DINO-MC, dates for DINO-TP,
scale bins and GSDs for SatDINO, masks for DINOv2, co-registered S1/S2 crops) are set by the
variant's ``crops`` settings (``rsdino.views``). A loss term is on when its weight is > 0; a weight
left unset in ``params.yaml`` takes the method's default below.
"""

from __future__ import annotations

from dataclasses import dataclass

from rsdino.config.variants import VariantConfig


@dataclass(frozen=True)
class MethodRecipe:
    """Defaults and structure of one method.

    Attributes:
        citation: Where the method comes from.
        centering: Default teacher target: ``centering`` (EMA centre + softmax) or ``sinkhorn_knopp``.
        ibot_weight: Default weight of the iBOT masked-patch loss (needs ``crops.mask_p > 0``).
        koleo_weight: Default weight of the KoLeo regulariser on the student's global CLS tokens.
        gsd_weight: Default weight of the GSD regression on a register token.
        multimodal: Two backbones (S1, S2) fused token by token.
        temporal: Views come from several dates of one location (the sample has a ``series``).
    """

    citation: str
    centering: str = "centering"
    ibot_weight: float = 0.0
    koleo_weight: float = 0.0
    gsd_weight: float = 0.0
    multimodal: bool = False
    temporal: bool = False


METHOD_RECIPES: dict[str, MethodRecipe] = {
    "dino": MethodRecipe("Caron et al. 2021, Emerging Properties in Self-Supervised Vision Transformers"),
    "dino_mc": MethodRecipe("Wanyan et al. 2023, DINO-MC: multi-sized local crops (crops.local_sizes)"),
    "dino_tp": MethodRecipe("DINO with temporal views from SeCo dates (crops.temporal)", temporal=True),
    "satdino": MethodRecipe("Straka et al. 2025, SatDINO: GSD head and scale-aware local crops",
                            gsd_weight=0.1),
    "dinov2": MethodRecipe("Oquab et al. 2023, DINOv2: iBOT + KoLeo + Sinkhorn-Knopp",
                           centering="sinkhorn_knopp", ibot_weight=1.0, koleo_weight=0.1),
    "dinov2_multimodal": MethodRecipe("DINOv2 on co-registered Sentinel-1/2 pairs with a fusion block",
                                      centering="sinkhorn_knopp", ibot_weight=1.0, koleo_weight=0.1,
                                      multimodal=True),
}


@dataclass(frozen=True)
class LossPlan:
    """The resolved loss terms of a variant (weights > 0 are on)."""

    centering: str
    sinkhorn_iterations: int
    dino_weight: float
    ibot_weight: float
    koleo_weight: float
    gsd_weight: float

    @property
    def ibot(self) -> bool:
        """Whether the iBOT masked-patch term is on."""
        return self.ibot_weight > 0

    @property
    def koleo(self) -> bool:
        """Whether the KoLeo term is on."""
        return self.koleo_weight > 0

    @property
    def gsd(self) -> bool:
        """Whether the GSD regression term is on."""
        return self.gsd_weight > 0


def recipe(method: str) -> MethodRecipe:
    """The registered recipe of ``method`` (a clear error for an unknown name)."""
    if method not in METHOD_RECIPES:
        raise ValueError(f"unknown method {method!r}; known: {', '.join(METHOD_RECIPES)}")
    return METHOD_RECIPES[method]


def loss_plan(variant: VariantConfig) -> LossPlan:
    """Resolve the variant's loss weights and teacher targets against its method's defaults."""
    defaults, loss = recipe(variant.method), variant.loss

    def pick(value: float | None, default: float) -> float:
        return float(default if value is None else value)

    plan = LossPlan(centering=loss.centering or defaults.centering,
                    sinkhorn_iterations=loss.sinkhorn_iterations, dino_weight=float(loss.dino_weight),
                    ibot_weight=pick(loss.ibot_weight, defaults.ibot_weight),
                    koleo_weight=pick(loss.koleo_weight, defaults.koleo_weight),
                    gsd_weight=pick(loss.gsd_weight, defaults.gsd_weight))
    if plan.ibot and getattr(variant.crops, "mask_p", 0.0) <= 0:
        raise ValueError(f"method {variant.method!r}: the iBOT loss (ibot_weight {plan.ibot_weight}) needs "
                         f"masked global crops: set crops.mask_p > 0 (DINOv2: 0.5), or ibot_weight: 0")
    if plan.dino_weight + plan.ibot_weight <= 0:
        raise ValueError(f"method {variant.method!r}: dino_weight and ibot_weight are both 0: "
                         "nothing to learn")
    return plan
