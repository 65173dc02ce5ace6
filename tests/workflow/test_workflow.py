"""The DAG: lint-clean, the slurm profile plans every full-scale variant, profiles resolve by name."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from rsdino.config import load_params
from rsdino.workflow_support import PROFILE_MARKER, install_profiles

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def snakemake(*args: str, cwd: Path = ROOT, env: dict | None = None) -> subprocess.CompletedProcess:
    environment = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", **(env or {})}
    return subprocess.run([str(BIN / "snakemake"), *args], cwd=cwd, capture_output=True, text=True,
                          env=environment, timeout=300)


def test_lint_is_clean():
    result = snakemake("--lint")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Congratulations, your workflow is in a good condition" in result.stdout + result.stderr


def test_slurm_dry_run_lists_one_pretraining_job_per_full_variant(job_counts):
    result = snakemake("--profile", str(ROOT / "profiles" / "slurm"), "-n", "--forceall", "all")
    out = result.stdout + result.stderr
    assert result.returncode == 0, out
    full = load_params(ROOT / "params.yaml", "full")
    for variant in full.selected_variants():
        assert f"models/{variant}/model.safetensors" in out, variant
    assert job_counts(out)["pretrain"] == len(full.selected_variants()) == 20


def test_local_dry_run_plans_the_demo_chain():
    result = snakemake("--profile", str(ROOT / "profiles" / "local"), "-n", "--forceall", "all")
    out = result.stdout + result.stderr
    assert result.returncode == 0, out
    for rule in ("make_demo", "download", "prepare", "pretrain", "import_weights", "evaluate", "report"):
        assert re.search(rf"^Job \d+: {rule} ", out, re.M), rule  # the rule's one-line message


def test_wrong_settings_stop_the_workflow_with_the_key(tmp_path):
    bad = tmp_path / "params.yaml"
    bad.write_text((ROOT / "params.yaml").read_text().replace("ks: [10, 20]", "kss: [10, 20]", 1))
    result = snakemake("-n", "--config", f"params={bad}")
    assert result.returncode != 0
    assert "evaluations.demo_knn.knn.kss: unknown key" in result.stdout + result.stderr


def test_profiles_install_by_name_and_respect_foreign_profiles(tmp_path):
    home = tmp_path / "snakemake"
    lines = install_profiles(ROOT, home=home)
    assert len(lines) == 2
    assert (home / "local" / "config.yaml").resolve() == ROOT / "profiles" / "local" / "config.yaml"
    assert (home / "slurm" / PROFILE_MARKER).exists()
    install_profiles(ROOT, home=home)  # idempotent
    foreign = tmp_path / "other"
    (foreign / "local").mkdir(parents=True)
    (foreign / "local" / "config.yaml").write_text("cores: 1\n")
    with pytest.raises(FileExistsError, match="not rsdino's"):
        install_profiles(ROOT, home=foreign)
    assert (foreign / "local" / "config.yaml").read_text() == "cores: 1\n"
    stale = tmp_path / "stale"
    stale.mkdir()
    (stale / "local").symlink_to(tmp_path / "deleted-clone" / "profiles" / "local")
    install_profiles(ROOT, home=stale)  # a link into a deleted checkout is replaced
    assert (stale / "local" / "config.yaml").is_file()


def test_bare_profile_name_resolves_after_setup(tmp_path):
    """`snakemake --profile local` works literally once the profiles are in the user config folder."""
    config_home = tmp_path / "xdg"
    install_profiles(ROOT, home=config_home / "snakemake")
    result = snakemake("--profile", "local", "-n", "all", env={"XDG_CONFIG_HOME": str(config_home)})
    assert result.returncode == 0, result.stdout + result.stderr
    missing = snakemake("--profile", "local", "-n", "all",
                        env={"XDG_CONFIG_HOME": str(tmp_path / "empty"), "HOME": str(tmp_path)})
    assert missing.returncode != 0


def test_a_manual_dataset_is_tracked_once_it_is_placed(tmp_path):
    """`all` asks for data/raw/<manual>.dvc only when that folder holds files (else its download
    job stops with the instruction, as before)."""
    (tmp_path / ".dvc").mkdir()  # a DVC repository: `track` is part of `all`
    args = ("-s", str(ROOT / "Snakefile"), "-d", str(tmp_path), "-n", "--forceall", "--config",
            f"params={ROOT / 'params.yaml'}", "scale=full", "--", "all")
    before = snakemake(*args)
    assert before.returncode == 0, before.stdout + before.stderr
    assert "track ucmerced (" in before.stdout and "track whurs19 (" not in before.stdout
    (tmp_path / "data" / "raw" / "whurs19" / "Airport").mkdir(parents=True)
    (tmp_path / "data" / "raw" / "whurs19" / "Airport" / "airport_01.jpg").write_bytes(b"jpeg")
    after = snakemake(*args)
    assert after.returncode == 0, after.stdout + after.stderr
    assert "track whurs19 (" in after.stdout
    assert "track optimal31 (" not in after.stdout  # still missing: not asked for
