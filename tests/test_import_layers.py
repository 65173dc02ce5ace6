"""The layers of ``rsdino`` (docs/architecture.md, "Layers and who calls whom"), read from the source.

Every module under ``rsdino/`` is parsed with ``ast``; every ``import`` in it counts, those inside
functions and ``TYPE_CHECKING`` blocks too. A module may import its own layer and the layers below
it, never one above; the CLI is imported by nobody, the launchers and the workflow glue only by the
CLI (and the launchers by each other). A failure lists every offending import with file and line.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "rsdino"

#: Bottom to top. A module belongs to the layer of its longest listed prefix (a module or a package
#: with all its submodules), unless ``CATALOGUES`` names it; ``rsdino`` itself is its ``__init__`` only.
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("foundation", ("rsdino", "rsdino.errors", "rsdino.imports", "rsdino.io", "rsdino.stable_files",
                    "rsdino.devices", "rsdino.progress", "rsdino.stale_runs", "rsdino.tracking",
                    "rsdino.dvc_lock")),
    ("catalogues", ()),
    ("config", ("rsdino.config",)),
    ("components", ("rsdino.data", "rsdino.models", "rsdino.losses", "rsdino.views")),
    ("steps", ("rsdino.train", "rsdino.evaluate", "rsdino.analysis", "rsdino.report")),
    ("orchestration", ("rsdino.launch", "rsdino.workflow_support")),
    ("cli", ("rsdino.cli", "rsdino.__main__")),
)
#: Torch-free vocabularies the settings validator checks names against: these modules themselves
#: (not their packages' other modules) sit between the foundation and ``rsdino.config``.
CATALOGUES = frozenset({"rsdino.models.catalog", "rsdino.models.importers", "rsdino.data.bands",
                        "rsdino.data.extract", "rsdino.data.tasks"})
#: Who may import these, besides their own package.
RESTRICTED = {
    "rsdino.cli": frozenset({"rsdino.__main__"}),
    "rsdino.launch": frozenset({"rsdino.cli"}),
    "rsdino.workflow_support": frozenset({"rsdino.cli"}),
}


@dataclass(frozen=True)
class Import:
    """``importer`` imports ``imported`` at ``path:line``."""

    importer: str
    imported: str
    path: str
    line: int

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.importer} imports {self.imported}"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def _target(node: ast.ImportFrom, importer: str, is_package: bool, alias: str) -> str:
    """The module ``from X import alias`` imports: ``X.alias`` when that is a module, else ``X``."""
    base = node.module or ""
    if node.level:
        package = importer.split(".") if is_package else importer.split(".")[:-1]
        package = package[:len(package) - (node.level - 1)]
        base = ".".join(package + ([node.module] if node.module else []))
    return f"{base}.{alias}" if f"{base}.{alias}" in MODULES else base


def imports_of(name: str, path: Path) -> list[Import]:
    """Every ``rsdino`` import of one module, wherever it stands in the file."""
    found = []
    where = str(path.relative_to(PACKAGE.parent))
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=where)):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            targets = [_target(node, name, path.name == "__init__.py", alias.name) for alias in node.names]
        else:
            continue
        found += [Import(name, target, where, node.lineno) for target in targets
                  if target == "rsdino" or target.startswith("rsdino.")]
    return found


def _in(module: str, package: str) -> bool:
    """``module`` is ``package`` or one of its submodules (``rsdino`` stands for its ``__init__``)."""
    return module == package or (package != "rsdino" and module.startswith(package + "."))


def layer_of(module: str) -> int | None:
    """Index into ``LAYERS`` of ``module``'s layer; ``None`` if no entry places it."""
    if module in CATALOGUES:
        return [name for name, _ in LAYERS].index("catalogues")
    best, level = "", None
    for index, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if _in(module, prefix) and len(prefix) > len(best):
                best, level = prefix, index
    return level


def violations(imports: list[Import]) -> list[str]:
    """One line per import that goes up a layer or reaches a restricted module from outside."""
    found = []
    for item in imports:
        low, high = layer_of(item.importer), layer_of(item.imported)
        if low is None or high is None:
            found.append(f"{item}: {item.importer if low is None else item.imported} is in no layer")
        elif high > low:
            found.append(f"{item}: layer {LAYERS[low][0]} must not import layer {LAYERS[high][0]}")
        for restricted, allowed in RESTRICTED.items():
            if _in(item.imported, restricted) and not _in(item.importer, restricted) \
                    and not any(_in(item.importer, module) for module in allowed):
                found.append(f"{item}: only {', '.join(sorted(allowed))} may import {restricted}")
    return found


ALL_IMPORTS = [item for name, path in MODULES.items() for item in imports_of(name, path)]


def test_every_module_has_a_layer() -> None:
    unplaced = [name for name in MODULES if layer_of(name) is None]
    assert not unplaced, "modules in no layer (add them to LAYERS):\n" + "\n".join(unplaced)
    assert CATALOGUES <= MODULES.keys(), f"CATALOGUES names missing modules: {CATALOGUES - MODULES.keys()}"


def test_no_module_imports_a_layer_above_its_own() -> None:
    found = violations(ALL_IMPORTS)
    if found:
        pytest.fail(f"{len(found)} import(s) break the layers (docs/architecture.md):\n" + "\n".join(found),
                    pytrace=False)


def test_the_graph_sees_imports_inside_functions() -> None:
    """The CLI imports its steps lazily, inside its commands: they must be in the graph."""
    cli = {item.imported for item in ALL_IMPORTS if item.importer == "rsdino.cli"}
    assert {"rsdino.launch.warm", "rsdino.launch.submitit_launcher", "rsdino.train.pretrain"} <= cli


@pytest.mark.parametrize(("importer", "imported", "rule"), [
    ("rsdino.launch.warm", "rsdino.cli", "layer orchestration must not import layer cli"),
    ("rsdino.models.backbones", "rsdino.train.pretrain", "layer components must not import layer steps"),
    ("rsdino.config.variants", "rsdino.models.backbones", "layer config must not import layer components"),
    ("rsdino.workflow_support", "rsdino.launch.warm", "only rsdino.cli may import rsdino.launch"),
    ("rsdino.train.pretrain", "rsdino.workflow_support",
     "only rsdino.cli may import rsdino.workflow_support"),
])
def test_a_forbidden_import_is_reported_with_its_place(importer: str, imported: str, rule: str) -> None:
    (line,) = [line for line in violations([Import(importer, imported, "rsdino/x.py", 7)]) if rule in line]
    assert line.startswith(f"rsdino/x.py:7: {importer} imports {imported}: ")


def test_allowed_imports_pass() -> None:
    allowed = [Import("rsdino.cli", "rsdino.launch.warm", "rsdino/cli.py", 1),
               Import("rsdino.launch.workflow", "rsdino.launch", "rsdino/launch/workflow.py", 1),
               Import("rsdino.config.variants", "rsdino.models.catalog", "rsdino/config/variants.py", 1),
               Import("rsdino.train.probe", "rsdino.evaluate.knn", "rsdino/train/probe.py", 1)]
    assert violations(allowed) == []


def test_relative_imports_resolve_to_modules() -> None:
    node = ast.parse("from ..io import write_json\nfrom . import catalog\n").body
    assert _target(node[0], "rsdino.models.backbones", False, "write_json") == "rsdino.io"
    assert _target(node[1], "rsdino.models", True, "catalog") == "rsdino.models.catalog"


def test_the_catalogues_and_the_settings_are_torch_free() -> None:
    """The settings validator and the Snakefile import them; torch would cost seconds per call."""
    modules = sorted(CATALOGUES) + ["rsdino.config"]
    code = (f"import importlib, sys; [importlib.import_module(m) for m in {modules!r}]; "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=PACKAGE.parent).stdout
    assert out.strip() == "False"
