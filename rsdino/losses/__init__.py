"""Self-supervised losses, one per module, each with its formula in the docstring."""

from rsdino.losses.dino_clstoken import DINOLoss

__all__ = ["DINOLoss"]
