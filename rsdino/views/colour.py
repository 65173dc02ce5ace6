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


def jitter_maps(factors: np.ndarray, order: np.ndarray, gray: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each view's jitter (in its order) then grayscale as ``y = A x + K m``, from the draws alone.

    Every operation is linear in the pixels and in ``m``, the view's mean R, G, B (the contrast
    operation pulls towards the mean gray of the current image, ``w . (A_prev m + K_prev m)``), so
    ``A`` and ``K`` need no pixel: a DataLoader worker computes them, the device applies them.

    Args:
        factors: ``(V, 4)`` brightness, contrast, saturation factors and hue shift (fraction of a
            turn); ``(1, 1, 1, 0)`` is the identity.
        order: ``(V, 4)`` a permutation of ``0..3`` per view (0 brightness, 1 contrast, 2 saturation,
            3 hue): the order of the operations.
        gray: ``(V,)`` bool, convert to grayscale after the jitter.

    Returns:
        ``A (V, 3, 3)`` and ``K (V, 3, 3)``, float64.
    """
    n = factors.shape[0]
    brightness, contrast, saturation, _ = factors.T[:, :, None, None]
    candidates = np.stack([
        brightness * _EYE,
        contrast * _EYE,
        saturation * _EYE + (1 - saturation) * _TO_GRAY,
        _hue_matrices(2 * math.pi * factors[:, 3]),
    ], axis=1)  # (V, 4, 3, 3)
    pull = (1 - factors[:, 1])[:, None, None] * np.ones((3, 1))  # (V, 3, 1): contrast's pull to gray
    matrix, means_map = np.repeat(_EYE[None], n, axis=0), np.zeros((n, 3, 3))
    rows = np.arange(n)
    for step in range(4):
        op = order[:, step]
        level = _WEIGHTS @ (matrix + means_map)  # (V, 3): m -> mean gray of the current image
        step_matrix = candidates[rows, op]
        matrix = step_matrix @ matrix
        contrast_pull = np.where((op == 1)[:, None, None], pull * level[:, None, :], 0.0)
        means_map = step_matrix @ means_map + contrast_pull
    matrix = np.where(gray[:, None, None], _TO_GRAY @ matrix, matrix)
    means_map = np.where(gray[:, None, None], _TO_GRAY @ means_map, means_map)
    return matrix, means_map


def map_offsets(means_map: torch.Tensor, means: torch.Tensor) -> torch.Tensor:
    """``o = K m`` per view, ``(V, 3, 3) x (V, 3) -> (V, 3)``.

    By elementwise products: the same bits for a view alone or in any batch.
    """
    return means_map[:, :, 0] * means[:, None, 0] + means_map[:, :, 1] * means[:, None, 1] \
        + means_map[:, :, 2] * means[:, None, 2]


def jitter_affine(means: np.ndarray, factors: np.ndarray, order: np.ndarray,
                  gray: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The affine colour map ``y = A x + o`` of each view's jitter (in its order) then grayscale.

    ``jitter_maps``'s ``A`` and ``o = K m`` with ``means (V, 3)`` the mean R, G, B of each view.
    Returns ``A (V, 3, 3)`` and ``o (V, 3)``.
    """
    matrix, means_map = jitter_maps(factors, order, gray)
    offset = map_offsets(torch.from_numpy(means_map), torch.from_numpy(np.asarray(means, dtype=np.float64)))
    return matrix, offset.numpy()


def rgb_colour(views: torch.Tensor, factors: np.ndarray, order: np.ndarray, gray: np.ndarray, white: float,
               scale: np.ndarray | None = None, shift: np.ndarray | None = None) -> torch.Tensor:
    """DINO's colour jitter and grayscale on RGB views, as one affine map per view.

    Args:
        views: ``(V, 3, S, S)`` float R, G, B views in ``[0, white]``.
        factors: As in ``jitter_maps``.
        order: As in ``jitter_maps``.
        gray: As in ``jitter_maps``.
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
    whites = torch.full((n,), float(white), dtype=torch.float64)
    return apply_affine_rows(views, _float64(matrix), _float64(offset), whites, _float64(scale),
                             _float64(shift))


def _float64(array: np.ndarray | torch.Tensor | None) -> torch.Tensor | None:
    return None if array is None else torch.as_tensor(array, dtype=torch.float64)


def apply_affine_rows(views: torch.Tensor, matrix: torch.Tensor, offset: torch.Tensor, white: torch.Tensor,
                      scale: torch.Tensor | None = None, shift: torch.Tensor | None = None) -> torch.Tensor:
    """``apply_affine`` with float64 tensors and one white level per view (``white (V,)``), on any device.

    The 3x3 product is three elementwise multiply-adds per band, so a view gets the same bits alone
    or in any batch (the device views rely on it).
    """
    device = views.device
    matrix, offset, white = (t.to(device=device, dtype=torch.float64) for t in (matrix, offset, white))
    if scale is not None and shift is not None:
        scale, shift = (t.to(device=device, dtype=torch.float64) for t in (scale, shift))
    low = torch.zeros(views.shape[0], 3, dtype=torch.float64, device=device)
    high = white[:, None].expand(-1, 3)
    if scale is not None and shift is not None:
        matrix, offset = scale[None, :, None] * matrix, scale * offset + shift
        low, high = shift.expand_as(low), white[:, None] * scale + shift
    a = matrix.to(device=device, dtype=torch.float32)[:, :, :, None, None]
    o = offset.to(device=device, dtype=torch.float32)[:, :, None, None]
    out = torch.addcmul(o, views[:, None, 0], a[:, :, 0])
    out.addcmul_(views[:, None, 1], a[:, :, 1]).addcmul_(views[:, None, 2], a[:, :, 2])
    torch.maximum(out, low.to(device=device, dtype=torch.float32)[:, :, None, None], out=out)
    torch.minimum(out, high.to(device=device, dtype=torch.float32)[:, :, None, None], out=out)
    return out


def solarize(views: torch.Tensor, apply: torch.Tensor, white: float | torch.Tensor,
             scale: np.ndarray | torch.Tensor | None = None,
             shift: np.ndarray | torch.Tensor | None = None) -> torch.Tensor:
    """``x -> white - x`` for ``x >= 128 / 255 white`` on the views where ``apply (V,)`` is True.

    ``white`` is one level or one per view ``(V,)``. With ``scale`` and ``shift`` the views are
    standardised (``x * scale + shift``) and the same map is applied in those units.
    """
    n = views.shape[0]
    white = white.double().cpu() if isinstance(white, torch.Tensor) else torch.full((n,), float(white),
                                                                                      dtype=torch.float64)
    scale = torch.ones(3, dtype=torch.float64) if scale is None else torch.as_tensor(scale).double().cpu()
    shift = torch.zeros(3, dtype=torch.float64) if shift is None else torch.as_tensor(shift).double().cpu()
    threshold = (white[:, None] * 128 / 255 * scale + shift).to(views.device, torch.float32).view(n, 3, 1, 1)
    mirror = (white[:, None] * scale + 2 * shift).to(views.device, torch.float32).view(n, 3, 1, 1)
    out = views.clone()
    for v in apply.cpu().nonzero().flatten().tolist():
        view = out[v]
        out[v] = torch.where(view >= threshold[v], mirror[v] - view, view)
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
               units: str, speckle: torch.Tensor | None = None) -> torch.Tensor:
    """The SAR rule of the module docstring.

    Args:
        views: ``(V, C, S, S)`` backscatter views.
        offset_db: ``(V,)`` offsets ``d`` in dB (0 leaves the level unchanged).
        apply: ``(V,)`` bool, the views that get speckle.
        looks: Equivalent number of looks of the speckle (0: none).
        units: ``"db"`` or ``"linear"``.
        speckle: The speckle ``g`` already drawn, ``(V, C, S, S)``, 1 where not applied (the device
            views); None draws it here.
    """
    if units not in ("db", "linear"):
        raise ValueError(f"SAR units must be 'db' or 'linear', got {units!r}")
    if speckle is None and looks > 0 and bool(apply.any()):
        rate = torch.tensor(float(looks))
        gamma = torch.distributions.Gamma(rate, rate).sample(views.shape)
        speckle = torch.where(apply[:, None, None, None], gamma, torch.ones(()))
    shift = offset_db[:, None, None, None]
    if units == "db":
        out = views + shift
        return out + 10 * torch.log10(speckle.clamp_min(1e-12)) if speckle is not None else out
    out = views * torch.pow(10.0, shift / 10)
    return out * speckle if speckle is not None else out
