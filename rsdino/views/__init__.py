"""Random views of remote-sensing images for self-distillation (multi-crop, masks, colour rules).

``build_views`` makes the views of every pretraining recipe from uint8/uint16/float tensors
(``rsdino.views.builder``); ``MultiCropViews`` and ``Normalize`` are the earlier float-only path.
"""

from rsdino.views.builder import ViewBuilder, build_views
from rsdino.views.masking import block_mask
from rsdino.views.multicrop import MultiCropViews, Normalize

__all__ = ["MultiCropViews", "Normalize", "ViewBuilder", "block_mask", "build_views"]
