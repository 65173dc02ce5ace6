"""Every classification protocol of rsdino on the real UC Merced images, one backbone, CPU.

    python benchmarks/eval_ucmerced.py [--data ../shared/data/ucmerced] [--model MODEL_DIR]
                                       [--size 64] [--threads 1] [--finetune-epochs 1]
                                       [--out /tmp/rsdino-eval-ucmerced.json]

Reads the 2,100 UC Merced JPEGs (21 classes) and their 80/20 ``split.csv``, resized to ``--size``
px. The backbone is ``--model`` (an exported model folder, e.g. from ``rsdino pretrain`` or
``benchmarks/pretrain_ucmerced.py``) or, by default, a fixed randomly initialised ViT-S/16
(``torch.manual_seed(0)``). Features come from ``rsdino.evaluate.tokens`` (CLS, CLS of the last 4
blocks, + mean patch token). Reports, with the wall time of each:

* DINO weighted kNN (k = 10, 20; T = 0.07) and the DINOv2-RS FAISS majority kNN (k = 20);
* the logistic-regression probe (ours, L-BFGS in torch) and scikit-learn's
  ``LogisticRegression(C=1)`` on the same standardised CLS features, and their difference;
* the DINO linear probe (SGD, cosine, 100 epochs, CLS of the last 4 blocks);
* the DINOv2 linear grid (13 lrs x n in {1, 4} x avgpool, 10 epochs, best on 10 % of train);
* fine-tuning (AdamW, layer decay 0.75, flips and crops, ``--finetune-epochs`` epochs).
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from rsdino.evaluate.finetune import finetune_classifier
from rsdino.evaluate.knn import majority_knn_faiss, weighted_knn
from rsdino.evaluate.linear import (
    dino_linear_probe,
    dinov2_linear_grid,
    logistic_regression_probe,
    standardise,
)
from rsdino.evaluate.protocols import stratified_split
from rsdino.evaluate.tokens import token_features
from rsdino.models.backbones import build_backbone, load_backbone


class Images(Dataset):
    """In-memory images (N, 3, S, S) float in [0, 1] and labels, as scene-dataset items."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        self.images, self.labels = images, labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict:
        return {"image": self.images[i], "label": int(self.labels[i])}


def read_ucmerced(root: Path, size: int) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor],
                                                 list[str]]:
    """``({split: images}, {split: labels}, classes)`` from ``split.csv`` (``relpath,split``)."""
    with open(root / "split.csv", newline="") as handle:
        rows = list(csv.reader(handle))
    classes = sorted({r[0].split("/")[0] for r in rows})
    images: dict[str, list[torch.Tensor]] = {"train": [], "test": []}
    labels: dict[str, list[int]] = {"train": [], "test": []}
    for rel, split in rows:
        with Image.open(root / rel) as image:
            rgb = image.convert("RGB").resize((size, size), Image.BILINEAR)
            array = np.asarray(rgb, dtype=np.float32)
        images[split].append(torch.from_numpy(array / 255.0).permute(2, 0, 1))
        labels[split].append(classes.index(rel.split("/")[0]))
    return ({k: torch.stack(v) for k, v in images.items()},
            {k: torch.tensor(v) for k, v in labels.items()}, classes)


@torch.no_grad()
def features(model: torch.nn.Module, images: torch.Tensor, mean: torch.Tensor, std: torch.Tensor,
             variants: list[str], batch: int = 100) -> dict[str, torch.Tensor]:
    """Feature variants of normalised images, batch by batch."""
    model.eval()
    parts: dict[str, list[torch.Tensor]] = {v: [] for v in variants}
    for start in range(0, len(images), batch):
        out = token_features(model, (images[start:start + batch] - mean) / std, variants)
        for v in variants:
            parts[v].append(out[v])
    return {v: torch.cat(p) for v, p in parts.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data/ucmerced"))
    parser.add_argument("--model", type=Path, default=None,
                        help="exported model folder (default: random ViT-S/16)")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--finetune-epochs", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path("/tmp/rsdino-eval-ucmerced.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    start = time.perf_counter()
    images, labels, classes = read_ucmerced(args.data, args.size)
    n_classes = len(classes)
    mean = images["train"].mean(dim=(0, 2, 3)).view(1, 3, 1, 1)
    std = images["train"].std(dim=(0, 2, 3)).view(1, 3, 1, 1)
    results: dict[str, dict] = {"setup": {"read_s": time.perf_counter() - start, "size": args.size,
                                          "n_train": len(labels["train"]), "n_test": len(labels["test"])}}

    def model_factory() -> torch.nn.Module:
        if args.model is not None:
            return load_backbone(args.model)[0]
        torch.manual_seed(0)
        return build_backbone("vit_small_patch16", 3, args.size)

    model = model_factory()
    results["setup"]["model"] = str(args.model or "random-init vit_small_patch16 (seed 0)")
    variants = ["cls", "cls_n4", "cls_n1_avgpool", "cls_n4_avgpool", "cls_n1"]
    t = time.perf_counter()
    feats = {split: features(model, images[split], mean, std, variants) for split in ("train", "test")}
    results["setup"]["features_s"] = time.perf_counter() - t
    train_y, test_y = labels["train"], labels["test"]

    def timed(name: str, fn) -> None:  # noqa: ANN001 - a zero-argument callable
        t0 = time.perf_counter()
        out = fn()
        out["seconds"] = time.perf_counter() - t0
        results[name] = out
        print(f"{name}: {json.dumps(out, default=float)}", flush=True)

    timed("knn_weighted", lambda: weighted_knn(feats["train"]["cls"], train_y, feats["test"]["cls"], test_y,
                                               ks=[10, 20], n_classes=n_classes))
    timed("knn_faiss_majority", lambda: majority_knn_faiss(
        feats["train"]["cls"], train_y, feats["test"]["cls"], test_y, k=20, n_classes=n_classes))
    timed("linear_logistic_ours", lambda: logistic_regression_probe(
        feats["train"]["cls"], train_y, feats["test"]["cls"], test_y, c=1.0, n_classes=n_classes))

    def sklearn_probe() -> dict:
        from sklearn.linear_model import LogisticRegression

        train, test = standardise(feats["train"]["cls"], feats["test"]["cls"])
        clf = LogisticRegression(C=1.0, max_iter=1000).fit(train.numpy(), train_y.numpy())
        return {"top1": 100.0 * float((clf.predict(test.numpy()) == test_y.numpy()).mean())}

    timed("linear_logistic_sklearn", sklearn_probe)
    results["linear_logistic_difference"] = (results["linear_logistic_ours"]["top1"]
                                             - results["linear_logistic_sklearn"]["top1"])
    print(f"logistic ours - sklearn: {results['linear_logistic_difference']:+.3f} points")
    timed("linear_dino", lambda: dino_linear_probe(
        feats["train"]["cls_n4"], train_y, feats["test"]["cls_n4"], test_y, epochs=100, batch_size=256,
        n_classes=n_classes))
    keep, val = stratified_split(train_y, 0.1, seed=0)
    grid_variants = ["cls_n1", "cls_n1_avgpool", "cls_n4", "cls_n4_avgpool"]
    timed("linear_dinov2", lambda: {k: v for k, v in dinov2_linear_grid(
        {v: feats["train"][v][keep] for v in grid_variants}, train_y[keep],
        {v: feats["train"][v][val] for v in grid_variants}, train_y[val],
        {v: feats["test"][v] for v in grid_variants}, test_y, epochs=10, batch_size=128,
        n_classes=n_classes).items() if k != "grid"})
    timed("finetune", lambda: finetune_classifier(
        model_factory(), Images(images["train"], train_y), Images(images["test"], test_y),
        n_classes=n_classes,
        mean=mean.flatten().tolist(), std=std.flatten().tolist(), image_size=args.size,
        epochs=args.finetune_epochs, lr=5e-4, layer_decay=0.75, warmup_epochs=1, batch_size=64,
        progress=False))
    results["total_s"] = time.perf_counter() - start
    args.out.write_text(json.dumps(results, indent=2, default=float))
    print(f"total {results['total_s']:.1f} s; written {args.out}")


if __name__ == "__main__":
    main()
