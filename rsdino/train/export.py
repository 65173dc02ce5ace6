"""The end of a pretraining run: the model folder and the training curves.

``export_model`` writes what the meta-architecture's ``export_modules()`` names
(``rsdino.train.meta_architecture.ExportModules``): its first backbone at the folder root
(``model.safetensors``, ``model.json``, timm's ``config.json``; for self-distillation the teacher),
each other one in ``<folder>/<branch>/`` (the student), the whole branch as ``teacher.safetensors``,
then ``history.csv`` (one row per step) and ``loss.png``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from rsdino import io as rio
from rsdino.config.variants import VariantConfig
from rsdino.io import atomic_path
from rsdino.models.backbones import backbone_folder, backbone_spec, export_backbone
from rsdino.stable_files import save_safetensors
from rsdino.tracking import Tracker
from rsdino.train.meta_architecture import MetaArchitecture

#: The whole branch of the exported backbone (backbones, heads, fusion), beside it.
TEACHER_FILE = "teacher.safetensors"
HISTORY_FILE = "history.csv"  # one row per step: step, epoch and every logged metric


def export_model(model: MetaArchitecture, out_dir: Path, *, variant: VariantConfig, variant_name: str,
                 bands: list[str], mean: list[float], std: list[float], history: dict[str, list[float]],
                 steps_per_epoch: int, probed: dict[int, dict[str, float]], tracker: Tracker) -> Path:
    """Write the model folder of a trained ``model`` (see the module docstring); return its weights.

    ``bands``, ``mean`` and ``std`` are those of the training input (the exported backbones read
    them from ``ExportModules.skip_bands`` on); ``history`` and ``probed`` as in ``write_history``.
    """
    modules = model.export_modules()
    skip = modules.skip_bands
    meta = {**backbone_spec(variant.backbone, len(bands) - skip, variant.crops.global_size, variant.drop_path,
                            **modules.timm_kwargs),
            "bands": list(bands[skip:]), "method": variant.method, "variant": variant_name,
            "mean": [float(v) for v in mean[skip:]], "std": [float(v) for v in std[skip:]]}
    written = [export_backbone(backbone, out_dir if i == 0 else backbone_folder(out_dir, branch),
                               {**meta, "branch": branch})
               for i, (branch, backbone) in enumerate(modules.backbones.items())]
    whole = {k: v.detach().cpu().contiguous() for k, v in modules.whole.state_dict().items()}
    save_safetensors(whole, out_dir / TEACHER_FILE,
                     metadata={"method": variant.method, "variant": variant_name})
    tracker.log_artifact(write_history(history, steps_per_epoch, out_dir / HISTORY_FILE, probed))
    if history:
        tracker.log_artifact(plot_losses(history, steps_per_epoch, out_dir / "loss.png", variant_name))
    return written[0]


def _is_loss(name: str) -> bool:
    return name == "loss" or name.startswith("loss_")


def write_history(history: dict[str, list[float]], steps_per_epoch: int, path: Path,
                  probe: dict[int, dict[str, float]] | None = None) -> Path:
    """Write the per-step metrics as CSV, atomically.

    Columns: ``step``, ``epoch`` (= step / steps per epoch), then one per metric. With ``probe``
    (``{step: {"knn_probe_top1": %, "knn_probe_seconds": s}}``), those columns hold the probe's
    results at the steps it ran (empty elsewhere), and a first row ``step = 0`` holds the values
    before training.
    """
    n = max((len(v) for v in history.values()), default=0)
    frame = pd.DataFrame({"step": np.arange(1, n + 1), "epoch": np.arange(1, n + 1) / steps_per_epoch})
    for name, values in history.items():
        frame[name] = pd.Series(values, dtype="float64")
    if probe:
        if 0 in probe:
            frame = pd.concat([pd.DataFrame({"step": [0], "epoch": [0.0]}), frame], ignore_index=True)
        for name in dict.fromkeys(key for values in probe.values() for key in values):
            frame[name] = frame["step"].map({k: v.get(name) for k, v in probe.items()}).astype("float64")
    return rio.write_text(path, frame.to_csv(index=False))


def plot_losses(history: dict[str, list[float]], steps_per_epoch: int, path: Path, title: str) -> Path:
    """Plot every ``loss`` / ``loss_<term>`` curve against epochs as a PNG, atomically."""
    fig = Figure(figsize=(6, 4))
    ax = fig.add_subplot()
    for name, values in ((k, v) for k, v in history.items() if _is_loss(k)):
        ax.plot(np.arange(1, len(values) + 1) / steps_per_epoch, values, linewidth=1, label=name)
    ax.set(xlabel="epoch", ylabel="loss", title=title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    return path
