"""List a class-per-folder dataset, split it (seeded and stratified), and read and write split files.

A split file holds one ``relative_path,label`` line per image (POSIX separators, integer label).

Named splits: a prepared folder holds its default split as ``train.txt`` / ``test.txt`` and every
named split ``<name>`` (``datasets.<d>.splits``) as ``splits/<name>/{train,test}.txt`` with that
split's own ``stats.json``; a reader opens part ``train`` of split ``<name>`` as ``"<name>/train"``
(``part_of``).
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np

from rsdino.errors import UserError
from rsdino.io import write_text

Item = tuple[str, int]
DEFAULT_SPLIT = "default"
NAMED_SPLITS_DIR = "splits"


def part_of(split: str, part: str) -> str:
    """The reader's name of part ``part`` (``train``/``test``) of split ``split``: ``<split>/<part>``.

    The default split's parts keep their plain names.
    """
    return part if split == DEFAULT_SPLIT else f"{split}/{part}"


class SplitFileError(UserError, ValueError):
    """A split file has a line that is not ``relative_path,label``."""

    hint = "run `rsdino prepare` for the dataset again"


def list_scene_folder(class_root: Path, extensions: tuple[str, ...],
                      depth: int = 1) -> tuple[list[Item], list[str]]:
    """List the images of a dataset laid out as ``class_root/<class>/**/<image>``.

    Class names are the sorted names of the (non-hidden) sub-folders of ``class_root``; a label is
    the index of its class. Files at the top level and hidden files or folders are ignored. With
    ``depth`` 2 (RSI-CB128: ``<parent>/<class>/``) the classes are the folders two levels down, named
    by their leaf folder (by ``parent/class`` if two leaves share a name).

    Args:
        class_root: folder holding one sub-folder per class.
        extensions: accepted file suffixes, compared case-insensitively (e.g. ``(".tif",)``).
        depth: how many folder levels below ``class_root`` the class folders are.

    Returns:
        ``(items, classes)``: items are ``(path relative to class_root, label)`` sorted by path.

    Raises:
        FileNotFoundError: ``class_root`` is missing, has no class folder, or a class has no image.
    """
    class_root = Path(class_root)
    how_to = "download and extract the dataset first (`rsdino download`)"
    if not class_root.is_dir():
        raise FileNotFoundError(f"dataset folder {class_root} does not exist; {how_to}")
    folders = [class_root]
    for _ in range(depth):
        folders = [p for f in folders for p in f.iterdir() if p.is_dir() and not p.name.startswith(".")]
    leaves = [p.name for p in folders]
    by_name = {(p.name if leaves.count(p.name) == 1 else p.relative_to(class_root).as_posix()): p
               for p in folders}
    classes = sorted(by_name)
    if not classes:
        raise FileNotFoundError(f"no class folders found in {class_root}; {how_to}")
    suffixes = tuple(ext.lower() for ext in extensions)
    items: list[Item] = []
    for label, name in enumerate(classes):
        found = [
            path.relative_to(class_root).as_posix()
            for path in by_name[name].rglob("*")
            if path.is_file() and path.suffix.lower() in suffixes
            and not any(part.startswith(".") for part in path.relative_to(class_root).parts)
        ]
        if not found:
            raise FileNotFoundError(f"class folder {by_name[name]} holds no {'/'.join(suffixes)} "
                                    f"image; {how_to}")
        items.extend((rel, label) for rel in found)
    return sorted(items), classes


def stratified_split(items: list[Item], test_fraction: float, seed: int) -> tuple[list[Item], list[Item]]:
    """Split ``items`` into ``(train, test)`` class by class with a seeded shuffle.

    Each class sends ``round(n * test_fraction)`` items to test, at least one when it has two or more
    items and never all of them. The result depends only on the set of items, ``test_fraction`` and
    ``seed`` (not on input order); both lists come back sorted by path.
    """
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    by_label: dict[int, list[str]] = defaultdict(list)
    for path, label in items:
        by_label[label].append(path)
    train: list[Item] = []
    test: list[Item] = []
    for label in sorted(by_label):
        paths = sorted(by_label[label])
        order = np.random.default_rng([seed, label]).permutation(len(paths))
        n_test = min(max(round(len(paths) * test_fraction), 1), len(paths) - 1) if len(paths) >= 2 else 0
        test.extend((paths[i], label) for i in order[:n_test])
        train.extend((paths[i], label) for i in order[n_test:])
    return sorted(train), sorted(test)


def write_split_file(path: Path, items: list[Item]) -> Path:
    """Write ``items`` as ``relative_path,label`` lines to ``path`` atomically and return ``path``."""
    lines = []
    for rel, label in items:
        if "," in rel or "\n" in rel:
            raise ValueError(f"{path}: image path {rel!r} contains a comma or newline")
        lines.append(f"{rel},{int(label)}\n")
    return write_text(path, "".join(lines))


def read_split_file(path: Path) -> list[Item]:
    """Read a split file written by ``write_split_file`` (blank lines are skipped).

    Raises:
        FileNotFoundError: the file does not exist.
        SplitFileError: naming the file and line number of the first malformed line.
    """
    path = Path(path)
    items: list[Item] = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        rel, sep, label = line.rpartition(",")
        if not sep or not rel or not label.strip().isdigit():
            raise SplitFileError(f"{path}:{number}: expected 'relative_path,label', got {line!r}")
        items.append((rel, int(label)))
    return items
