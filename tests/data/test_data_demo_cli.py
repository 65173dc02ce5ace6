"""The demo pretraining datasets through the command line: make-demo, download, prepare, open."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from rsdino.cli import main
from rsdino.config import load_params
from rsdino.data import open_dataset

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A scratch project folder holding params.yaml, with MLflow writing into it."""
    shutil.copy(ROOT / "params.yaml", tmp_path / "params.yaml")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    return tmp_path


@pytest.mark.parametrize(
    ("dataset", "archive", "shape"),
    [
        ("demo_seco", "seco_100k.demo.tar", {"image": (13, 32, 32), "series": (4, 13, 32, 32)}),
        (
            "demo_sen12mscrts",
            "SEN12MSCRTS.demo.tar",
            {"image": (15, 32, 32), "s1": (2, 32, 32), "s2": (13, 32, 32)},
        ),
    ],
)
def test_demo_dataset_end_to_end(project: Path, dataset: str, archive: str, shape: dict) -> None:
    params = ["--params", "params.yaml"]
    assert main(["make-demo", *params, "--dataset", dataset, "--out", f"data/demo/{archive}"]) in (0, None)
    raw, prepared = Path("data/raw") / dataset, Path("data/prepared") / dataset
    assert main(
        [
            "download",
            *params,
            "--dataset",
            dataset,
            "--downloads",
            "data/downloads",
            "--out",
            str(raw),
            "--no-progress",
        ]
    ) in (0, None)
    assert main(
        ["prepare", *params, "--dataset", dataset, "--raw", str(raw), "--out", str(prepared), "--no-progress"]
    ) in (0, None)
    cfg = load_params(project / "params.yaml", "demo").datasets[dataset]
    train = open_dataset(cfg, raw, prepared, "train")
    item = train[0]
    assert {key: tuple(item[key].shape) for key in shape} == shape
    assert all(item[key].dtype == torch.float32 for key in shape)
    assert train.bands == cfg.bands and len(train.stats["mean"]) == len(cfg.bands)


def test_manual_dataset_download_says_where_to_get_it(project: Path, capsys: pytest.CaptureFixture) -> None:
    code = main(["download", "--params", "params.yaml", "--dataset", "potsdam", "--out", "data/raw/potsdam"])
    err = capsys.readouterr().err
    assert code == 2 and "data/raw/potsdam" in err and "isprs.org" in err
