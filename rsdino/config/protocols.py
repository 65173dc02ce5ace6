"""The evaluation protocols: one record each, the only place a protocol's name is spelled.

An evaluation's ``protocol`` key in params.yaml names a record of ``PROTOCOLS``. The record says
which settings class validates the evaluation (``EvaluationConfig``, a union tagged by the name),
which function runs it, and what the preflight (``rsdino.config.preflight``) and the Snakefile
(``workflow/rules/common.smk``: a longer time limit for the jobs that train) need to know.

Every runner has one signature, ``run(context, settings, tracker) -> {"metrics": {...},
"baselines": {...}}`` (``rsdino.evaluate.context.EvaluationContext``); it is named here by a dotted
path and imported only when a job runs, so this module (imported by settings validation and the
Snakefile) never imports torch.

Add a protocol: one ``Protocol(...)`` line below and one module with its runner (and a settings
class in ``rsdino.config.evaluations`` if it has settings of its own).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, Union

from pydantic import Discriminator, Tag

from rsdino.config.base import StrictModel
from rsdino.config.evaluations import (
    AnalysesEvaluation,
    ChangeDetectionEvaluation,
    FinetuneEvaluation,
    KnnEvaluation,
    KnnFaissEvaluation,
    LinearDinoEvaluation,
    LinearDinov2Evaluation,
    LinearEvaluation,
    MultilabelEvaluation,
    MultiscaleKnnEvaluation,
    RetrievalEvaluation,
    SegmentationEvaluation,
)
from rsdino.data.tasks import Labels
from rsdino.imports import import_object


@dataclass(frozen=True)
class Protocol:
    """One evaluation protocol.

    Args:
        name: the ``protocol`` key of an evaluation in params.yaml.
        title: how the results tables name it in a section heading (``rsdino.report.readable``).
        settings: the class that validates the evaluation's settings (its ``protocol`` field holds ``name``).
        runner: ``"module:function"`` of ``run(context, settings, tracker) -> dict``, imported lazily.
        labels: the labels it reads (``rsdino.data.tasks.Labels``): it runs on every dataset whose
            task's record has them (``"class"``: one class per image).
        trains: whether it trains a network on the evaluation data (BatchNorm in heads and CNN
            backbones; the Snakefile gives these jobs the scale's ``training_runtime_min``).
        vit_only: whether it needs a ViT backbone (attention maps, patch-token grids).
        tiled: whether its ``image_size`` must be one of the dataset's ``tile_sizes``.
    """

    name: str
    title: str
    settings: type[StrictModel]
    runner: str
    labels: Labels = "class"
    trains: bool = False
    vit_only: bool = False
    tiled: bool = False

    def load_runner(self) -> Callable[..., dict[str, Any]]:
        """The runner function (imports its module, and so torch)."""
        return import_object(self.runner)


_PROTOCOLS = "rsdino.evaluate.protocols"
_DENSE = "rsdino.evaluate.dense"

#: protocol name -> its record; params.yaml, the preflight, the Snakefile and ``rsdino evaluate`` read it.
PROTOCOLS: dict[str, Protocol] = {p.name: p for p in (
    Protocol("knn", "weighted kNN (DINO)", KnnEvaluation, "rsdino.evaluate.knn:run_knn"),
    Protocol("knn_patch_mean", "weighted kNN on the mean patch token", KnnEvaluation,
             "rsdino.evaluate.knn_patch_mean:run_knn_patch_mean"),
    Protocol("linear_logistic", "logistic-regression linear probe", LinearEvaluation,
             "rsdino.evaluate.probe:run_linear_logistic"),
    Protocol("knn_faiss", "kNN, FAISS L2 majority vote (DINOv2-RS)", KnnFaissEvaluation,
             f"{_PROTOCOLS}:run_knn_faiss"),
    Protocol("knn_multiscale", "multi-scale kNN (SatDINO)", MultiscaleKnnEvaluation,
             f"{_PROTOCOLS}:run_knn_multiscale"),
    Protocol("linear_dino", "linear probe (DINO)", LinearDinoEvaluation, f"{_PROTOCOLS}:run_linear_dino"),
    Protocol("linear_dinov2", "linear probe grid (DINOv2)", LinearDinov2Evaluation,
             f"{_PROTOCOLS}:run_linear_dinov2"),
    Protocol("finetune", "fine-tuning", FinetuneEvaluation, f"{_PROTOCOLS}:run_finetune", trains=True),
    Protocol("retrieval", "image retrieval", RetrievalEvaluation, f"{_PROTOCOLS}:run_retrieval"),
    Protocol("analyses", "feature analyses", AnalysesEvaluation, "rsdino.analysis.run:run_analyses",
             vit_only=True),
    Protocol("multilabel", "multi-label fine-tuning", MultilabelEvaluation, f"{_DENSE}:run_multilabel",
             labels="multi_label", trains=True),
    Protocol("change_detection", "change detection", ChangeDetectionEvaluation,
             f"{_DENSE}:run_change_detection", labels="change", trains=True, tiled=True),
    Protocol("segmentation", "semantic segmentation", SegmentationEvaluation, f"{_DENSE}:run_segmentation",
             labels="mask", trains=True, vit_only=True, tiled=True),
)}


def _protocol_of(value: Any) -> Any:
    """The ``protocol`` of raw settings (a mapping) or of validated ones: the union's tag."""
    return value.get("protocol") if isinstance(value, dict) else getattr(value, "protocol", None)


#: The settings of one evaluation: the class of the record its ``protocol`` names.
EvaluationConfig = Annotated[
    Union[tuple(Annotated[p.settings, Tag(p.name)] for p in PROTOCOLS.values())],  # noqa: UP007
    Discriminator(_protocol_of, custom_error_type="unknown_protocol",
                  custom_error_message=f"protocol: expected one of {', '.join(PROTOCOLS)}")]
