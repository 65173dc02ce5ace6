"""The command line: every step has --help; bad input ends with one line naming the file."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

from rsdino.cli import build_parser, main

ROOT = Path(__file__).resolve().parents[1]
STEPS = ["setup", "make-demo", "download", "track", "prepare", "pretrain", "import-weights", "evaluate",
         "report", "dvc-commit", "serve", "export"]


def test_every_step_is_registered():
    parser = build_parser()
    choices = next(a for a in parser._actions if a.dest == "command").choices
    assert sorted(choices) == sorted(STEPS)


@pytest.mark.parametrize("step", STEPS)
def test_each_step_has_help(step, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([step, "--help"])
    assert exit_.value.code == 0
    assert f"usage: rsdino {step}" in capsys.readouterr().out


def test_console_script_runs():
    rsdino = Path(sys.executable).parent / "rsdino"
    result = subprocess.run([str(rsdino), "pretrain", "--help"], capture_output=True, text=True)
    assert result.returncode == 0 and "--variant" in result.stdout


def test_missing_input_names_the_file(tmp_path, capsys):
    missing = tmp_path / "raw" / "demo_eurosat"
    code = main(["prepare", "--params", str(ROOT / "params.yaml"), "--dataset", "demo_eurosat",
                 "--raw", str(missing), "--out", str(tmp_path / "prepared")])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1
    assert f"{missing}: dataset folder not found" in err
    assert not (tmp_path / "prepared").exists()


def test_wrong_settings_key_is_one_line(tmp_path, capsys):
    bad = tmp_path / "params.yaml"
    bad.write_text((ROOT / "params.yaml").read_text().replace("  experiment: rsdino",
                                                            "  experimnt: rsdino"))
    code = main(["prepare", "--params", str(bad), "--dataset", "demo_eurosat", "--raw", str(tmp_path),
                 "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2
    assert err.strip() == f"rsdino prepare: error: {bad}: mlflow.experimnt: unknown key (not allowed here; " \
                          "check its spelling)"


def test_unknown_dataset_is_named(capsys, tmp_path):
    code = main(["download", "--params", str(ROOT / "params.yaml"), "--dataset", "atlantis",
                 "--out", str(tmp_path / "x")])
    assert code == 2
    assert "no dataset 'atlantis'" in capsys.readouterr().err


def test_manual_dataset_says_where_to_get_it(capsys, tmp_path):
    code = main(["download", "--params", str(ROOT / "params.yaml"), "--dataset", "fmow_rgb",
                 "--out", str(tmp_path / "fmow_rgb")])
    err = capsys.readouterr().err
    assert code == 2
    assert "must be downloaded by hand" in err and "s3://spacenet-dataset" in err


def test_readme_and_ci_use_the_same_test_command():
    readme = (ROOT / "README.md").read_text()
    commands = re.findall(r"```bash\n(python3 -m venv .*?)\n```", readme)
    assert len(commands) == 2
    ci = (ROOT / ".ci" / "run").read_text().strip().splitlines()[-1]
    assert ci == commands[1]
    assert "snakemake --profile local all" in commands[0]
