"""Per-variant pretraining curves: losses, collapse signals and the kNN probe against step."""

import numpy as np
import pandas as pd
import pytest
from matplotlib.image import imread

from rsdino.report.plots import PROBE_COLUMN, plot_training_curves, plot_variant_curves

GREEN = (44, 160, 44)  # tab:green, the probe's line


def _history(folder, probe: bool):
    folder.mkdir(parents=True)
    steps = np.arange(1, 25)
    frame = pd.DataFrame({"step": steps, "epoch": steps / 4, "loss": 5 * 0.9 ** steps,
                          "loss_dino": 5 * 0.9 ** steps, "student_std": 0.1 + 0 * steps,
                          "teacher_entropy": 3.0 - 0.01 * steps})
    if probe:
        frame = pd.concat([pd.DataFrame({"step": [0], "epoch": [0.0]}), frame], ignore_index=True)
        frame[PROBE_COLUMN] = [20.0 + 2 * s if s % 4 == 0 else np.nan for s in frame["step"]]
    frame.to_csv(folder / "history.csv", index=False)
    return folder / "history.csv"


def _green_pixels(png) -> int:
    pixels = (imread(png)[..., :3] * 255).round().reshape(-1, 3)
    return int((np.abs(pixels - GREEN).max(axis=1) <= 2).sum())


def test_variant_curves_draw_the_probe_beside_losses_and_collapse_signals(tmp_path):
    png = plot_variant_curves(_history(tmp_path / "dino_a", probe=True), tmp_path / "curves_dino_a.png")
    height, width = imread(png).shape[:2]
    assert width <= 2000 and height >= 300
    assert _green_pixels(png) > 100
    bare = plot_variant_curves(_history(tmp_path / "dino_b", probe=False), tmp_path / "curves_dino_b.png")
    assert _green_pixels(bare) == 0  # "no kNN probe": no curve drawn


def test_overview_has_a_probe_panel_and_fits_a_screen(tmp_path):
    histories = [_history(tmp_path / "a", probe=True), _history(tmp_path / "b", probe=False)]
    png = plot_training_curves(histories, tmp_path / "training_curves.png")
    assert imread(png).shape[1] <= 2000


def test_a_history_without_epochs_is_named(tmp_path):
    bad = tmp_path / "v" / "history.csv"
    bad.parent.mkdir()
    bad.write_text("step,loss\n1,2.0\n")
    with pytest.raises(ValueError, match=r"v/history.csv.*epoch"):
        plot_variant_curves(bad, tmp_path / "x.png")
