"""Every registered method (``rsdino.config.methods.METHODS``): its record resolves, builds and agrees.

Parametrised over the registry: the meta-architecture named by each record builds on a tiny ViT,
implements the loop's interface, and returns exactly the loss terms its default weights switch on;
a record whose terms read patch or register tokens says it needs them. Plus the rule that makes
the registry the one place a method is named: no method name is a string literal elsewhere in
``rsdino/`` (docstrings aside).
"""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from rsdino.config import CropSettings, HeadSettings, VariantConfig
from rsdino.config.methods import LOSS_TERMS, METHODS, TOKEN_TERMS, method_recipe
from rsdino.config.variants import InitFrom
from rsdino.train.init_from import initialise_from
from rsdino.train.meta_architecture import (
    ExportModules,
    MetaArchitecture,
    build_meta_architecture,
    meta_architecture_class,
)

NAMES = sorted(METHODS)
RSDINO = Path(__file__).resolve().parents[2] / "rsdino"
TINY_VIT = {"embed_dim": 24, "depth": 1, "num_heads": 2}
S1_BANDS, S2_BANDS = 2, 3


def _tiny_variant(method: str, backbone: str = "vit_tiny_patch8") -> VariantConfig:
    return VariantConfig(
        method=method, backbone=backbone, backbone_kwargs=TINY_VIT if backbone.startswith("vit") else {},
        pretrain_data="synthetic", seed=0,
        crops=CropSettings(global_size=32, local_size=16, n_global=2, n_local=2,
                           mask_p=0.5 if METHODS[method].ibot_weight > 0 else 0.0),
        head=HeadSettings(out_dim=16, hidden_dim=16, bottleneck_dim=8))


def _in_chans(method: str) -> int:
    return S1_BANDS + S2_BANDS if METHODS[method].multimodal else S2_BANDS


def _batch(in_chans: int, images: int = 2) -> dict:
    generator = torch.Generator().manual_seed(0)
    return {"global": [torch.randn(images, in_chans, 32, 32, generator=generator) for _ in range(2)],
            "local": [torch.randn(images, in_chans, 16, 16, generator=generator) for _ in range(2)],
            "masks": torch.rand(images, 2, 4, 4, generator=generator) < 0.5,
            "global_gsd": torch.full((images, 2), 10.0), "local_gsd": torch.full((images, 2), 20.0)}


@pytest.mark.parametrize("name", NAMES)
def test_record_is_complete_and_consistent(name: str) -> None:
    record = method_recipe(name)
    assert record.citation and record.teacher in ("ema", "none")
    assert record.centering in ("centering", "sinkhorn_knopp")
    weights = record.default_weights()
    assert set(weights) == set(LOSS_TERMS) and all(w >= 0 for w in weights.values())
    assert any(w > 0 for w in weights.values()), "a method with no loss term learns nothing"
    if any(weights[term] > 0 for term in TOKEN_TERMS):
        assert record.needs_patch_tokens, f"{name} reads patch/register tokens but does not say so"
    assert issubclass(meta_architecture_class(name), MetaArchitecture)


@pytest.mark.parametrize("name", NAMES)
def test_meta_architecture_builds_and_returns_its_default_terms(name: str) -> None:
    torch.manual_seed(0)
    record = METHODS[name]
    model = build_meta_architecture(_tiny_variant(name), _in_chans(name))
    assert isinstance(model, MetaArchitecture)
    out = model.losses(_batch(_in_chans(name)), teacher_temp=0.04)
    on = {term for term, weight in record.default_weights().items() if weight > 0}
    assert set(out) == {"total", *on, *model.statistics}
    assert torch.isfinite(out["total"])
    out["total"].backward()
    trained = model.trained_module()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in trained.parameters())
    exported = model.export_modules()
    assert exported.skip_bands == (S1_BANDS if record.multimodal else 0)
    assert exported.main.patch_embed.proj.in_channels == S2_BANDS  # the S2 backbone of multimodal data
    assert exported.timm_kwargs["embed_dim"] == TINY_VIT["embed_dim"]


@pytest.mark.parametrize("name", NAMES)
def test_teacher_kind_matches_update_teacher(name: str) -> None:
    """``ema``: momentum 0 copies the trained weights into the exported (teacher) backbone."""
    torch.manual_seed(0)
    model = build_meta_architecture(_tiny_variant(name), _in_chans(name))
    with torch.no_grad():
        for param in model.trained_module().parameters():
            param.add_(1.0)
    main = model.export_modules().main
    before = [p.clone() for p in main.parameters()]
    model.update_teacher(0.0)
    moved = any(not torch.equal(a, b) for a, b in zip(before, main.parameters(), strict=True))
    assert moved == (METHODS[name].teacher == "ema")


@pytest.mark.parametrize("name", [n for n in NAMES if METHODS[n].needs_patch_tokens])
def test_token_methods_refuse_a_cnn(name: str) -> None:
    with pytest.raises(ValueError, match="needs a ViT"):
        _tiny_variant(name, backbone="resnet50")


def test_unknown_method_is_refused_with_the_known_names() -> None:
    known = re.escape(", ".join(METHODS))
    with pytest.raises(ValueError, match=f"unknown method 'mae'; known: {known}"):
        VariantConfig(method="mae", backbone="vit_tiny_patch8", pretrain_data="synthetic")
    with pytest.raises(ValueError, match=f"unknown method 'mae'; known: {known}"):
        method_recipe("mae")


def _meta_architecture_files() -> set[Path]:
    modules = {METHODS[name].meta_arch.partition(":")[0] for name in NAMES}
    return {RSDINO.parent / (module.replace(".", "/") + ".py") for module in modules}


def _string_literals(path: Path) -> list[tuple[int, str]]:
    """``(line, value)`` of every string constant of ``path`` that is not a docstring."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
                  and node.body and isinstance(node.body[0], ast.Expr)
                  and isinstance(node.body[0].value, ast.Constant)}
    return [(node.lineno, node.value) for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings]


def test_method_names_are_spelled_only_in_the_registry() -> None:
    """A new method is a record, not a name to add to tuples and ``if`` chains across the package.

    Allowed elsewhere: names of released-checkpoint formats (``rsdino.models.importers``, their own
    namespace), and the loss-term keys (``dino``, ``ibot``) inside the meta-architecture modules.
    """
    registry = RSDINO / "config" / "methods.py"
    formats = RSDINO / "models" / "importers"
    term_files = _meta_architecture_files()
    found = []
    for path in sorted(RSDINO.rglob("*.py")):
        if path == registry or formats in path.parents:
            continue
        for line, value in _string_literals(path):
            if value in METHODS and not (value in LOSS_TERMS and path in term_files):
                found.append(f"{path.relative_to(RSDINO.parent)}:{line}: {value!r}")
    assert found == []


def test_the_literal_scan_finds_a_spelled_name(tmp_path: Path) -> None:
    """The scan above is not blind: it sees a name in code, and not in a docstring."""
    name = NAMES[0]
    source = tmp_path / "module.py"
    source.write_text(f'"""Mentions {name!r} in prose."""\nif method == {name!r}:\n    pass\n',
                      encoding="utf-8")
    assert _string_literals(source) == [(2, name)]


def test_the_registry_and_the_settings_that_read_it_are_torch_free() -> None:
    """The settings validator, the preflight and the Snakefile read the records without torch."""
    code = ("import sys, rsdino.config, rsdino.config.methods, rsdino.config.preflight; "
            "print('torch' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                            cwd=RSDINO.parent, env={**os.environ, "PYTHONPATH": str(RSDINO.parent)})
    assert result.stdout.strip() == "False"


class _Encoder(MetaArchitecture):
    """A minimal teacher-less meta-architecture (MAE-like): only what the interface requires."""

    def __init__(self) -> None:
        super().__init__()
        self.encoder = torch.nn.Linear(3, 3)

    def losses(self, batch: dict, teacher_temp: float) -> dict[str, torch.Tensor]:
        loss = self.encoder(batch["global"][0]).pow(2).mean()
        return {"total": loss, "reconstruction": loss.detach()}

    def trained_module(self) -> torch.nn.Module:
        return self.encoder

    def export_modules(self) -> ExportModules:
        return ExportModules(backbones={"student": self.encoder}, whole=self)


def test_a_teacherless_meta_architecture_gets_no_ops_and_is_refused_by_init_from(tmp_path: Path) -> None:
    model = _Encoder()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model.update_teacher(0.5)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert model.last_layers() == [] and model.compile_blocks() == 0
    assert model.export_modules().main is model.encoder and model.export_modules().skip_bands == 0
    with pytest.raises(ValueError, match="init_from loads self-distillation checkpoints"):
        initialise_from(model, InitFrom(format="dino", path=str(tmp_path / "w.pth")))
