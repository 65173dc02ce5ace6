"""The feature cache is keyed on content: a changed split, statistics or transform is never served stale."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from rsdino.config import load_params
from rsdino.config.evaluations import KnnFaissEvaluation
from rsdino.data.extract import extract_archive
from rsdino.data.fake import FAKE_GENERATORS
from rsdino.data.registry import prepare_dataset
from rsdino.data.scene import SceneDataset
from rsdino.evaluate.context import EvaluationContext
from rsdino.evaluate.feature_cache import RECORD_FILE, cache_key, dataset_identity
from rsdino.evaluate.protocols import feature_source, run_knn_faiss
from rsdino.models.backbones import backbone_spec, build_backbone, export_backbone
from rsdino.tracking import NullTracker

PARAMS = Path(__file__).resolve().parents[2] / "params.yaml"


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """A small generated EuroSAT-MS (10 classes x 10 images of 16 px), prepared, and a 13-band tiny ViT."""
    root = tmp_path_factory.mktemp("stale")
    cfg = load_params(PARAMS, "demo").datasets["demo_eurosat"]
    archive = root / "eurosat.tar"
    FAKE_GENERATORS["eurosat_ms"](archive, n_per_class=10, size=16, seed=0, illumination=0.5)
    raw = extract_archive(archive, root / "raw")
    prepare_dataset(cfg, "demo_eurosat", raw, root / "prepared", progress=False)
    torch.manual_seed(0)
    model = build_backbone("vit_tiny_patch8", 13, 16, depth=1)
    meta = {**backbone_spec("vit_tiny_patch8", 13, 16, depth=1), "bands": list(cfg.bands), "method": "dino",
            "variant": "t", "mean": [1000.0] * 13, "std": [500.0] * 13}
    export_backbone(model, root / "model", meta)
    return raw, root / "prepared", root / "model"


def _knn(raw, prepared_dir, model_dir, cache_dir):
    datasets = {part: SceneDataset(raw, prepared_dir, part) for part in ("train", "test")}
    job = EvaluationContext(model_dir, progress=False, cache_dir=cache_dir, datasets=datasets)
    settings = KnnFaissEvaluation(protocol="knn_faiss", dataset="demo_eurosat", variants=["t"], k=5,
                                  batch_size=32, random_baseline=False)
    result = run_knn_faiss(job, settings, NullTracker())
    source = feature_source(job, settings)
    _, test_labels = source.features(source.model, "test", ["cls"])
    return result["metrics"], test_labels.tolist(), datasets["test"].labels


def _swap_pairs(prepared_dir: Path, n: int) -> None:
    """Exchange the first ``n`` lines of ``train.txt`` with the first ``n`` of ``test.txt``."""
    train = (prepared_dir / "train.txt").read_text().splitlines(keepends=True)
    test = (prepared_dir / "test.txt").read_text().splitlines(keepends=True)
    assert len(test) >= n
    train[:n], test[:n] = test[:n], train[:n]
    (prepared_dir / "train.txt").write_text("".join(train))
    (prepared_dir / "test.txt").write_text("".join(test))


def test_swapped_split_with_a_warm_cache_gives_the_cold_cache_number(prepared, tmp_path):
    raw, prepared_dir, model_dir = prepared
    work = tmp_path / "prepared"
    work.mkdir()
    for path in prepared_dir.iterdir():
        if path.is_file():
            (work / path.name).write_bytes(path.read_bytes())
    warm_cache = tmp_path / "warm"
    before, _, _ = _knn(raw, work, model_dir, warm_cache)
    _swap_pairs(work, 10)
    warm, warm_labels, new_labels = _knn(raw, work, model_dir, warm_cache)
    cold, cold_labels, _ = _knn(raw, work, model_dir, tmp_path / "cold")
    assert warm == cold
    assert warm_labels == cold_labels == new_labels  # the swapped split's items, not the cached ones
    assert len(list(warm_cache.iterdir())) == 4  # two entries per split: before and after the swap
    print(f"before swap {before}, warm {warm}, cold {cold}")


def test_an_entry_built_from_other_inputs_is_recomputed(prepared, tmp_path, caplog):
    raw, prepared_dir, model_dir = prepared
    cache = tmp_path / "cache"
    first, _, _ = _knn(raw, prepared_dir, model_dir, cache)
    entry = next(p for p in cache.iterdir() if "_test_" in p.name)
    record = json.loads((entry / RECORD_FILE).read_text())
    assert record["weights"] and record["transform"]["resolution"] == 16
    assert len(record["transform"]["mean"]) == 13
    assert record["data"]["layers"][0]["files"]["test.txt"]
    stored = torch.load(entry / "features.pt", weights_only=True)
    stored["features"]["cls"] += 1000.0  # stale features under a wrong record (a copied folder)
    stored["built_from"] = "{}"
    torch.save(stored, entry / "features.pt")
    again, _, _ = _knn(raw, prepared_dir, model_dir, cache)
    assert again == first
    assert "built from other inputs" in caplog.text
    assert torch.load(entry / "features.pt", weights_only=True)["built_from"] != "{}"


def test_the_key_follows_split_statistics_and_transform(prepared, tmp_path):
    raw, prepared_dir, model_dir = prepared
    test = SceneDataset(raw, prepared_dir, "test")
    from rsdino.evaluate.feature_cache import build_record

    def key(**change):
        kwargs = {"checkpoint": model_dir, "dataset": test, "dataset_name": "d", "split": "test",
                  "resolution": 16, "mean": [1.0] * 13, "std": [2.0] * 13, "variants": ["cls"], **change}
        return cache_key(build_record(**kwargs))

    base = key()
    assert key() == base
    assert len({base, key(resolution=32), key(mean=[1.5] * 13), key(std=[3.0] * 13),
                key(variants=["cls", "cls_n2"]), key(dataset=torch.utils.data.Subset(test, range(5)))}) == 6
    reordered = SceneDataset(raw, prepared_dir, "test")
    reordered.samples = reordered.samples[::-1]
    assert dataset_identity(reordered) != dataset_identity(test)
