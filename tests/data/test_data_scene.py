"""Tests for rsdino.data.scene.SceneDataset on the prepared fake EuroSAT-MS."""

from __future__ import annotations

import shutil

import pytest
import torch
from matplotlib.figure import Figure

from rsdino.data.fake.eurosat import BANDS
from rsdino.data.readers import ImageReadError
from rsdino.data.scene import SceneDataset


def test_length_item_and_properties(fake_eurosat_raw, fake_eurosat_prepared):
    train = SceneDataset(fake_eurosat_raw, fake_eurosat_prepared, "train")
    test = SceneDataset(fake_eurosat_raw, fake_eurosat_prepared, "test")
    assert (len(train), len(test)) == (40, 10)
    item = train[0]
    assert set(item) == {"image", "label", "path"}
    assert item["image"].dtype == torch.float32 and item["image"].shape == (13, 16, 16)
    assert item["image"].max() > 100  # native units, not normalised
    assert isinstance(item["label"], int) and train.classes[item["label"]] in item["path"]
    assert train.bands == BANDS and len(train.classes) == 10
    assert len(train.stats["mean"]) == 13
    assert train.labels == [label for _, label in train.samples]


def test_transform_is_applied(fake_eurosat_raw, fake_eurosat_prepared):
    dataset = SceneDataset(fake_eurosat_raw, fake_eurosat_prepared, "test",
                           transform=lambda s: (s["image"].mean(), s["label"]))
    mean, label = dataset[3]
    assert mean.ndim == 0 and label == dataset.samples[3][1]


def test_unknown_split_lists_valid_ones(fake_eurosat_raw, fake_eurosat_prepared):
    with pytest.raises(ValueError, match=r"\['test', 'train'\]"):
        SceneDataset(fake_eurosat_raw, fake_eurosat_prepared, "val")


def test_missing_prepared_folder(fake_eurosat_raw, tmp_path):
    with pytest.raises(FileNotFoundError, match="not_prepared"):
        SceneDataset(fake_eurosat_raw, tmp_path / "not_prepared", "train")


def test_missing_metadata_file(fake_eurosat_raw, fake_eurosat_prepared, tmp_path):
    prepared = shutil.copytree(fake_eurosat_prepared, tmp_path / "p")
    (prepared / "classes.json").unlink()
    with pytest.raises(FileNotFoundError, match="classes.json"):
        SceneDataset(fake_eurosat_raw, prepared, "train")


def test_corrupt_file_error_names_the_file(fake_eurosat_raw, fake_eurosat_prepared, tmp_path):
    raw = shutil.copytree(fake_eurosat_raw, tmp_path / "raw")
    dataset = SceneDataset(raw, fake_eurosat_prepared, "train")
    rel = dataset.samples[5][0]
    (raw / rel).write_bytes(b"\x00" * 100)
    dataset[4]
    with pytest.raises(ImageReadError, match=rel.split("/")[-1]):
        dataset[5]


def test_plot_returns_a_figure(fake_eurosat_raw, fake_eurosat_prepared):
    dataset = SceneDataset(fake_eurosat_raw, fake_eurosat_prepared, "train")
    figure = dataset.plot(0)
    assert isinstance(figure, Figure)
    assert dataset.classes[dataset.samples[0][1]] in figure.axes[0].get_title()
    image = figure.axes[0].images[0].get_array()
    assert image.shape == (16, 16, 3) and 0 <= image.min() and image.max() <= 1


def test_works_with_a_dataloader(fake_eurosat_raw, fake_eurosat_prepared):
    dataset = SceneDataset(fake_eurosat_raw, fake_eurosat_prepared, "train")
    batch = next(iter(torch.utils.data.DataLoader(dataset, batch_size=8)))
    assert batch["image"].shape == (8, 13, 16, 16) and batch["label"].shape == (8,)
