"""Overlays: an entry ``like`` a recipe or another entry is deep-merged over it before validation."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from rsdino.config import ParamsError, load_params, parse_params
from rsdino.config.overlays import deep_merge, origin, resolve_overlays

ROOT = Path(__file__).resolve().parents[1]
PARAMS = ROOT / "params.yaml"

BASE_CROPS = {"global_size": 32, "local_size": 16, "n_local": 4, "blur_p": [0.0, 0.0, 0.0]}


def _raw() -> dict:
    """Two variants and two recipes, in memory (the merge rules, apart from the project's file)."""
    return {
        "recipes": {
            "tiny": {"crops": BASE_CROPS, "optim": {"epochs": 2, "batch_size": 4}},
            "short": {"like": "tiny", "optim": {"epochs": 1}},
        },
        "variants": {
            "a": {"like": "tiny", "method": "dino", "crops": {"n_local": 6}},
            "b": {"like": ["a", "short"], "crops": {"blur_p": [0.5]}, "drop_path": 0.0},
            "plain": {"method": "dino"},
        },
    }


def test_mappings_merge_key_by_key_and_lists_and_scalars_are_replaced():
    raw = _raw()
    before = copy.deepcopy(raw)
    out = resolve_overlays(raw)
    assert "recipes" not in out and raw == before  # the input is left as it was
    assert out["variants"]["a"] == {"crops": {**BASE_CROPS, "n_local": 6},
                                    "optim": {"epochs": 2, "batch_size": 4}, "method": "dino"}
    # b: a, then short (tiny's settings with its own chain) over it: short's crops.n_local (tiny's 4)
    # and optim.epochs win over a's; then b's own settings, where blur_p replaces the list whole
    assert out["variants"]["b"] == {"crops": {**BASE_CROPS, "n_local": 4, "blur_p": [0.5]},
                                    "optim": {"epochs": 1, "batch_size": 4},
                                    "method": "dino", "drop_path": 0.0}
    assert out["variants"]["plain"] == {"method": "dino"}
    assert deep_merge({"a": {"b": 1, "c": [1, 2]}}, {"a": {"c": [3]}, "d": None}) == \
        {"a": {"b": 1, "c": [3]}, "d": None}


def test_a_file_without_overlays_is_returned_as_it_is():
    raw = {"variants": {"a": {"method": "dino"}}, "scale": "demo"}
    assert resolve_overlays(raw) is raw


@pytest.mark.parametrize(("change", "message"), [
    ({"variants": {"a": {"like": "nope"}}},
     "variants.a.like: 'nope' is not a recipe or an entry of variants"),
    ({"recipes": {"short": {"like": "a"}}},
     "recipes.short.like: 'a' is not a recipe (a recipe is like recipes only)"),
    ({"recipes": {"tiny": {"like": "short"}}},
     "recipes.short.like: loops (recipes.tiny -> recipes.short -> recipes.tiny)"),
    ({"variants": {"a": {"like": "a"}}}, "variants.a.like: loops (variants.a -> variants.a)"),
    ({"variants": {"tiny": {"method": "dino"}}},
     "variants.a.like: 'tiny' is both a recipe and an entry of variants"),
    ({"variants": {"a": {"like": 3}}}, "variants.a.like: must be a name or a list of names, not 3"),
    ({"recipes": {"unused": {"drop_path": 0.0}}}, "recipes.unused: no entry is like it"),
    ({"recipes": {"tiny": 5}}, "variants.a.like: 'tiny' is not a mapping of settings"),
])
def test_bad_overlays_name_the_key(change, message):
    raw = deep_merge(_raw(), change)
    with pytest.raises(ValueError) as error:
        resolve_overlays(raw)
    assert str(error.value).startswith(message)


def _project_raw() -> dict:
    return yaml.safe_load(PARAMS.read_text(encoding="utf-8"))


def test_an_unknown_key_in_a_recipe_is_refused_naming_the_entry_and_the_recipe():
    raw = _project_raw()
    raw["recipes"]["dinomc"]["crops"]["lcoal_size"] = 96
    with pytest.raises(ParamsError) as error:
        parse_params(raw, source=Path("p.yaml"), scale="full", preflight_checks=False)
    # one line, at the first entry like the recipe, naming the recipe and every other entry like it
    assert str(error.value) == (
        "p.yaml: variants.dinomc_vits16.crops.lcoal_size: unknown key (not allowed here; check its spelling) "
        "(written in recipes.dinomc; the same in variants.dinomc_resnet50, variants.dinomc_wrn50, "
        "variants.dinomc_swint, variants.dinomc_vits8_released)")


def test_a_problem_in_a_base_entry_is_one_line_at_that_entry():
    raw = _project_raw()
    raw["variants"]["demo_dino_vit"]["optim"]["lrr"] = 0.1
    raw["variants"]["demo_dino_tp"]["optim"]["lrr"] = 0.2  # written again: its own problem, its own line
    with pytest.raises(ParamsError) as error:
        parse_params(raw, source=Path("p.yaml"), preflight_checks=False)
    assert str(error.value).splitlines() == [
        "p.yaml: variants.demo_dino_vit.optim.lrr: unknown key (not allowed here; check its spelling) "
        "(the same in variants.demo_dino_mc, variants.demo_satdino, variants.demo_dinov2, "
        "variants.demo_dinov2_mm, variants.demo_ibot)",
        "p.yaml: variants.demo_dino_tp.optim.lrr: unknown key (not allowed here; check its spelling)"]


def test_an_entry_overrides_its_recipe_and_origin_names_who_wrote_a_setting():
    raw = _project_raw()
    raw["variants"]["dinomc_swint"]["crops"] = {"n_local": 2, "local_sizes": [96, 96]}
    params = parse_params(raw, scale="full", preflight_checks=False)
    swint, resnet = params.variants["dinomc_swint"], params.variants["dinomc_resnet50"]
    assert (swint.crops.n_local, swint.crops.local_sizes) == (2, [96, 96])
    assert swint.crops.local_scale == resnet.crops.local_scale == (0.05, 0.32)  # the rest: the recipe's
    assert resnet.crops.n_local == 6
    assert origin(raw, ("variants", "dinomc_swint", "crops", "n_local")) is None  # its own setting
    assert origin(raw, ("variants", "dinomc_swint", "crops", "local_scale")) == "recipes.dinomc"
    assert origin(raw, ("variants", "dinomc_swint", "optim", "epochs")) == "recipes.seco"
    assert origin(raw, ("variants", "dino_seco_wrn50", "method")) == "variants.dino_seco_vits16"


def test_a_scales_like_is_its_selection_not_an_overlay():
    """The mini scale is ``like: full`` and stays a selection plus overrides (rsdino.config.scales)."""
    mini = load_params(PARAMS, "mini", preflight_checks=False)
    full = load_params(PARAMS, "full", preflight_checks=False)
    assert mini.selected.like == "full" and mini.selected.variants == full.selected.variants
    assert mini.selected.evaluation_resources != full.selected.evaluation_resources  # not merged in


def test_an_unknown_like_in_the_file_is_one_line_naming_the_file_and_the_key():
    raw = _project_raw()
    raw["variants"]["dinomc_swint"]["like"] = "no_such_recipe"
    with pytest.raises(ParamsError, match=r"^p.yaml: variants.dinomc_swint.like: 'no_such_recipe' is not"):
        parse_params(raw, source=Path("p.yaml"), scale="demo", preflight_checks=False)


def _checker():
    import importlib.util

    spec = importlib.util.spec_from_file_location("check_resolved_settings",
                                                  ROOT / "benchmarks" / "check_resolved_settings.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_checker_sees_a_recipe_change_in_every_entry_like_it_and_nothing_in_a_spelt_out_entry():
    """benchmarks/check_resolved_settings.py: what a rewrite of params.yaml is checked with."""
    check = _checker()
    text = PARAMS.read_text(encoding="utf-8")
    before = check.resolved_settings(text)
    raw = _project_raw()
    spelt_out = resolve_overlays(raw)["variants"]["dinomc_swint"]  # written in full: the same settings
    raw["variants"]["dinomc_swint"] = spelt_out
    assert check.differences(before, check.resolved_settings(yaml.safe_dump(raw, sort_keys=False))) == []
    raw["recipes"]["dinomc"]["crops"]["local_jitter"] = [0.4, 0.4, 0.4, 0.1]  # not dinomc_swint's any more
    lines = check.differences(before, check.resolved_settings(yaml.safe_dump(raw, sort_keys=False)))
    changed = {line.split(":")[0] for line in lines if ".params.variants." in line}
    like_the_recipe = ("dinomc_vits16", "dinomc_resnet50", "dinomc_wrn50", "dinomc_vits8_released")
    assert changed == {f"{scale}.params.variants.{name}.crops.local_jitter"
                       for scale in ("demo", "full", "mini") for name in like_the_recipe}
    assert ("full.params.variants.dinomc_vits16.crops.local_jitter: [0.8, 0.8, 0.8, 0.2] -> "
            "[0.4, 0.4, 0.4, 0.1]") in lines
    assert "full.resolved_for_digests.variant.dinomc_vits16" in {line.split(":")[0] for line in lines}
