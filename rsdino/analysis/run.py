"""The ``analyses`` evaluation job: PCA maps, feature matching and CLS attention for a few images."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from rsdino.analysis.attention import plot_attention
from rsdino.analysis.matching import mutual_nearest_neighbours, plot_matches
from rsdino.analysis.pca import two_step_pca
from rsdino.evaluate.context import EvaluationContext
from rsdino.tracking import Tracker


def _pca_figure(images: list[np.ndarray], rgb: torch.Tensor, out_png: Path) -> Path:
    from matplotlib.figure import Figure

    from rsdino.io import atomic_path

    fig = Figure(figsize=(1.8 * len(images), 3.6), layout="constrained")
    axes = fig.subplots(2, len(images), squeeze=False)
    for i, image in enumerate(images):
        axes[0, i].imshow(image)
        axes[1, i].imshow(rgb[i].numpy(), interpolation="nearest")
        axes[0, i].set_axis_off()
        axes[1, i].set_axis_off()
    fig.suptitle("two-step PCA of patch tokens", fontsize=9)
    with atomic_path(out_png, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    return Path(out_png)


def run_analyses(context: EvaluationContext, settings: Any, tracker: Tracker) -> dict[str, Any]:
    """Protocol ``analyses``: ``write_analyses`` on the test part of the split.

    The PNGs go to ``context.artifact_dir`` (else ``<prepared_dir>/analyses``).
    """
    dataset = context.open_part(settings, "test")
    out_dir = context.artifact_dir or Path(context.prepared_dir) / "analyses"
    return write_analyses(context.model_dir, dataset, settings, tracker, out_dir=Path(out_dir),
                          device=context.device)


@torch.no_grad()
def write_analyses(model_dir: Path, dataset: Dataset, settings: Any, tracker: Tracker, *, out_dir: Path,
                   device: str | torch.device = "cpu") -> dict[str, Any]:
    """Write ``pca.png``, ``matches.png`` and ``attention_<i>.png`` to ``out_dir`` and log them.

    The first ``settings.n_images`` images of a seeded permutation of ``dataset`` are normalised with
    the model's statistics and resized to ``settings.image_size`` (default the model's size).

    Returns:
        ``{"metrics": {"foreground_fraction", "mutual_matches", "matches_same_class"}}``: the share
        of foreground patches, the mean number of mutual nearest neighbours between consecutive
        images, and the same between images of one class (NaN when no two selected images share one).
    """
    from rsdino.evaluate.features import _Collate, with_dataset_statistics
    from rsdino.evaluate.knn import _load_backbone
    from rsdino.evaluate.retrieval import _rgb
    from rsdino.evaluate.tokens import cls_attention, is_vit, patch_tokens

    model, meta = _load_backbone(Path(model_dir))
    meta = with_dataset_statistics(meta, dataset)
    model.eval().to(device)
    size = settings.image_size or meta.get("img_size")
    gen = torch.Generator().manual_seed(settings.seed)
    chosen = torch.randperm(len(dataset), generator=gen)[:settings.n_images].tolist()
    items = [dataset[i] for i in chosen]
    images, labels = _Collate(meta["mean"], meta["std"], size)(items)
    shown = [_rgb(torch.nn.functional.interpolate(torch.as_tensor(item["image"])[None].float(),
                                                  size=(size, size), mode="bilinear")[0], (0, 1, 2))
             if torch.as_tensor(item["image"]).shape[0] >= 3 else
             _rgb(torch.as_tensor(item["image"]).float(), (0, 0, 0)) for item in items]
    if meta.get("bands") and len(meta["bands"]) > 3:  # multispectral: show B4, B3, B2 when present
        names = list(meta["bands"])
        rgb_bands = [names.index(b) for b in ("B04", "B03", "B02") if b in names]
        if len(rgb_bands) == 3:
            shown = [_rgb(torch.nn.functional.interpolate(torch.as_tensor(item["image"])[None].float(),
                                                          size=(size, size), mode="bilinear")[0], rgb_bands)
                     for item in items]
    tokens, grid = patch_tokens(model, images.to(device))
    tokens = tokens.cpu()
    out_dir = Path(out_dir)
    foreground, rgb = two_step_pca(tokens, grid, settings.foreground_threshold)
    pngs = [_pca_figure(shown, rgb, out_dir / "pca.png")]
    counts, same = [], []
    for i in range(len(items) - 1):
        pairs, _ = mutual_nearest_neighbours(tokens[i], tokens[i + 1])
        counts.append(len(pairs))
        if i == 0:
            pngs.append(plot_matches(shown[0], shown[1], pairs, grid, out_dir / "matches.png"))
    for i in range(len(items)):
        for j in range(i + 1, len(items)):
            if int(labels[i]) == int(labels[j]):
                same.append(len(mutual_nearest_neighbours(tokens[i], tokens[j])[0]))
    if is_vit(model) and getattr(model, "has_class_token", False):
        attention, _ = cls_attention(model, images[:2].to(device))
        for i in range(attention.shape[0]):
            pngs.append(plot_attention(shown[i], attention[i].cpu(), out_dir / f"attention_{i}.png",
                                       title=f"CLS attention, image {i}"))
    for png in pngs:
        tracker.log_artifact(png, artifact_path="analyses")
    metrics = {"foreground_fraction": float(foreground.float().mean()),
               "mutual_matches": float(np.mean(counts)) if counts else float("nan"),
               "matches_same_class": float(np.mean(same)) if same else float("nan")}
    metrics = {k: v for k, v in metrics.items() if v == v}  # NaN is not JSON
    tracker.log_metrics(metrics)
    return {"metrics": metrics, "baselines": {}}
