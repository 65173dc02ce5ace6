"""Preflight: settings that would fail after pretraining stop the plan when they load."""

import time
from pathlib import Path

import pytest
import yaml

from rsdino.config import ParamsError, load_params, parse_params
from rsdino.config.preflight import preflight

ROOT = Path(__file__).resolve().parents[1]
PARAMS = ROOT / "params.yaml"


def raw_params() -> dict:
    return yaml.safe_load(PARAMS.read_text())


@pytest.mark.parametrize("scale", ["demo", "full", "mini"])
def test_the_projects_scales_pass(scale):
    assert preflight(load_params(PARAMS, scale)) == []


def problems(raw: dict, scale: str = "full") -> list[str]:
    with pytest.raises(ParamsError) as error:
        parse_params(raw, source=Path("p.yaml"), scale=scale)
    return str(error.value).splitlines()


def test_a_band_mismatch_names_the_evaluation_the_variant_and_the_bands():
    raw = raw_params()
    del raw["datasets"]["eurosat_rgb"]["band_aliases"]  # SeCo RGB models no longer read R, G, B
    lines = problems(raw)
    assert "p.yaml: evaluations.eurosat_knn on variants.dinomc_vits16: eurosat_rgb: the model was trained " \
        "on bands ['B4', 'B3', 'B2']" in lines[0]
    assert all(line.startswith("p.yaml: evaluations.eurosat_") for line in lines)
    assert len(lines) == len(set(lines)) == 8 + 8 + 5  # kNN, linear and fine-tuning jobs of Table 2


def test_a_crop_not_divisible_by_the_patch_is_refused():
    raw = raw_params()
    raw["variants"]["satdino_vits16"]["crops"]["global_size"] = 220
    assert any(line.startswith("p.yaml: variants.satdino_vits16.crops: crop sizes [96, 220] are not "
                               "multiples of the patch size 16") for line in problems(raw))


def test_protocol_against_backbone_kind_and_task():
    raw = raw_params()
    raw["evaluations"]["satdino_seg_potsdam_224"]["variants"] = ["dinomc_resnet50"]
    raw["evaluations"]["eurosat_knn"]["dataset"] = "bigearthnet_s2"
    lines = problems(raw)
    assert any("satdino_seg_potsdam_224 on variants.dinomc_resnet50: protocol segmentation needs a ViT"
               in line for line in lines)
    assert any("evaluations.eurosat_knn: protocol knn needs a scene_classification or fmow dataset" in line
               for line in lines)


def test_a_batch_larger_than_a_prepared_split(tmp_path):
    raw = raw_params()
    raw["paths"] = {"data": str(tmp_path)}
    prepared = tmp_path / "prepared" / "demo_eurosat"
    prepared.mkdir(parents=True)
    (prepared / "train.txt").write_text("\n".join(f"a/{i}.tif 0" for i in range(20)) + "\n")
    params = parse_params(raw, scale="demo", preflight_checks=False)
    made_with = params.resolved_for(dataset="demo_eurosat")
    (prepared / "params.resolved.yaml").write_text(yaml.safe_dump(made_with))
    lines = problems(raw, "demo")
    assert any(line.startswith("p.yaml: variants.demo_dino_vit.optim.batch_size: 32 is larger than the "
                               "training split of demo_eurosat (20 items)") for line in lines)
    # a folder prepared with other settings is about to be prepared again: not held against the plan
    made_with["dataset"]["demo_eurosat"]["split"]["seed"] = 1
    (prepared / "params.resolved.yaml").write_text(yaml.safe_dump(made_with))
    assert parse_params(raw, scale="demo").scale == "demo"


def test_snakemake_refuses_the_plan_before_any_job(tmp_path):
    import subprocess
    import sys

    bad = tmp_path / "params.yaml"
    bad.write_text(PARAMS.read_text().replace("input_bands: [B4, B3, B2]", "input_bands: [B4, B3, B1]", 1))
    start = time.monotonic()
    command = [str(Path(sys.executable).parent / "snakemake"), "-n", "all", "--config", f"params={bad}",
               "scale=full"]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    elapsed = time.monotonic() - start
    out = result.stdout + result.stderr
    assert result.returncode != 0
    assert "evaluations.eurosat_knn on variants.dinomc_vits16: eurosat_rgb: the model was trained on bands " \
        "['B4', 'B3', 'B1']" in out, out[-3000:]
    print(f"snakemake -n refused the plan in {elapsed:.1f} s")  # speed is measured, not asserted
