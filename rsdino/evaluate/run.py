"""Run one evaluation job: a registered protocol on one variant, written as one metrics file.

``PROTOCOLS`` maps a protocol name (the ``protocol`` key of an evaluation in ``params.yaml``) to the
function that computes it; adding a protocol is adding an entry here and a settings class in
``rsdino.config``.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rsdino.io import write_json
from rsdino.tracking import Tracker, git_commit


def _knn(settings: Any, model_dir: Path, raw_dir: Path, prepared_dir: Path, tracker: Tracker,
         device: str, progress: bool) -> dict[str, Any]:
    from rsdino.data.scene import SceneDataset
    from rsdino.evaluate.knn import run_knn_evaluation

    train = SceneDataset(raw_dir, prepared_dir, "train")
    test = SceneDataset(raw_dir, prepared_dir, "test")
    return run_knn_evaluation(model_dir, train, test, settings, tracker, device=device, progress=progress)


def _linear_logistic(settings: Any, model_dir: Path, raw_dir: Path, prepared_dir: Path,
                     tracker: Tracker, device: str, progress: bool) -> dict[str, Any]:
    from rsdino.data.scene import SceneDataset
    from rsdino.evaluate.probe import run_linear_evaluation

    train = SceneDataset(raw_dir, prepared_dir, "train")
    test = SceneDataset(raw_dir, prepared_dir, "test")
    return run_linear_evaluation(model_dir, train, test, settings, tracker, device=device,
                                 progress=progress)


#: protocol name -> runner(settings, model_dir, raw_dir, prepared_dir, tracker, device, progress)
PROTOCOLS: dict[str, Callable[..., dict[str, Any]]] = {"knn": _knn, "linear_logistic": _linear_logistic}


def run_evaluation(name: str, settings: Any, variant_name: str, variant: Any, *, model_dir: Path,
                   raw_dir: Path, prepared_dir: Path, out: Path, params: Any, tracker: Tracker,
                   device: str = "cpu", progress: bool = True) -> dict[str, Any]:
    """Evaluate ``variant_name`` with evaluation ``name`` and write the metrics file ``out``.

    The metrics file (format in docs/architecture.md) is the source of truth for the tables; its
    resolved settings are written beside it as ``<out>.params.yaml``.
    """
    from rsdino.workflow_support import write_resolved

    runner = PROTOCOLS.get(settings.protocol)
    if runner is None:
        raise ValueError(f"evaluations.{name}.protocol: no runner for {settings.protocol!r} "
                         f"(known: {', '.join(PROTOCOLS)})")
    result = runner(settings, model_dir, raw_dir, prepared_dir, tracker, device, progress)
    record = {
        "evaluation": name,
        "protocol": settings.protocol,
        "variant": variant_name,
        "dataset": settings.dataset,
        "method": variant.method,
        "backbone": variant.backbone,
        "metrics": result["metrics"],
        "baselines": result.get("baselines", {}),
        "mlflow": {"run_id": getattr(tracker, "run_id", None), "experiment": params.mlflow.experiment},
        "git_commit": git_commit(),
        "created": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    resolved = write_resolved(params.resolved_for(variant=variant_name, evaluation=name),
                              out.with_name(out.stem + ".params.yaml"))
    write_json(out, record)
    tracker.log_artifact(out)
    tracker.log_artifact(resolved)
    return record
