"""What ``dvc.lock`` records of the settings, and DVC's errors as one line.

``dvc.yaml``'s ``tables`` stage declares the top-level sections of the settings it depends on
(``params:``, from ``params.yaml`` unless an entry names another file). ``dvc commit`` records their
values into ``dvc.lock`` from the file ``dvc.yaml`` names, whatever file the run used. So:

- ``lock_params`` / ``expected_lock_params``: the params section ``dvc.lock`` holds for a stage, and
  the one it should hold (the declared sections' values in the declared file); a test checks that the
  committed ``dvc.lock`` matches the committed ``params.yaml``, and ``write_lock_params`` regenerates
  that section (``rsdino dvc-commit --params-only``);
- ``record_settings_file``: after a run with ``--config params=my.yaml``, ``dvc.lock`` names
  ``my.yaml`` and its values (and the command with ``--config params=my.yaml``) instead of
  ``params.yaml``'s, so the lock says what built the tables and ``dvc status`` reports that
  ``params.yaml`` is not what they came from.

``DvcError`` is a failed ``dvc`` command reduced to one line: DVC's own ``ERROR:`` line, with the
``pip install`` of the missing remote extra (``dvc-s3``, ...) when that is the cause.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from rsdino.errors import UserError

DEFAULT_PARAMS_FILE = "params.yaml"


class DvcError(UserError, RuntimeError):
    """A ``dvc`` command failed; the message is one line."""

    hint = "see the DVC documentation for the remote; `dvc doctor` lists the installed extras"


def one_line_error(what: str, returncode: int, stdout: str, stderr: str) -> str:
    """``<what> failed: <DVC's ERROR line>`` (+ the extra to install), one line."""
    text = f"{stderr}\n{stdout}"
    errors = [line.strip() for line in text.splitlines() if line.strip().startswith("ERROR")]
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    reason = errors[0] if errors else (lines[-1] if lines else f"exit status {returncode}")
    reason = re.sub(r"^ERROR:\s*", "", reason)
    extra = re.search(r"requires '?(dvc-[a-z0-9]+)'? to be installed", text)
    if extra:
        reason += f" (install it: pip install {extra.group(1)})"
    return f"{what} failed: {reason}"


def _load(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text()) or {}


def declared_params(dvc_yaml: Path, stage: str) -> dict[str, list[str]]:
    """The params a stage declares: file -> top-level keys (bare keys are ``params.yaml``'s)."""
    declared: dict[str, list[str]] = {}
    for entry in _load(dvc_yaml)["stages"][stage].get("params", []):
        if isinstance(entry, str):
            declared.setdefault(DEFAULT_PARAMS_FILE, []).append(entry)
        else:
            for file, keys in entry.items():
                declared.setdefault(file, []).extend(keys or [])
    return declared


def expected_lock_params(root: Path, stage: str, settings_file: str | None = None) -> dict[str, Any]:
    """What ``dvc.lock`` should record as the stage's params: the declared keys' values in the file used.

    ``settings_file`` replaces ``params.yaml`` (the file of the run, ``--config params=...``).
    """
    out: dict[str, Any] = {}
    for file, keys in declared_params(root / "dvc.yaml", stage).items():
        used = settings_file if settings_file and file == DEFAULT_PARAMS_FILE else file
        values = _load(root / used)
        out[used] = {key: values[key] for key in keys if key in values}
    return out


def lock_params(root: Path, stage: str) -> dict[str, Any]:
    """The params section ``dvc.lock`` holds for ``stage`` (empty if none)."""
    lock = root / "dvc.lock"
    if not lock.is_file():
        return {}
    return (_load(lock).get("stages", {}).get(stage) or {}).get("params", {})


def write_lock_params(root: Path, stage: str, settings_file: str | None = None,
                      cmd: str | None = None) -> Path:
    """Rewrite the stage's params section (and ``cmd``, if given) of ``dvc.lock``, keeping the rest."""
    lock_path = root / "dvc.lock"
    lock = _load(lock_path) if lock_path.is_file() else {"schema": "2.0", "stages": {}}
    entry = lock.setdefault("stages", {}).setdefault(stage, {})
    if cmd is not None:
        entry["cmd"] = cmd
    entry["params"] = expected_lock_params(root, stage, settings_file)
    ordered = {k: entry[k] for k in ("cmd", "deps", "params", "outs") if k in entry}
    ordered.update({k: v for k, v in entry.items() if k not in ordered})
    lock["stages"][stage] = ordered
    lock_path.write_text(yaml.safe_dump(lock, sort_keys=False, width=100))
    return lock_path


def record_settings_file(root: Path, stage: str, settings_file: str) -> str:
    """After ``dvc commit``: make ``dvc.lock`` name the settings file the run actually used.

    ``params.yaml`` itself: its params section rewritten with the same values, in YAML every reader
    reads alike. Another file: the params section holds that file and
    its values, and ``cmd`` the command with ``--config params=<file>``.
    """
    if Path(settings_file).as_posix() in (DEFAULT_PARAMS_FILE, f"./{DEFAULT_PARAMS_FILE}"):
        # Rewritten all the same: DVC writes 1e-05 (YAML 1.2), which YAML 1.1 readers such as PyYAML
        # read as a string; ours writes 1.0e-05, the same number for DVC.
        write_lock_params(root, stage)
        return f"dvc.lock: stage {stage!r} recorded with {DEFAULT_PARAMS_FILE}"
    cmd = _load(root / "dvc.yaml")["stages"][stage]["cmd"]
    if "--config" not in cmd:
        cmd = cmd.replace("snakemake ", f"snakemake --config params={settings_file} ", 1)
    write_lock_params(root, stage, settings_file, cmd=cmd)
    return (f"dvc.lock: stage {stage!r} recorded with {settings_file} (not {DEFAULT_PARAMS_FILE}: "
            "`dvc status` reports params.yaml as changed until a run with it)")
