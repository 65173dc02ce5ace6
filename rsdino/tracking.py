"""The MLflow bridge: library code logs through a ``Tracker``; tests use ``NullTracker``.

Layout of the runs (see docs/architecture.md): one experiment, one parent run per variant found or
created under a file lock, one nested child run per pipeline step and job, carrying the params
``method``, ``backbone``, ``dataset`` where they apply and the tag ``rsdino.step``.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol


class Tracker(Protocol):
    """What library code may log. Implemented by ``MlflowTracker`` and ``NullTracker``."""

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None: ...

    def log_params(self, params: dict[str, Any]) -> None: ...

    def set_tags(self, tags: dict[str, str]) -> None: ...

    def log_artifact(self, path: str | os.PathLike[str], artifact_path: str | None = None) -> None: ...


class NullTracker:
    """A tracker that records what it is given in memory and sends nothing anywhere."""

    def __init__(self) -> None:
        self.metrics: list[tuple[int | None, dict[str, float]]] = []
        self.params: dict[str, Any] = {}
        self.tags: dict[str, str] = {}
        self.artifacts: list[Path] = []

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        self.metrics.append((step, dict(metrics)))

    def log_params(self, params: dict[str, Any]) -> None:
        self.params.update(params)

    def set_tags(self, tags: dict[str, str]) -> None:
        self.tags.update(tags)

    def log_artifact(self, path: str | os.PathLike[str], artifact_path: str | None = None) -> None:
        self.artifacts.append(Path(path))


# ------------------------------------------------------------------------------------------ MLflow

#: Environment that keeps MLflow and DVC off the network (set before either is imported).
OFFLINE_ENVIRONMENT = {
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "DO_NOT_TRACK": "1",
    "DVC_NO_ANALYTICS": "1",
    "HF_HUB_OFFLINE": "1",
    "GIT_PYTHON_REFRESH": "quiet",
}


def configure_offline_environment() -> None:
    """Turn off MLflow telemetry, DVC analytics and hub downloads for this process and its children."""
    for key, value in OFFLINE_ENVIRONMENT.items():
        os.environ.setdefault(key, value)


def resolve_tracking_uri(default: str) -> str:
    """``MLFLOW_TRACKING_URI`` if set, else ``default`` (a project-relative sqlite file)."""
    return os.environ.get("MLFLOW_TRACKING_URI") or default


def git_commit(cwd: str | os.PathLike[str] | None = None) -> str | None:
    """The current git commit of the project, or None outside a git checkout."""
    import subprocess

    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True,
                             timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


class MlflowTracker:
    """Logs to the active MLflow run (created by ``step_run``)."""

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        import mlflow

        mlflow.log_metrics({k: float(v) for k, v in metrics.items()}, step=step)

    def log_params(self, params: dict[str, Any]) -> None:
        import mlflow

        mlflow.log_params({k: _param_text(v) for k, v in params.items()})

    def set_tags(self, tags: dict[str, str]) -> None:
        import mlflow

        mlflow.set_tags(tags)

    def log_artifact(self, path: str | os.PathLike[str], artifact_path: str | None = None) -> None:
        import mlflow

        mlflow.log_artifact(str(path), artifact_path=artifact_path)


def _param_text(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
    return text[:6000]


def _lock_path(tracking_uri: str) -> Path:
    if tracking_uri.startswith("sqlite:///"):
        db = Path(tracking_uri[len("sqlite:///"):])
        return db.with_name(db.name + ".lock")
    return Path(tempfile.gettempdir()) / "rsdino-mlflow.lock"


def _experiment_id(client: Any, name: str, artifact_location: str) -> str:
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    location = artifact_location
    if "://" not in location:
        location = Path(location).resolve().as_uri()
    return client.create_experiment(name, artifact_location=location)


def _parent_run_id(client: Any, experiment_id: str, group: str, tags: dict[str, str]) -> str:
    query = f"tags.`rsdino.group` = '{group}' and tags.`rsdino.role` = 'parent'"
    found = client.search_runs([experiment_id], filter_string=query, max_results=1)
    if found:
        return found[0].info.run_id
    run = client.create_run(experiment_id, run_name=group,
                            tags={"rsdino.group": group, "rsdino.role": "parent", **tags})
    client.set_terminated(run.info.run_id, "FINISHED")
    return run.info.run_id


@contextlib.contextmanager
def step_run(*, experiment: str, tracking_uri: str, artifact_location: str, group: str, step: str,
             run_name: str, params: dict[str, Any] | None = None, tags: dict[str, str] | None = None,
             ) -> Iterator[MlflowTracker]:
    """Open one MLflow run for one pipeline step, nested under the parent run of ``group``.

    ``group`` is the variant name for pretraining and evaluation steps and ``data:<dataset>`` for
    data steps. The parent run is found by its tags, or created under a file lock so that parallel
    jobs of one variant share one parent. The child run carries the tag ``rsdino.step`` and the
    given params; it ends FINISHED, or FAILED when the body raises.
    """
    configure_offline_environment()
    import mlflow
    from filelock import FileLock
    from mlflow.tracking import MlflowClient

    tracking_uri = resolve_tracking_uri(tracking_uri)
    mlflow.set_tracking_uri(tracking_uri)
    common_tags = {"rsdino.group": group}
    commit = git_commit()
    if commit:
        common_tags["mlflow.source.git.commit"] = commit
    lock = _lock_path(tracking_uri)
    lock.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(lock), timeout=600):
        # Opening the store creates and migrates a new sqlite database: one process at a time
        # (parallel first jobs otherwise race in MLflow's schema migration).
        client = MlflowClient(tracking_uri=tracking_uri)
        experiment_id = _experiment_id(client, experiment, artifact_location)
        parent_id = _parent_run_id(client, experiment_id, group, common_tags)
        child = client.create_run(
            experiment_id, run_name=run_name,
            tags={"mlflow.parentRunId": parent_id, "rsdino.step": step, **common_tags, **(tags or {})})
    run_id = child.info.run_id
    with mlflow.start_run(run_id=run_id):
        tracker = MlflowTracker(run_id)
        if params:
            tracker.log_params(params)
        yield tracker
