"""The settings of ``params.yaml``: one module per section, validated on load.

``load_params(path, scale)`` (``rsdino.config.params``) returns a validated ``Params``; any problem
raises ``ParamsError`` with one line per problem naming the file and the key path. The section
models live in ``datasets``, ``variants``, ``evaluations`` (one record per protocol in
``protocols``) and ``tables``; entries written as overlays (``like:``, ``recipes:``) are merged by
``overlays`` and scales resolved by ``scales``, both before validation. The names most callers need
are re-exported here.
"""

from rsdino.config.base import ParamsError, StrictModel
from rsdino.config.datasets import DatasetConfig, SourceSettings, SplitSettings
from rsdino.config.evaluations import FrozenFeatureEvaluation, KnnEvaluation, LinearEvaluation
from rsdino.config.params import (
    Params,
    ScaleConfig,
    dump_resolved,
    load_params,
    parse_params,
    settings_digest,
    write_resolved,
)
from rsdino.config.protocols import PROTOCOLS, EvaluationConfig, Protocol
from rsdino.config.tables import TableConfig
from rsdino.config.variants import (
    DinoLossSettings,
    HeadSettings,
    OptimSettings,
    PublishedKey,
    ResourceSettings,
    VariantConfig,
)
from rsdino.config.views import CropSettings

__all__ = [
    "PROTOCOLS", "CropSettings", "DatasetConfig", "DinoLossSettings", "EvaluationConfig",
    "FrozenFeatureEvaluation", "HeadSettings", "KnnEvaluation", "LinearEvaluation", "OptimSettings", "Params",
    "ParamsError", "Protocol", "PublishedKey", "ResourceSettings", "ScaleConfig", "SourceSettings",
    "SplitSettings", "StrictModel", "TableConfig", "VariantConfig", "dump_resolved", "load_params",
    "parse_params", "settings_digest", "write_resolved",
]
