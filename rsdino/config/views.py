"""Settings of the random views of a pretraining variant (``variants.<name>.crops`` in params.yaml)."""

from __future__ import annotations

from pydantic import Field

from rsdino.config.base import StrictModel


class CropSettings(StrictModel):
    """Multi-crop views (DINO defaults)."""

    global_size: int = Field(224, gt=0)
    local_size: int = Field(96, gt=0)
    n_global: int = Field(2, ge=1)
    n_local: int = Field(8, ge=0)
    global_scale: tuple[float, float] = (0.4, 1.0)
    local_scale: tuple[float, float] = (0.05, 0.4)
    # Band-aware photometric rule (rsdino.views): probability, brightness and contrast
    # spreads shared by all bands, and a small independent per-band offset (in std units).
    color_p: float = Field(0.8, ge=0, le=1)
    brightness: float = Field(0.4, ge=0, lt=1)
    contrast: float = Field(0.4, ge=0, lt=1)
    band_jitter: float = Field(0.05, ge=0)
    # Gaussian blur probability for the first global, the other globals and the locals (DINO:
    # 1.0, 0.1, 0.5), and its sigma range in output pixels (DINO's is meant for 224 px crops:
    # scale it down with the crop size, or textures of small images are wiped out).
    blur_p: tuple[float, float, float] = (1.0, 0.1, 0.5)
    blur_sigma: tuple[float, float] = (0.1, 2.0)
