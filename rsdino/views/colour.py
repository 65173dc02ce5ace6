"""Band-aware photometric operations on a batch of views ``(V, C, S, S)`` float32 in native units.

Every operation takes per-view parameters (one entry per view; identity values for views the
operation skips) so the views of one size are processed together. Which rule a band gets depends
on its modality (``rsdino.views.builder``); an RGB-only operation never touches other bands.

**RGB** (``rgb_colour``; DINO's ``ColorJitter(0.4, 0.4, 0.2, 0.1)`` then ``RandomGrayscale``), on
bands in R, G, B order with values in ``[0, white]``. Each operation is linear in the pixel
values, so the jitter of one view, in its random order, is composed into one affine colour map
``y = A x + o`` applied by one batched product, then clamped once to ``[0, white]``
(torchvision clamps after each operation; the two differ only on saturated pixels):

    brightness f:  x -> f x
    contrast f:    x -> f x + (1 - f) m,  m = mean over pixels of gray(current image)
    saturation f:  x -> f x + (1 - f) gray(x) 1
    hue h:         rotation by 2 pi h about the gray axis (1, 1, 1)  (a linear stand-in for the
                   HSV hue shift: it keeps the mean of R, G, B and the chroma magnitude)
    grayscale:     x -> gray(x) 1,  gray(x) = 0.2989 R + 0.587 G + 0.114 B

``solarize``: ``x -> white - x`` where ``x >= 128 / 255 white`` (DINO's PIL solarisation).

**Optical multispectral** (``optical_colour``; reflectance or DN), per view with probability p::

    mu_c = spatial mean of band c of the view
    x'_c = b (1 + e_c) (mu_c + a (x_c - mu_c))

``b ~ U(1 - brightness, 1 + brightness)`` (illumination: all bands scaled by one factor, the shape
of the spectral signature is kept), ``a ~ U(1 - contrast, 1 + contrast)`` shared by all bands,
``e_c ~ N(0, band_jitter^2)`` a small independent per-band gain (calibration).

**SAR** (``sar_colour``; dB or linear backscatter), per view with probability p::

    dB:      x'_c = x_c + d + 10 log10(g_c)
    linear:  x'_c = x_c 10^(d / 10) g_c

``d ~ U(-offset, offset)`` dB is one calibration/incidence offset shared by all polarisations,
``g_c ~ Gamma(L, 1 / L)`` (mean 1) is multiplicative speckle of ``L`` looks, independent per pixel
and band (``L = 0``: no speckle).
"""

from __future__ import annotations

import math

import numpy as np
import torch

GRAY = (0.2989, 0.587, 0.114)  # torchvision's weights


_K = 1 / math.sqrt(3.0)
_CROSS = np.array([[0.0, -_K, _K], [_K, 0.0, -_K], [-_K, _K, 0.0]])  # cross product with the gray axis
_OUTER = np.full((3, 3), 1 / 3)  # projection on the gray axis
_EYE = np.eye(3)
_WEIGHTS = np.array(GRAY)
_TO_GRAY = np.ones((3, 1)) * _WEIGHTS[None, :]  # x -> gray(x) (1, 1, 1)


def _hue_matrices(angle: np.ndarray) -> np.ndarray:
    """Rotations ``(V, 3, 3)`` by ``angle`` (radians) about the gray axis (Rodrigues' formula)."""
    cos, sin = np.cos(angle)[:, None, None], np.sin(angle)[:, None, None]
    return cos * _EYE + sin * _CROSS + (1 - cos) * _OUTER


def jitter_affine(means: np.ndarray, factors: np.ndarray, order: np.ndarray,
                  gray: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The affine colour map ``y = A x + o`` of each view's jitter (in its order) then grayscale.

    Args:
        means: ``(V, 3)`` mean R, G, B of each view (for the contrast operation).
        factors: ``(V, 4)`` brightness, contrast, saturation factors and hue shift (fraction of a
            turn); ``(1, 1, 1, 0)`` is the identity.
        order: ``(V, 4)`` a permutation of ``0..3`` per view (0 brightness, 1 contrast, 2 saturation,
            3 hue): the order of the operations.
        gray: ``(V,)`` bool, convert to grayscale after the jitter.

    Returns:
        ``A (V, 3, 3)`` and ``o (V, 3)``.
    """
    n = means.shape[0]
    weights, to_gray = _WEIGHTS, _TO_GRAY
    brightness, contrast, saturation, hue = factors.T[:, :, None, None]
    candidates = np.stack([
        brightness * _EYE,
        contrast * _EYE,
        saturation * _EYE + (1 - saturation) * to_gray,
        _hue_matrices(2 * math.pi * factors[:, 3]),
    ], axis=1)  # (V, 4, 3, 3)
    contrast = factors[:, 1]
    matrix, offset = np.repeat(_EYE[None], n, axis=0), np.zeros((n, 3))
    rows = np.arange(n)
    for step in range(4):
        op = order[:, step]
        level = ((matrix @ means[:, :, None])[:, :, 0] + offset) @ weights  # mean gray now
        step_matrix = candidates[rows, op]
        matrix = step_matrix @ matrix
        offset = (step_matrix @ offset[:, :, None])[:, :, 0]
        offset += ((op == 1) * (1 - contrast) * level)[:, None]
    matrix = np.where(gray[:, None, None], to_gray @ matrix, matrix)
    offset = np.where(gray[:, None], offset @ to_gray.T, offset)
    return matrix, offset


def rgb_colour(views: torch.Tensor, factors: np.ndarray, order: np.ndarray, gray: np.ndarray, white: float,
               scale: np.ndarray | None = None, shift: np.ndarray | None = None) -> torch.Tensor:
    """DINO's colour jitter and grayscale on RGB views, as one affine map per view.

    Args:
        views: ``(V, 3, S, S)`` float R, G, B views in ``[0, white]``.
        factors: As in ``jitter_affine``.
        order: As in ``jitter_affine``.
        gray: As in ``jitter_affine``.
        white: The white level.
        scale: Optional per-band ``1 / std``: the result is then standardised,
            ``clamp(A x + o, 0, white) * scale + shift``, in the same pass.
        shift: Optional per-band ``-mean / std`` (with ``scale``).

    Returns:
        The new views, clamped to ``[0, white]`` (then standardised when ``scale`` is given).
    """
    matrix, offset = jitter_affine(views.mean(dim=(-2, -1)).double().numpy(), factors, order, gray)
    return apply_affine(views, matrix, offset, white, scale, shift)


def apply_affine(views: torch.Tensor, matrix: np.ndarray, offset: np.ndarray, white: float,
                 scale: np.ndarray | None = None, shift: np.ndarray | None = None) -> torch.Tensor:
    """``clamp(A x + o, 0, white)`` per view (``jitter_affine``'s maps), optionally standardised.

    Args:
        views: ``(V, 3, S, S)`` float R, G, B views in ``[0, white]``.
        matrix: ``(V, 3, 3)`` the maps' ``A``.
        offset: ``(V, 3)`` the maps' ``o``.
        white: The white level.
        scale: Optional per-band ``1 / std`` (see ``rgb_colour``).
        shift: Optional per-band ``-mean / std``.
    """
    n = views.shape[0]
    low, high = np.zeros(3), np.full(3, float(white))
    if scale is not None and shift is not None:
        matrix, offset = scale[None, :, None] * matrix, scale * offset + shift
        low, high = shift, white * scale + shift
    matrix_t = torch.from_numpy(matrix.astype(np.float32))
    offset_t = torch.from_numpy(offset.astype(np.float32)[:, :, None])
    out = torch.einsum("vij,vjp->vip", matrix_t, views.reshape(n, 3, -1)).add_(offset_t)
    low_t = torch.from_numpy(low.astype(np.float32)[None, :, None])
    high_t = torch.from_numpy(high.astype(np.float32)[None, :, None])
    # (``clamp_`` with tensor bounds is several times slower than these two.)
    torch.maximum(out, low_t, out=out)
    torch.minimum(out, high_t, out=out)
    return out.view_as(views)


def solarize(views: torch.Tensor, apply: torch.Tensor, white: float, scale: np.ndarray | None = None,
             shift: np.ndarray | None = None) -> torch.Tensor:
    """``x -> white - x`` for ``x >= 128 / 255 white`` on the views where ``apply (V,)`` is True.

    With ``scale`` and ``shift`` the views are standardised (``x * scale + shift``) and the same
    map is applied in those units.
    """
    scale = np.ones(3) if scale is None else scale
    shift = np.zeros(3) if shift is None else shift
    threshold = torch.from_numpy(white * 128 / 255 * scale + shift).to(torch.float32).view(3, 1, 1)
    mirror = torch.from_numpy(white * scale + 2 * shift).to(torch.float32).view(3, 1, 1)
    out = views.clone()
    for v in apply.nonzero().flatten().tolist():
        view = out[v]
        out[v] = torch.where(view >= threshold, mirror - view, view)
    return out


def optical_colour(views: torch.Tensor, brightness: torch.Tensor, contrast: torch.Tensor,
                   gains: torch.Tensor) -> torch.Tensor:
    """The optical multispectral rule of the module docstring.

    Args:
        views: ``(V, C, S, S)`` views in native units.
        brightness: ``(V,)`` factors ``b`` (1 leaves a view unchanged).
        contrast: ``(V,)`` factors ``a`` (1 leaves a view unchanged).
        gains: ``(V, C)`` per-band gains ``1 + e_c`` (1 leaves a band unchanged).
    """
    mu = views.mean(dim=(-2, -1), keepdim=True)
    a = contrast[:, None, None, None]
    scale = (brightness[:, None] * gains)[:, :, None, None]
    return (mu + a * (views - mu)) * scale


def sar_colour(views: torch.Tensor, offset_db: torch.Tensor, apply: torch.Tensor, looks: float,
               units: str) -> torch.Tensor:
    """The SAR rule of the module docstring.

    Args:
        views: ``(V, C, S, S)`` backscatter views.
        offset_db: ``(V,)`` offsets ``d`` in dB (0 leaves the level unchanged).
        apply: ``(V,)`` bool, the views that get speckle.
        looks: Equivalent number of looks of the speckle (0: none).
        units: ``"db"`` or ``"linear"``.
    """
    if units not in ("db", "linear"):
        raise ValueError(f"SAR units must be 'db' or 'linear', got {units!r}")
    speckle = None
    if looks > 0 and bool(apply.any()):
        rate = torch.tensor(float(looks))
        gamma = torch.distributions.Gamma(rate, rate).sample(views.shape)
        speckle = torch.where(apply[:, None, None, None], gamma, torch.ones(()))
    shift = offset_db[:, None, None, None]
    if units == "db":
        out = views + shift
        return out + 10 * torch.log10(speckle.clamp_min(1e-12)) if speckle is not None else out
    out = views * torch.pow(10.0, shift / 10)
    return out * speckle if speckle is not None else out
