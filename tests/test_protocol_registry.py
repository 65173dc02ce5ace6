"""The protocol records (``rsdino.config.protocols``) are the one place a protocol's name is spelled.

Parametrised over ``PROTOCOLS``: every record's settings class validates an evaluation of its name
through params validation, and its runner imports with the one signature
``run(context, settings, tracker)``; the Snakefile, the preflight and the evaluation job read the
records instead of lists of names of their own, and so do the tables' section headings.
"""

from __future__ import annotations

import inspect
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from rsdino.config import PROTOCOLS, KnnEvaluation, ParamsError, load_params, parse_params
from rsdino.config.evaluations import KnnFaissEvaluation
from rsdino.report.readable import protocol_name

ROOT = Path(__file__).resolve().parents[1]
NAMES = sorted(PROTOCOLS)
DEMO = load_params(ROOT / "params.yaml", "demo")


def demo_params_with(protocol: str) -> dict:
    """The demo scale's settings, with ``demo_knn`` turned into an evaluation of ``protocol``."""
    data = yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))
    evaluation = DEMO.evaluations["demo_knn"]  # resolved: written as an overlay (like:) in params.yaml
    data["evaluations"]["demo_knn"] = {"protocol": protocol, "dataset": evaluation.dataset,
                                       "variants": list(evaluation.variants)}
    return data


@pytest.mark.parametrize("name", NAMES)
def test_a_protocol_name_selects_the_settings_class_of_its_record(name):
    params = parse_params(demo_params_with(name), source=ROOT / "params.yaml", preflight_checks=False)
    settings = params.evaluations["demo_knn"]
    assert type(settings) is PROTOCOLS[name].settings and settings.protocol == name


@pytest.mark.parametrize("name", NAMES)
def test_a_runner_imports_with_the_one_signature(name):
    runner = PROTOCOLS[name].load_runner()
    assert list(inspect.signature(runner).parameters) == ["context", "settings", "tracker"]
    assert PROTOCOLS[name].title and protocol_name(name) == PROTOCOLS[name].title


def test_an_unregistered_protocol_is_one_line_naming_the_known_ones(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(demo_params_with("knn_by_eye")), encoding="utf-8")
    with pytest.raises(ParamsError) as error:
        load_params(path, "demo")
    line = next(line for line in str(error.value).splitlines() if "demo_knn" in line)
    assert f"{path}: evaluations.demo_knn: protocol: expected one of" in line
    assert all(name in line for name in NAMES)


def test_settings_built_directly_are_checked_against_the_records():
    assert KnnEvaluation(protocol="knn_patch_mean", dataset="d", variants=["v"]).protocol == "knn_patch_mean"
    with pytest.raises(ValidationError, match="protocol 'knn' takes KnnEvaluation settings"):
        KnnFaissEvaluation(protocol="knn", dataset="d", variants=["v"])
    with pytest.raises(ValidationError, match="protocol 'knn_by_eye': expected one of knn, "):
        KnnEvaluation(protocol="knn_by_eye", dataset="d", variants=["v"])


def test_the_records_are_torch_free():
    code = "import sys, rsdino.config.protocols, rsdino.config.preflight; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "False"


def quoted_names(path: Path) -> list[str]:
    """Protocol names written as quoted strings in a file's code (comments left out)."""
    names = "|".join(map(re.escape, PROTOCOLS))
    code = "\n".join(line for line in path.read_text(encoding="utf-8").splitlines()
                     if not line.lstrip().startswith("#"))
    return sorted(set(re.findall(rf"""["']({names})["']""", code)))


WORKFLOW = sorted(path.relative_to(ROOT).as_posix() for path in (ROOT / "workflow").rglob("*.smk"))


@pytest.mark.parametrize("path", [*WORKFLOW, "workflow/Snakefile", "rsdino/config/preflight.py",
                                  "rsdino/evaluate/run.py", "rsdino/report/readable.py"])
def test_no_protocol_name_is_spelled_outside_the_records(path):
    assert quoted_names(ROOT / path) == []


def test_the_preflight_reads_the_records(monkeypatch):
    """A record's ``labels`` decide which datasets an evaluation of it may read."""
    import dataclasses

    from rsdino.config.preflight import preflight

    params = load_params(ROOT / "params.yaml", "demo")
    assert not [line for line in preflight(params) if "evaluations.demo_knn:" in line]
    monkeypatch.setitem(PROTOCOLS, "knn", dataclasses.replace(PROTOCOLS["knn"], labels="mask"))
    dataset = params.evaluations["demo_knn"].dataset
    assert [line for line in preflight(params) if line.startswith("evaluations.demo_knn:")] == [
        f"evaluations.demo_knn: protocol knn needs a segmentation or local_segmentation dataset (labels); "
        f"{dataset} is {params.datasets[dataset].task}"]
