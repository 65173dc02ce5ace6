"""Import of published checkpoint layouts (built here from small timm models with the same keys)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from rsdino.models.backbones import build_backbone, load_backbone
from rsdino.models.heads import DINOHead
from rsdino.models.importers import FORMATS
from rsdino.models.importers.folder import TEACHER_FILE, features, import_weights
from rsdino.models.importers.readers import READERS
from rsdino.models.importers.safe_load import UnsafeCheckpointError, safe_load

IMG = 32


def _vit(seed: int, **kwargs) -> nn.Module:
    torch.manual_seed(seed)
    model = build_backbone("vit_tiny_patch8", 3, IMG, **kwargs).eval()
    with torch.no_grad():  # zero-initialised tokens would hide a lost or misplaced token
        for name, param in model.named_parameters():
            if name in ("cls_token", "reg_token", "pos_embed"):
                param.normal_(0, 0.5)
    return model


def _dino_head_state(seed: int) -> dict[str, torch.Tensor]:
    """A DINO head (3 layers, old weight_norm names) as facebookresearch/dino saves it."""
    torch.manual_seed(seed)
    return {"mlp.0.weight": torch.randn(16, 192), "mlp.0.bias": torch.randn(16),
            "mlp.2.weight": torch.randn(16, 16), "mlp.2.bias": torch.randn(16),
            "mlp.4.weight": torch.randn(8, 16), "mlp.4.bias": torch.randn(8),
            "last_layer.weight_g": torch.rand(32, 1), "last_layer.weight_v": torch.randn(32, 8)}


def _wrapped(backbone: nn.Module, head: dict, prefix: str = "") -> dict[str, torch.Tensor]:
    state = {f"{prefix}backbone.{k}": v for k, v in backbone.state_dict().items()}
    return state | {f"{prefix}head.{k}": v for k, v in head.items()}


def _assert_same_features(source: nn.Module, folder: Path) -> None:
    model, _ = load_backbone(folder)
    x = torch.randn(2, 3, IMG, IMG, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        cls, patches = features(model, x)
        want_cls, want_patches = features(source, x)
    torch.testing.assert_close(cls, want_cls, atol=1e-5, rtol=0)
    torch.testing.assert_close(patches, want_patches, atol=1e-5, rtol=0)


def test_formats_are_the_readers() -> None:
    assert FORMATS == tuple(READERS)


def test_dino_training_checkpoint(tmp_path: Path) -> None:
    teacher, student = _vit(0), _vit(1)
    centre = torch.randn(1, 32)
    path = tmp_path / "checkpoint.pth"
    torch.save({"student": _wrapped(student, _dino_head_state(1), "module."),
                "teacher": _wrapped(teacher, _dino_head_state(2)), "dino_loss": {"center": centre},
                "epoch": 3, "args": argparse.Namespace(arch="vit_tiny", patch_size=8, out_dim=32)}, path)
    import_weights("dino", path, tmp_path / "model")
    _assert_same_features(teacher, tmp_path / "model")
    _assert_same_features(student, tmp_path / "model" / "student")
    meta = json.loads((tmp_path / "model" / "model.json").read_text())
    assert meta["imported"]["format"] == "dino" and meta["imported"]["args"]["arch"] == "vit_tiny"
    assert meta["backbone"] == "vit_tiny_patch8" and meta["img_size"] == IMG
    # The teacher's head is kept under rsdino's names and loads into rsdino's DINOHead.
    head = DINOHead(192, 32, hidden_dim=16, bottleneck_dim=8)
    stored = load_file(str(tmp_path / "model" / TEACHER_FILE))
    head.load_state_dict({k[len("dino_head."):]: v for k, v in stored.items() if k.startswith("dino_head.")})
    torch.testing.assert_close(head.last_layer.parametrizations.weight.original0,
                               _dino_head_state(2)["last_layer.weight_g"])


def test_dino_backbone_only(tmp_path: Path) -> None:
    source = _vit(3)
    torch.save(source.state_dict(), tmp_path / "dino_deitsmall8_pretrain.pth")
    import_weights("dino_backbone", tmp_path / "dino_deitsmall8_pretrain.pth", tmp_path / "model")
    _assert_same_features(source, tmp_path / "model")
    with pytest.raises(ValueError, match="use format dino"):
        torch.save({"teacher": source.state_dict()}, tmp_path / "full.pth")
        import_weights("dino_backbone", tmp_path / "full.pth", tmp_path / "other")


def test_satdino_release_with_gsd_head(tmp_path: Path) -> None:
    source = _vit(4, reg_tokens=1)  # rsdino's SatDINO layout: the GSD register right after the CLS
    state = {k: v for k, v in source.state_dict().items() if k != "reg_token"}
    state["gsd_register"] = source.reg_token.detach()
    pos = source.pos_embed.detach()  # timm [cls, reg, patches] -> SatDINO [cls, patches, reg]
    state["pos_embed"] = torch.cat([pos[:, :1], pos[:, 2:], pos[:, 1:2]], dim=1)
    gsd = {"gsd_head.weight": torch.randn(1, 192), "gsd_head.bias": torch.randn(1)}
    torch.save({"teacher": state, "gsd_head": gsd, "linear_head": {"linear.weight": torch.randn(5, 192)}},
               tmp_path / "satdino.pth")
    import_weights("satdino", tmp_path / "satdino.pth", tmp_path / "model")
    _assert_same_features(source, tmp_path / "model")
    stored = load_file(str(tmp_path / "model" / TEACHER_FILE))
    torch.testing.assert_close(stored["gsd_head.weight"], gsd["gsd_head.weight"])


def test_dinov2_hub_backbone(tmp_path: Path) -> None:
    source = _vit(5, reg_tokens=2, no_embed_class=True, init_values=0.5)
    state = source.state_dict()
    pos_cls = torch.randn(1, 1, 192)  # DINOv2 adds the CLS position inside pos_embed; timm folds it in
    hub = {k: v for k, v in state.items() if k not in ("reg_token", "cls_token", "pos_embed")}
    hub |= {"register_tokens": state["reg_token"], "cls_token": state["cls_token"] - pos_cls,
            "pos_embed": torch.cat([pos_cls, state["pos_embed"]], dim=1), "mask_token": torch.zeros(1, 192)}
    assert "blocks.0.ls1.gamma" in hub
    torch.save(hub, tmp_path / "dinov2_vits14_reg4_pretrain.pth")
    import_weights("dinov2", tmp_path / "dinov2_vits14_reg4_pretrain.pth", tmp_path / "model")
    _assert_same_features(source, tmp_path / "model")


class _Payload:
    """Unpickling this would create ``marker``: a stand-in for a checkpoint that runs code."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


@pytest.fixture
def evil(tmp_path: Path) -> tuple[Path, Path]:
    marker = tmp_path / "marker"
    path = tmp_path / "evil.pth"
    torch.save({"teacher": {"pos_embed": torch.zeros(1)}, "args": _Payload(marker)}, path)
    return path, marker


def test_code_running_checkpoint_is_refused_by_import(evil: tuple[Path, Path], tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    from rsdino.cli import main

    path, marker = evil
    with pytest.raises(UnsafeCheckpointError, match="refused"):
        safe_load(path)
    code = main(["import-weights", "--format", "dino", "--checkpoint", str(path),
                 "--out", str(tmp_path / "m")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith(f"rsdino import-weights: error: {path}: refused") and "\n" not in err
    assert not marker.exists() and not (tmp_path / "m").exists()


def test_code_running_checkpoint_is_refused_on_resume_and_evaluation(evil: tuple[Path, Path],
                                                                     tmp_path: Path) -> None:
    from rsdino.train.checkpoint import load_checkpoint

    path, marker = evil
    with pytest.raises(ValueError, match="cannot read the checkpoint"):
        load_checkpoint(path)  # a planted checkpoints/last.pt
    folder = tmp_path / "model"  # a planted model folder: the evaluations read safetensors only
    import_weights("dino_backbone", _save(tmp_path, _vit(0).state_dict()), folder)
    (folder / "model.safetensors").write_bytes(path.read_bytes())
    with pytest.raises(ValueError, match="cannot read the weights"):
        load_backbone(folder)
    assert not marker.exists()


def _save(folder: Path, obj: object) -> Path:
    torch.save(obj, folder / "backbone.pth")
    return folder / "backbone.pth"


def test_released_weights_file_local_checked_or_manual(tmp_path: Path) -> None:
    from rsdino.config.variants import ReleasedWeights
    from rsdino.data.download import ChecksumError, file_digest
    from rsdino.models.importers.released import checkpoint_file

    path = _save(tmp_path, {"cls_token": torch.zeros(1)})
    spec = ReleasedWeights(format="dino_backbone", path=str(path), sha256=file_digest(path))
    assert checkpoint_file(spec, "v", tmp_path / "downloads") == path
    with pytest.raises(ChecksumError, match="sha256 mismatch"):
        checkpoint_file(spec.model_copy(update={"sha256": "0" * 64}), "v", tmp_path / "downloads")
    manual = ReleasedWeights(format="dino_mc", path=str(tmp_path / "absent.pth"), url="https://example.org/w.pth")
    with pytest.raises(FileNotFoundError, match=r"absent.pth: released weights of variant 'v' not found: "
                                                r"download https://example.org/w.pth \(no checksum"):
        checkpoint_file(manual, "v", tmp_path / "downloads")
    # a published checksum: fetched through rsdino.data.download (a file:// URL here, offline)
    fetched = checkpoint_file(ReleasedWeights(format="dino_backbone", url=f"file://{path}",
                                              sha256=file_digest(path)), "v", tmp_path / "downloads",
                              progress=False)
    assert fetched.parent == tmp_path / "downloads" and fetched.read_bytes() == path.read_bytes()


def test_a_variant_with_released_weights_imports_through_the_cli(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    import yaml

    from rsdino.cli import main

    raw = yaml.safe_load((Path(__file__).resolve().parents[2] / "params.yaml").read_text())
    released = raw["variants"]["demo_dino_vit_released"]
    released["weights"] |= {"mean": [0.0] * 13, "std": [1.0] * 13}
    raw["variants"]["manual_one"] = {**released, "weights": {"format": "dino", "path": "absent.pth",
                                                             "manual": "ask the authors"}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    monkeypatch.chdir(tmp_path)
    assert main(["make-demo", "--variant", "demo_dino_vit_released",
                 "--out", "data/demo/demo_dino_vit_released.pth"]) == 0
    assert main(["import-weights", "--variant", "demo_dino_vit_released", "--out", "models/r"]) == 0
    meta = json.loads((tmp_path / "models" / "r" / "model.json").read_text())
    assert meta["variant"] == "demo_dino_vit_released" and meta["in_chans"] == 13
    assert meta["std"] == [1.0] * 13
    assert (tmp_path / "models" / "r" / "student" / "model.safetensors").is_file()
    capsys.readouterr()
    assert main(["import-weights", "--variant", "manual_one", "--out", "models/m"]) == 2
    assert capsys.readouterr().err.strip().endswith("not found: ask the authors")
