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

from rsdino.evaluate.provenance import evaluation_data_version, evaluation_tags
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


def _scene_source(settings: Any, model_dir: Path, raw_dir: Path, prepared_dir: Path, device: str,
                  progress: bool, context: dict[str, Any]) -> Any:
    from rsdino.data.scene import SceneDataset
    from rsdino.evaluate.protocols import FeatureSource

    datasets = {split: SceneDataset(raw_dir, prepared_dir, split) for split in ("train", "test")}
    source = FeatureSource(model_dir, datasets, dataset_name=settings.dataset,
                           batch_size=getattr(settings, "batch_size", 64),
                           image_size=getattr(settings, "image_size", None), device=device, progress=progress,
                           cache_dir=context.get("cache_dir"))
    source.native_size = context.get("native_size")
    return source


def _frozen(name: str) -> Callable[..., dict[str, Any]]:
    """A runner of ``rsdino.evaluate.protocols.run_<name>`` on the train/test splits of a scene dataset."""

    def runner(settings: Any, model_dir: Path, raw_dir: Path, prepared_dir: Path, tracker: Tracker,
               device: str, progress: bool, context: dict[str, Any] | None = None) -> dict[str, Any]:
        from rsdino.evaluate import protocols

        context = context or {}
        source = _scene_source(settings, model_dir, raw_dir, prepared_dir, device, progress, context)
        function = getattr(protocols, f"run_{name}")
        if name == "retrieval":
            return function(source, settings, tracker, artifact_dir=context.get("artifact_dir"))
        return function(source, settings, tracker)

    return runner


def _analyses(settings: Any, model_dir: Path, raw_dir: Path, prepared_dir: Path, tracker: Tracker,
              device: str, progress: bool, context: dict[str, Any] | None = None) -> dict[str, Any]:
    from rsdino.analysis.run import run_analyses
    from rsdino.data.scene import SceneDataset

    context = context or {}
    dataset = SceneDataset(raw_dir, prepared_dir, "test")
    out_dir = context.get("artifact_dir") or Path(prepared_dir) / "analyses"
    return run_analyses(model_dir, dataset, settings, tracker, out_dir=Path(out_dir), device=device)


def _dense(kind: str) -> Callable[..., dict[str, Any]]:
    """Runner of a dense or multi-label protocol: needs a data reader that is not in rsdino.data yet."""

    def runner(settings: Any, model_dir: Path, raw_dir: Path, prepared_dir: Path, tracker: Tracker,
               device: str, progress: bool, context: dict[str, Any] | None = None) -> dict[str, Any]:
        from rsdino.evaluate import dense

        return dense.run_dense_protocol(kind, settings, model_dir, raw_dir, prepared_dir, tracker,
                                        device=device, progress=progress)

    return runner


#: protocol name -> runner(settings, model_dir, raw_dir, prepared_dir, tracker, device, progress[, context])
PROTOCOLS: dict[str, Callable[..., dict[str, Any]]] = {
    "knn": _knn, "linear_logistic": _linear_logistic, "knn_faiss": _frozen("knn_faiss"),
    "knn_multiscale": _frozen("knn_multiscale"), "linear_dino": _frozen("linear_dino"),
    "linear_dinov2": _frozen("linear_dinov2"), "finetune": _frozen("finetune"),
    "retrieval": _frozen("retrieval"), "analyses": _analyses, "multilabel": _dense("multilabel"),
    "change_detection": _dense("change_detection"), "segmentation": _dense("segmentation"),
}


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
    context = {"artifact_dir": Path(out).with_name(Path(out).stem + "_artifacts"),
               "cache_dir": Path(params.paths.data) / "features",
               "native_size": getattr(params.datasets[settings.dataset], "native_size", None)}
    data_version = evaluation_data_version(settings.dataset, raw_dir, model_dir)  # before it is read
    tracker.set_tags(evaluation_tags(data_version))
    if settings.protocol in {"knn", "linear_logistic"}:
        result = runner(settings, model_dir, raw_dir, prepared_dir, tracker, device, progress)
    else:
        result = runner(settings, model_dir, raw_dir, prepared_dir, tracker, device, progress, context)
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
        "data_version": data_version,
        "git_commit": git_commit(),
        "created": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    resolved = write_resolved(params.resolved_for(variant=variant_name, evaluation=name),
                              out.with_name(out.stem + ".params.yaml"))
    write_json(out, record)
    tracker.log_artifact(out)
    tracker.log_artifact(resolved)
    return record
