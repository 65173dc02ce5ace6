"""DINO multi-crop views per second: rsdino's tensor views vs a PIL pipeline like DINO's reference.

    python benchmarks/bench_views.py [--data ../shared/data/ucmerced] [--images 64] [--rounds 5]

Both pipelines build 2 global (224 px) + 8 local (96 px) views of the same decoded 256 px UC Merced
images, in one process with one thread. The baseline is DINO's ``DataAugmentationDINO`` recipe
written on PIL images (RandomResizedCrop bicubic, horizontal flip, ColorJitter(0.4, 0.4, 0.2, 0.1)
p=0.8, RandomGrayscale 0.2, PIL Gaussian blur 1.0 / 0.1 / 0.5, solarisation 0.2 on the second
global, ToTensor, Normalize); rsdino's starts from uint8 tensors (``rsdino.views.build_views``).
The two are timed in alternating rounds so a busy machine slows both alike. Prints images/s of
each and the ratio (higher is better for rsdino).
"""

from __future__ import annotations

import argparse
import os
import random
import time
from pathlib import Path

import torch
import torchvision.transforms as T
from PIL import Image, ImageFilter, ImageOps
from torchvision.io import ImageReadMode, decode_image, read_file
from tqdm import tqdm

from rsdino.config.views import CropSettings
from rsdino.views import build_views

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


class _PilBlur:
    def __init__(self, p: float) -> None:
        self.p = p

    def __call__(self, image: Image.Image) -> Image.Image:
        if random.random() >= self.p:
            return image
        return image.filter(ImageFilter.GaussianBlur(radius=random.uniform(0.1, 2.0)))


class _PilSolarize:
    def __init__(self, p: float) -> None:
        self.p = p

    def __call__(self, image: Image.Image) -> Image.Image:
        return ImageOps.solarize(image) if random.random() < self.p else image


class PilDino:
    """The baseline: DINO's reference augmentation on PIL images."""

    def __init__(self, n_local: int = 8) -> None:
        jitter = T.Compose([T.RandomHorizontalFlip(p=0.5),
                            T.RandomApply([T.ColorJitter(0.4, 0.4, 0.2, 0.1)], p=0.8),
                            T.RandomGrayscale(p=0.2)])
        normalize = T.Compose([T.ToTensor(), T.Normalize(MEAN, STD)])
        bicubic = T.InterpolationMode.BICUBIC
        self.global1 = T.Compose([T.RandomResizedCrop(224, scale=(0.4, 1.0), interpolation=bicubic), jitter,
                                  _PilBlur(1.0), normalize])
        self.global2 = T.Compose([T.RandomResizedCrop(224, scale=(0.4, 1.0), interpolation=bicubic), jitter,
                                  _PilBlur(0.1), _PilSolarize(0.2), normalize])
        self.local = T.Compose([T.RandomResizedCrop(96, scale=(0.05, 0.4), interpolation=bicubic), jitter,
                                _PilBlur(0.5), normalize])
        self.n_local = n_local

    def __call__(self, image: Image.Image) -> list[torch.Tensor]:
        return [self.global1(image), self.global2(image)] + [self.local(image) for _ in range(self.n_local)]


def _load(folder: Path, n: int) -> tuple[list[Image.Image], list[torch.Tensor]]:
    suffixes = (".jpg", ".jpeg", ".png", ".tif", ".tiff")
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in suffixes)
    if not files:
        raise SystemExit(f"{folder}: no images found (expected UC Merced class folders)")
    files = files[:: max(1, len(files) // n)][:n]
    pil = [Image.open(f).convert("RGB") for f in files]
    tensors = [decode_image(read_file(str(f)), mode=ImageReadMode.RGB) for f in files]
    return pil, tensors


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default_data = Path(__file__).resolve().parents[2] / "shared/data/ucmerced"
    parser.add_argument("--data", type=Path, default=default_data)
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(1)
    pil_images, tensor_images = _load(args.data, args.images)
    baseline = PilDino()
    ours = build_views(CropSettings(), bands=["red", "green", "blue"], rgb_bands=["red", "green", "blue"],
                       mean=[255 * m for m in MEAN], std=[255 * s for s in STD], gsd=0.3048, patch_size=16)
    random.seed(0)
    torch.manual_seed(0)
    baseline(pil_images[0])
    ours({"image": tensor_images[0]})
    spent = {"pil": 0.0, "rsdino": 0.0}
    for _ in tqdm(range(args.rounds), desc="rounds"):
        start = time.perf_counter()
        for image in pil_images:
            baseline(image)
        spent["pil"] += time.perf_counter() - start
        start = time.perf_counter()
        for image in tensor_images:
            ours({"image": image})
        spent["rsdino"] += time.perf_counter() - start
    n = len(pil_images) * args.rounds
    pil_rate, our_rate = n / spent["pil"], n / spent["rsdino"]
    shape = tuple(tensor_images[0].shape)
    print(f"images: {len(pil_images)} x {args.rounds} rounds, {shape} uint8, 1 thread, 2x224 + 8x96 views")
    print(f"PIL pipeline (DINO reference recipe): {pil_rate:8.1f} images/s")
    print(f"rsdino tensor views:                  {our_rate:8.1f} images/s")
    print(f"ratio: {our_rate / pil_rate:.2f}x   (load average during the run: {os.getloadavg()[0]:.2f})")


if __name__ == "__main__":
    main()
