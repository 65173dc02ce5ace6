"""dvc.lock records the settings used; the committed lock matches params.yaml; DVC errors in one line."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from rsdino.dvc_lock import expected_lock_params, lock_params, one_line_error, record_settings_file

ROOT = Path(__file__).resolve().parents[1]


def test_committed_dvc_lock_records_the_committed_params_yaml() -> None:
    """Regenerate with `rsdino dvc-commit --params-only` (or a demo run) after changing params.yaml."""
    expected = expected_lock_params(ROOT, "tables")
    sections = {"scale", "scales", "datasets", "recipes", "variants", "evaluations", "tables"}
    assert set(expected["params.yaml"]) == sections
    assert lock_params(ROOT, "tables") == expected


def _project(tmp_path: Path) -> Path:
    (tmp_path / "dvc.yaml").write_text(yaml.safe_dump({"stages": {"tables": {
        "cmd": "snakemake --profile local tables", "params": ["scale", "variants"],
        "outs": [{"results/tables": {"cache": False}}]}}}))
    (tmp_path / "params.yaml").write_text("scale: demo\nvariants: {a: {lr: 1}}\nother: 1\n")
    (tmp_path / "my.yaml").write_text("scale: demo\nvariants: {a: {lr: 2}}\n")
    (tmp_path / "dvc.lock").write_text(yaml.safe_dump({"schema": "2.0", "stages": {"tables": {
        "cmd": "snakemake --profile local tables",
        "params": {"params.yaml": {"scale": "demo", "variants": {"a": {"lr": 1}}}},
        "outs": [{"path": "results/tables", "md5": "x.dir"}]}}}))
    return tmp_path


def test_a_run_with_another_settings_file_is_recorded_as_such(tmp_path) -> None:
    root = _project(tmp_path)
    record_settings_file(root, "tables", "params.yaml")  # the declared file: dvc commit's record stands
    assert lock_params(root, "tables") == {"params.yaml": {"scale": "demo", "variants": {"a": {"lr": 1}}}}
    message = record_settings_file(root, "tables", "my.yaml")
    stage = yaml.safe_load((root / "dvc.lock").read_text())["stages"]["tables"]
    assert stage["params"] == {"my.yaml": {"scale": "demo", "variants": {"a": {"lr": 2}}}}
    assert stage["cmd"] == "snakemake --config params=my.yaml --profile local tables"
    assert stage["outs"] == [{"path": "results/tables", "md5": "x.dir"}]  # the rest is kept
    assert "my.yaml" in message


def test_a_missing_remote_extra_is_one_line_naming_the_package() -> None:
    stderr = ("ERROR: unexpected error - s3 is supported, but requires 'dvc-s3' to be installed: "
              "No module named 'dvc_s3'\n\nHaving any troubles? Hit us up at https://dvc.org/support\n")
    line = one_line_error("dvc push data/raw/x to remote 's3'", 255, "", stderr)
    assert "\n" not in line
    assert line == ("dvc push data/raw/x to remote 's3' failed: unexpected error - s3 is supported, "
                    "but requires 'dvc-s3' to be installed: No module named 'dvc_s3' "
                    "(install it: pip install dvc-s3)")
    assert one_line_error("dvc add x", 1, "", "") == "dvc add x failed: exit status 1"


@pytest.mark.slow  # three dvc commands (about 2 s each on an idle machine)
def test_dvc_track_to_a_cloud_remote_without_its_extra_fails_in_one_line(tmp_path, monkeypatch) -> None:
    import importlib.util
    import os
    import subprocess
    import sys

    from rsdino.dvc_lock import DvcError
    from rsdino.workflow_support import dvc_track

    if importlib.util.find_spec("dvc_s3") is not None:
        pytest.skip("dvc-s3 is installed here")
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.chdir(tmp_path)
    subprocess.run(["dvc", "init", "-q", "--no-scm"], check=True)
    (tmp_path / ".dvc" / "config").write_text(
        "[core]\n    no_scm = True\n    analytics = false\n['remote \"s3r\"']\n    url = s3://no-such-bucket/x\n")
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "a.txt").write_text("a")
    with pytest.raises(DvcError) as error:
        dvc_track(Path("d"), "s3r")  # fails on the missing package, before any network
    assert "\n" not in str(error.value) and "pip install dvc-s3" in str(error.value)


def test_dvc_status_is_clean_in_a_fresh_clone(tmp_path) -> None:
    """The committed demo tables, code and settings are what the committed dvc.lock records.

    After changing code under rsdino/ or workflow/, the Snakefile or params.yaml: commit, then run
    `rsdino dvc-commit` (or the demo) and commit dvc.lock.
    """
    import os
    import subprocess
    import sys

    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout: there is no commit to clone")
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
    for name in ("results/tables", "results/metrics/summary.json"):
        assert (clone / name).exists(), f"{name} is not committed"
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "DVC_NO_ANALYTICS": "1"}
    status = subprocess.run(["dvc", "status"], cwd=clone, env=env, capture_output=True, text=True)
    assert status.returncode == 0, status.stderr
    assert "up to date" in status.stdout.lower(), (
        "dvc status in a fresh clone is not clean; commit, run `rsdino dvc-commit` and commit dvc.lock:\n"
        + status.stdout)
