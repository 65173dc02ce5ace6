"""Entries written as overlays: ``like:`` another entry or a recipe, deep-merged before validation.

An entry of ``datasets``, ``variants``, ``evaluations`` or ``tables`` may say ``like: <name>`` (or a
list of names, applied in order): it is then that entry, deep-merged with what it writes itself
(mappings merge key by key; lists and scalars are replaced). Each name of a list brings its whole
chain, so a later name's settings win over an earlier one's, even those it only inherits. A name is
another entry of the same section or a fragment of the top-level ``recipes:`` section (settings
common to a family, never an entry themselves; a recipe may be ``like`` other recipes)::

    recipes:
      seco:                                     # DINO on SeCo-100K, every backbone
        method: dino
        pretrain_data: seco100k
        optim: {epochs: 100, batch_size: 64}
    variants:
      dino_seco_vits16: {like: seco, backbone: vit_small_patch16}
      dinomc_vits16:
        like: dino_seco_vits16
        method: dino_mc
        crops: {n_local: 6}                     # the other crop settings stay those of the base
        optim: {epochs: 200}                    # batch_size stays 64

Unlike YAML's ``<<:`` merge key, which replaces a nested mapping whole, ``like`` changes only the keys
written. A key cannot be removed by an overlay: settings shared by some members of a family only go in
a recipe those members name. ``resolve_overlays`` runs before the scale's overrides
(``rsdino.config.scales``) and before validation, so every merged entry is validated like a
hand-written one (an unknown key, even one written in a recipe, is refused). A ``like`` that names
nothing, a loop of ``like``s, a name that is both a recipe and an entry of the section, and a recipe
no entry uses are errors naming the key.
"""

from __future__ import annotations

import copy
from typing import Any

#: The sections whose entries may be written as overlays.
OVERLAY_SECTIONS: tuple[str, ...] = ("datasets", "variants", "evaluations", "tables")
RECIPES = "recipes"


def deep_merge(base: Any, override: Any) -> Any:
    """``override`` merged into a copy of ``base``: mappings key by key, anything else replaced."""
    if isinstance(base, dict) and isinstance(override, dict):
        merged = dict(base)
        for key, value in override.items():
            merged[key] = deep_merge(base.get(key), value) if key in base else copy.deepcopy(value)
        return merged
    return copy.deepcopy(override)


def _likes(entry: dict[str, Any], where: str) -> list[str]:
    like = entry.get("like")
    names = [like] if isinstance(like, str) else like
    if not isinstance(names, list) or not names or not all(isinstance(n, str) and n for n in names):
        raise ValueError(f"{where}.like: must be a name or a list of names, not {like!r}")
    return names


class _Resolver:
    """Resolves the ``like`` chains of one settings mapping, each entry once."""

    def __init__(self, raw: dict[str, Any]) -> None:
        recipes = raw.get(RECIPES) or {}
        if not isinstance(recipes, dict):
            raise ValueError(f"{RECIPES}: must be a mapping of named fragments")
        self.raw, self.recipes = raw, recipes
        self.done: dict[str, dict[str, Any]] = {}
        self.used: set[str] = set()

    def _target(self, name: str, section: str | None, where: str) -> str:
        in_section = section is not None and name in (self.raw.get(section) or {})
        if name in self.recipes and in_section:
            raise ValueError(f"{where}.like: {name!r} is both a recipe and an entry of {section} "
                             "(rename one)")
        if name in self.recipes:
            self.used.add(name)
            return f"{RECIPES}.{name}"
        if in_section:
            return f"{section}.{name}"
        kinds = (f"a recipe or an entry of {section}" if section
                 else "a recipe (a recipe is like recipes only)")
        raise ValueError(f"{where}.like: {name!r} is not {kinds}")

    def resolve(self, key: str, chain: tuple[str, ...] = ()) -> dict[str, Any]:
        """The entry at ``key`` (``section.name``) with its ``like`` chain merged in, without ``like``."""
        if key in self.done:
            return self.done[key]
        if key in chain:
            raise ValueError(f"{chain[-1]}.like: loops ({' -> '.join((*chain[chain.index(key):], key))})")
        section, _, name = key.partition(".")
        entry = self.raw[section][name]
        if not isinstance(entry, dict) or "like" not in entry:
            self.done[key] = entry
            return entry
        merged: dict[str, Any] = {}
        for like in _likes(entry, key):
            target = self._target(like, None if section == RECIPES else section, key)
            base = self.resolve(target, (*chain, key))
            if not isinstance(base, dict):
                raise ValueError(f"{key}.like: {like!r} is not a mapping of settings")
            merged = deep_merge(merged, base)
        merged = deep_merge(merged, {k: v for k, v in entry.items() if k != "like"})
        self.done[key] = merged
        return merged


def resolve_overlays(raw: dict[str, Any]) -> dict[str, Any]:
    """The raw settings with every entry's ``like`` merged in and ``recipes`` dropped (module docstring).

    Raises:
        ValueError: a ``like`` that names nothing or loops, an ambiguous name, or an unused recipe;
            the message names the key path.
    """
    if RECIPES not in raw and not any(
            isinstance(entry, dict) and "like" in entry
            for section in OVERLAY_SECTIONS for entry in (raw.get(section) or {}).values()):
        return raw
    resolver = _Resolver(raw)
    out = {key: value for key, value in raw.items() if key != RECIPES}
    for section in OVERLAY_SECTIONS:
        if isinstance(raw.get(section), dict):
            out[section] = {name: resolver.resolve(f"{section}.{name}") for name in raw[section]}
    unused = [name for name in resolver.recipes if name not in resolver.used]
    if unused:
        raise ValueError("\n".join(f"{RECIPES}.{name}: no entry is like it (remove it or use it)"
                                   for name in unused))
    return out


def origin(raw: dict[str, Any], loc: tuple[str | int, ...]) -> str | None:
    """Where the setting at ``loc`` (``section, name, key, ...``) was written, when not in its entry.

    ``recipes.<r>`` or ``<section>.<other>``: the last fragment of the entry's ``like`` chain that
    writes that key path (the one that wins the merge); None when the entry writes it itself or it is
    not an overlay.
    """
    if len(loc) < 3 or loc[0] not in OVERLAY_SECTIONS:
        return None
    section, name, path = str(loc[0]), str(loc[1]), [str(part) for part in loc[2:]]
    recipes = raw.get(RECIPES) if isinstance(raw.get(RECIPES), dict) else {}

    def writes(entry: Any) -> bool:
        for part in path:
            if not isinstance(entry, dict) or part not in entry:
                return False
            entry = entry[part]
        return True

    def find(section_: str, name_: str, seen: frozenset[str]) -> str | None:
        entry = (raw.get(section_) or {}).get(name_)
        key = f"{section_}.{name_}"
        if not isinstance(entry, dict) or key in seen:
            return None
        if writes(entry):
            return key
        like = entry.get("like")
        for target in reversed([like] if isinstance(like, str) else like if isinstance(like, list) else []):
            where = (RECIPES if target in recipes or section_ == RECIPES else section_)
            found = find(where, str(target), seen | {key})
            if found:
                return found
        return None

    found = find(section, name, frozenset())
    return None if found in (None, f"{section}.{name}") else found
