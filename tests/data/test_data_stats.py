"""Tests for rsdino.data.stats: streaming per-band statistics equal the all-at-once numpy values."""

from __future__ import annotations

import numpy as np
import pytest

from rsdino.data.stats import compute_band_stats


def test_matches_numpy_over_all_pixels_with_mixed_sizes():
    rng = np.random.default_rng(0)
    band_means = 1000 + 100 * np.arange(3)[:, None, None]
    images = {f"img{i}": rng.normal(band_means, 5, (3, 4 + i, 6)) for i in range(5)}
    stats = compute_band_stats(list(images), reader=images.__getitem__)
    pixels = np.concatenate([im.reshape(3, -1) for im in images.values()], axis=1)
    np.testing.assert_allclose(stats["mean"], pixels.mean(axis=1), rtol=1e-12)
    np.testing.assert_allclose(stats["std"], pixels.std(axis=1), rtol=1e-9)
    assert stats["n_images"] == 5


def test_small_std_on_large_mean_is_accurate():
    images = {"a": np.array([[[1e8, 1e8 + 1]]]), "b": np.array([[[1e8 + 2, 1e8 + 3]]])}
    stats = compute_band_stats(list(images), reader=images.__getitem__)
    assert stats["std"][0] == pytest.approx(np.std([0, 1, 2, 3]), rel=1e-9)


def test_band_count_mismatch_and_empty():
    images = {"a": np.zeros((2, 2, 2)), "b": np.zeros((3, 2, 2))}
    with pytest.raises(ValueError, match="b: 3 bands"):
        compute_band_stats(["a", "b"], reader=images.__getitem__)
    with pytest.raises(ValueError):
        compute_band_stats([])
