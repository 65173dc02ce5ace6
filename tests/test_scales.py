"""Scales: the miniature of the full scale selects its entries and overrides them by selector."""

from pathlib import Path

import pytest
import yaml

from rsdino.config import ParamsError, load_params, parse_params
from rsdino.config.scales import deep_merge, resolve_scale

ROOT = Path(__file__).resolve().parents[1]
PARAMS = ROOT / "params.yaml"


def test_mini_runs_exactly_the_full_scales_jobs_shrunk():
    full, mini = load_params(PARAMS, "full"), load_params(PARAMS, "mini")
    assert mini.selected_variants() == full.selected_variants()
    assert mini.selected_evaluations() == full.selected_evaluations()
    assert mini.selected.tables == full.selected.tables
    assert mini.paths.data != full.paths.data and mini.selected.device == "cpu"
    for name in full.selected_variants():
        big, small = full.variants[name], mini.variants[name]
        assert (small.method, small.backbone, small.input_bands, small.pretrain_data) == \
            (big.method, big.backbone, big.input_bands, big.pretrain_data), name
        assert small.crops.n_local == big.crops.n_local and small.crops.global_size < big.crops.global_size
        assert small.optim.epochs < big.optim.epochs and small.resources.gpus_per_node == 0
        assert {k: v for k, v in big.backbone_kwargs.items() if k in small.backbone_kwargs} == \
            {k: v for k, v in small.backbone_kwargs.items() if k in big.backbone_kwargs} or \
            small.backbone_kwargs != big.backbone_kwargs, name
    for name in full.selected_datasets():
        assert mini.datasets[name].bands == full.datasets[name].bands, name
        assert mini.datasets[name].source.generator == "catalog", name
        assert mini.datasets[name].source.url.startswith(f"file://{mini.paths.data}/demo/"), name


def test_overrides_merge_deeply_and_selectors_that_match_nothing_are_refused():
    assert deep_merge({"a": {"b": 1, "c": [1, 2]}}, {"a": {"c": [3]}}) == {"a": {"b": 1, "c": [3]}}
    raw = yaml.safe_load(PARAMS.read_text())
    raw["scales"]["mini"]["overrides"]["variants"]["vit_smal_patch16"] = {"drop_path": 0.0}
    with pytest.raises(ParamsError, match=r"scales.mini.overrides.variants.vit_smal_patch16: matches no"):
        parse_params(raw, scale="mini")


def test_a_like_scale_changes_only_what_it_selects():
    raw = yaml.safe_load(PARAMS.read_text())
    resolved = resolve_scale(raw, "mini")
    assert resolved["variants"]["demo_dino_vit"] == raw["variants"]["demo_dino_vit"]
    assert resolved["datasets"]["demo_eurosat"] == raw["datasets"]["demo_eurosat"]
    assert resolved["variants"]["dinomc_swint"]["backbone_kwargs"]["depths"] == [1, 1, 1, 1]
    raw["scales"]["loop"] = {"like": "loop2"}
    raw["scales"]["loop2"] = {"like": "loop"}
    with pytest.raises(ValueError, match="a loop"):
        resolve_scale(raw, "loop")
