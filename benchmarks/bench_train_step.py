"""Pretraining step throughput and model-FLOP utilisation (MFU) against the machine's matmul rate.

    python benchmarks/bench_train_step.py [--threads 2] [--steps 5] [--batch 16] [--device cpu|cuda]
        [--precision fp32|bf16] [--method dino] [--backbone vit_small_patch16]
        [--allocator system|tcmalloc|jemalloc] [--compile]

One full rsdino training step (``rsdino.train.pretrain.train_step``: teacher forward, student forward
and backward, gradient clipping, optimiser step, EMA) of ViT-S/16 DINO with 2 x 224 + 8 x 96 crops,
batch 16 and K = 65536 prototypes. The step's FLOPs are counted once with
``torch.utils.flop_counter.FlopCounterMode`` (matrix multiplications, convolutions and attention,
forward and backward; the CPU fused-attention kernel is counted with torch's own attention
formula); the baseline is the dense matmul rate of this machine measured in the same run
(``--matmul-size`` square float32 matrices, or bf16 with ``--precision bf16``). The rate is measured
before the first timed step and after every one, so each step is set against the rate of the
moments around it: a shared machine's speed drifts by several per cent within a minute. Prints the
median step time, images/s, achieved FLOP/s and MFU = achieved / matmul rate (median over the
steps, with the range; higher is better).

``--allocator tcmalloc`` (or ``jemalloc``) runs the benchmark again with that malloc preloaded
(``LD_PRELOAD``; Debian's ``libtcmalloc-minimal4`` / ``libjemalloc2``). On CPU, glibc hands every
block over 32 MiB (a ViT-S/16 MLP activation of the global crops is 39 MB) straight back to the
kernel, so each step faults its activations in again; tcmalloc keeps them.
"""

from __future__ import annotations

import argparse
import ctypes.util
import os
import statistics
import sys
import time

import torch
from torch.utils.flop_counter import FlopCounterMode, sdpa_backward_flop_count, sdpa_flop_count

from rsdino.config import CropSettings, HeadSettings, OptimSettings, VariantConfig
from rsdino.train.meta_arch import SelfDistillation, compile_blocks
from rsdino.train.pretrain import build_optimizer, train_step
from rsdino.train.schedules import Schedules


def matmul_rate(size: int, device: str, dtype: torch.dtype, seconds: float = 1.5) -> float:
    """Best FLOP/s of ``size x size`` matrix products over about ``seconds``."""
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    best, start = 0.0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        _sync(device)
        tic = time.perf_counter()
        for _ in range(4):
            a @ b
        _sync(device)
        best = max(best, 4 * 2 * size**3 / (time.perf_counter() - tic))
    return best


def _cpu_flash_forward(query, key, value, *args, out_shape=None, **kwargs) -> int:
    return sdpa_flop_count(query, key, value)


def _cpu_flash_backward(grad_out, query, key, value, *args, out_shape=None, **kwargs) -> int:
    return sdpa_backward_flop_count(grad_out, query, key, value)


#: torch's counter knows the CUDA fused-attention kernels but not the CPU one: count it the same way.
CPU_ATTENTION_FLOPS = {
    torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _cpu_flash_forward,
    torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward: _cpu_flash_backward,
}


#: ``--allocator`` choice -> the library name ``ctypes.util.find_library`` looks for.
ALLOCATOR_LIBRARIES = {"tcmalloc": "tcmalloc_minimal", "jemalloc": "jemalloc"}


def preload_allocator(name: str) -> str:
    """Make sure ``name``'s malloc is loaded: re-run this script with it in ``LD_PRELOAD`` if not.

    Returns the library's file name once it is loaded; raises ``SystemExit`` naming the package to
    install when it cannot be found.
    """
    if name == "system":
        preloaded = os.environ.get("LD_PRELOAD")
        return f"system malloc (LD_PRELOAD={preloaded})" if preloaded else "system malloc"
    library = ctypes.util.find_library(ALLOCATOR_LIBRARIES[name])
    if library is None:
        raise SystemExit(f"--allocator {name}: lib{ALLOCATOR_LIBRARIES[name]}.so not found; install it "
                         "(Debian/Ubuntu: apt install libtcmalloc-minimal4 or libjemalloc2)")
    with open("/proc/self/maps") as maps:
        if library in maps.read():
            return library
    if os.environ.get("RSDINO_BENCH_PRELOADED") == library:
        raise SystemExit(f"--allocator {name}: {library} is in LD_PRELOAD but was not loaded")
    env = dict(os.environ, RSDINO_BENCH_PRELOADED=library,
               LD_PRELOAD=" ".join(filter(None, [library, os.environ.get("LD_PRELOAD", "")])))
    os.execve(sys.executable, [sys.executable, *sys.argv], env)


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--out-dim", type=int, default=65536)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    parser.add_argument("--method", default="dino")
    parser.add_argument("--backbone", default="vit_small_patch16")
    parser.add_argument("--matmul-size", type=int, default=2048)
    parser.add_argument("--compile", action="store_true",
                        help="torch.compile the blocks and heads (variant setting compile: true)")
    parser.add_argument("--allocator", choices=["system", *ALLOCATOR_LIBRARIES], default="system",
                        help="malloc to run under (preloaded by re-running the script)")
    args = parser.parse_args()
    allocator = preload_allocator(args.allocator)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    device = args.device
    crops = {"global_size": 224, "local_size": 96, "n_global": 2, "n_local": 8}
    if args.method.startswith("dinov2"):
        crops["mask_p"] = 0.5
    variant = VariantConfig(method=args.method, backbone=args.backbone, pretrain_data="bench",
                            crops=CropSettings(**crops), head=HeadSettings(out_dim=args.out_dim),
                            optim=OptimSettings(epochs=1, batch_size=args.batch, warmup_epochs=0),
                            precision=args.precision)
    model = SelfDistillation(variant, 3).to(device).train()
    optimizer = build_optimizer(model, variant)
    schedules = Schedules.of(variant, 1000)
    batch = {"global": [torch.randn(args.batch, 3, 224, 224, device=device) for _ in range(2)],
             "local": [torch.randn(args.batch, 3, 96, 96, device=device) for _ in range(8)]}
    if args.method.startswith("dinov2"):
        batch["masks"] = torch.rand(args.batch, 2, 14, 14, device=device) < 0.3
    autocast = args.precision == "bf16"

    def step(i: int) -> None:
        train_step(model, optimizer, batch, i, schedules, variant, freeze_last_layer=False, autocast=autocast)

    with FlopCounterMode(display=False, custom_mapping=CPU_ATTENTION_FLOPS) as counter:
        step(0)  # counted eagerly: compiled kernels bypass the counter
    flops = counter.get_total_flops()
    if args.compile:
        tic = time.perf_counter()
        compile_blocks(model)
        step(1)  # compiles for both crop sizes
        print(f"  compilation (first compiled step): {time.perf_counter() - tic:.1f} s")
    step(1)  # warm-up
    dtype = torch.bfloat16 if autocast else torch.float32
    rates, seconds = [matmul_rate(args.matmul_size, device, dtype)], []
    for i in range(args.steps):
        _sync(device)
        tic = time.perf_counter()
        step(2 + i)
        _sync(device)
        seconds.append(time.perf_counter() - tic)
        rates.append(matmul_rate(args.matmul_size, device, dtype))
    # each step against the mean rate measured just before and just after it
    around = [(before + after) / 2 for before, after in zip(rates[:-1], rates[1:], strict=True)]
    mfus = [flops / s / rate for s, rate in zip(seconds, around, strict=True)]
    median_seconds = statistics.median(seconds)
    print(f"{args.method} {args.backbone}, 2x224 + 8x96 crops, batch {args.batch}, K = {args.out_dim}, "
          f"{args.threads} threads, {device} {args.precision}{', compiled' if args.compile else ''}, "
          f"{allocator}")
    print(f"  FLOPs per step (FlopCounterMode): {flops / 1e12:.3f} TFLOP")
    print(f"  step time: median {median_seconds:.2f} s (range {min(seconds):.2f}-{max(seconds):.2f}, "
          f"{args.steps} steps)   images/s: {args.batch / median_seconds:.2f}")
    print(f"  achieved: {flops / median_seconds / 1e9:.1f} GFLOP/s   matmul rate ({args.matmul_size}^2): "
          f"median {statistics.median(rates) / 1e9:.1f} GFLOP/s (range {min(rates) / 1e9:.1f}-"
          f"{max(rates) / 1e9:.1f})")
    print(f"  MFU (achieved / matmul rate around each step): median {statistics.median(mfus):.3f} "
          f"(range {min(mfus):.3f}-{max(mfus):.3f})")


if __name__ == "__main__":
    main()
