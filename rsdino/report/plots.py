"""Plots of the results tables (matplotlib's Agg canvas, no display needed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from rsdino.io import atomic_path

TRAINING_CURVES = "training_curves.png"
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


CURVE_PANELS = (("loss", "total loss"), ("student_std", "student std (collapse: → 0)"),
                ("teacher_entropy", "teacher entropy (collapse: → 0 or log K)"), ("lr", "learning rate"))


def plot_training_curves(histories: list[Path], out_png: Path) -> Path:
    """Training curves of every variant, one panel per signal and one line per variant.

    ``histories`` are the ``history.csv`` files of ``rsdino.train.pretrain`` (one row per step;
    the variant's name is the file's folder). Panels: total loss, student std, teacher entropy and
    learning rate against epochs; a signal a file lacks is left out of its panel. A file that is not
    such a CSV raises ``ValueError`` naming it. Written atomically to ``out_png``.
    """
    frames: dict[str, pd.DataFrame] = {}
    for path in histories:
        try:
            frame = pd.read_csv(path)
        except (OSError, ValueError) as error:
            raise ValueError(f"{path}: not a readable training history CSV ({error})") from error
        if "epoch" not in frame.columns:
            raise ValueError(f"{path}: training history has no 'epoch' column "
                             f"(columns: {list(frame.columns)})")
        frames[Path(path).parent.name] = frame
    fig = Figure(figsize=(11.0, 7.0), layout="constrained")
    axes = fig.subplots(2, 2).flatten()
    for ax, (column, title) in zip(axes, CURVE_PANELS, strict=True):
        for variant, frame in frames.items():
            if column in frame.columns:
                ax.plot(frame["epoch"], frame[column], linewidth=1, label=variant)
        ax.set(title=title, xlabel="epoch")
        ax.grid(alpha=0.3)
        if not ax.lines:
            ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes)
    if frames:
        handles, labels = axes[0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="outside right upper", fontsize=8)
    fig.suptitle("Pretraining curves")
    with atomic_path(out_png, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    return Path(out_png)
