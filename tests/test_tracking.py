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


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_for(url: str, proc: subprocess.Popen, seconds: float = 300) -> None:
    import time
    import urllib.request

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"mlflow server exited: {proc.stdout.read()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise AssertionError(f"mlflow server did not answer {url} in {seconds} s")


def test_a_tracking_server_stores_artifacts_links_runs_and_summarises_parents(tmp_path: Path,
                                                                            monkeypatch) -> None:
    """Against `mlflow server` on 127.0.0.1: artifacts land in its store, runs link and summarise."""
    import hashlib
    import json

    from mlflow.tracking import MlflowClient

    from rsdino.tracking import model_link_tags, record_pretraining_run, run_name, step_run

    store, port = tmp_path / "server-artifacts", _free_port()
    for key in [k for k in os.environ if k.startswith("MLFLOW_")]:
        monkeypatch.delenv(key)
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(port),
         "--backend-store-uri", f"sqlite:///{tmp_path / 'server.db'}", "--artifacts-destination", str(store),
         "--serve-artifacts", "--workers", "1"],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "1",
             "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"})  # no job runner: it never listens offline
    try:
        uri = f"http://127.0.0.1:{port}"
        _wait_for(f"{uri}/health", proc)
        client_side = tmp_path / "project" / "mlartifacts"  # what params.yaml's artifact_location names
        model_dir = tmp_path / "project" / "models" / "v1"
        model_dir.mkdir(parents=True)
        (model_dir / "model.safetensors").write_bytes(b"weights")
        common = {"experiment": "rsdino", "tracking_uri": uri, "artifact_location": str(client_side),
                  "group": "v1"}
        with step_run(step="pretrain", run_name=run_name("v1", "pretrain", "eurosat"), **common) as tracker:
            history = tmp_path / "history.csv"
            history.write_text("step,loss\n1,2.0\n")
            tracker.log_artifact(history)
            tracker.log_metrics({"loss": 3.0}, step=0)
            tracker.log_metrics({"loss": 2.0, "knn_probe_top1": 40.0}, step=1)
            pretrain_id = tracker.run_id
        record_pretraining_run(model_dir, pretrain_id, uri)
        tags = model_link_tags(model_dir, model_dir / "model.safetensors")
        with step_run(step="knn", summary="demo_knn", tags=tags,
                      run_name=run_name("v1", "demo_knn (knn)", "eurosat"), **common) as tracker:
            tracker.log_metrics({"top1_k20": 75.0})
            eval_id = tracker.run_id

        stored = sorted(p.name for p in store.rglob("*") if p.is_file())
        assert "history.csv" in stored, stored
        assert not client_side.exists()  # nothing written beside the client
        client = MlflowClient(tracking_uri=uri)
        evaluation, pretraining = client.get_run(eval_id), client.get_run(pretrain_id)
        assert evaluation.data.tags["rsdino.pretrain_run_id"] == pretrain_id
        assert evaluation.data.tags["rsdino.model_sha256"] == hashlib.sha256(b"weights").hexdigest()
        assert pretraining.info.run_name == "v1 / pretrain / eurosat"
        assert evaluation.info.run_name == "v1 / demo_knn (knn) / eurosat"
        parent = client.get_run(evaluation.data.tags["mlflow.parentRunId"])
        assert parent.info.run_id == pretraining.data.tags["mlflow.parentRunId"]
        assert parent.data.metrics == {"pretrain/loss": 2.0, "pretrain/knn_probe_top1": 40.0,
                                       "demo_knn/top1_k20": 75.0}
        assert json.loads((model_dir / "mlflow_run.json").read_text())["run_id"] == pretrain_id
    finally:
        proc.terminate()
        proc.wait(timeout=60)


TELEMETRY_PROBE = """
import os
from dvc.analytics import is_enabled
before = is_enabled()
import rsdino.cli  # noqa: F401 - configures the environment on import
from mlflow.telemetry.utils import is_telemetry_disabled
print(before, is_enabled(), is_telemetry_disabled(), os.environ["MLFLOW_DISABLE_TELEMETRY"],
      os.environ["DO_NOT_TRACK"])
"""


def test_telemetry_and_analytics_stay_off_whatever_the_environment_says(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items()
           if k not in ("DO_NOT_TRACK", "DVC_NO_ANALYTICS", "DVC_TEST", "CI") and not k.startswith("MLFLOW_")}
    env.update(MLFLOW_DISABLE_TELEMETRY="false", DVC_NO_ANALYTICS="", HOME=str(tmp_path),
               XDG_CONFIG_HOME=str(tmp_path / "config"))
    result = subprocess.run([sys.executable, "-c", TELEMETRY_PROBE], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    before, dvc_after, mlflow_disabled, flag, dnt = result.stdout.split()
    assert before == "True"  # this folder and environment alone would let DVC send analytics
    assert (dvc_after, mlflow_disabled, flag, dnt) == ("False", "True", "true", "1")
