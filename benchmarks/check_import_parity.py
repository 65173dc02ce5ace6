"""Parity of ``rsdino import-weights`` with the reference code, one small model per format.

For each format, a small model is built with the authors' own classes (from a local copy of their
repository), given fixed random weights, saved in the authors' checkpoint layout, imported with
``rsdino.models.importers.folder.import_weights``, reloaded from the model folder with
``load_backbone``, and run on the same input as the reference model. Prints the largest absolute
difference of the CLS embedding and of the patch tokens per format (acceptance: below 1e-5).

Usage (each path is the root of a checkout of the repository, e.g. ``git archive`` of a mirror)::

    python benchmarks/check_import_parity.py --dino /tmp/ref_dino --dino-mc /tmp/ref_DINO-MC \
        --satdino /tmp/ref_SatDINO --dinov2 /tmp/ref_dinov2

A format whose repository is not given is skipped. Nothing here reaches the network.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from torch import nn

from rsdino.models.backbones import load_backbone
from rsdino.models.importers.folder import features, import_weights

Result = tuple[torch.Tensor, torch.Tensor | None]


@contextmanager
def reference(root: Path, *modules: str) -> Iterator[list]:
    """Import ``modules`` from the repository at ``root``; forget them (and its path) afterwards."""
    before = set(sys.modules)
    sys.path.insert(0, str(root))
    try:
        yield [importlib.import_module(name) for name in modules]
    finally:
        sys.path.remove(str(root))
        for name in set(sys.modules) - before:
            del sys.modules[name]


def randomise(model: nn.Module, seed: int) -> nn.Module:
    """Fixed, non-trivial weights: every parameter and BatchNorm statistic drawn from a seeded normal."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in list(model.named_parameters()) + list(model.named_buffers()):
            if not tensor.is_floating_point():
                continue
            noise = torch.randn(tensor.shape, generator=generator)
            if name.endswith("running_var") or "norm" in name and name.endswith("weight"):
                tensor.copy_(1.0 + 0.1 * noise.abs())
            else:
                tensor.copy_(0.05 * noise)
    return model.eval()


def _vit_tokens(tokens: torch.Tensor, n_prefix: int = 1, n_suffix: int = 0) -> Result:
    return tokens[:, 0], tokens[:, n_prefix:tokens.shape[1] - n_suffix]


def dino(root: Path, folder: Path) -> tuple[Result, Result]:
    """facebookresearch/dino: a 2-block ViT-S/16 in the training-checkpoint layout (student + teacher)."""
    with reference(root, "vision_transformer", "utils") as (vits, utils):
        def wrapper(seed: int) -> nn.Module:
            backbone = vits.vit_small(patch_size=16, img_size=[64])
            backbone.blocks = backbone.blocks[:2]
            return randomise(utils.MultiCropWrapper(backbone, vits.DINOHead(384, 128)), seed)

        student, teacher = wrapper(0), wrapper(1)
        args = argparse.Namespace(arch="vit_small", patch_size=16, out_dim=128)
        torch.save({"student": {f"module.{k}": v for k, v in student.state_dict().items()},
                    "teacher": teacher.state_dict(), "optimizer": {}, "epoch": 1, "args": args,
                    "dino_loss": {"center": torch.zeros(1, 128)}}, folder / "checkpoint.pth")
        x = _input(64)
        with torch.no_grad():
            expected = _vit_tokens(teacher.backbone.get_intermediate_layers(x, 1)[0])
    return expected, _imported("dino", folder / "checkpoint.pth", folder / "model", x)


def dino_backbone(root: Path, folder: Path) -> tuple[Result, Result]:
    """facebookresearch/dino: the released backbone-only layout (a bare ViT-S/8 state dict)."""
    with reference(root, "vision_transformer") as (vits,):
        model = vits.vit_small(patch_size=8, img_size=[32])
        model.blocks = model.blocks[:2]
        randomise(model, 2)
        torch.save(model.state_dict(), folder / "dino_deitsmall8_pretrain.pth")
        x = _input(32)
        with torch.no_grad():
            expected = _vit_tokens(model.get_intermediate_layers(x, 1)[0])
    return expected, _imported("dino_backbone", folder / "dino_deitsmall8_pretrain.pth", folder / "model", x)


def dino_mc(root: Path, folder: Path) -> tuple[Result, Result]:
    """DINO-MC: its ViT-S/8 in its training-checkpoint layout (``utils.vision_transformer``)."""
    with reference(root, "utils.vision_transformer") as (vits,):
        backbone = vits.vit_small(patch_size=8, img_size=[32])
        backbone.blocks = backbone.blocks[:2]
        wrapped = nn.Module()
        wrapped.backbone, wrapped.head = backbone, vits.DINOHead(384, 64)
        randomise(wrapped, 3)
        state = wrapped.state_dict()
        torch.save({"student": {f"module.{k}": v for k, v in state.items()}, "teacher": state,
                    "args": argparse.Namespace(arch="vit_small", patch_size=8), "epoch": 1},
                   folder / "dino_mc.pth")
        x = _input(32)
        with torch.no_grad():
            expected = _vit_tokens(backbone.get_intermediate_layers(x, 1)[0])
    return expected, _imported("dino_mc", folder / "dino_mc.pth", folder / "model", x)


def dino_mc_resnet(root: Path, folder: Path) -> tuple[Result, Result]:
    """DINO-MC / DINO: a torchvision ResNet-50 (their CNN backbones) in the training layout."""
    import torchvision

    model = torchvision.models.resnet50()
    model.fc = nn.Identity()  # as DINO's MultiCropWrapper does
    randomise(model, 4)
    state = {f"backbone.{k}": v for k, v in model.state_dict().items()}
    torch.save({"teacher": state, "student": {f"module.{k}": v for k, v in state.items()},
                "args": argparse.Namespace(arch="resnet50")}, folder / "dino_mc_resnet50.pth")
    x = _input(64)
    with torch.no_grad():
        expected = (model(x), None)
    return expected, _imported("dino_mc", folder / "dino_mc_resnet50.pth", folder / "model", x)


def satdino(root: Path, folder: Path) -> tuple[Result, Result]:
    """SatDINO: its release layout (``teacher`` = bare backbone with ``gsd_register``, ``gsd_head``)."""
    with reference(root, "satdino.vision_transformer_satdino") as (vits,):
        model = vits.vit_small(patch_size=16, img_size=[64])
        model.blocks = model.blocks[:2]
        randomise(model, 5)
        gsd = randomise(nn.Linear(384, 1), 6)
        gsd_state = {f"gsd_head.{k}": v for k, v in gsd.state_dict().items()}  # SatDINO's GSDHead
        torch.save({"teacher": model.state_dict(), "gsd_head": gsd_state,
                    "linear_head": {"linear.weight": torch.zeros(63, 384), "linear.bias": torch.zeros(63)}},
                   folder / "satdino-vit_small-16.pth")
        x = _input(64)
        with torch.no_grad():
            expected = _vit_tokens(model(x, return_all=True), n_suffix=1)
    return expected, _imported("satdino", folder / "satdino-vit_small-16.pth", folder / "model", x)


def satdino_training(root: Path, folder: Path) -> tuple[Result, Result]:
    """SatDINO: its training-checkpoint layout (``backbone.`` / ``head.`` wrappers, DDP student)."""
    with reference(root, "satdino.vision_transformer_satdino") as (vits,):
        backbone = vits.vit_small(patch_size=8, img_size=[32])
        backbone.blocks = backbone.blocks[:2]
        wrapped = nn.Module()
        wrapped.backbone, wrapped.head = backbone, vits.DINOHead(384, 64)
        randomise(wrapped, 8)
        state = wrapped.state_dict()
        torch.save({"student": {f"module.{k}": v for k, v in state.items()}, "teacher": state,
                    "dino_loss": {"center": torch.zeros(1, 64)}, "epoch": 1,
                    "args": argparse.Namespace(arch="vit_small", patch_size=8)}, folder / "checkpoint.pth")
        x = _input(32)
        with torch.no_grad():
            expected = _vit_tokens(backbone(x, return_all=True), n_suffix=1)
    return expected, _imported("satdino", folder / "checkpoint.pth", folder / "model", x)


def _dinov2_model(root: Path, folder: Path, registers: int) -> tuple[Result, Result]:
    with reference(root, "dinov2.models.vision_transformer", "dinov2.layers") as (vits, layers):
        from functools import partial

        model = vits.DinoVisionTransformer(
            img_size=56, patch_size=14, embed_dim=384, depth=2, num_heads=6, mlp_ratio=4,
            block_fn=partial(layers.NestedTensorBlock, attn_class=layers.MemEffAttention),
            num_register_tokens=registers, init_values=1.0, block_chunks=0)
        randomise(model, 7)
        torch.save(model.state_dict(), folder / "dinov2_vits14_pretrain.pth")
        x = _input(56)
        with torch.no_grad():
            out = model.forward_features(x)
        expected = (out["x_norm_clstoken"], out["x_norm_patchtokens"])
    return expected, _imported("dinov2", folder / "dinov2_vits14_pretrain.pth", folder / "model", x)


def dinov2(root: Path, folder: Path) -> tuple[Result, Result]:
    """DINOv2: a 2-block ViT-S/14 hub backbone with 4 registers and layer scale."""
    return _dinov2_model(root, folder, 4)


def dinov2_no_registers(root: Path, folder: Path) -> tuple[Result, Result]:
    """DINOv2: the same without registers (the first releases)."""
    return _dinov2_model(root, folder, 0)


def _input(size: int) -> torch.Tensor:
    return torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(123))


def _imported(fmt: str, checkpoint: Path, out: Path, x: torch.Tensor) -> Result:
    import_weights(fmt, checkpoint, out)
    model, _ = load_backbone(out)
    with torch.no_grad():
        return features(model, x)


#: name -> (repository option, builder)
CHECKS: dict[str, tuple[str, Callable[[Path, Path], tuple[Result, Result]]]] = {
    "dino": ("dino", dino), "dino_backbone": ("dino", dino_backbone), "dino_mc": ("dino_mc", dino_mc),
    "dino_mc (ResNet-50)": ("dino_mc", dino_mc_resnet), "satdino": ("satdino", satdino),
    "satdino (training)": ("satdino", satdino_training), "dinov2": ("dinov2", dinov2),
    "dinov2 (no registers)": ("dinov2", dinov2_no_registers),
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for option in ("dino", "dino-mc", "satdino", "dinov2"):
        parser.add_argument(f"--{option}", type=Path, default=None,
                            help=f"checkout of the {option} repository")
    args = parser.parse_args()
    torch.manual_seed(0)
    worst = 0.0
    print(f"{'format':<22} {'max |dCLS|':>12} {'max |dpatch|':>13} {'max |CLS|':>10}")
    for name, (repo, check) in CHECKS.items():
        root = getattr(args, repo)
        if root is None:
            print(f"{name:<22} skipped (no --{repo.replace('_', '-')})")
            continue
        with tempfile.TemporaryDirectory() as tmp:
            (want_cls, want_patches), (cls, patches) = check(Path(root).resolve(), Path(tmp))
        d_cls = (cls - want_cls).abs().max().item()
        d_patch = (patches - want_patches).abs().max().item() if patches is not None else float("nan")
        worst = max(worst, d_cls, 0.0 if patches is None else d_patch)
        print(f"{name:<22} {d_cls:>12.2e} {d_patch:>13.2e} {want_cls.abs().max().item():>10.3f}")
    print(f"worst: {worst:.2e} ({'ok' if worst < 1e-5 else 'ABOVE 1e-5'})")
    return 0 if worst < 1e-5 else 1


if __name__ == "__main__":
    sys.exit(main())
