"""Are two settings files the same settings once resolved? (A check for rewrites of ``params.yaml``.)

Loads each side with ``rsdino.config.load_params`` for every scale it defines and compares what the
validated ``Params`` holds: every section fully resolved (defaults filled in, ``like:`` and the
scale's overrides applied), what the scale selects, and the digest of every output's resolved
settings (``Params.resolved_for``, which Snakemake uses to decide what to re-run). Prints one line
per difference, ``<scale>: <key path>: <before> -> <after>``, and exits 1 when there is any::

    python benchmarks/check_resolved_settings.py --before HEAD --after WORKTREE
    python benchmarks/check_resolved_settings.py --before main:params.yaml --after my.yaml
    python benchmarks/check_resolved_settings.py --dump /tmp/before.yaml --after HEAD
    python benchmarks/check_resolved_settings.py --before /tmp/before.yaml --after WORKTREE

A side is ``WORKTREE`` (the working tree's ``params.yaml``), an existing file (a settings file, or a
resolved dump written by ``--dump``), or a git revision (``REV`` for its ``params.yaml``,
``REV:path`` for another file). Both sides are read with this tree's loader. ``--dump PATH`` writes
the ``--after`` side's resolved settings to PATH (and compares nothing unless ``--before`` is given).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml

from rsdino.config import load_params, settings_digest

ROOT = Path(__file__).resolve().parents[1]
#: The top-level key of a file written by ``--dump`` (so that it can be a side of a later comparison).
DUMP_KEY = "resolved_settings_of"


def _settings_text(side: str) -> tuple[str, str]:
    """``(label, text)`` of one side: the working tree's params.yaml, a file or a git revision."""
    if side == "WORKTREE":
        return str(ROOT / "params.yaml"), (ROOT / "params.yaml").read_text(encoding="utf-8")
    if Path(side).is_file():
        return side, Path(side).read_text(encoding="utf-8")
    rev, _, path = side.partition(":")
    spec = f"{rev}:{path or 'params.yaml'}"
    shown = subprocess.run(["git", "show", spec], cwd=ROOT, capture_output=True, text=True)
    if shown.returncode != 0:
        raise SystemExit(f"{side}: not WORKTREE, a file or a git revision ({shown.stderr.strip()})")
    return spec, shown.stdout


def resolved_settings(text: str) -> dict[str, Any]:
    """Per scale: the validated settings, the scale's selection and each output's settings digest."""
    raw = yaml.safe_load(text)
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "params.yaml"
        path.write_text(text, encoding="utf-8")
        for scale in raw["scales"]:
            params = load_params(path, scale, preflight_checks=False)
            digests: dict[str, Any] = {
                kind: {name: settings_digest(params.resolved_for(**{kind: name}))
                       for name in getattr(params, f"{kind}s")}
                for kind in ("dataset", "variant", "evaluation", "table")}
            digests["variant_on_evaluation"] = {
                f"{evaluation}/{variant}": settings_digest(params.resolved_for(variant=variant,
                                                                              evaluation=evaluation))
                for evaluation in params.evaluations for variant in params.evaluations[evaluation].variants}
            out[scale] = {
                "params": params.model_dump(mode="json"),
                "selected": {"variants": params.selected_variants(),
                             "evaluations": params.selected_evaluations(),
                             "datasets": params.selected_datasets()},
                "resolved_for_digests": digests,
            }
    return out


def load_side(side: str) -> tuple[str, dict[str, Any]]:
    """``(label, resolved settings)`` of one side (a dump written by ``--dump`` is read as it is)."""
    label, text = _settings_text(side)
    loaded = yaml.safe_load(text)
    if isinstance(loaded, dict) and DUMP_KEY in loaded:
        return f"{label} (dump of {loaded[DUMP_KEY]})", loaded["scales"]
    return label, resolved_settings(text)


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict):
        flat: dict[str, Any] = {} if value else {prefix: {}}
        for key, item in value.items():
            flat.update(_flatten(item, f"{prefix}.{key}" if prefix else str(key)))
        return flat
    return {prefix: value}


def differences(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    """``<key path>: <before> -> <after>`` for every leaf that differs (``<absent>`` where one lacks it).

    Same values with keys in another order (a mapping written in that order beside the outputs) is a
    difference too.
    """
    old, new = _flatten(before), _flatten(after)
    missing = "<absent>"
    lines = [f"{key}: {old.get(key, missing)!r} -> {new.get(key, missing)!r}"
             for key in sorted(set(old) | set(new)) if old.get(key, missing) != new.get(key, missing)]
    if not lines and list(old) != list(new):  # same values, keys in another order (the written YAML differs)
        key = next(a for a, b in zip(old, new, strict=False) if a != b)
        lines.append(f"{key}: the keys around it come in another order")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", help="WORKTREE, a file, a dump, REV or REV:path")
    parser.add_argument("--after", default="WORKTREE", help="the same (default: WORKTREE)")
    parser.add_argument("--dump", type=Path, help="write the --after side's resolved settings here")
    args = parser.parse_args(argv)
    label_after, after = load_side(args.after)
    if args.dump:
        args.dump.write_text(yaml.safe_dump({DUMP_KEY: label_after, "scales": after}, sort_keys=False),
                             encoding="utf-8")
        print(f"{args.dump}: the resolved settings of {label_after} ({', '.join(after)})")
    if args.before is None:
        return 0 if args.dump else parser.error("give --before (and --after), or --dump")
    label_before, before = load_side(args.before)
    lines = differences(before, after)
    for line in lines:
        print(line)
    counts = {scale: (len(before.get(scale, {}).get("params", {}).get("variants", {})),
                      len(before.get(scale, {}).get("params", {}).get("evaluations", {})))
              for scale in before}
    summary = ", ".join(f"{scale}: {v} variants, {e} evaluations" for scale, (v, e) in counts.items())
    verdict = f"{len(lines)} difference(s)" if lines else "identical"
    print(f"{label_before} -> {label_after}: {verdict} ({summary})")
    return 1 if lines else 0


if __name__ == "__main__":
    sys.exit(main())
