"""Plots of the results tables (matplotlib's Agg canvas, no display needed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from rsdino.io import atomic_path

TRAINING_CURVES = "training_curves.png"
#: One PNG per pretrained variant: its losses, collapse signals and kNN-probe accuracy against step.
VARIANT_CURVES = "curves_{variant}.png"
PROBE_COLUMN = "knn_probe_top1"  # rsdino.train.probe.PROBE_METRIC (kept torch-free here)
SERIES = (("ours", "ours", "tab:blue"), ("random_init", "random init", "tab:gray"),
          ("published", "published", "tab:orange"))


MAX_WIDTH_PX = 2000  # every plot fits a screen
_DPI = 120


def plot_ours_vs_published(csv_path: Path, out_png: Path) -> Path:
    """Grouped bar charts of one table's long CSV: ours, random init and published per cell.

    One panel per (protocol, metric) of ``csv_path`` (``rsdino.report.tables`` format), titled with
    the table, the protocol and the metric, stacked vertically; one group of bars per (variant,
    dataset) row; a missing value leaves its bar out; a "✗" above a group marks a cell where
    pretraining does not beat random init. At most ``MAX_WIDTH_PX`` wide (bars get narrower, labels
    smaller). Written atomically to ``out_png``.
    """
    frame = pd.read_csv(csv_path, dtype={"protocol": str})
    for column, _, _ in SERIES:
        frame[column] = pd.to_numeric(frame[column], errors="coerce")
    if "protocol" not in frame.columns:
        frame["protocol"] = ""
    frame["protocol"] = frame["protocol"].fillna("")
    table = str(frame["table"].iloc[0]) if len(frame) else Path(csv_path).stem
    groups = list(frame.groupby(["protocol", "metric"], sort=False)) if len(frame) else []
    widest = max((len(g) for _, g in groups), default=1)
    width = min(MAX_WIDTH_PX / _DPI, max(6.0, 0.55 * widest + 2.5))
    fig = Figure(figsize=(width, 3.6 * max(1, len(groups))), layout="constrained")
    axes = fig.subplots(max(1, len(groups)), 1, squeeze=False)[:, 0]
    if not groups:
        axes[0].text(0.5, 0.5, "no results yet", ha="center", va="center", transform=axes[0].transAxes)
        axes[0].set_title(table)
    fontsize = 7 if widest <= 40 else 5
    for ax, ((protocol, metric), group) in zip(axes, groups, strict=False):
        labels = [f"{v}\n{d}" for v, d in zip(group["variant"], group["dataset"], strict=True)]
        x = np.arange(len(group))
        bar = 0.27
        values = group[[c for c, _, _ in SERIES]].to_numpy(dtype=float)
        for i, (_, label, color) in enumerate(SERIES):
            if np.isfinite(values[:, i]).any():
                ax.bar(x + (i - 1) * bar, values[:, i], bar, label=label, color=color)
        for xi, (ours, random_init) in enumerate(values[:, :2]):
            if np.isfinite(ours) and np.isfinite(random_init) and ours <= random_init:
                ax.text(xi, min(97.0, max(ours, random_init) + 2), "✗", ha="center", color="tab:red")
        if np.isfinite(values).any():
            ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
        else:
            ax.text(0.5, 0.5, "no results yet", ha="center", va="center", transform=ax.transAxes)
        ax.set_xticks(x, labels, fontsize=fontsize, rotation=45, ha="right", rotation_mode="anchor")
        ax.set_ylabel(f"{metric} (%)")
        ax.set_ylim(0, 100)
        ax.set_title(f"{table}: {protocol or 'protocol unknown'}, {metric}", fontsize=9)
    with atomic_path(out_png, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=_DPI)
    return Path(out_png)


CURVE_PANELS = (("loss", "total loss"), ("student_std", "student std (collapse: → 0)"),
                ("teacher_entropy", "teacher entropy (collapse: → 0 or log K)"),
                (PROBE_COLUMN, "kNN probe top-1 (%) on held-out images"), ("lr", "learning rate"))


def read_history(path: Path) -> pd.DataFrame:
    """One ``history.csv``; a file that is not such a CSV raises ``ValueError`` naming it."""
    try:
        frame = pd.read_csv(path)
    except (OSError, ValueError) as error:
        raise ValueError(f"{path}: not a readable training history CSV ({error})") from error
    if "epoch" not in frame.columns:
        raise ValueError(f"{path}: training history has no 'epoch' column "
                         f"(columns: {list(frame.columns)})")
    return frame


def plot_training_curves(histories: list[Path], out_png: Path) -> Path:
    """Training curves of every variant, one panel per signal and one line per variant.

    ``histories`` are the ``history.csv`` files of ``rsdino.train.pretrain`` (one row per step;
    the variant's name is the file's folder). Panels: total loss, student std, teacher entropy,
    kNN-probe top-1 accuracy (measured every few steps; points joined) and learning rate against
    epochs; a signal a file lacks is left out of its panel. A file that is not such a CSV raises
    ``ValueError`` naming it. Written atomically to ``out_png`` (1,650 px wide).
    """
    frames = {Path(path).parent.name: read_history(path) for path in histories}
    fig = Figure(figsize=(15.0, 7.5), layout="constrained")
    axes = fig.subplots(2, 3).flatten()
    axes[-1].set_axis_off()
    for ax, (column, title) in zip(axes, CURVE_PANELS, strict=False):
        for variant, frame in frames.items():
            if column in frame.columns:
                points = frame[["epoch", column]].dropna()
                ax.plot(points["epoch"], points[column], linewidth=1, label=variant,
                        marker="." if column == PROBE_COLUMN else None)
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


def plot_variant_curves(history: Path, out_png: Path) -> Path:
    """One variant's pretraining against step: losses, collapse signals and the kNN probe.

    Three panels of ``history`` (a ``history.csv``; the variant is its folder's name): every
    ``loss*`` column; student std and teacher entropy (collapse shows as either falling to 0, or
    the entropy rising to log K); the kNN-probe top-1 accuracy in percent (``knn_probe_top1``, with
    its step-0 value, the random-init point), or "no kNN probe" when the variant has none. Written
    atomically to ``out_png`` (1,320 px wide).
    """
    frame = read_history(history)
    variant = Path(history).parent.name
    steps = frame["step"] if "step" in frame.columns else frame.index
    fig = Figure(figsize=(12.0, 3.6), layout="constrained")
    loss_ax, collapse_ax, probe_ax = fig.subplots(1, 3)
    for column in (c for c in frame.columns if c == "loss" or c.startswith("loss_")):
        loss_ax.plot(steps, frame[column], linewidth=1, label=column)
    loss_ax.set(title="losses", xlabel="step")
    for column, color in (("student_std", "tab:blue"), ("teacher_entropy", "tab:red")):
        if column in frame.columns:
            collapse_ax.plot(steps, frame[column], linewidth=1, color=color, label=column)
    collapse_ax.set(title="collapse: std → 0, entropy → 0 or log K", xlabel="step")
    if PROBE_COLUMN in frame.columns and frame[PROBE_COLUMN].notna().any():
        points = frame.assign(step=steps)[["step", PROBE_COLUMN]].dropna()
        probe_ax.plot(points["step"], points[PROBE_COLUMN], marker="o", markersize=3, color="tab:green")
        first, last = points[PROBE_COLUMN].iloc[0], points[PROBE_COLUMN].iloc[-1]
        probe_ax.axhline(first, color="tab:gray", linestyle="--", linewidth=1,
                         label=f"step {int(points['step'].iloc[0])}: {first:.1f} %")
        probe_ax.set_title(f"kNN probe top-1 (%): {first:.1f} → {last:.1f}")
    else:
        probe_ax.text(0.5, 0.5, "no kNN probe", ha="center", va="center", transform=probe_ax.transAxes)
        probe_ax.set_title("kNN probe top-1 (%)")
    probe_ax.set(xlabel="step", ylim=(0, 100))
    for ax in (loss_ax, collapse_ax, probe_ax):
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    fig.suptitle(f"{variant}: pretraining curves")
    with atomic_path(out_png, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    return Path(out_png)
