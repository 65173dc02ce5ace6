"""Settings sidecars are written only after the output they describe, and describe all of its inputs."""

from __future__ import annotations

import fcntl
from contextlib import nullcontext
from pathlib import Path

import pytest

from rsdino import cli
from rsdino.config import load_params
from rsdino.tracking import NullTracker

PARAMS = Path(__file__).resolve().parents[1] / "params.yaml"


class _Train:
    stats = {"mean": [0.0] * 13, "std": [1.0] * 13}


@pytest.fixture
def pretrain_args(tmp_path, monkeypatch):
    """``rsdino pretrain`` of the demo variant into a finished model folder, tracking and data stubbed."""
    from rsdino.data import registry

    monkeypatch.setattr(registry, "open_dataset", lambda *args, **kwargs: _Train())
    monkeypatch.setattr(cli, "_step", lambda *args, **kwargs: nullcontext(NullTracker()))
    for folder in ("raw", "prepared", "model"):
        (tmp_path / folder).mkdir()
    (tmp_path / "model" / "model.safetensors").write_bytes(b"the finished model")
    (tmp_path / "model" / "model.json").write_text("{}")
    (tmp_path / "model" / "params.resolved.yaml").write_text("settings of the finished model\n")
    return ["pretrain", "--params", str(PARAMS), "--scale", "demo", "--variant", "demo_dino_vit",
            "--raw", str(tmp_path / "raw"), "--data", str(tmp_path / "prepared"),
            "--out", str(tmp_path / "model"), "--no-progress", "--launcher", "local"]


def test_a_failing_pretrain_keeps_the_sidecar_of_the_finished_model(pretrain_args, tmp_path, monkeypatch):
    from rsdino.train import pretrain

    def fails(*args, **kwargs):
        raise FloatingPointError("loss is nan at step 3")

    monkeypatch.setattr(pretrain, "run_pretraining", fails)
    with pytest.raises(FloatingPointError):
        cli.main(pretrain_args)
    assert (tmp_path / "model" / "params.resolved.yaml").read_text() == "settings of the finished model\n"
    monkeypatch.setattr(pretrain, "run_pretraining", lambda *a, out_dir, **kw: out_dir / "model.safetensors")
    assert cli.main(pretrain_args) == 0
    written = (tmp_path / "model" / "params.resolved.yaml").read_text()
    assert "demo_dino_vit" in written and "demo_eurosat" in written


def test_a_second_writer_of_a_model_folder_gets_one_line_and_exit_2(pretrain_args, tmp_path, monkeypatch,
                                                                   capsys):
    from rsdino.train import pretrain

    ran = []
    monkeypatch.setattr(pretrain, "run_pretraining", lambda *args, **kwargs: ran.append(1))
    (tmp_path / "model" / ".rsdino.lock").write_text("4242")
    with open(tmp_path / "model" / ".rsdino.lock", "a+") as other:  # another process's open file
        fcntl.flock(other.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        assert cli.main(pretrain_args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "pid 4242" in err and str(tmp_path / "model") in err
    assert err.startswith("rsdino pretrain: error: ")
    assert ran == [] and (tmp_path / "model" / "params.resolved.yaml").read_text().startswith("settings of")
    assert cli.main(pretrain_args) == 0 and ran == [1]  # released: the next writer runs


def test_an_evaluation_sidecar_holds_the_evaluation_dataset_too():
    params = load_params(PARAMS, "full")
    pairs = [(v, e) for e, cfg in params.evaluations.items() for v in cfg.variants
             if v in params.variants and params.variants[v].pretrain_data != cfg.dataset]
    variant, evaluation = pairs[0]
    resolved = params.resolved_for(variant=variant, evaluation=evaluation)
    assert set(resolved["dataset"]) == {params.variants[variant].pretrain_data,
                                        params.evaluations[evaluation].dataset}
    same = load_params(PARAMS, "demo").resolved_for(variant="demo_dino_vit", evaluation="demo_knn")
    assert list(same["dataset"]) == ["demo_eurosat"]


def test_a_failing_evaluation_keeps_its_old_sidecar(tmp_path, monkeypatch):
    from rsdino.evaluate import run

    params = load_params(PARAMS, "demo")
    out = tmp_path / "demo_knn_faiss" / "demo_dino_vit.json"
    out.parent.mkdir()
    sidecar = out.with_name(out.stem + ".params.yaml")
    sidecar.write_text("settings of the old metrics\n")

    def fails(*args, **kwargs):
        raise RuntimeError("the evaluation failed")

    monkeypatch.setattr("rsdino.evaluate.protocols.run_knn_faiss", fails)
    monkeypatch.setattr(run, "evaluation_bands", lambda *args: None)
    monkeypatch.setattr(run, "evaluation_data_version", lambda *args: {})
    monkeypatch.setattr(run, "evaluation_tags", lambda version: {})
    with pytest.raises(RuntimeError):
        run.run_evaluation("demo_knn_faiss", params.evaluations["demo_knn_faiss"], "demo_dino_vit",
                           params.variants["demo_dino_vit"], model_dir=tmp_path, raw_dir=tmp_path,
                           prepared_dir=tmp_path, out=out, params=params, tracker=NullTracker())
    assert sidecar.read_text() == "settings of the old metrics\n" and not out.exists()
