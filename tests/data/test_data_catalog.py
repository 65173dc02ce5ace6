"""Every catalogued dataset, on its tiny fake copy in the real layout, served by the loopback server.

Parametrised over ``rsdino.data.catalog.CATALOG`` (the datasets of params.yaml with a fake
generator): download + checksum, checksum mismatch, truncated archive, resume after an interrupted
download, an escaping archive member, missing data, and length / item / bands / plot.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pytest
import torch

from rsdino.config import load_params
from rsdino.config.datasets import DatasetConfig
from rsdino.data import open_dataset, prepare_dataset
from rsdino.data.catalog import CATALOG, archive_name, make_fake
from rsdino.data.download import ChecksumError, DownloadError, download
from rsdino.data.extract import ArchiveError, UnsafeArchiveError, extract_archive
from rsdino.data.fake import FAKE_GENERATORS

torch.set_num_threads(1)
PARAMS = load_params(Path(__file__).resolve().parents[2] / "params.yaml", "demo")
NAMES = sorted(CATALOG)


def test_every_declared_dataset_is_catalogued_or_not_servable() -> None:
    """Every scene, temporal and pair dataset of params.yaml has a fake generator in the catalog."""
    servable = {"scene_classification", "temporal_series", "s1s2_pairs", "multilabel", "segmentation",
                "change_detection"}
    servable.update({"unlabelled_images", "fmow"})
    missing = [n for n, cfg in PARAMS.datasets.items() if cfg.task in servable and n not in CATALOG]
    assert missing == []
    assert set(CATALOG) <= set(PARAMS.datasets)
    for name in NAMES:
        assert CATALOG[name].fake in FAKE_GENERATORS
        known = CATALOG[name].classes
        assert len(set(known)) == len(known) and len(known) <= CATALOG[name].n_classes


@pytest.fixture(scope="module", params=NAMES)
def fake(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
         ) -> tuple[str, DatasetConfig, bytes, str]:
    """``(name, cfg, archive bytes, sha256)`` of the fake archive under the dataset's real file name."""
    name = request.param
    cfg = PARAMS.datasets[name]
    path = tmp_path_factory.mktemp(f"fake_{name}") / archive_name(name, cfg)
    sha256 = make_fake(name, cfg, path)
    return name, cfg, path.read_bytes(), sha256


def prepared_sources(prepared: Path) -> dict:
    import json

    return json.loads((prepared / "sources.json").read_text())


def _url_name(name: str) -> str:
    return f"{name}/archive"


def test_download_prepare_and_read(fake, http_server, tmp_path: Path) -> None:
    name, cfg, data, sha256 = fake
    http_server.state.files[_url_name(name)] = data
    archive = download(http_server.url(_url_name(name)), tmp_path / "downloads", sha256=sha256,
                       filename=archive_name(name, cfg), progress=False)
    assert archive.read_bytes() == data
    raw = extract_archive(archive, tmp_path / "raw" / name)
    summary = prepare_dataset(cfg, name, raw, tmp_path / "prepared", progress=False)
    assert summary["n_train"] > 0 and summary["n_test"] > 0
    train = open_dataset(cfg, raw, tmp_path / "prepared", "train")
    test = open_dataset(cfg, raw, tmp_path / "prepared", "test")
    assert len(train) == summary["n_train"] and len(test) == summary["n_test"]
    assert train.bands == cfg.bands and len(train.stats["mean"]) == len(cfg.bands)
    item = train[len(train) - 1]
    assert item["image"].dtype == torch.float32 and item["image"].shape[0] == len(cfg.bands)
    height, width = item["image"].shape[1:]
    assert height > 0 and width > 0 and (height == width or cfg.task == "unlabelled_images")
    if cfg.task == "scene_classification":
        classes = CATALOG[name].classes
        assert set(train.classes) <= set(classes) and 0 <= item["label"] < len(train.classes)
    if cfg.task == "segmentation":
        assert item["mask"].shape == item["image"].shape[1:] and item["mask"].dtype == torch.int64
        labels = set(item["mask"].unique().tolist()) - {255}
        assert labels and max(labels) < len(train.classes) == CATALOG[name].n_classes
        big = open_dataset(cfg, raw, tmp_path / "prepared", f"train_{cfg.tile_sizes[-1]}")[0]
        assert big["image"].shape[1:] == (cfg.tile_sizes[-1],) * 2
    if cfg.task == "change_detection":
        assert item["image2"].shape == item["image"].shape and set(item["mask"].unique().tolist()) <= {0, 1}
        changed = item["mask"].bool()
        if changed.any() and (~changed).any():  # the second date differs where the mask says change
            ratio = (item["image2"] / item["image"].clamp(min=1))[0]
            assert ratio[changed].mean() > 1.5 > ratio[~changed].mean()
    if name == "millionaid_skyscript":
        assert set(prepared_sources(tmp_path / "prepared")) == {"millionaid", "skyscript"}
    if cfg.task == "fmow":  # labelled, with each image's own GSD and time
        assert train.classes == list(CATALOG[name].classes) and 0 < item["label"] < CATALOG[name].n_classes
        assert item["gsd"] > 0 and item["timestamp"] and item["location"] in item["path"]
    if cfg.task == "multilabel":
        assert item["label"].shape == (19,) and item["label"].dtype == torch.float32
    figure = train.plot(0)
    assert len(figure.axes) == 1


def test_checksum_mismatch(fake, http_server, tmp_path: Path) -> None:
    name, cfg, data, sha256 = fake
    http_server.state.files[_url_name(name)] = data
    wrong = ("0" if sha256[0] != "0" else "1") + sha256[1:]
    with pytest.raises(ChecksumError):
        download(http_server.url(_url_name(name)), tmp_path, sha256=wrong,
                 filename=archive_name(name, cfg), progress=False)
    assert not (tmp_path / archive_name(name, cfg)).exists()


def test_resume_after_interrupted_download(fake, http_server, tmp_path: Path) -> None:
    name, cfg, data, sha256 = fake
    http_server.state.files[_url_name(name)] = data
    http_server.state.cut_after = len(data) // 3
    filename = archive_name(name, cfg)
    with pytest.raises(DownloadError):
        download(http_server.url(_url_name(name)), tmp_path, sha256=sha256, filename=filename,
                 retries=0, progress=False)
    assert (tmp_path / f"{filename}.part").stat().st_size == len(data) // 3
    path = download(http_server.url(_url_name(name)), tmp_path, sha256=sha256, filename=filename,
                    retries=0, progress=False)
    assert http_server.state.requests[-1]["range"] == f"bytes={len(data) // 3}-"
    assert path.read_bytes() == data


def test_truncated_archive_is_refused(fake, tmp_path: Path) -> None:
    name, cfg, data, _ = fake
    archive = tmp_path / archive_name(name, cfg)
    archive.write_bytes(data[: len(data) // 2])
    with pytest.raises(ArchiveError):
        extract_archive(archive, tmp_path / "raw")
    assert not (tmp_path / "raw").exists()


def test_escaping_member_is_refused(fake, tmp_path: Path) -> None:
    name, cfg, data, _ = fake
    archive = tmp_path / f"{name}_evil.zip"
    with zipfile.ZipFile(archive, "w") as evil:
        evil.writestr("inner/ok.txt", b"fine")
        evil.writestr("../escaped.txt", b"outside")
        evil.writestr(archive_name(name, cfg), data[:1000])
    with pytest.raises(UnsafeArchiveError):
        extract_archive(archive, tmp_path / "raw")
    assert not (tmp_path / "raw").exists() and not (tmp_path / "escaped.txt").exists()
    assert zipfile.ZipFile(io.BytesIO(archive.read_bytes())).testzip() is None


def test_missing_data_names_folder_and_how_to_get_it(fake, tmp_path: Path) -> None:
    name, cfg, _, _ = fake
    folder = tmp_path / "raw" / name
    with pytest.raises(FileNotFoundError) as error:
        prepare_dataset(cfg, name, folder, tmp_path / "prepared", progress=False)
    message = str(error.value)
    assert str(folder) in message
    assert (cfg.source.manual or f"rsdino download --dataset {name}") in message
