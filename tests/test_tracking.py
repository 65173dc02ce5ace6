"""MLflow tracking: parallel first jobs on a fresh sqlite store all get their runs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

SCRIPT = """
import sys
from rsdino.tracking import step_run
with step_run(experiment="rsdino", tracking_uri=sys.argv[1], artifact_location=sys.argv[2],
              group=f"data:{sys.argv[3]}", step="download", run_name=sys.argv[3]) as tracker:
    tracker.log_metrics({"x": 1.0})
"""


def test_parallel_first_jobs_share_a_fresh_store(tmp_path: Path) -> None:
    db = tmp_path / "mlflow.db"
    uri, artifacts = f"sqlite:///{db}", str(tmp_path / "mlartifacts")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}  # no URI from other tests
    procs = [subprocess.Popen([sys.executable, "-c", SCRIPT, uri, artifacts, f"d{i}"], cwd=tmp_path, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for i in range(3)]
    outputs = [proc.communicate(timeout=300)[0] for proc in procs]
    assert all(proc.returncode == 0 for proc in procs), "\n".join(outputs)[-4000:]
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    runs = client.search_runs([client.get_experiment_by_name("rsdino").experiment_id])
    steps = [r.data.tags.get("rsdino.step") for r in runs if "rsdino.step" in r.data.tags]
    assert steps == ["download"] * 3
