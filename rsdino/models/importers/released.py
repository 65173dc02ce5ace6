"""Released weights declared by a variant (``weights:`` in params.yaml): fetch the file, make a demo one.

``checkpoint_file`` finds a variant's checkpoint: downloaded (resumable, checksum verified, by
``rsdino.data.download``) when its URL has a published sha256, else the local ``path``; a missing
manual download stops with one line saying how to get it, as for manual datasets.
``write_demo_checkpoint`` writes a small seeded checkpoint in facebookresearch/dino's training layout
(what ``rsdino make-demo --variant`` serves to the demo's imported variant).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from rsdino.config.variants import ReleasedWeights, VariantConfig
from rsdino.data.download import download, verify_checksum
from rsdino.io import atomic_path
from rsdino.models.backbones import build_backbone
from rsdino.models.heads import DINOHead
from rsdino.models.importers.layouts import WEIGHT_NORM_KEYS


def checkpoint_file(spec: ReleasedWeights, variant: str, downloads: Path, *, base_dir: Path | None = None,
                    progress: bool = True) -> Path:
    """The local checkpoint file of ``variant``'s released weights (downloading it when it can).

    Raises:
        FileNotFoundError: a manual download that is not in place yet (the message says how).
        rsdino.data.download.DownloadError: a failed download, or a file whose sha256 differs from
            the published one (``ChecksumError``).
    """
    if spec.url and spec.sha256:
        return download(spec.url, downloads, sha256=spec.sha256, base_dir=base_dir, progress=progress)
    path = Path(spec.path or "")
    if not path.is_absolute() and base_dir is not None:
        path = base_dir / path
    if not path.is_file():
        how = spec.manual or (f"download {spec.url} (no checksum is published, so rsdino does not fetch it) "
                              f"and place it there" if spec.url else "place the checkpoint there")
        raise FileNotFoundError(f"{path}: released weights of variant {variant!r} not found: {how}")
    if spec.sha256:
        verify_checksum(path, sha256=spec.sha256)
    return path


def write_demo_checkpoint(path: Path, variant: VariantConfig, in_chans: int) -> Path:
    """A seeded DINO training checkpoint (``student``, ``teacher``, ``dino_loss``, ``args``) for ``variant``.

    The backbone is the variant's catalogue backbone with random weights (seed ``variant.seed``);
    the heads follow ``variant.head`` and are saved under DINO's names (``head.*``, old weight-norm
    ``weight_g`` / ``weight_v``); the student carries DistributedDataParallel's ``module.`` prefix.
    """
    torch.manual_seed(variant.seed)
    head_cfg = variant.head
    branches = {}
    for branch in ("student", "teacher"):
        backbone = build_backbone(variant.backbone, in_chans, variant.crops.global_size, 0.0,
                                  **variant.backbone_kwargs)
        head = DINOHead(int(backbone.embed_dim), head_cfg.out_dim, head_cfg.hidden_dim,
                        head_cfg.bottleneck_dim, head_cfg.n_layers)
        renamed = {value: key for key, value in WEIGHT_NORM_KEYS.items()}
        state = {f"backbone.{k}": v for k, v in backbone.state_dict().items()}
        state |= {f"head.{renamed.get(k, k)}": v for k, v in head.state_dict().items()}
        branches[branch] = state
    args = argparse.Namespace(arch=variant.backbone, out_dim=head_cfg.out_dim, seed=variant.seed)
    with atomic_path(path, suffix=".pth") as tmp:
        torch.save({"student": {f"module.{k}": v for k, v in branches["student"].items()},
                    "teacher": branches["teacher"], "dino_loss": {"center": torch.zeros(1, head_cfg.out_dim)},
                    "epoch": 0, "args": args}, tmp)
    return path
