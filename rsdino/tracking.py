"""The MLflow bridge: library code logs through a ``Tracker``; tests use ``NullTracker``.

Layout of the runs (see docs/architecture.md): one experiment, one parent run per variant found or
created under a file lock, one nested child run per pipeline step and job, carrying the params
``method``, ``backbone``, ``dataset`` where they apply and the tag ``rsdino.step``; run names say
variant, step and dataset (``run_name``). When a child run ends, its latest metrics are copied up
into the parent as ``<summary>/<metric>`` (``summary`` is the step, or the evaluation's name), so a
variant's parent run holds its pretraining and evaluation results side by side. An evaluation run
is tagged with the run id of the pretraining run of its model (``rsdino.pretrain_run_id``, read
from ``mlflow_run.json`` in the model folder) and the SHA-256 of the weights it read
(``rsdino.model_sha256``).

Against a tracking server (``MLFLOW_TRACKING_URI=http://...``) the experiment is created without a
client-side artifact location, so artifacts go through the server (``mlflow server
--serve-artifacts``) into its artifact store rather than onto the client's disk.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

from rsdino.errors import tracking_store_error
from rsdino.io import file_digest


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
    "_MLFLOW_TESTING_TELEMETRY": "false",  # MLflow's own switch that would turn it back on
    "DO_NOT_TRACK": "1",
    "DVC_NO_ANALYTICS": "1",
    "HF_HUB_OFFLINE": "1",
    "GIT_PYTHON_REFRESH": "quiet",
}


def configure_offline_environment() -> None:
    """Turn off MLflow telemetry, DVC analytics and hub downloads for this process and its children.

    Whatever the environment says: the values of ``OFFLINE_ENVIRONMENT`` replace the user's.
    """
    os.environ.update(OFFLINE_ENVIRONMENT)  # forced: a user's MLFLOW_DISABLE_TELEMETRY=false does not count


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
    """Logs to the active MLflow run (created by ``step_run``).

    Metrics are buffered and sent in batches (``flush``: when ``BATCH`` values are waiting, after
    ``FLUSH_SECONDS``, and when the run ends): one store transaction per call cost about 0.1 s on a
    sqlite store, which a pretraining loop that logs every step paid at every step.
    """

    BATCH = 900  # MLflow accepts at most 1000 metrics per batch
    FLUSH_SECONDS = 30.0

    def __init__(self, run_id: str, client: Any = None) -> None:
        import time

        self.run_id, self.client = run_id, client
        self._pending: list[Any] = []
        self._last_flush = time.monotonic()

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        import time

        import mlflow

        if self.client is None:
            mlflow.log_metrics({k: float(v) for k, v in metrics.items()}, step=step)
            return
        from mlflow.entities import Metric

        stamp = int(time.time() * 1000)
        self._pending += [Metric(k, float(v), stamp, step or 0) for k, v in metrics.items()]
        if len(self._pending) >= self.BATCH or time.monotonic() - self._last_flush > self.FLUSH_SECONDS:
            self.flush()

    def flush(self) -> None:
        """Send the buffered metrics (in batches of at most ``BATCH``)."""
        import time

        while self._pending:
            batch, self._pending = self._pending[:self.BATCH], self._pending[self.BATCH:]
            self.client.log_batch(self.run_id, metrics=batch)
        self._last_flush = time.monotonic()

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


def is_server(tracking_uri: str) -> bool:
    """Whether ``tracking_uri`` names a tracking server (``http(s)://``), not a local store."""
    return tracking_uri.startswith(("http://", "https://"))


def _experiment_id(client: Any, name: str, artifact_location: str, tracking_uri: str) -> str:
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    location: str | None = artifact_location
    if "://" not in artifact_location:
        # A folder: the project's own store for a local backend; a server keeps its own store
        # (``--artifacts-destination``) and the artifacts travel through it.
        location = None if is_server(tracking_uri) else Path(artifact_location).resolve().as_uri()
    return client.create_experiment(name, artifact_location=location)


def run_name(variant: str, step: str, dataset: str | None = None) -> str:
    """A run name that says what ran: ``"<variant> / <step> / <dataset>"`` (dataset when given)."""
    return " / ".join(part for part in (variant, step, dataset) if part)


#: In a model folder: the MLflow run that trained it (``record_pretraining_run``).
PRETRAIN_RUN_FILE = "mlflow_run.json"


def record_pretraining_run(model_dir: str | os.PathLike[str], run_id: str, tracking_uri: str) -> Path:
    """Write ``model_dir/mlflow_run.json``: the run id (and store) of the pretraining run."""
    from rsdino.io import write_json

    return write_json(Path(model_dir) / PRETRAIN_RUN_FILE, {"run_id": run_id, "tracking_uri": tracking_uri})


def model_link_tags(model_dir: str | os.PathLike[str], weights: str | os.PathLike[str]) -> dict[str, str]:
    """Tags linking an evaluation run to its model: pretraining run id (when recorded), weights digest.

    ``rsdino.pretrain_run_id`` from ``model_dir/mlflow_run.json``; ``rsdino.model_sha256`` of
    ``weights`` (the ``model.safetensors`` the evaluation read).
    """
    tags = {"rsdino.model_sha256": file_digest(weights)}
    try:
        record = json.loads((Path(model_dir) / PRETRAIN_RUN_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return tags
    if isinstance(record, dict) and isinstance(record.get("run_id"), str):
        tags["rsdino.pretrain_run_id"] = record["run_id"]
    return tags


def summarise_into_parent(client: Any, child_id: str, parent_id: str, prefix: str) -> dict[str, float]:
    """Copy the child run's latest metrics into its parent as ``<prefix>/<metric>``; return them."""
    from mlflow.entities import Metric

    child = client.get_run(child_id)
    metrics = {f"{prefix}/{key}": value for key, value in child.data.metrics.items()}
    if metrics:
        stamp = int(child.info.end_time or child.info.start_time or 0)
        client.log_batch(parent_id, metrics=[Metric(key, float(value), stamp, 0)
                                             for key, value in sorted(metrics.items())])
    return metrics


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
             summary: str | None = None) -> Iterator[MlflowTracker]:
    """Open one MLflow run for one pipeline step, nested under the parent run of ``group``.

    ``group`` is the variant name for pretraining and evaluation steps and ``data:<dataset>`` for
    data steps. The parent run is found by its tags, or created under a file lock so that parallel
    jobs of one variant share one parent. The child run carries the tag ``rsdino.step`` and the
    given params and its owner (``rsdino.stale_runs.owner_tags``); it ends FINISHED, or FAILED when
    the body raises. Runs left RUNNING by killed processes of this host are ended KILLED first.
    A FINISHED run's latest metrics are copied into the parent as ``<summary or step>/<metric>``.
    """
    configure_offline_environment()
    import mlflow
    from filelock import FileLock
    from mlflow.tracking import MlflowClient

    from rsdino.stale_runs import end_runs_of_dead_processes, owner_tags

    tracking_uri = resolve_tracking_uri(tracking_uri)
    for quiet in ("mlflow.store.db.utils", "alembic"):  # "creating tables" chatter on a new store
        logging.getLogger(quiet).setLevel(logging.WARNING)
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
        try:
            client = MlflowClient(tracking_uri=tracking_uri)
            experiment_id = _experiment_id(client, experiment, artifact_location, tracking_uri)
            end_runs_of_dead_processes(client, experiment_id)  # runs left RUNNING by a kill -9
            parent_id = _parent_run_id(client, experiment_id, group, common_tags)
            child = client.create_run(
                experiment_id, run_name=run_name,
                tags={"mlflow.parentRunId": parent_id, "rsdino.step": step, **common_tags,
                      **owner_tags(), **(tags or {})})
        except Exception as error:  # noqa: BLE001 - a damaged store is the user's to fix; else re-raised
            store = tracking_store_error(error, tracking_uri)
            if store is None:
                raise
            raise store from error
    run_id = child.info.run_id
    with mlflow.start_run(run_id=run_id):
        tracker = MlflowTracker(run_id, client)
        if params:
            tracker.log_params(params)
        try:
            yield tracker
        finally:
            tracker.flush()
    with FileLock(str(lock), timeout=600):  # parallel children of one parent write one after another
        summarise_into_parent(client, run_id, parent_id, summary or step)
