"""The task registry: every record resolves, it is torch-free, and it is the one place a task is spelled."""

from __future__ import annotations

import ast
import inspect
import re
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError
from torch.utils.data import Dataset

from rsdino.config.datasets import DatasetConfig
from rsdino.data.catalog import CATALOG
from rsdino.data.fake import FAKE_GENERATORS
from rsdino.data.registry import DEFAULT_TASK, TASKS, check_task, resolve, tasks_where
from rsdino.evaluate import dense
from rsdino.evaluate.run import PROTOCOLS

ROOT = Path(__file__).resolve().parents[2]
NAMES = sorted(TASKS)
#: Task names that are also the names of protocols or of dataset-layout generators, which other modules
#: spell as such: where one of these is used as a task is found by ``_task_contexts``.
SHARED = set(PROTOCOLS) | {layout.fake for layout in CATALOG.values()}


@pytest.mark.parametrize("name", NAMES)
def test_every_task_resolves(name: str) -> None:
    task = TASKS[name]
    assert task.name == name and task.labels in ("class", "multi_label", "mask", "change", "none")
    assert len(inspect.signature(resolve(task.prepare)).parameters) == 5  # (cfg, name, raw, out, progress)
    assert issubclass(resolve(task.dataset), Dataset)
    fake = resolve(task.fake)
    assert FAKE_GENERATORS[name] is fake and "out_archive" in inspect.signature(fake).parameters
    assert {"list_file", "resize"} <= set(inspect.signature(resolve(task.import_local)).parameters)
    if task.labels in ("multi_label", "mask", "change"):  # read by a dense protocol
        assert dense.READERS[name] == task.dataset


def test_selections_and_the_default() -> None:
    assert DEFAULT_TASK == NAMES[NAMES.index(DEFAULT_TASK)] and TASKS[DEFAULT_TASK].labels == "class"
    assert set(tasks_where(labels="mask")) >= {"segmentation", "local_segmentation"}
    assert all(TASKS[name].tiled for name in tasks_where(labels="mask"))
    assert tasks_where(labels="mask", tiled=False) == []
    with pytest.raises(ValueError, match="unknown task 'segmentaton' \\(known: scene_classification, "):
        check_task("segmentaton")


def test_settings_refuse_an_unknown_task_in_one_line_listing_the_known_ones() -> None:
    with pytest.raises(ValidationError) as caught:
        DatasetConfig(task="scenes", source={"url": "file://x.tar"}, bands=["R"])
    message = next(error["msg"] for error in caught.value.errors())
    assert "\n" not in message and "'scenes'" in message and all(name in message for name in TASKS)
    assert DatasetConfig(source={"url": "file://x.tar"}, bands=["R"]).task == DEFAULT_TASK


def test_the_registry_and_the_settings_import_no_torch() -> None:
    code = ("import sys; import rsdino.config; from rsdino.data.tasks import TASKS; "
            "paths = {p.rsplit('.', 1)[0] for t in TASKS.values() "
            "         for p in (t.prepare, t.dataset, t.fake, t.import_local)}; "
            "print(sorted(m for m in sys.modules if m == 'torch' or m in paths))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                         env={"PYTHONPATH": str(ROOT), "PATH": ""}, check=True).stdout
    assert out.strip() == "[]"


def _spellings(source: str) -> list[tuple[int, str]]:
    """``(line, task name)`` of every task-name string constant of a module, docstrings left out."""
    tree = ast.parse(source)
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
                  and node.body and isinstance(node.body[0], ast.Expr)
                  and isinstance(node.body[0].value, ast.Constant)}
    return [(node.lineno, node.value) for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in TASKS
            and node.value not in SHARED and id(node) not in docstrings]


def _task_contexts(source: str) -> list[tuple[int, str]]:
    """``(line, text)`` where a string constant is compared with, or stored as, a ``task``."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Compare):
            names = [part for part in (node.left, *node.comparators)
                     if isinstance(part, ast.Attribute | ast.Name)]
            constants = [c for part in (node.left, *node.comparators)
                         for c in ast.walk(part) if isinstance(c, ast.Constant) and c.value in TASKS]
            if constants and any(getattr(n, "attr", getattr(n, "id", "")) == "task" for n in names):
                found.append((node.lineno, ast.unparse(node)))
        if isinstance(node, ast.Dict):
            for key, value in zip(node.keys, node.values, strict=True):
                if isinstance(key, ast.Constant) and key.value == "task" and isinstance(value, ast.Constant) \
                        and value.value in TASKS:
                    found.append((node.lineno, ast.unparse(node)[:80]))
    return found


def test_task_names_are_spelled_in_the_task_records_only() -> None:
    registry = ROOT / "rsdino" / "data" / "tasks.py"
    assert _spellings(registry.read_text())  # the test sees the names where they are spelled
    assert _task_contexts("if cfg.task == 'multilabel': pass") and _task_contexts("m = {'task': 'fmow'}")
    offenders = []
    for path in sorted((ROOT / "rsdino").rglob("*.py")):
        if path == registry:
            continue
        source = path.read_text(encoding="utf-8")
        offenders += [f"{path.relative_to(ROOT)}:{line}: {text}"
                      for line, text in _spellings(source) + _task_contexts(source)]
    unique = [name for name in TASKS if name not in SHARED]
    pattern = re.compile(r"""["'](?:{})["']""".format("|".join(unique)))
    for path in [ROOT / "Snakefile", *sorted((ROOT / "workflow").rglob("*.smk")),
                 ROOT / "workflow" / "Snakefile"]:
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if pattern.search(line) and not line.lstrip().startswith("#"):
                offenders.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert offenders == []
