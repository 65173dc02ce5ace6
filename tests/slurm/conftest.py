"""A real one-node SLURM cluster (installed and started by ``cluster.sh``) and a tiny project for it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from rsdino.cli import main as rsdino_main

SCRIPT = Path(__file__).with_name("cluster.sh")
REPO = Path(__file__).resolve().parents[2]
PARTITION = os.environ.get("RSDINO_SLURM_PARTITION", "debug")
TINY = {  # a tiny DINO ViT on 16 px crops: two steps of 4 images on the 10 training images
    "description": "SLURM test variant", "method": "dino", "backbone": "vit_tiny_patch8",
    "backbone_kwargs": {"embed_dim": 48, "num_heads": 3, "depth": 2}, "pretrain_data": "demo_eurosat",
    "crops": {"global_size": 16, "local_size": 8, "n_global": 2, "n_local": 2,
              "global_scale": [0.5, 1.0], "local_scale": [0.2, 0.5], "blur_p": [0.0, 0.0, 0.0]},
    "head": {"out_dim": 64, "hidden_dim": 64, "bottleneck_dim": 32},
    "optim": {"epochs": 1, "batch_size": 4, "lr": 0.02, "warmup_epochs": 0, "freeze_last_layer_epochs": 0,
              "momentum_teacher": 0.9},
    "drop_path": 0.0, "seed": 3,
    "resources": {"nodes": 1, "gpus_per_node": 0, "cpus_per_task": 1, "mem_mb": 2000, "runtime_min": 15},
}


def _cluster(action: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(SCRIPT), action], capture_output=True, text=True, timeout=1200)


@pytest.fixture(scope="session")
def slurm_cluster():
    """A running one-node cluster, installed and started by ``cluster.sh`` (stopped if we started it)."""
    if shutil.which("sinfo") and _cluster("status").returncode == 0:
        yield PARTITION
        return
    if os.geteuid() != 0:
        pytest.fail(f"{SCRIPT}: installing and starting the test cluster needs root (run the tests as root)")
    for action in ("install", "start"):
        proc = _cluster(action)
        if proc.returncode != 0:
            pytest.fail(f"{SCRIPT} {action} failed:\n{proc.stdout}\n{proc.stderr}")
    yield PARTITION
    _cluster("stop")


def _rsdino(*argv: str) -> None:
    code = rsdino_main(list(argv))
    assert code == 0, f"rsdino {' '.join(argv)} exited with {code}"


@pytest.fixture(scope="session")
def tiny_project(tmp_path_factory):
    """A params file with the tiny variants, and the generated demo dataset (20 images of 16 px; 10 to train).

    Returns ``(root, params)``; the dataset is in ``root/raw`` and ``root/prepared``.
    """
    root = tmp_path_factory.mktemp("slurm_project")
    settings = yaml.safe_load((REPO / "params.yaml").read_text())
    dataset = settings["datasets"]["demo_eurosat"]
    dataset["source"] = {"url": f"file://{root / 'demo.tar'}", "generator": "eurosat_ms",
                         "generator_kwargs": {"n_per_class": 2, "size": 16, "seed": 0, "illumination": 0.5}}
    dataset["native_size"] = 16
    settings["variants"]["slurm_tiny"] = TINY
    settings["variants"]["slurm_long"] = {**TINY, "optim": {**TINY["optim"], "epochs": 8}}
    settings["variants"]["slurm_broken"] = {**TINY, "optim": {**TINY["optim"], "batch_size": 64}}
    settings["mlflow"] = {"experiment": "rsdino-slurm-test",
                          "tracking_uri": f"sqlite:///{root / 'mlflow.db'}",
                          "artifact_location": str(root / "mlartifacts")}
    params = root / "params.yaml"
    params.write_text(yaml.safe_dump(settings, sort_keys=False))
    common = ("--params", str(params), "--scale", "demo", "--no-progress")
    _rsdino("make-demo", *common, "--dataset", "demo_eurosat", "--out", str(root / "demo.tar"))
    _rsdino("download", *common, "--dataset", "demo_eurosat", "--downloads", str(root / "downloads"),
            "--out", str(root / "raw"))
    _rsdino("prepare", *common, "--dataset", "demo_eurosat", "--raw", str(root / "raw"),
            "--out", str(root / "prepared"))
    return root, params


def _pretrain_argv(project: tuple[Path, Path], variant: str, out: Path, *extra: str) -> list[str]:
    root, params = project
    return ["pretrain", "--params", str(params), "--scale", "demo", "--no-progress", "--variant", variant,
            "--raw", str(root / "raw"), "--data", str(root / "prepared"), "--out", str(out),
            "--threads", "1", *extra]


@pytest.fixture(scope="session")
def train_here(tiny_project):
    """Run ``rsdino pretrain --launcher local`` of a tiny variant in this process: ``f(variant, out)``."""
    return lambda variant, out: _rsdino(*_pretrain_argv(tiny_project, variant, out, "--launcher", "local"))


@pytest.fixture(scope="session")
def slurm_command(tiny_project):
    """The command line of ``rsdino pretrain --launcher submitit`` on the test cluster:
    ``f(variant, out, folder, *extra)``."""
    def command(variant: str, out: Path, folder: Path, *extra: str) -> list[str]:
        return [sys.executable, "-m", "rsdino.cli",
                *_pretrain_argv(tiny_project, variant, out, "--launcher", "submitit", "--slurm-partition",
                                PARTITION, "--slurm-folder", str(folder), "--slurm-poll", "2", *extra)]
    return command
