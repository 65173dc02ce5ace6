"""Plots of the results tables (matplotlib's Agg canvas, no display needed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from rsdino.io import atomic_path

SERIES = (("ours", "ours", "tab:blue"), ("random_init", "random init", "tab:gray"),
          ("published", "published", "tab:orange"))


def plot_ours_vs_published(csv_path: Path, out_png: Path) -> Path:
    """Grouped bar chart of one table's long CSV: ours, random init and published per cell.

    One group per (variant, dataset) row of ``csv_path`` (``rsdino.report.tables`` format); a
    missing value leaves its bar out. Written atomically to ``out_png``.
    """
    frame = pd.read_csv(csv_path)
    for column, _, _ in SERIES:
        frame[column] = pd.to_numeric(frame[column], errors="coerce")
    labels = [f"{v}\n{d}" for v, d in zip(frame["variant"], frame["dataset"], strict=True)]
    metric = str(frame["metric"].iloc[0]) if len(frame) else ""
    table = str(frame["table"].iloc[0]) if len(frame) else Path(csv_path).stem
    fig = Figure(figsize=(max(5.0, 1.1 * len(frame) + 2), 4.0), layout="constrained")
    ax = fig.add_subplot()
    x = np.arange(len(frame))
    width = 0.27
    for i, (column, label, color) in enumerate(SERIES):
        values = frame[column].to_numpy(dtype=float)
        if np.isfinite(values).any():
            ax.bar(x + (i - 1) * width, values, width, label=label, color=color)
    if len(frame) == 0 or not np.isfinite(frame[[c for c, _, _ in SERIES]].to_numpy(dtype=float)).any():
        ax.text(0.5, 0.5, "no results yet", ha="center", va="center", transform=ax.transAxes)
    else:
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    ax.set_xticks(x, labels, fontsize=7, rotation=45, ha="right", rotation_mode="anchor")
    ax.set_ylabel(f"{metric} (%)")
    ax.set_ylim(0, 100)
    ax.set_title(table)
    with atomic_path(out_png, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    return Path(out_png)
