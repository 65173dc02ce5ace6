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


def _open_part(settings: Any, raw_dir: Path, prepared_dir: Path, part: str,
               context: dict[str, Any] | None) -> Any:
    """Part ``part`` (``train``/``test``) of the evaluation's ``split`` of its dataset.

    Opened through the task registry (``context["dataset_cfg"]``), so any labelled task works (scene
    folders, fMoW); without a dataset config, as a scene-classification folder. Its bands are those
    the model was trained on, matched by name (``context["bands"]``, ``rsdino.data.bands``).
    """
    from rsdino.data.registry import open_dataset
    from rsdino.data.scene import SceneDataset
    from rsdino.data.splits import DEFAULT_SPLIT, part_of

    split = part_of(getattr(settings, "split", DEFAULT_SPLIT), part)
    from rsdino.data.bands import select_bands_of

    cfg = (context or {}).get("dataset_cfg")
    dataset = SceneDataset(raw_dir, prepared_dir, split) if cfg is None else \
        open_dataset(cfg, raw_dir, prepared_dir, split)
    return select_bands_of(dataset, (context or {}).get("bands"))


def _cache_name(settings: Any) -> str:
    """The dataset's name in feature-cache keys: ``<dataset>`` or ``<dataset>.<split>`` for a named split."""
    split = getattr(settings, "split", "default")
    return settings.dataset if split == "default" else f"{settings.dataset}.{split}"


def _knn(settings: Any, model_dir: Path, raw_dir: Path, prepared_dir: Path, tracker: Tracker,
         device: str, progress: bool, context: dict[str, Any] | None = None) -> dict[str, Any]:
    from rsdino.evaluate.knn import run_knn_evaluation

    train = _open_part(settings, raw_dir, prepared_dir, "train", context)
    test = _open_part(settings, raw_dir, prepared_dir, "test", context)
    return run_knn_evaluation(model_dir, train, test, settings, tracker, device=device, progress=progress)


def _linear_logistic(settings: Any, model_dir: Path, raw_dir: Path, prepared_dir: Path,
                     tracker: Tracker, device: str, progress: bool,
                     context: dict[str, Any] | None = None) -> dict[str, Any]:
    from rsdino.evaluate.probe import run_linear_evaluation

    train = _open_part(settings, raw_dir, prepared_dir, "train", context)
    test = _open_part(settings, raw_dir, prepared_dir, "test", context)
    return run_linear_evaluation(model_dir, train, test, settings, tracker, device=device,
                                 progress=progress)


def _scene_source(settings: Any, model_dir: Path, raw_dir: Path, prepared_dir: Path, device: str,
                  progress: bool, context: dict[str, Any]) -> Any:
    from rsdino.evaluate.protocols import FeatureSource

    datasets = {part: _open_part(settings, raw_dir, prepared_dir, part, context)
                for part in ("train", "test")}
    source = FeatureSource(model_dir, datasets, dataset_name=_cache_name(settings),
                           batch_size=getattr(settings, "batch_size", 64),
                           image_size=getattr(settings, "image_size", None), device=device, progress=progress,
                           cache_dir=context.get("cache_dir"))
    source.native_size = context.get("native_size")
    return source


def _frozen(name: str) -> Callable[..., dict[str, Any]]:
    """A runner of ``rsdino.evaluate.protocols.run_<name>`` on the train/test parts of the split."""

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

    context = context or {}
    dataset = _open_part(settings, raw_dir, prepared_dir, "test", context)
    out_dir = context.get("artifact_dir") or Path(prepared_dir) / "analyses"
    return run_analyses(model_dir, dataset, settings, tracker, out_dir=Path(out_dir), device=device)


def _dense(kind: str) -> Callable[..., dict[str, Any]]:
    """Runner of a dense or multi-label protocol (``rsdino.evaluate.dense``)."""

    def runner(settings: Any, model_dir: Path, raw_dir: Path, prepared_dir: Path, tracker: Tracker,
               device: str, progress: bool, context: dict[str, Any] | None = None) -> dict[str, Any]:
        from rsdino.evaluate import dense

        return dense.run_dense_protocol(kind, settings, model_dir, raw_dir, prepared_dir, tracker,
                                        device=device, progress=progress,
                                        bands=(context or {}).get("bands"))

    return runner


#: protocol name -> runner(settings, model_dir, raw_dir, prepared_dir, tracker, device, progress, context);
#: ``context`` holds ``artifact_dir``, ``cache_dir``, ``native_size`` and ``dataset_cfg`` (all optional).
PROTOCOLS: dict[str, Callable[..., dict[str, Any]]] = {
    "knn": _knn, "linear_logistic": _linear_logistic, "knn_faiss": _frozen("knn_faiss"),
    "knn_multiscale": _frozen("knn_multiscale"), "linear_dino": _frozen("linear_dino"),
    "linear_dinov2": _frozen("linear_dinov2"), "finetune": _frozen("finetune"),
    "retrieval": _frozen("retrieval"), "analyses": _analyses, "multilabel": _dense("multilabel"),
    "change_detection": _dense("change_detection"), "segmentation": _dense("segmentation"),
}


def evaluation_bands(params: Any, evaluation: str, variant: str,
                     model_dir: Path) -> tuple[list[int], list[str]] | None:
    """``(index into the evaluation dataset's bands, the model's band names)``, matched by name.

    The model's bands are those of its ``model.json``, spelled as its pretraining dataset spells them
    (with that dataset's ``band_aliases``); the evaluation dataset's are its declared ``bands`` and
    ``band_aliases`` (``rsdino.data.bands``). None when the model names no bands.

    Raises:
        BandMismatchError: the evaluation data lacks a band the model was trained on.
    """
    import json

    from rsdino.data.bands import BandMismatchError, match_bands
    from rsdino.errors import CheckpointError

    meta_path = Path(model_dir) / "model.json"
    try:
        trained = json.loads(meta_path.read_text(encoding="utf-8")).get("bands")
    except (UnicodeDecodeError, json.JSONDecodeError, AttributeError) as error:
        raise CheckpointError(meta_path, f"not a valid model description ({error})") from None
    if not trained:
        return None
    pretrain = params.datasets.get(params.variants[variant].pretrain_data)
    data = params.datasets[params.evaluations[evaluation].dataset]
    try:
        index = match_bands(trained, data.bands, available_aliases=data.band_aliases,
                            trained_aliases=pretrain.band_aliases if pretrain is not None else None)
    except BandMismatchError as error:
        raise BandMismatchError(f"evaluations.{evaluation} on variants.{variant}: {error}") from None
    return index, list(trained)


def run_evaluation(name: str, settings: Any, variant_name: str, variant: Any, *, model_dir: Path,
                   raw_dir: Path, prepared_dir: Path, out: Path, params: Any, tracker: Tracker,
                   device: str = "cpu", progress: bool = True) -> dict[str, Any]:
    """Evaluate ``variant_name`` with evaluation ``name`` and write the metrics file ``out``.

    The metrics file (format in docs/architecture.md) is the source of truth for the tables; its
    resolved settings (the variant, the evaluation, the pretraining and the evaluation datasets) are
    written beside it as ``<out>.params.yaml``, after it. ``model_dir`` is the variant's
    model folder; an evaluation with ``backbone: student`` reads the student backbone in its
    ``student/`` sub-folder (``rsdino.models.backbones.backbone_folder``).
    """
    from rsdino.models.backbones import backbone_folder
    from rsdino.workflow_support import write_resolved

    runner = PROTOCOLS.get(settings.protocol)
    if runner is None:
        raise ValueError(f"evaluations.{name}.protocol: no runner for {settings.protocol!r} "
                         f"(known: {', '.join(PROTOCOLS)})")
    model_dir = backbone_folder(model_dir, getattr(settings, "backbone", "teacher"))
    context = {"artifact_dir": Path(out).with_name(Path(out).stem + "_artifacts"),
               "cache_dir": Path(params.paths.data) / "features",
               "native_size": getattr(params.datasets[settings.dataset], "native_size", None),
               "dataset_cfg": params.datasets[settings.dataset],
               "bands": evaluation_bands(params, name, variant_name, model_dir)}
    data_version = evaluation_data_version(settings.dataset, raw_dir, model_dir)  # before it is read
    tracker.set_tags(evaluation_tags(data_version))
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
    # The settings sidecar only after the metrics it describes (a failure above leaves the old pair).
    write_json(out, record)
    resolved = write_resolved(params.resolved_for(variant=variant_name, evaluation=name),
                              out.with_name(out.stem + ".params.yaml"))
    tracker.log_artifact(out)
    tracker.log_artifact(resolved)
    return record
