"""Self-supervised losses, one per module, each with its formula in the docstring."""

from rsdino.losses.dino_clstoken import DINOLoss
from rsdino.losses.gsd import GSDLoss, resized_crop_gsd
from rsdino.losses.ibot_patch import iBOTPatchLoss
from rsdino.losses.koleo import KoLeoLoss
from rsdino.losses.sinkhorn_knopp import sinkhorn_knopp

__all__ = ["DINOLoss", "GSDLoss", "KoLeoLoss", "iBOTPatchLoss", "resized_crop_gsd", "sinkhorn_knopp"]
