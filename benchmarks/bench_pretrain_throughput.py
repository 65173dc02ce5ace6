"""Images/s of the whole pretraining loop (data included) and the share of it spent waiting for data.

    # the demo's pretraining (params.yaml's demo_dino_vit on the generated EuroSAT-MS), CPU
    python benchmarks/bench_pretrain_throughput.py --workers 2
    # ViT-S/16 DINO on a GPU, beside facebookresearch/dino's step in the same run
    python benchmarks/bench_pretrain_throughput.py --workload vit_small_dino --device cuda --workers 12 \\
        --views-on device --dino /path/to/facebookresearch/dino

Runs ``rsdino.train.pretrain.run_pretraining`` in this process on data read from a chip store
(``rsdino.data.chips``; ``--store files`` reads the GeoTIFFs instead) and times every ``next()`` of
its DataLoader. After ``--warmup`` steps (worker start-up, CUDA kernels and compilation), it reports

- images/s of the loop: images of the timed steps / wall time of those steps;
- data wait: the share of that wall time the loop spent blocked in ``next()`` (on CUDA a host-side
  upper bound of the device's idle time: the device may still run queued work meanwhile);
- on CUDA: peak memory (``max_memory_allocated``), the step's FLOPs (``FlopCounterMode``, one eager
  step), MFU = FLOPs x steps/s over the bf16 (or fp32) dense matmul rate measured in the same run and,
  with ``--peak-tflops``, over the datasheet peak;
- with ``--dino PATH`` (a checkout of facebookresearch/dino): the reference's training-step body
  (ViT-S/16, DINOHead with K = 65536, DINOLoss, AdamW, gradient clipping, the fp16 GradScaler it uses
  on GPU, EMA) on random crops already on the device, beside rsdino's ``train_step`` on the same
  crops, alternated; images/s of each and the ratio.

Workloads: ``demo`` (params.yaml's ``--variant`` on its own pretraining data, generated as
``rsdino make-demo`` does), ``vit_small_dino`` (ViT-S/16, 2 x 224 + 8 x 96 crops, K = 65536) and
``vit_base_dinov2`` (ViT-B/16, the same crops, iBOT masks, KoLeo) on ``--images`` random 256 px
RGB uint8 images.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import torch
from torch.utils.data import Dataset

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_train_step import CPU_ATTENTION_FLOPS, matmul_rate  # noqa: E402

from rsdino.config import CropSettings, HeadSettings, OptimSettings, VariantConfig  # noqa: E402
from rsdino.data.chips import CHIPS_DIR, build_chip_store, chipped  # noqa: E402
from rsdino.tracking import NullTracker  # noqa: E402
from rsdino.train import pretrain  # noqa: E402
from rsdino.train.meta_arch import SelfDistillation  # noqa: E402
from rsdino.train.schedules import Schedules  # noqa: E402


class _RandomPhotos(Dataset):
    """``n`` random 256 px RGB uint8 images (the GPU workloads' data; content does not change speed)."""

    def __init__(self, n: int, size: int) -> None:
        self.n, self.size = n, size

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict:
        g = torch.Generator().manual_seed(i)
        return {"image": torch.randint(0, 256, (3, self.size, self.size), dtype=torch.uint8, generator=g)}


class _Timed:
    """Wraps DataLoader: records, for every ``next()``, when it was asked and when it returned."""

    records: list[tuple[float, float]] = []
    device = "cpu"

    def __init__(self, *args, **kwargs) -> None:  # noqa: ANN002, ANN003
        self.loader = _DataLoader(*args, **kwargs)

    def __iter__(self):  # noqa: ANN204
        iterator = iter(self.loader)
        while True:
            asked = time.perf_counter()
            try:
                batch = next(iterator)
            except StopIteration:
                return
            _Timed.records.append((asked, time.perf_counter()))
            yield batch


_DataLoader = pretrain.DataLoader


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _demo(args: argparse.Namespace) -> tuple[VariantConfig, Dataset, dict]:
    from rsdino.config import load_params
    from rsdino.data.extract import extract_archive
    from rsdino.data.fake.eurosat import make_fake_eurosat_ms
    from rsdino.data.registry import open_dataset, prepare_dataset

    params = load_params(args.params, "demo")
    variant = params.variants[args.variant]
    cfg = params.datasets[variant.pretrain_data]
    work = args.work / variant.pretrain_data
    raw, prepared = work / "raw", work / "prepared"
    if not (prepared / "dataset.json").is_file():
        archive = work / "data.tar"
        make_fake_eurosat_ms(archive, **cfg.source.generator_kwargs)
        extract_archive(archive, raw)
        prepare_dataset(cfg.model_copy(update={"store": "chips"}), variant.pretrain_data, raw, prepared,
                        progress=False)
    train = open_dataset(cfg, raw, prepared, "train")
    stats = {"bands": cfg.bands, "rgb_bands": cfg.rgb_bands, "mean": train.stats["mean"],
             "std": train.stats["std"], "gsd": cfg.gsd}
    return variant, (chipped(train, prepared) if args.store == "chips" else train), stats


def _synthetic(args: argparse.Namespace) -> tuple[VariantConfig, Dataset, dict]:
    dinov2 = args.workload == "vit_base_dinov2"
    crops = {"global_size": 224, "local_size": 96, "n_global": 2, "n_local": 8}
    if dinov2:
        crops["mask_p"] = 0.5
    variant = VariantConfig(method="dinov2" if dinov2 else "dino",
                            backbone="vit_base_patch16" if dinov2 else "vit_small_patch16",
                            pretrain_data="bench", crops=CropSettings(**crops),
                            head=HeadSettings(out_dim=65536),
                            optim=OptimSettings(epochs=1, batch_size=args.batch, warmup_epochs=0))
    store = args.work / f"photos_{args.images}" / CHIPS_DIR
    if not (store / "index.json").is_file():
        build_chip_store(_RandomPhotos(args.images, 256), store, progress=False)
    stats = {"bands": ["R", "G", "B"], "rgb_bands": ["R", "G", "B"], "mean": [123.7, 116.3, 103.5],
             "std": [58.4, 57.1, 57.4], "gsd": 1.0}
    return variant, chipped(_RandomPhotos(args.images, 256), store.parent), stats


def _loop(args: argparse.Namespace, variant: VariantConfig, data: Dataset, stats: dict) -> dict:
    settings = {"num_workers": args.workers, "views_on": args.views_on, "compile": args.compile,
                "precision": args.precision}
    optim = {"epochs": args.epochs} if args.epochs else {}
    if args.batch and args.workload == "demo":
        optim["batch_size"] = args.batch
    variant = variant.model_copy(update={**settings, "optim": variant.optim.model_copy(update=optim)})
    out = args.work / "run" / args.workload
    for stale in (out / "checkpoints" / "last.pt",):
        stale.unlink(missing_ok=True)
    _Timed.records = []
    pretrain.DataLoader = _Timed
    if args.device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    try:
        pretrain.run_pretraining(args.workload, variant, data, bands=stats["bands"],
                                 rgb_bands=stats["rgb_bands"], mean=stats["mean"], std=stats["std"],
                                 gsd=stats["gsd"], out_dir=out, tracker=NullTracker(), device=args.device,
                                 progress=False)
    finally:
        pretrain.DataLoader = _DataLoader
    records = _Timed.records
    warmup = min(args.warmup, len(records) - 2)
    timed = records[warmup:]
    # wall time of the timed steps: from the return of the warm-up's last batch to the last step's end
    # (the next ``next()`` call, or the end of the run for the last one)
    start, end = records[warmup - 1][1] if warmup else timed[0][0], records[-1][1]
    steps = len(timed) - 1  # the last batch's step ends outside the records: leave it out
    wall = timed[-1][0] - start
    waits = sum(got - asked for asked, got in timed[:-1])
    result = {"steps": steps, "images_per_s": steps * variant.optim.batch_size / wall,
              "data_wait": waits / wall, "step_s": wall / steps, "variant": variant, "total_s": end - start}
    if args.device.startswith("cuda"):
        result["peak_memory_gib"] = torch.cuda.max_memory_allocated() / 2**30
    return result


def _batch(variant: VariantConfig, device: str, n: int) -> dict:
    crops = variant.crops
    batch = {"global": [torch.randn(n, 3, crops.global_size, crops.global_size, device=device)
                        for _ in range(crops.n_global)],
             "local": [torch.randn(n, 3, crops.local_size, crops.local_size, device=device)
                       for _ in range(crops.n_local)]}
    if crops.mask_p > 0:
        grid = crops.global_size // 16
        batch["masks"] = torch.rand(n, crops.n_global, grid, grid, device=device) < 0.3
    return batch


def _ours(variant: VariantConfig, device: str, n: int, in_chans: int) -> tuple:
    model = SelfDistillation(variant, in_chans).to(device).train()
    optimizer = pretrain.build_optimizer(model, variant)
    schedules = Schedules.of(variant, 100_000)
    autocast = device.startswith("cuda") and variant.precision == "bf16"

    def step(i: int) -> None:
        pretrain.train_step(model, optimizer, batch, i, schedules, variant, freeze_last_layer=False,
                            autocast=autocast, read=False)

    batch = _batch(variant, device, n)
    return step


def _reference(dino: Path, device: str, n: int):  # noqa: ANN202
    """facebookresearch/dino's training-step body (main_dino.train_one_epoch), ViT-S/16, K = 65536."""
    sys.path.insert(0, str(dino))
    import main_dino  # type: ignore[import-not-found]
    import utils  # type: ignore[import-not-found]
    import vision_transformer as vits  # type: ignore[import-not-found]

    if not torch.distributed.is_initialized():  # its DINOLoss all-reduces the centre
        torch.distributed.init_process_group("nccl" if device.startswith("cuda") else "gloo",
                                             init_method="tcp://127.0.0.1:29581", rank=0, world_size=1)
    student = utils.MultiCropWrapper(vits.vit_small(patch_size=16, drop_path_rate=0.1),
                                     vits.DINOHead(384, 65536, use_bn=False, norm_last_layer=True)).to(device)
    teacher = utils.MultiCropWrapper(vits.vit_small(patch_size=16),
                                     vits.DINOHead(384, 65536, use_bn=False)).to(device)
    teacher.load_state_dict(student.state_dict())
    for p in teacher.parameters():
        p.requires_grad = False
    loss_fn = main_dino.DINOLoss(65536, 10, 0.04, 0.04, 0, 100).to(device)
    optimizer = torch.optim.AdamW(utils.get_params_groups(student))
    scaler = torch.cuda.amp.GradScaler() if device.startswith("cuda") else None  # its use_fp16 default
    images = [torch.randn(n, 3, 224, 224, device=device) for _ in range(2)]
    images += [torch.randn(n, 3, 96, 96, device=device) for _ in range(8)]

    def step(i: int) -> None:
        with torch.autocast(device_type="cuda" if device.startswith("cuda") else "cpu", dtype=torch.float16,
                            enabled=scaler is not None):
            loss = loss_fn(student(images), teacher(images[:2]), 1)
        optimizer.zero_grad()
        if scaler is None:
            loss.backward()
            utils.clip_gradients(student, 3.0)
            optimizer.step()
        else:
            scaler.scale(loss).backward()
            scaler.unscale_(optimizer)
            utils.clip_gradients(student, 3.0)
            scaler.step(optimizer)
            scaler.update()
        with torch.no_grad():
            for q, k in zip(student.parameters(), teacher.parameters(), strict=True):
                k.data.mul_(0.996).add_((1 - 0.996) * q.detach().data)
        loss.item()  # the reference reads the loss every step

    return step


def _time_steps(step, device: str, steps: int, offset: int = 0) -> float:  # noqa: ANN001
    """Seconds per step over ``steps`` steps (synchronised at both ends)."""
    _sync(device)
    tic = time.perf_counter()
    for i in range(steps):
        step(offset + i)
    _sync(device)
    return (time.perf_counter() - tic) / steps


def main() -> None:
    """Run the benchmark and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workload", choices=["demo", "vit_small_dino", "vit_base_dinov2"], default="demo")
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--variant", default="demo_dino_vit", help="the demo workload's variant")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1, help="torch threads of the training process")
    parser.add_argument("--views-on", choices=["workers", "device"], default="workers")
    parser.add_argument("--store", choices=["chips", "files"], default="chips")
    parser.add_argument("--precision", choices=["fp32", "bf16"], default="bf16")
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--epochs", type=int, default=0, help="0: the variant's own (demo) or 1")
    parser.add_argument("--batch", type=int, default=0, help="global batch (synthetic workloads: 128)")
    parser.add_argument("--images", type=int, default=4096, help="images of the synthetic workloads")
    parser.add_argument("--warmup", type=int, default=10, help="steps left out of the timing")
    parser.add_argument("--work", type=Path, default=Path("/tmp/rsdino_throughput"))
    parser.add_argument("--dino", type=Path, help="a facebookresearch/dino checkout: time its step too")
    parser.add_argument("--reference-steps", type=int, default=10)
    parser.add_argument("--peak-tflops", type=float, help="the device's datasheet dense peak, for MFU")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.workload != "demo":
        args.batch = args.batch or 128
    variant, data, stats = (_demo if args.workload == "demo" else _synthetic)(args)
    result = _loop(args, variant, data, stats)
    variant = result["variant"]
    batch = variant.optim.batch_size
    print(f"{args.workload}: {variant.method} {variant.backbone}, batch {batch}, {args.workers} workers, "
          f"views on {args.views_on}, {args.store} store, {args.device} "
          f"{args.precision if args.device.startswith('cuda') else 'fp32'}"
          f"{', compiled' if args.compile else ''}, {args.threads} thread(s), {os.cpu_count()} CPUs")
    print(f"  loop: {result['images_per_s']:.1f} images/s over {result['steps']} steps "
          f"({result['step_s'] * 1000:.1f} ms/step)   data wait: {100 * result['data_wait']:.1f} % of the "
          "loop")
    if not args.device.startswith("cuda") and args.dino is None:
        return
    ours = _ours(variant, args.device, batch, len(stats["bands"]))
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False, custom_mapping=CPU_ATTENTION_FLOPS) as counter:
        ours(0)
    flops = counter.get_total_flops()
    if args.device.startswith("cuda"):
        dtype = torch.bfloat16 if args.precision == "bf16" else torch.float32
        rate = matmul_rate(8192, args.device, dtype)
        achieved = flops * result["images_per_s"] / batch
        print(f"  peak memory {result['peak_memory_gib']:.1f} GiB   FLOPs/step {flops / 1e12:.3f} TFLOP   "
              f"MFU {achieved / rate:.3f} of the measured {dtype} matmul rate ({rate / 1e12:.0f} TFLOP/s)"
              + (f", {achieved / (args.peak_tflops * 1e12):.3f} of the {args.peak_tflops:.0f} TFLOP/s peak"
                 if args.peak_tflops else ""))
    if args.dino is not None:
        reference = _reference(args.dino, args.device, batch)
        ours(1), reference(0)  # warm-up
        times: dict[str, list[float]] = {"rsdino": [], "reference": []}
        for r in range(3):
            times["rsdino"].append(_time_steps(ours, args.device, args.reference_steps, 2 + r * 100))
            times["reference"].append(_time_steps(reference, args.device, args.reference_steps))
        med = {k: statistics.median(v) for k, v in times.items()}
        print(f"  step alone, batch {batch} of 2x224 + 8x96 crops on the device (median of 3 rounds of "
              f"{args.reference_steps}): rsdino {batch / med['rsdino']:.1f} images/s, reference DINO "
              f"{batch / med['reference']:.1f} images/s, rsdino / reference "
              f"{med['reference'] / med['rsdino']:.2f}x")


if __name__ == "__main__":
    main()
