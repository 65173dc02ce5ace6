"""Tests for rsdino.data.splits: listing class folders, stratified splits, split files."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from rsdino.data.splits import (
    SplitFileError,
    list_scene_folder,
    read_split_file,
    stratified_split,
    write_split_file,
)


def _items(counts):
    return [(f"c{label}/img_{i}.tif", label) for label, n in enumerate(counts) for i in range(n)]


def test_list_scene_folder(tmp_path):
    for cls, files in {"b_class": ["2.tif", "1.TIF", "notes.txt"], "a_class": ["x.tif", "sub/y.tif"]}.items():
        for name in files:
            (tmp_path / cls / name).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / cls / name).write_bytes(b"")
    (tmp_path / ".hidden").mkdir()
    (tmp_path / "split.csv").write_text("")
    items, classes = list_scene_folder(tmp_path, (".tif",))
    assert classes == ["a_class", "b_class"]
    assert items == [("a_class/sub/y.tif", 0), ("a_class/x.tif", 0),
                     ("b_class/1.TIF", 1), ("b_class/2.tif", 1)]


def test_missing_or_empty_folder_says_how_to_get_data(tmp_path):
    with pytest.raises(FileNotFoundError, match="download") as excinfo:
        list_scene_folder(tmp_path / "nowhere", (".tif",))
    assert "nowhere" in str(excinfo.value)
    with pytest.raises(FileNotFoundError, match="no class folders"):
        list_scene_folder(tmp_path, (".tif",))
    (tmp_path / "empty_class").mkdir()
    with pytest.raises(FileNotFoundError, match="empty_class"):
        list_scene_folder(tmp_path, (".tif",))


def test_stratified_split_is_stratified():
    items = _items([10, 20, 5, 2, 1])
    train, test = stratified_split(items, test_fraction=0.2, seed=0)
    assert sorted(train + test) == sorted(items)
    assert not set(train) & set(test)
    assert Counter(label for _, label in test) == {0: 2, 1: 4, 2: 1, 3: 1}  # a singleton class stays in train
    assert Counter(label for _, label in train)[4] == 1


def test_stratified_split_is_seeded_and_order_independent():
    items = _items([30, 30, 30])
    first = stratified_split(items, 0.3, seed=7)
    shuffled = items[:]
    random.Random(1).shuffle(shuffled)
    assert stratified_split(shuffled, 0.3, seed=7) == first
    assert stratified_split(items, 0.3, seed=8) != first


def test_stratified_split_rejects_bad_fraction():
    with pytest.raises(ValueError, match="test_fraction"):
        stratified_split(_items([4]), 1.0, seed=0)


def test_split_file_round_trip(tmp_path):
    items = [("a/x 1.tif", 0), ("b/y.tif", 3)]
    write_split_file(tmp_path / "train.txt", items)
    assert (tmp_path / "train.txt").read_text() == "a/x 1.tif,0\nb/y.tif,3\n"
    assert read_split_file(tmp_path / "train.txt") == items
    with pytest.raises(ValueError, match="comma"):
        write_split_file(tmp_path / "bad.txt", [("a,b.tif", 0)])


@pytest.mark.parametrize("bad", ["no_label_here", "a.tif,", "a.tif,x", ",3", "a.tif,-1"])
def test_malformed_split_line_names_file_and_line(tmp_path, bad):
    path = tmp_path / "test.txt"
    path.write_text(f"ok.tif,0\n{bad}\n")
    with pytest.raises(SplitFileError, match=r"test\.txt:2"):
        read_split_file(path)
