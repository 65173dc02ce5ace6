"""Glue between rsdino and the tools around it: Snakemake profiles, DVC.

Resolved settings files are written by ``rsdino.config.write_resolved``.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from rsdino.dvc_lock import DvcError, one_line_error, record_settings_file

PROFILE_NAMES = ("local", "slurm")
#: A file inside every profile folder of ours, so that we never replace somebody else's profile.
PROFILE_MARKER = ".rsdino-profile"


def snakemake_profile_home() -> Path:
    """The user folder where Snakemake looks up a profile given by bare name."""
    from snakemake.common import get_appdirs

    return Path(get_appdirs().user_config_dir)


def install_profiles(project: Path, *, force: bool = False, home: Path | None = None) -> list[str]:
    """Link ``<home>/<name>`` to ``<project>/profiles/<name>`` for the local and slurm profiles.

    Snakemake resolves ``--profile local`` in the working directory and in its user and site
    configuration folders only, so the names must exist in one of those. A folder that is not one
    of ours (no ``.rsdino-profile`` marker) is left alone unless ``force``; a dangling link (its
    checkout was deleted) is replaced.
    """
    home = home or snakemake_profile_home()
    home.mkdir(parents=True, exist_ok=True)
    lines = []
    for name in PROFILE_NAMES:
        source = project / "profiles" / name
        if not (source / "config.yaml").is_file():
            raise FileNotFoundError(f"{source / 'config.yaml'}: profile not found in the project")
        link = home / name
        if link.is_symlink() or link.exists():
            dangling = link.is_symlink() and not link.exists()  # e.g. a deleted clone: nothing to lose
            ours = dangling or (link / PROFILE_MARKER).exists()
            if not ours and not force:
                raise FileExistsError(f"{link}: a Snakemake profile named {name!r} exists and is not "
                                      "rsdino's; move it away or run `rsdino setup --force`")
            if link.is_symlink() or link.is_file():
                link.unlink()
            else:
                raise FileExistsError(f"{link}: is a folder; remove it to install rsdino's profile")
        link.symlink_to(source, target_is_directory=True)
        lines.append(f"profile {name!r}: {link} -> {source}")
    return lines


def prepare_dvc_remote(project: Path) -> str:
    """Create the folder of the default local DVC remote if the repository uses one."""
    config = project / ".dvc" / "config"
    if not config.is_file():
        return "no DVC repository here: nothing to prepare"
    url = None
    section = None
    for line in config.read_text().splitlines():
        line = line.strip()
        if line.startswith("["):
            section = line
        elif section and section.startswith("['remote") and line.startswith("url"):
            url = line.split("=", 1)[1].strip()
    if url is None or "://" in url:
        return "DVC remote: not a local folder, nothing to prepare"
    folder = (project / ".dvc" / url).resolve() if not os.path.isabs(url) else Path(url)
    folder.mkdir(parents=True, exist_ok=True)
    return f"DVC remote folder: {folder}"


def _dvc(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DVC_NO_ANALYTICS": "1"}
    return subprocess.run(["dvc", *args], capture_output=True, text=True, env=env, check=False)


def _check(result: subprocess.CompletedProcess[str], what: str) -> None:
    """Raise ``DvcError`` with DVC's own error as one line (``rsdino.dvc_lock.one_line_error``)."""
    if result.returncode != 0:
        raise DvcError(one_line_error(what, result.returncode, result.stdout, result.stderr))


def dvc_track(path: Path, remote: str | None) -> str:
    """``dvc add`` a folder (writing ``<path>.dvc``) and push it to ``remote`` when given."""
    # not --quiet: DVC then hides its errors too (a missing dvc-s3 was an empty traceback)
    _check(_dvc("add", str(path)), f"dvc add {path}")
    if remote:
        _check(_dvc("push", "-r", remote, f"{path}.dvc"), f"dvc push {path} to remote {remote!r}")
    return f"{path}: tracked by DVC ({path}.dvc)" + (f", pushed to remote {remote!r}" if remote else "")


def dvc_commit(stage: str, settings_file: str = "params.yaml") -> str:
    """``dvc commit`` a stage: dvc.lock records the outputs Snakemake just built.

    And the settings file the run used (``rsdino.dvc_lock.record_settings_file``).
    """
    _check(_dvc("commit", "--force", stage), f"dvc commit {stage}")
    return record_settings_file(Path.cwd(), stage, settings_file)

