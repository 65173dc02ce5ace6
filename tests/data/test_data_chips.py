"""Tests for rsdino.data.chips: the decoded store gives back exactly the per-file items."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from rsdino.data.chips import CHIPS_DIR, ChipDataset, build_chip_store, chipped
from rsdino.data.scene import SceneDataset


class _Items(Dataset):
    def __init__(self, items: list[dict]) -> None:
        self.items = items

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict:
        return self.items[i]


def test_store_items_equal_the_file_items(fake_eurosat_raw, fake_eurosat_prepared, tmp_path):
    files = SceneDataset(fake_eurosat_raw, fake_eurosat_prepared, "train")
    summary = build_chip_store(files, tmp_path / CHIPS_DIR, name="fake", progress=False)
    assert summary["n_items"] == len(files) == 40
    assert summary["dtypes"] == {"image": "uint16"}  # float32 items of uint16 GeoTIFFs: stored exactly
    assert summary["bytes"] == 40 * 13 * 16 * 16 * 2
    chips = ChipDataset(tmp_path / CHIPS_DIR, files)
    assert len(chips) == len(files)
    for i in range(len(files)):
        want, got = files[i], chips[i]
        assert got.keys() == want.keys()
        assert got["image"].dtype == want["image"].dtype == torch.float32
        assert torch.equal(got["image"], want["image"])
        assert (got["label"], got["path"]) == (want["label"], want["path"])
    assert chips.stats == files.stats and chips.bands == files.bands  # metadata from the file dataset


def test_narrowest_exact_type_per_key(tmp_path):
    rng = np.random.default_rng(0)
    items = [{"rgb": torch.from_numpy(rng.integers(0, 256, (3, 4, 4)).astype(np.float32)),
              "db": torch.from_numpy(rng.normal(-12, 3, (2, 4, 4)).astype(np.float32)),
              "half": torch.from_numpy(rng.integers(-1000, 1000, (1, 4, 4)).astype(np.float32) / 4),
              "mask": torch.from_numpy(rng.integers(0, 2, (4, 4))), "gsd": float(i)} for i in range(5)]
    summary = build_chip_store(_Items(items), tmp_path / "s", progress=False)
    assert summary["dtypes"] == {"rgb": "uint8", "db": "float32", "half": "float16", "mask": "uint8"}
    chips = ChipDataset(tmp_path / "s")
    for i, item in enumerate(items):
        for key in ("rgb", "db", "half", "mask"):
            assert chips[i][key].dtype == item[key].dtype and torch.equal(chips[i][key], item[key])
        assert chips[i]["gsd"] == float(i)


def test_items_of_different_shapes_are_refused_and_leave_nothing(tmp_path):
    items = [{"image": torch.zeros(3, 8, 8)}, {"image": torch.zeros(3, 9, 8)}]
    with pytest.raises(ValueError, match=r"dataset odd: item 1 has image of shape \(3, 9, 8\).*store: files"):
        build_chip_store(_Items(items), tmp_path / "s", name="odd", progress=False)
    assert not (tmp_path / "s").exists()


def test_chipped_uses_a_fitting_store_only(tmp_path):
    items = [{"image": torch.full((2, 4, 4), float(i))} for i in range(6)]
    files = _Items(items)
    assert chipped(files, tmp_path) is files  # no store
    build_chip_store(_Items(items[:5]), tmp_path / CHIPS_DIR, progress=False)
    assert chipped(files, tmp_path) is files  # other length
    build_chip_store(files, tmp_path / CHIPS_DIR, progress=False)
    assert chipped(files, tmp_path, needs=("series",)) is files  # lacks the series
    store = chipped(files, tmp_path)
    assert isinstance(store, ChipDataset)
    # Picklable without its maps; two workers read the same items.
    assert pickle.loads(pickle.dumps(store))._arrays is None
    loader = DataLoader(store, batch_size=3, num_workers=2)
    assert torch.equal(torch.cat([b["image"] for b in loader]), torch.stack([it["image"] for it in items]))


def test_prepare_builds_the_store_of_a_chips_dataset(tmp_path):
    """``store: chips`` on an S1/S2 pair dataset: dB and DN tensors, each kept exactly, via the registry."""
    from rsdino.config.datasets import DatasetConfig
    from rsdino.data.extract import extract_archive
    from rsdino.data.fake.sen12mscrts import make_fake_sen12mscrts_archive
    from rsdino.data.registry import open_dataset, prepare_dataset

    s2 = ["B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10", "B11", "B12"]
    cfg = DatasetConfig(task="s1s2_pairs", source={"url": "file://x.tar"}, bands=["VV", "VH", *s2],
                        rgb_bands=["B04", "B03", "B02"], native_size=8,
                        split={"test_fraction": 0.25, "seed": 0}, store="chips")
    make_fake_sen12mscrts_archive(tmp_path / "s12.tar", n_times=2, n_patches=2, size=8, seed=1)
    raw = extract_archive(tmp_path / "s12.tar", tmp_path / "raw")
    summary = prepare_dataset(cfg, "pairs", raw, tmp_path / "prep", progress=False)
    assert summary["chips"]["n_items"] == summary["n_train"]
    assert summary["chips"]["dtypes"]["s2"] == "uint16" and summary["chips"]["dtypes"]["s1"] == "float32"
    files = open_dataset(cfg, raw, tmp_path / "prep", "train")
    store = chipped(files, tmp_path / "prep")
    assert isinstance(store, ChipDataset)
    for i in range(len(files)):
        want, got = files[i], store[i]
        assert all(torch.equal(got[k], want[k]) for k in ("image", "s1", "s2"))
