"""Random views of remote-sensing images for self-distillation (multi-crop, masks, colour rules)."""

from rsdino.views.multicrop import MultiCropViews, Normalize

__all__ = ["MultiCropViews", "Normalize"]
