"""Every cell knows its data, through the command line: pretrain -> model.json and its MLflow run,
evaluate -> metrics file and run, report -> the table CSV line. Training and the protocol are stubs
(their numbers are not under test); data, MLflow and the files are real."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest

from rsdino.cli import main
from rsdino.train import pretrain

ROOT = Path(__file__).resolve().parents[1]


def cli(*args: str) -> None:
    assert main([args[0], "--params", "params.yaml", *args[1:]]) in (0, None), args


@pytest.fixture
def project(tmp_path, monkeypatch):
    shutil.copy(ROOT / "params.yaml", tmp_path / "params.yaml")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")

    def fake_pretraining(variant_name, variant, dataset, *, out_dir, **kwargs):
        out_dir.mkdir(parents=True, exist_ok=True)
        meta = {"backbone": variant.backbone, "variant": variant_name}
        (out_dir / "model.json").write_text(json.dumps(meta))
        (out_dir / "model.safetensors").write_bytes(b"")
        return out_dir / "model.safetensors"

    monkeypatch.setattr(pretrain, "run_pretraining", fake_pretraining)
    monkeypatch.setattr("rsdino.evaluate.knn.run_knn", lambda *args: {"metrics": {"top1_k20": 50.0}})
    return tmp_path


def mlflow_tags(project: Path, step: str) -> dict[str, str]:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{project / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("rsdino")
    (found,) = client.search_runs([experiment.experiment_id], f"tags.`rsdino.step` = '{step}'")
    return found.data.tags


def test_the_data_version_travels_from_the_data_to_the_table(project):
    raw, prepared = "data/raw/demo_eurosat", "data/prepared/demo_eurosat"
    cli("make-demo", "--dataset", "demo_eurosat", "--out", "data/demo/EuroSATallBands.demo.tar")
    cli("download", "--dataset", "demo_eurosat", "--out", raw, "--no-progress")
    cli("prepare", "--dataset", "demo_eurosat", "--raw", raw, "--out", prepared, "--no-progress")
    model = "models/demo_dino_vit"
    cli("pretrain", "--variant", "demo_dino_vit", "--raw", raw, "--data", prepared, "--out", model,
        "--launcher", "local", "--no-progress")
    trained_on = json.loads((project / model / "model.json").read_text())["data_version"]
    assert trained_on["dataset"] == "demo_eurosat" and trained_on["source"] == "content"  # not tracked
    assert mlflow_tags(project, "pretrain")["rsdino.data_version.demo_eurosat"] == trained_on["version"]

    # tracked by DVC before the evaluation (as the `track` rule does): the version is the DVC hash
    (project / "data/raw/demo_eurosat.dvc").write_text(
        "outs:\n- md5: 5eed.dir\n  size: {}\n  nfiles: {}\n  path: demo_eurosat\n".format(
            sum(p.stat().st_size for p in (project / raw).rglob("*") if p.is_file()),
            sum(1 for p in (project / raw).rglob("*") if p.is_file())))
    metrics = "results/metrics/demo_knn/demo_dino_vit.json"
    cli("evaluate", "--evaluation", "demo_knn", "--variant", "demo_dino_vit", "--model", model, "--raw", raw,
        "--data", prepared, "--out", metrics, "--no-progress")
    record = json.loads((project / metrics).read_text())
    assert record["data_version"]["evaluation"]["version"] == "md5:5eed.dir"
    assert record["data_version"]["pretraining"] == trained_on
    tags = mlflow_tags(project, "knn")
    assert tags["rsdino.data_version.demo_eurosat"] == "md5:5eed.dir"
    assert tags["rsdino.pretrain_data_version.demo_eurosat"] == trained_on["version"]

    cli("report", "--metrics", metrics, "--out", "results/tables", "--summary", "results/summary.json",
        "--plots", "results/plots")
    tables = list((project / "results/tables").glob("*.csv"))
    lines = [line for table in tables for line in csv.DictReader(table.open(newline=""))
             if line["mlflow_run_id"]]
    cells = {(line["evaluation"], line["variant"]) for line in lines}
    assert lines and cells == {("demo_knn", "demo_dino_vit")}
    assert {(line["data_version"], line["pretrain_data_version"], line["git_commit"]) for line in lines} == {
        ("md5:5eed.dir", trained_on["version"], record["git_commit"] or "")}
