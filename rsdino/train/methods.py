"""The resolved loss terms of a variant: its method's defaults (``rsdino.config.methods``) overridden.

A loss term is on when its weight is > 0; a weight left unset in ``params.yaml`` takes the method's
default from its record in ``rsdino.config.methods.METHODS``.
"""

from __future__ import annotations

from dataclasses import dataclass

from rsdino.config.methods import method_recipe
from rsdino.config.variants import VariantConfig


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


def loss_plan(variant: VariantConfig) -> LossPlan:
    """Resolve the variant's loss weights and teacher targets against its method's defaults."""
    defaults, loss = method_recipe(variant.method), variant.loss

    def pick(value: float | None, default: float) -> float:
        return float(default if value is None else value)

    plan = LossPlan(centering=loss.centering or defaults.centering,
                    sinkhorn_iterations=loss.sinkhorn_iterations,
                    dino_weight=pick(loss.dino_weight, defaults.dino_weight),
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
