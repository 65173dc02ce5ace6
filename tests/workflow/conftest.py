"""Shared helpers of the workflow tests: plan parsing, a fresh copy of the project, offline runs."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from rsdino.workflow_support import install_profiles

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def _job_counts(output: str) -> dict[str, int]:
    """The "Job stats" table of a Snakemake plan: rule -> number of jobs (without the total)."""
    lines = output.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("Job stats:"))
    counts = {}
    for line in lines[start + 3:]:
        parts = line.split()
        if len(parts) != 2 or not parts[1].isdigit():
            break
        counts[parts[0]] = int(parts[1])
    counts.pop("total", None)
    return counts


@pytest.fixture(scope="session")
def job_counts():
    """Parse the job counts of a Snakemake plan."""
    return _job_counts


def _offline_prefix() -> list[str]:
    """Run under a new network namespace (no network at all) where the machine allows it."""
    unshare = shutil.which("unshare")
    if unshare and subprocess.run([unshare, "-n", "true"], capture_output=True).returncode == 0:
        return [unshare, "-n"]
    return []


OFFLINE = _offline_prefix()


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> dict:
    """A fresh git + DVC checkout of the project's files, with its own profiles and no outputs."""
    dest = tmp_path_factory.mktemp("project") / "rsdino"
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT,
                           capture_output=True, text=True, check=True).stdout.split("\0")
    for name in filter(None, files):
        source = ROOT / name
        if source.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / name)
    for command in (["git", "init", "-q"], ["git", "add", "-A"],
                    ["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "copy"]):
        subprocess.run(command, cwd=dest, check=True)
    config_home = dest.parent / "xdg"
    install_profiles(dest, home=config_home / "snakemake")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env.update({"PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "XDG_CONFIG_HOME": str(config_home)})
    return {"root": dest, "env": env}


def run(project: dict, *command: str, offline: bool = True, timeout: int = 1200) -> str:
    prefix = OFFLINE if offline else []
    result = subprocess.run([*prefix, *command], cwd=project["root"], env=project["env"],
                            capture_output=True, text=True, timeout=timeout)
    out = result.stdout + result.stderr
    assert result.returncode == 0, out[-6000:]
    return out


@pytest.fixture(scope="session")
def run_in():
    """``run_in(project, *command)``: run a command in a project copy (offline), return its output."""
    return run
