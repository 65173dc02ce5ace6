"""Random views of remote-sensing images for self-distillation (multi-crop, masks, colour rules).

``build_views`` makes the views of every pretraining recipe from uint8/uint16/float tensors
(``rsdino.views.builder``); ``block_mask`` draws iBOT's block masks (``rsdino.views.masking``).
"""

from rsdino.views.builder import ViewBuilder, build_views
from rsdino.views.masking import block_mask

__all__ = ["ViewBuilder", "block_mask", "build_views"]
