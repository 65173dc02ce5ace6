"""Match imported weights to a catalogue backbone and write a standard model folder.

The folder is the one pretraining writes (docs/architecture.md): ``model.safetensors`` +
``model.json`` (teacher backbone), ``student/`` (student backbone, when the checkpoint has one) and
``teacher.safetensors`` (the teacher branch: ``backbone.*`` and the heads found: ``dino_head.*``,
SatDINO's ``gsd_head.*``). ``model.json`` also records where the weights came from (``imported``).
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file
from timm.models.vision_transformer import VisionTransformer

from rsdino.io import atomic_path, file_digest
from rsdino.models.backbones import backbone_folder, backbone_spec, build_backbone, export_backbone
from rsdino.models.catalog import BACKBONES
from rsdino.models.importers.layouts import Tensors
from rsdino.models.importers.readers import READERS, ImportedWeights
from rsdino.models.importers.safe_load import safe_load

#: The teacher branch beside the exported backbone (the name pretraining uses).
TEACHER_FILE = "teacher.safetensors"
#: Input normalisation when none is given: the ImageNet RGB statistics every DINO release used.
IMAGENET_MEAN, IMAGENET_STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]


@functools.cache
def _defaults(name: str) -> dict[str, Any]:
    """Width, depth and patch size of catalogue ViT ``name`` (built on the meta device: no memory)."""
    with torch.device("meta"):
        model = build_backbone(name, 3, 224)
    return {"embed_dim": int(model.embed_dim), "depth": len(model.blocks),
            "patch_size": int(model.patch_embed.patch_size[0]),
            "num_heads": int(model.blocks[0].attn.num_heads)}


def _match_vit(state: Tensors) -> tuple[str, dict[str, Any]]:
    """The closest catalogue ViT and the overrides that make it ``state``'s shape.

    Preference: same width, patch and depth > same width and patch > same width > the smallest ViT.
    Heads cannot be read from weights: a width outside the catalogue gets ``width // 64`` heads
    (the DINO / timm convention of 64 channels per head).
    """
    proj = state["patch_embed.proj.weight"]
    found = {"embed_dim": int(proj.shape[0]), "patch_size": int(proj.shape[-1]),
             "depth": len({key.split(".")[1] for key in state if key.startswith("blocks.")})}
    candidates = {name: _defaults(name) for name, entry in BACKBONES.items()
                  if entry.family == "vit" and not entry.kwargs.get("conv_stem")}

    def score(name: str) -> tuple[int, int, int, int]:
        spec = candidates[name]
        return (spec["embed_dim"] == found["embed_dim"], spec["patch_size"] == found["patch_size"],
                spec["depth"] == found["depth"], -spec["embed_dim"])

    name = max(candidates, key=score)
    spec = candidates[name]
    overrides = {key: value for key, value in found.items() if spec[key] != value}
    if "embed_dim" in overrides:
        overrides["num_heads"] = max(1, found["embed_dim"] // 64)
    return name, overrides


def _match_cnn(state: Tensors) -> str:
    """The catalogue CNN whose state dict has exactly ``state``'s keys and shapes."""
    wanted = {key: tuple(value.shape) for key, value in state.items()}
    for name, entry in BACKBONES.items():
        if entry.family != "cnn":
            continue
        with torch.device("meta"):
            model = build_backbone(name, int(state["conv1.weight"].shape[1]), 224)
        if {key: tuple(value.shape) for key, value in model.state_dict().items()} == wanted:
            return name
    raise ValueError("a CNN backbone that matches no catalogue CNN (resnet50, wide_resnet50_2)")


def match_backbone(imported: ImportedWeights) -> tuple[str, dict[str, Any], int, int]:
    """``(catalogue name, timm overrides, in_chans, img_size)`` of the imported teacher backbone."""
    state = imported.backbones["teacher"]
    if "patch_embed.proj.weight" in state:
        name, overrides = _match_vit(state)
        in_chans = int(state["patch_embed.proj.weight"].shape[1])
        return name, {**overrides, **imported.timm_kwargs}, in_chans, int(imported.img_size or 224)
    if "conv1.weight" in state:
        return _match_cnn(state), {}, int(state["conv1.weight"].shape[1]), 224
    raise ValueError("no patch embedding (ViT) nor conv1 (ResNet): not a backbone rsdino can import")


def _load_into(model: torch.nn.Module, state: Tensors, imported: ImportedWeights, where: str) -> None:
    if imported.convert is not None:
        state = imported.convert(state, model)
    result = model.load_state_dict(state, strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise ValueError(f"{where} does not fit the matched backbone: missing {result.missing_keys[:4]}, "
                         f"unexpected {result.unexpected_keys[:4]}")


def build_imported(imported: ImportedWeights) -> tuple[dict[str, torch.nn.Module], dict[str, Any]]:
    """The loaded backbone of every branch (eval mode) and the build part of ``model.json``."""
    name, overrides, in_chans, img_size = match_backbone(imported)
    spec = backbone_spec(name, in_chans, img_size, 0.0, **overrides)
    models = {}
    for branch, state in imported.backbones.items():
        model = build_backbone(name, in_chans, img_size, 0.0, **overrides)
        _load_into(model, state, imported, f"the {branch} backbone")
        models[branch] = model.eval()
    return models, spec


def load_imported(fmt: str, checkpoint: Path) -> ImportedWeights:
    """Read ``checkpoint`` safely and map it with the reader of format ``fmt``.

    Raises ``ValueError`` with one line naming the file for an unknown format, an unsafe or
    unreadable file, or a layout the reader does not recognise.
    """
    if fmt not in READERS:
        raise ValueError(f"unknown checkpoint format {fmt!r} (known: {', '.join(READERS)})")
    obj = safe_load(checkpoint)
    try:
        return READERS[fmt](obj)
    except ValueError as error:
        raise ValueError(f"{checkpoint}: {error}") from None


def import_weights(fmt: str, checkpoint: Path, out_dir: Path, *, method: str | None = None,
                   variant: str | None = None, bands: list[str] | None = None,
                   mean: list[float] | None = None, std: list[float] | None = None) -> Path:
    """Turn a published checkpoint into a model folder at ``out_dir``; return its ``model.safetensors``.

    Args:
        fmt: A key of ``READERS``.
        checkpoint: The ``.pth`` file.
        out_dir: The model folder to write (``models/<variant>``).
        method: Recorded in ``model.json`` (default: the format's method).
        variant: Recorded in ``model.json`` (default: the folder's name).
        bands: Input band names (``[]``: unknown, evaluations then skip the band check).
        mean: Per-band input mean (default: ImageNet RGB for 3 bands).
        std: Per-band input standard deviation (default: ImageNet RGB for 3 bands).
    """
    checkpoint, out_dir = Path(checkpoint), Path(out_dir)
    imported = load_imported(fmt, checkpoint)
    try:
        models, spec = build_imported(imported)
    except ValueError as error:
        raise ValueError(f"{checkpoint}: {error}") from None
    n_bands = spec["in_chans"]
    if mean is None or std is None:
        if n_bands != 3:
            raise ValueError(f"{checkpoint}: give the mean and std of the {n_bands} input bands")
        mean, std = IMAGENET_MEAN, IMAGENET_STD
    for label, values in (("bands", bands or [None] * n_bands), ("mean", mean), ("std", std)):
        if len(values) != n_bands:
            raise ValueError(f"{checkpoint}: {label} has {len(values)} values, the backbone takes "
                             f"{n_bands} bands")
    meta = {**spec, "bands": list(bands or []), "mean": [float(v) for v in mean],
            "std": [float(v) for v in std], "method": method or fmt.split("_backbone")[0],
            "variant": variant or out_dir.name,
            "imported": {"format": fmt, "checkpoint": checkpoint.name, "sha256": file_digest(checkpoint),
                         "args": imported.args}}
    weights = export_backbone(models["teacher"], out_dir, {**meta, "branch": "teacher"})
    if "student" in models:
        export_backbone(models["student"], backbone_folder(out_dir, "student"), {**meta, "branch": "student"})
    teacher = {f"backbone.{key}": value.detach().contiguous()
               for key, value in models["teacher"].state_dict().items()}
    heads = imported.heads.get("teacher", {})
    teacher.update({key: value.detach().contiguous() for key, value in heads.items()})
    with atomic_path(out_dir / TEACHER_FILE, suffix=".safetensors") as tmp:
        save_file(teacher, str(tmp), metadata={"method": meta["method"], "imported_from": fmt})
    return weights


def features(model: torch.nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``(CLS (B, D), patch tokens (B, N, D) or None)`` of an imported backbone (registers skipped)."""
    if not isinstance(model, VisionTransformer):
        return model.forward_head(model.forward_features(x), pre_logits=True), None
    tokens = model.forward_features(x)
    return tokens[:, 0], tokens[:, model.num_prefix_tokens:]
