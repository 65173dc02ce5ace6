"""Settings of the random views of a pretraining variant (``variants.<name>.crops`` in params.yaml).

The defaults are DINO's multi-crop recipe; the other recipes switch on with a few keys:
DINO-MC ``local_sizes``, SatDINO ``scale_bins``, DINO-TP ``temporal``, DINOv2/iBOT ``mask_p``.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from rsdino.config.base import StrictModel


class CropSettings(StrictModel):
    """Multi-crop views (DINO defaults) and the switches of the other recipes (``rsdino.views``)."""

    # Output sizes (pixels) of the global and local crops, and how many of each.
    global_size: int = Field(224, gt=0)
    local_size: int = Field(96, gt=0)
    n_global: int = Field(2, ge=1)
    n_local: int = Field(8, ge=0)
    # Area fraction ranges of the random resized crops, and their aspect-ratio range (w / h).
    global_scale: tuple[float, float] = (0.4, 1.0)
    local_scale: tuple[float, float] = (0.05, 0.4)
    aspect_ratio: tuple[float, float] = (3 / 4, 4 / 3)
    # DINO-MC: one output size per local crop position (length n_local); None: every local is
    # local_size.
    local_sizes: list[int] | None = None
    # SatDINO: local_scale cut into n_local equal bins, local crop i drawn from bin i.
    scale_bins: bool = False
    # Resampling filter of the crop resize (antialiased; DINO: bicubic).
    interpolation: Literal["bilinear", "bicubic"] = "bicubic"
    # Flips: DINO's random horizontal flip, or the 8 symmetries of the square ("d4": horizontal
    # and vertical flips and a transpose, each with p=0.5; overhead imagery has no up).
    flips: Literal["horizontal", "d4"] = "horizontal"
    # Photometric probability, and brightness and contrast spreads: DINO's colour jitter on RGB
    # and the band-aware rule on optical multispectral bands (rsdino.views.colour).
    color_p: float = Field(0.8, ge=0, le=1)
    brightness: float = Field(0.4, ge=0, lt=1)
    contrast: float = Field(0.4, ge=0, lt=1)
    # RGB only: saturation spread, hue shift (fraction of the colour circle), grayscale and
    # solarisation probabilities (solarisation on the second global crop only, as in DINO).
    saturation: float = Field(0.2, ge=0, lt=1)
    hue: float = Field(0.1, ge=0, le=0.5)
    grayscale_p: float = Field(0.2, ge=0, le=1)
    solarize_p: float = Field(0.2, ge=0, le=1)
    # The local crops' own brightness, contrast, saturation and hue spreads (DINO-MC: SimCLR's
    # colour distortion, 0.8, 0.8, 0.8, 0.2); None: the values above. Brightness and contrast
    # also drive the optical multispectral rule of the local crops.
    local_jitter: tuple[float, float, float, float] | None = None
    # White level of RGB bands (None: 255 for uint8, 65535 for uint16, 1.0 for float images).
    rgb_white: float | None = Field(None, gt=0)
    # Optical multispectral only: standard deviation of the independent per-band gain.
    band_jitter: float = Field(0.05, ge=0)
    # SAR only: probability of the rule, half-width (dB) of the offset shared by all
    # polarisations, equivalent number of looks of the added speckle (0: none), and the units of
    # the SAR bands (dB, or linear backscatter).
    sar_p: float = Field(0.8, ge=0, le=1)
    sar_offset_db: float = Field(1.0, ge=0)
    sar_looks: float = Field(10.0, ge=0)
    sar_units: Literal["db", "linear"] = "db"
    # Gaussian blur probability for the first global, the other globals and the locals (DINO:
    # 1.0, 0.1, 0.5), and its sigma range in output pixels (DINO's is meant for 224 px crops:
    # scale it down with the crop size, or textures of small images are wiped out).
    blur_p: tuple[float, float, float] = (1.0, 0.1, 0.5)
    blur_sigma: tuple[float, float] = (0.1, 2.0)
    # DINO-TP / temporal SatDINO: views from a "series" (T, C, H, W) of dates; every global crop
    # from a different date; locals all from one more date ("anchor") or each from a random one.
    # SeCo items always carry a series; fMoW items get one of their location's timestamps (each
    # date with its own metadata GSD) when the variant turns this on.
    temporal: bool = False
    temporal_locals: Literal["anchor", "random"] = "anchor"
    # iBOT / DINOv2 block masks on the global crops' patch grid: probability that a global crop
    # is masked, range of its masked fraction, smallest block in patches.
    mask_p: float = Field(0.0, ge=0, le=1)
    mask_ratio: tuple[float, float] = (0.1, 0.5)
    mask_min_patches: int = Field(4, ge=1)
    # How masked fractions are drawn: per crop, U(mask_ratio) independently; or per batch, as
    # dinov2: int(mask_p x crops) of the batch's global crops get fractions spread evenly over
    # mask_ratio (one from each of as many equal sub-ranges), the rest none (per rank).
    mask_spread: Literal["crop", "batch"] = "crop"

    @model_validator(mode="after")
    def _check(self) -> CropSettings:
        for name in ("global_scale", "local_scale"):
            low, high = getattr(self, name)
            if not 0 < low <= high <= 1:
                raise ValueError(f"{name} must satisfy 0 < low <= high <= 1, got {[low, high]}")
        low, high = self.aspect_ratio
        if not 0 < low <= high:
            raise ValueError(f"aspect_ratio must satisfy 0 < low <= high, got {[low, high]}")
        low, high = self.mask_ratio
        if not 0 <= low <= high <= 1:
            raise ValueError(f"mask_ratio must satisfy 0 <= low <= high <= 1, got {[low, high]}")
        low, high = self.blur_sigma
        if not 0 < low <= high:
            raise ValueError(f"blur_sigma must satisfy 0 < low <= high, got {[low, high]}")
        if self.local_jitter is not None:
            b, c, sat, hue = self.local_jitter
            if not (0 <= b < 1 and 0 <= c < 1 and 0 <= sat < 1 and 0 <= hue <= 0.5):
                raise ValueError("local_jitter is (brightness, contrast, saturation, hue) with the first "
                                 f"three in [0, 1) and hue in [0, 0.5], got {list(self.local_jitter)}")
        if any(not 0 <= p <= 1 for p in self.blur_p):
            raise ValueError(f"blur_p values are probabilities in [0, 1], got {list(self.blur_p)}")
        if self.local_sizes is not None:
            if len(self.local_sizes) != self.n_local:
                raise ValueError(f"local_sizes has {len(self.local_sizes)} sizes but n_local is "
                                 f"{self.n_local}: give one size per local crop")
            if any(size <= 0 for size in self.local_sizes):
                raise ValueError(f"local_sizes must be positive, got {self.local_sizes}")
        return self

    def local_sizes_or_default(self) -> list[int]:
        """The output size of every local crop position."""
        return list(self.local_sizes) if self.local_sizes is not None else [self.local_size] * self.n_local
