"""``rsdino export``: an upload-ready folder (config.json, weights, model card), made offline."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
import yaml

from rsdino.cli import main
from rsdino.models.backbones import backbone_spec, build_backbone, export_backbone
from rsdino.models.timm_config import CONVVIT_LOADER_FILE

BANDS = ["B02", "B03", "B04"]


def _model_folder(root: Path, name: str, variant: str, **overrides) -> Path:
    """A small exported backbone, as ``rsdino pretrain`` leaves it (with its data version)."""
    folder = root / "models" / variant
    meta = {**backbone_spec(name, len(BANDS), 32, **overrides), "bands": BANDS, "method": "dino",
            "variant": variant, "branch": "teacher", "mean": [1.0, 2.0, 3.0], "std": [4.0, 5.0, 6.0],
            "data_version": {"dataset": "demo_eurosat", "version": "sha256:abc"}}
    export_backbone(build_backbone(name, len(BANDS), 32, **overrides), folder, meta)
    return folder


def _metrics(results: Path, evaluation: str, variant: str, metrics: dict) -> None:
    path = results / evaluation / f"{variant}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"evaluation": evaluation, "protocol": "knn", "variant": variant,
                                "dataset": "demo_eurosat", "metrics": metrics}), encoding="utf-8")


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any attempt to open a network connection fails the test."""
    def refuse(*args, **kwargs):
        raise AssertionError("rsdino export tried to reach the network")
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def _front_matter(card: str) -> dict:
    assert card.startswith("---\n")
    return yaml.safe_load(card.split("---\n")[1])


def test_export_writes_an_upload_ready_folder_with_the_variants_metrics(tmp_path, offline, capsys) -> None:
    model = _model_folder(tmp_path, "vit_tiny_patch8", "demo_dino_vit", embed_dim=32, num_heads=2, depth=1)
    results = tmp_path / "results" / "metrics"
    _metrics(results, "demo_knn", "demo_dino_vit", {"top1_k20": 81.25, "top5_k20": 98.0})
    _metrics(results, "demo_knn", "demo_dinov2", {"top1_k20": 12.0})  # another variant: not in the card
    out = tmp_path / "hub" / "demo_dino_vit"
    assert main(["export", "--model", str(model), "--out", str(out), "--results", str(results)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    assert (out / "model.safetensors").read_bytes() == (model / "model.safetensors").read_bytes()
    config = json.loads((out / "config.json").read_text(encoding="utf-8"))
    assert config["architecture"] == "vit_tiny_patch16_224" and config["model_args"]["in_chans"] == 3
    assert config["pretrained_cfg"]["std"] == [4.0, 5.0, 6.0]
    front = _front_matter((out / "README.md").read_text(encoding="utf-8"))
    assert front["library_name"] == "timm" and front["bands"] == BANDS
    assert front["method"] == "dino" and front["pretraining_data"] == "demo_eurosat"
    assert "dino" in front["tags"]
    [result] = front["model-index"][0]["results"]
    assert {m["type"]: m["value"] for m in result["metrics"]} == {"top1_k20": 81.25, "top5_k20": 98.0}
    assert str(out) in capsys.readouterr().out


def test_export_of_a_convvit_carries_its_loader_and_no_results_without_metrics(tmp_path, offline) -> None:
    model = _model_folder(tmp_path, "convvit_small", "convvit", depth=1, embed_dim=64, num_heads=2)
    out = tmp_path / "hub"
    none = tmp_path / "none"
    assert main(["export", "--model", str(model), "--out", str(out), "--results", str(none)]) == 0
    assert (out / CONVVIT_LOADER_FILE).is_file()
    card = (out / "README.md").read_text(encoding="utf-8")
    assert "model-index" not in _front_matter(card) and "create_model" in card


def test_export_of_a_missing_or_broken_folder_is_one_line(tmp_path, capsys) -> None:
    assert main(["export", "--model", str(tmp_path / "nope"), "--out", str(tmp_path / "out")]) == 2
    assert "nope" in capsys.readouterr().err
    broken = _model_folder(tmp_path, "vit_tiny_patch8", "v", embed_dim=32, num_heads=2, depth=1)
    (broken / "model.json").write_text("{}", encoding="utf-8")
    assert main(["export", "--model", str(broken), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "model.json" in err and not (tmp_path / "out").exists()
