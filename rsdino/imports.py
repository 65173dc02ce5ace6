"""Import on first use: the object a record names by path, its module imported only when asked for.

The torch-free records (``rsdino.config.methods``, ``rsdino.config.protocols``, ``rsdino.data.tasks``)
name classes and functions by path so that reading them imports neither torch nor the code they
name; ``import_object`` turns such a path into the object.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any


def import_object(path: str) -> Any:
    """The object ``path`` names: ``"package.module:attribute"`` or ``"package.module.attribute"``.

    Raises:
        ImportError: the module cannot be imported.
        AttributeError: the module has no such attribute.
    """
    module_name, _, attribute = path.partition(":") if ":" in path else path.rpartition(".")
    return getattr(import_module(module_name), attribute)
