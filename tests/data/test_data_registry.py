"""``open_dataset`` / ``prepare_dataset`` for the temporal (SeCo) and S1/S2 pair (SEN12MS-CR-TS) tasks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from rsdino.config.datasets import DatasetConfig
from rsdino.data import open_dataset, prepare_dataset
from rsdino.data.extract import extract_archive
from rsdino.data.fake.seco import make_fake_seco
from rsdino.data.fake.sen12mscrts import make_fake_sen12mscrts_archive
from rsdino.data.registry import TASKS
from rsdino.data.seco import index_seco

torch.set_num_threads(1)
S2 = ["B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10", "B11", "B12"]
SECO = DatasetConfig(task="temporal_series", source={"url": "file://x.tar"},
                     class_root="seasonal_contrast_100k",
                     bands=["B2", "B3", "B4", "B8", "B11"], rgb_bands=["B4", "B3", "B2"], native_size=12,
                     split={"test_fraction": 0.25, "seed": 0})
PAIRS = DatasetConfig(task="s1s2_pairs", source={"url": "file://x.tar"}, bands=["VV", "VH", *S2],
                      rgb_bands=["B04", "B03", "B02"], native_size=8,
                      split={"test_fraction": 0.25, "seed": 0})


@pytest.fixture(scope="module")
def seco_raw(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("seco")
    make_fake_seco(folder / "seco.tar", n_locations=4, n_dates=3, size=12, bands=SECO.bands, seed=1)
    return extract_archive(folder / "seco.tar", folder / "raw")


@pytest.fixture(scope="module")
def pairs_raw(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("pairs")
    make_fake_sen12mscrts_archive(folder / "s12.tar", n_times=2, n_patches=2, size=8, seed=1)
    return extract_archive(folder / "s12.tar", folder / "raw")


def test_fake_archives_are_reproducible(tmp_path: Path) -> None:
    kwargs = {"n_locations": 2, "n_dates": 2, "size": 6, "bands": ["B2", "B3"]}
    assert make_fake_seco(tmp_path / "a.tar", **kwargs) == make_fake_seco(tmp_path / "b.tar", **kwargs)
    other = make_fake_seco(tmp_path / "c.tar", seed=5, **kwargs)
    assert other != make_fake_seco(tmp_path / "a.tar", **kwargs)
    small = {"n_times": 1, "n_patches": 1, "size": 4}
    assert (make_fake_sen12mscrts_archive(tmp_path / "p.tar", **small)
            == make_fake_sen12mscrts_archive(tmp_path / "q.tar", **small))


def test_temporal_series_items(seco_raw: Path, tmp_path: Path) -> None:
    summary = prepare_dataset(SECO, "seco_fake", seco_raw, tmp_path / "prep", progress=False)
    assert (summary["n_train"], summary["n_test"], summary["n_dates"]) == (3, 1, 3)
    train = open_dataset(SECO, seco_raw, tmp_path / "prep", "train")
    test = open_dataset(SECO, seco_raw, tmp_path / "prep", "test")
    assert {r["location"] for r in train.records}.isdisjoint(r["location"] for r in test.records)
    item = train[0]
    assert item["series"].shape == (3, 5, 12, 12) and item["series"].dtype == torch.float32
    assert torch.equal(item["image"], item["series"][0])
    assert item["dates"] == sorted(item["dates"], reverse=True) and len(set(item["dates"])) == 3
    assert not torch.equal(item["series"][0], item["series"][1])  # the seasons differ
    assert train.bands == SECO.bands and len(train.stats["mean"]) == 5 and min(train.stats["std"]) > 0
    assert item["series"].max() <= 255 and item["gsd"] == SECO.gsd
    assert train.plot(0).axes[0].get_title().startswith(item["path"])


def test_seco_index_reports_incomplete_dates(seco_raw: Path, tmp_path: Path) -> None:
    import shutil

    copy = shutil.copytree(seco_raw, tmp_path / "raw")
    location = copy / "seasonal_contrast_100k" / "000000"
    first_date = sorted(p for p in location.iterdir() if p.is_dir())[0]
    (first_date / "B8.tif").unlink()
    report = index_seco(copy / "seasonal_contrast_100k", SECO.bands, min_dates=3)
    assert report["incomplete_dates"] == [{"path": f"000000/{first_date.name}", "missing": ["B8.tif"]}]
    assert report["short_locations"] == [{"location": "000000", "n_dates": 2}]
    assert [r["location"] for r in report["locations"]] == ["000001", "000002", "000003"]


def test_s1s2_pairs_items(pairs_raw: Path, tmp_path: Path) -> None:
    summary = prepare_dataset(PAIRS, "pairs_fake", pairs_raw, tmp_path / "prep", progress=False)
    assert summary["n_train"] + summary["n_test"] == 4 * 2 * 2 and summary["n_unpaired"] == 0
    train = open_dataset(PAIRS, pairs_raw, tmp_path / "prep", "train")
    val = open_dataset(PAIRS, pairs_raw, tmp_path / "prep", "test")
    roi = lambda path: "/".join(path.split("/")[:2])  # noqa: E731
    assert {roi(p[0]) for p in train.pairs}.isdisjoint(roi(p[0]) for p in val.pairs)
    for s1, s2 in train.pairs + val.pairs:
        twin = s1.replace("/S1/", "/S2/").replace("/s1_", "/s2_")
        assert twin.split("_ImgNo_")[0] == s2.split("_ImgNo_")[0]
        assert s1.split("_patch_")[1] == s2.split("_patch_")[1]
    item = train[0]
    assert item["image"].shape == (15, 8, 8)
    assert item["s1"].shape == (2, 8, 8) and item["s2"].shape == (13, 8, 8)
    assert torch.equal(item["image"][:2], item["s1"]) and item["s1"].max() <= 0 <= item["s2"].min()
    assert train.bands == PAIRS.bands and len(train.stats["std"]) == 15
    # co-registered: S1 backscatter follows the S2 near-infrared of the same place
    vv, nir = item["s1"][0].flatten().numpy(), item["s2"][PAIRS.bands.index("B08") - 2].flatten().numpy()
    if nir.std() > 0:
        assert np.corrcoef(vv, nir)[0, 1] > 0.3
    assert train.plot(0) is not None


def test_s1s2_wrong_bands_and_unknown_task(pairs_raw: Path, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    wrong = PAIRS.model_copy(update={"bands": S2 + ["VV", "VH"], "rgb_bands": []})
    with pytest.raises(ValueError, match="needs bands"):
        prepare_dataset(wrong, "x", pairs_raw, tmp_path / "prep", progress=False)
    monkeypatch.delitem(TASKS, "change_detection")
    odd = PAIRS.model_copy(update={"task": "change_detection"})
    with pytest.raises(NotImplementedError, match="change_detection"):
        open_dataset(odd, pairs_raw, tmp_path, "train")


def test_missing_prepared_folder_is_named(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "nope")):
        open_dataset(SECO, tmp_path, tmp_path / "nope", "train")
    with pytest.raises(FileNotFoundError, match="rsdino download --dataset seco"):
        prepare_dataset(SECO, "seco", tmp_path, tmp_path / "prep", progress=False)
    (tmp_path / "unrelated").mkdir()  # a folder without the SeCo root: the SeCo index says what to get
    with pytest.raises(FileNotFoundError, match="seco_100k.zip"):
        prepare_dataset(SECO, "seco", tmp_path, tmp_path / "prep", progress=False)
