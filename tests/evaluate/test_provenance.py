"""Every metrics file and evaluation run names the data: the evaluation data's version now, the
pretraining data's version as `rsdino pretrain` recorded it in model.json."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rsdino.config import load_params
from rsdino.evaluate import run
from rsdino.evaluate.provenance import model_data_version
from rsdino.tracking import NullTracker

PARAMS = Path(__file__).resolve().parents[2] / "params.yaml"


@pytest.fixture
def job(tmp_path, monkeypatch):
    """A demo_knn job whose protocol is replaced by a stub (the record is under test, not kNN)."""
    params = load_params(PARAMS, "demo")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("rsdino.evaluate.knn.run_knn", lambda *args: {"metrics": {"top1_k20": 50.0}})
    raw = tmp_path / "data" / "raw" / "demo_eurosat"
    (raw / "Forest").mkdir(parents=True)
    (raw / "Forest" / "Forest_1.tif").write_bytes(b"pixels")
    model = tmp_path / "models" / "demo_dino_vit"
    model.mkdir(parents=True)

    def evaluate(tracker):
        return run.run_evaluation("demo_knn", params.evaluations["demo_knn"], "demo_dino_vit",
                                  params.variants["demo_dino_vit"], model_dir=model, raw_dir=raw,
                                  prepared_dir=tmp_path / "prepared", out=tmp_path / "metrics.json",
                                  params=params, tracker=tracker, progress=False)

    return raw, model, evaluate


def test_the_record_and_the_run_carry_both_data_versions(job, tmp_path):
    raw, model, evaluate = job
    raw.with_name("demo_eurosat.dvc").write_text(
        "outs:\n- md5: 0f0e.dir\n  size: 6\n  nfiles: 1\n  hash: md5\n  path: demo_eurosat\n")
    pretraining = {"dataset": "demo_eurosat", "version": "sha256:abc", "dvc_md5": None,
                   "content_sha256": "abc", "source": "content"}
    (model / "model.json").write_text(json.dumps({"backbone": "x", "data_version": pretraining}))
    tracker = NullTracker()
    record = evaluate(tracker)
    assert record["data_version"] == {
        "evaluation": {"dataset": "demo_eurosat", "version": "md5:0f0e.dir", "dvc_md5": "0f0e.dir",
                       "content_sha256": None, "source": "dvc"},
        "pretraining": pretraining}
    assert json.loads((tmp_path / "metrics.json").read_text())["data_version"] == record["data_version"]
    assert tracker.tags == {"rsdino.data_version.demo_eurosat": "md5:0f0e.dir",
                            "rsdino.pretrain_data_version.demo_eurosat": "sha256:abc"}
    assert "git_commit" in record and record["mlflow"]["run_id"] is None


def test_without_a_pointer_or_a_model_record(job):
    raw, model, evaluate = job
    (model / "model.json").write_text(json.dumps({"backbone": "x"}))  # exported before versions
    tracker = NullTracker()
    record = evaluate(tracker)
    evaluation = record["data_version"]["evaluation"]
    assert evaluation["source"] == "content"
    assert evaluation["version"] == f"sha256:{evaluation['content_sha256']}"
    assert record["data_version"]["pretraining"] is None
    assert list(tracker.tags) == ["rsdino.data_version.demo_eurosat"]
    (raw / "Forest" / "Forest_1.tif").write_bytes(b"pixelz")
    assert evaluate(NullTracker())["data_version"]["evaluation"]["version"] != evaluation["version"]


def test_pretraining_records_its_data_in_model_json(tiny_vit_dir):
    from rsdino.evaluate.provenance import record_model_data_version
    from rsdino.models.backbones import load_backbone

    assert model_data_version(tiny_vit_dir) is None
    version = {"dataset": "demo_eurosat", "version": "md5:ab.dir", "dvc_md5": "ab.dir"}
    record_model_data_version(tiny_vit_dir, version)
    assert model_data_version(tiny_vit_dir) == version
    _, meta = load_backbone(tiny_vit_dir)  # the model still loads, its description kept
    assert meta["variant"] == "t" and meta["data_version"] == version


def test_a_malformed_model_record_names_the_file(tmp_path):
    (tmp_path / "model.json").write_text(json.dumps({"data_version": "v1"}))
    with pytest.raises(ValueError, match=r"model\.json: 'data_version' must be a mapping"):
        model_data_version(tmp_path)
