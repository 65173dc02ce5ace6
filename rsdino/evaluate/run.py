"""Run one evaluation job: a registered protocol on one variant, written as one metrics file.

The ``protocol`` key of an evaluation in ``params.yaml`` names its record in
``rsdino.config.protocols.PROTOCOLS``; the record's runner, ``run(context, settings, tracker)``, gets
an ``EvaluationContext`` (``rsdino.evaluate.context``) built here.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rsdino.config import PROTOCOLS, write_resolved
from rsdino.evaluate.context import EvaluationContext
from rsdino.evaluate.provenance import evaluation_data_version, evaluation_tags
from rsdino.io import write_json
from rsdino.tracking import Tracker, git_commit


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

    protocol = PROTOCOLS.get(settings.protocol)
    if protocol is None:
        raise ValueError(f"evaluations.{name}.protocol: no runner for {settings.protocol!r} "
                         f"(known: {', '.join(PROTOCOLS)})")
    model_dir = backbone_folder(model_dir, getattr(settings, "backbone", "teacher"))
    dataset_cfg = params.datasets[settings.dataset]
    context = EvaluationContext(model_dir=model_dir, raw_dir=raw_dir, prepared_dir=prepared_dir,
                                device=device, progress=progress,
                                artifact_dir=Path(out).with_name(Path(out).stem + "_artifacts"),
                                cache_dir=Path(params.paths.data) / "features",
                                native_size=getattr(dataset_cfg, "native_size", None),
                                dataset_cfg=dataset_cfg,
                                bands=evaluation_bands(params, name, variant_name, model_dir))
    data_version = evaluation_data_version(settings.dataset, raw_dir, model_dir)  # before it is read
    tracker.set_tags(evaluation_tags(data_version))
    result = protocol.load_runner()(context, settings, tracker)
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
