"""``snakemake --profile slurm all`` through the real test cluster gives the local profile's table.

To stay affordable the test passes a params file (``--config params=...``) whose demo scale is
shrunk: the demo dataset at 10 images per class, the demo DINO ViT for 2 epochs, and only the
``demo_knn`` evaluation and table. Everything else is the project's own: the Snakefile, both
profiles (the slurm one with its resources pointed at the test cluster's partition and sizes), the
``submitit`` launcher for pretraining, the SLURM executor plugin for every other job.
"""

from __future__ import annotations

import csv
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def _demo_params(path: Path) -> Path:
    settings = yaml.safe_load((REPO / "params.yaml").read_text())
    source = settings["datasets"]["demo_eurosat"]["source"]
    source.pop("sha256", None)  # a smaller generated archive than the committed checksum describes
    source.pop("md5", None)
    source["generator_kwargs"] = {**source.get("generator_kwargs", {}), "n_per_class": 10}
    variant = settings["variants"]["demo_dino_vit"]
    variant["optim"] = {**variant.get("optim", {}), "epochs": 2, "batch_size": 16, "warmup_epochs": 1}
    variant["resources"] = {"nodes": 1, "gpus_per_node": 0, "cpus_per_task": 1, "mem_mb": 2000,
                            "runtime_min": 15}
    settings["scales"]["demo"].update(variants=["demo_dino_vit"], evaluations=["demo_knn"],
                                      tables=["demo_knn"])
    settings["scale"] = "demo"
    path.write_text(yaml.safe_dump(settings, sort_keys=False))
    return path


def _snakemake(workdir: Path, params: Path, profile: str, *extra: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    env.pop("MLFLOW_TRACKING_URI", None)  # each run keeps its own store in its working directory
    command = [str(BIN / "snakemake"), "-s", str(REPO / "Snakefile"), "-d", str(workdir),
               "--profile", str(REPO / "profiles" / profile), "all", *extra]
    return subprocess.run(command, capture_output=True, text=True, timeout=1500, env=env)


def _table(workdir: Path) -> list[dict[str, str]]:
    """The demo kNN table without the MLflow run ids (which differ from run to run by design)."""
    with (workdir / "results" / "tables" / "demo_knn.csv").open() as handle:
        return [{k: v for k, v in row.items() if k != "mlflow_run_id"} for row in csv.DictReader(handle)]


@pytest.mark.slow
def test_slurm_profile_runs_the_demo_dag_and_matches_the_local_profile(slurm_cluster, tmp_path) -> None:
    params = _demo_params(tmp_path / "params.yaml")
    config = ["--config", f"params={params}", "scale=demo"]

    started = time.monotonic()
    local = _snakemake(tmp_path / "local", params, "local", *config, "--cores", "2")
    assert local.returncode == 0, local.stdout + local.stderr
    local_s = time.monotonic() - started

    started = time.monotonic()
    slurm = _snakemake(
        tmp_path / "slurm", params, "slurm", *config, "launcher=submitit",
        # The test cluster: its partition, no GPUs, sizes that fit its one node.
        "--default-resources", f"slurm_partition={slurm_cluster}", "mem_mb=2000", "runtime=15",
        "cpus_per_task=1",
        "--set-resources", "evaluate:gpu=0", "evaluate:mem_mb=2000", "evaluate:cpus_per_task=1",
        "--slurm-init-seconds-before-status-checks", "1", "--slurm-no-account",
        "--latency-wait", "5")
    output = slurm.stdout + slurm.stderr
    assert slurm.returncode == 0, output
    slurm_s = time.monotonic() - started

    # Pretraining went through submitit (one SLURM job), every other cluster job through the plugin.
    log = (tmp_path / "slurm" / "logs" / "pretrain" / "demo_dino_vit.log").read_text()
    assert "1 task(s) on 1 node(s)" in log, log  # streamed from the job's own log
    job_id = re.search(r"submitted SLURM job (\d+)", log).group(1)
    # It submits and waits where snakemake runs (a local rule: the plugin never submits it) ...
    pretrain_job = re.search(r"^Job (\d+): pretrain demo_dino_vit ", output, re.M).group(1)
    assert f"Job {pretrain_job} has been submitted" not in output, output
    assert re.search(r"Job \d+ has been submitted with SLURM jobid \d+", output)  # ... the others do
    job = subprocess.run(["sacct", "-j", job_id, "-n", "-X", "-P", "-o", "jobname,state"],
                         capture_output=True, text=True, check=True).stdout
    assert job.strip().splitlines()[-1] == "rsdino-pretrain-demo_dino_vit|COMPLETED", job
    rows = _table(tmp_path / "slurm")
    assert rows and rows == _table(tmp_path / "local")
    print(f"local profile {local_s:.0f} s, slurm profile {slurm_s:.0f} s")
