"""A short CPU pretraining on the real UC Merced images raises kNN accuracy above a random-init network.

    python benchmarks/pretrain_ucmerced.py [--data ../shared/data/ucmerced] [--epochs 30] [--size 64]
                                           [--threads 2] [--out /tmp/rsdino-ucmerced]

Reads the 2,100 UC Merced JPEGs (21 classes) and their 80/20 ``split.csv``, resized to ``--size`` px,
pretrains a small ViT (``vit_tiny_patch8``: ViT-Ti, 4 blocks, 8 px patches) with DINO on the training
split through ``rsdino.train.pretrain.run_pretraining`` (the pipeline's loop and views), then
compares the DINO weighted kNN (k = 20, T = 0.07, ``rsdino.evaluate.knn.weighted_knn``) of the
pretrained teacher with the same architecture at its random initialisation (the baseline), both in
this run. Prints both top-1 accuracies and the wall time. Keep it under 20 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import csv
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from rsdino.config import CropSettings, DinoLossSettings, HeadSettings, OptimSettings, VariantConfig
from rsdino.evaluate.features import extract_features
from rsdino.evaluate.knn import weighted_knn
from rsdino.models.backbones import build_backbone, load_backbone
from rsdino.tracking import NullTracker
from rsdino.train.pretrain import run_pretraining

RGB = ["R", "G", "B"]


class Images(Dataset):
    """Decoded, resized uint8 images ``(3, size, size)`` with labels."""

    def __init__(self, root: Path, rows: list[tuple[str, int]], size: int) -> None:
        self.labels = [label for _, label in rows]
        self.images = torch.stack([
            torch.from_numpy(np.array(Image.open(root / path).convert("RGB").resize((size, size),
                                                                                      Image.BILINEAR)))
            .permute(2, 0, 1).contiguous() for path, _ in rows])

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> dict:
        return {"image": self.images[index], "label": self.labels[index]}


class AsFloat(Dataset):
    """The same items with float32 images (what feature extraction expects)."""

    def __init__(self, images: Images) -> None:
        self.images = images

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> dict:
        item = self.images[index]
        return {"image": item["image"].float(), "label": item["label"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data/ucmerced"))
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("/tmp/rsdino-ucmerced"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with open(args.data / "split.csv", newline="") as handle:  # `path,split` lines, no header
        rows = [{"path": path, "split": split} for path, split in csv.reader(handle)
                if (path, split) != ("path", "split")]
    classes = sorted({row["path"].split("/")[0] for row in rows})
    split = {name: [(row["path"], classes.index(row["path"].split("/")[0])) for row in rows
                    if row["split"] == name] for name in ("train", "test")}
    tic = time.perf_counter()
    train, test = (Images(args.data, split[name], args.size) for name in ("train", "test"))
    pixels = train.images.float()
    mean = pixels.mean(dim=(0, 2, 3)).tolist()
    std = pixels.std(dim=(0, 2, 3)).tolist()
    print(f"{len(train)} train / {len(test)} test images, {len(classes)} classes, {args.size} px "
          f"(read in {time.perf_counter() - tic:.0f} s)")

    size = args.size
    variant = VariantConfig(
        method="dino", backbone="vit_tiny_patch8", pretrain_data="ucmerced", drop_path=0.1, seed=0,
        crops=CropSettings(global_size=max(8, size * 3 // 4 // 8 * 8),
                           local_size=max(8, size * 3 // 8 // 8 * 8),
                           n_global=2, n_local=4, global_scale=(0.4, 1.0), local_scale=(0.1, 0.4),
                           blur_sigma=(0.1, 0.5)),
        head=HeadSettings(out_dim=4096, hidden_dim=512, bottleneck_dim=128),
        optim=OptimSettings(epochs=args.epochs, batch_size=64, lr=0.0005 * 4, warmup_epochs=3,
                            freeze_last_layer_epochs=1, momentum_teacher=0.99),
        loss=DinoLossSettings(warmup_teacher_temp_epochs=5))
    tic = time.perf_counter()
    run_pretraining("ucmerced_dino", variant, train, bands=RGB, rgb_bands=RGB, mean=mean, std=std,
                    out_dir=args.out, tracker=NullTracker(), progress=True, gsd=0.3)
    minutes = (time.perf_counter() - tic) / 60
    pretrained, _ = load_backbone(args.out)
    torch.manual_seed(0)
    random_init = build_backbone("vit_tiny_patch8", 3, variant.crops.global_size).eval()
    labels = (torch.tensor(train.labels), torch.tensor(test.labels))
    for name, model in (("random init", random_init), ("DINO pretrained", pretrained)):
        features = [extract_features(model, AsFloat(ds), mean=mean, std=std, image_size=size,
                                     progress=False)[0] for ds in (train, test)]
        result = weighted_knn(features[0], labels[0], features[1], labels[1], ks=(20,),
                              n_classes=len(classes))
        print(f"  {name:16s} kNN (k=20) top-1: {result['top1_k20']:.2f} %")
    print(f"pretraining: {variant.optim.epochs} epochs in {minutes:.1f} min")


if __name__ == "__main__":
    main()
