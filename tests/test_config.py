"""Settings: validation errors name the key path; references are checked; resolved subsets."""

import re
from pathlib import Path

import pytest
import yaml

from rsdino.config import ParamsError, load_params, parse_params, settings_digest

ROOT = Path(__file__).resolve().parents[1]
PARAMS = ROOT / "params.yaml"


def raw_params() -> dict:
    return yaml.safe_load(PARAMS.read_text())


def test_project_params_load_for_both_scales():
    demo = load_params(PARAMS)
    assert demo.scale == "demo"
    from rsdino.config.methods import METHODS

    assert demo.selected_variants()[0] == "demo_dino_vit"
    declared = {demo.variants[name].method for name in demo.selected_variants()}
    assert declared == set(METHODS)  # one tiny variant per registered method
    full = load_params(PARAMS, "full")
    assert len(full.selected_variants()) == 20
    declared = {full.variants[name].method for name in full.selected_variants()}
    # the seeds' methods (iBOT is in no published table)
    assert declared == {"dino", "dino_mc", "dino_tp", "satdino", "dinov2", "dinov2_multimodal"}
    assert {"seco100k", "ucmerced", "eurosat_rgb"} <= set(full.selected_datasets())


def test_unknown_key_gives_one_line_naming_its_path():
    raw = raw_params()
    raw["variants"]["demo_dino_vit"]["optim"]["lrr"] = 0.1
    with pytest.raises(ParamsError) as error:
        parse_params(raw, source=Path("params.yaml"))
    message = str(error.value)
    assert message.count("\n") == 0
    assert "params.yaml: variants.demo_dino_vit.optim.lrr: unknown key" in message


def test_wrong_type_names_the_key():
    raw = raw_params()
    raw["evaluations"]["demo_knn"]["temperature"] = "warm"
    with pytest.raises(ParamsError, match=r"evaluations\.demo_knn\.knn\.temperature"):
        parse_params(raw)


@pytest.mark.parametrize(("path", "value", "expected"), [
    (("variants", "demo_dino_vit", "pretrain_data"), "nowhere",
     "variants.demo_dino_vit.pretrain_data: unknown dataset 'nowhere'"),
    (("evaluations", "demo_knn", "variants"), ["ghost"],
     "evaluations.demo_knn.variants.0: unknown variant 'ghost'"),
    (("scale",), "huge", "scale: unknown scale 'huge'"),
    (("variants", "demo_dino_vit", "backbone"), "vit_gigantic",
     "variants.demo_dino_vit.backbone: unknown backbone 'vit_gigantic'"),
    (("evaluations", "satdino_mknn_eurosat", "split"), "eighty_twenty",
     "evaluations.satdino_mknn_eurosat.split: unknown split of dataset 'eurosat_rgb' 'eighty_twenty' "
     "(defined: satdino)"),
])
def test_undefined_references_are_refused(path, value, expected):
    raw = raw_params()
    node = raw
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    with pytest.raises(ParamsError) as error:
        parse_params(raw)
    assert expected in str(error.value)


def test_satdino_table_uses_its_own_80_20_split_and_dinov2rs_keeps_90_10():
    full = load_params(PARAMS, "full")
    table = full.tables["table3_satdino"].evaluations
    scene = [n for n in table if full.evaluations[n].protocol in {"knn_multiscale", "finetune"}]
    assert len(scene) == 12 and all(full.evaluations[n].split == "satdino" for n in scene)
    for name in scene:
        dataset = full.datasets[full.evaluations[name].dataset]
        assert dataset.split_settings("satdino").test_fraction == 0.2
        assert dataset.split_settings("default").test_fraction == 0.1
    assert all(full.evaluations[n].split == "default" for n in full.tables["table1_dinov2rs"].evaluations)
    fmow = full.evaluations["satdino_linear_fmow"]
    assert "satdino_linear_fmow" in table and full.datasets[fmow.dataset].task == "fmow"
    assert (fmow.optimizer, fmow.features, fmow.epochs) == ("adamw", "cls", 25)


@pytest.mark.parametrize(("dataset", "splits", "expected"), [
    ("fmow_rgb", {"satdino": {"test_fraction": 0.2}}, "named splits are made for scene_classification"),
    ("ucmerced", {"default": {"test_fraction": 0.2}}, "names ['default'] are not allowed"),
])
def test_bad_named_splits_are_refused(dataset, splits, expected):
    raw = raw_params()
    raw["datasets"][dataset]["splits"] = splits
    with pytest.raises(ParamsError, match=rf"datasets\.{dataset}: .*{re.escape(expected)}"):
        parse_params(raw)


def test_missing_and_broken_files_are_named(tmp_path):
    with pytest.raises(ParamsError, match="nothere.yaml: settings file not found"):
        load_params(tmp_path / "nothere.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("scale: [demo\n")
    with pytest.raises(ParamsError, match="broken.yaml: not valid YAML"):
        load_params(broken)


def test_http_source_needs_a_checksum():
    raw = raw_params()
    raw["datasets"]["ucmerced"]["source"] = {"url": "https://example.org/x.zip"}
    with pytest.raises(ParamsError, match=r"datasets\.ucmerced\.source: .*checksum"):
        parse_params(raw)


def test_resolved_settings_and_digest_follow_the_settings():
    params = load_params(PARAMS)
    resolved = params.resolved_for(variant="demo_dino_vit", evaluation="demo_knn")
    epochs = params.variants["demo_dino_vit"].optim.epochs
    assert resolved["variant"]["demo_dino_vit"]["optim"]["epochs"] == epochs
    assert resolved["dataset"]["demo_eurosat"]["bands"][-1] == "B8A"
    # defaults are filled in
    assert resolved["variant"]["demo_dino_vit"]["loss"]["student_temp"] == 0.1
    raw = raw_params()
    raw["evaluations"]["demo_knn"]["temperature"] = 0.1
    changed = parse_params(raw).resolved_for(variant="demo_dino_vit", evaluation="demo_knn")
    assert settings_digest(changed) != settings_digest(resolved)
    assert settings_digest(resolved) == settings_digest(
        params.resolved_for(variant="demo_dino_vit", evaluation="demo_knn"))
