"""The frozen-feature protocols (DINOv2-RS kNN, multi-scale kNN, DINO / DINOv2 linear, retrieval,
fine-tuning) as evaluation jobs on an exported tiny ViT and in-memory data."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from rsdino.config.evaluations import (
    FinetuneEvaluation,
    KnnFaissEvaluation,
    LinearDinoEvaluation,
    LinearDinov2Evaluation,
    MultiscaleKnnEvaluation,
    RetrievalEvaluation,
)
from rsdino.evaluate.context import EvaluationContext
from rsdino.evaluate.feature_cache import canonical
from rsdino.evaluate.features import extract_feature_sets
from rsdino.evaluate.protocols import (
    dino_feature_variant,
    feature_source,
    multiscale_sizes,
    run_finetune,
    run_knn_faiss,
    run_knn_multiscale,
    run_linear_dino,
    run_linear_dinov2,
    run_retrieval,
    stratified_split,
)
from rsdino.tracking import NullTracker


class Blobs(Dataset):
    """``n_classes`` classes of 3-band images: class c has brightness 2c plus noise."""

    def __init__(self, n: int, seed: int, size: int = 16, n_classes: int = 2) -> None:
        generator = torch.Generator().manual_seed(seed)
        self.classes = [f"c{i}" for i in range(n_classes)]
        self.labels = [i % n_classes for i in range(n)]
        self.images = [torch.rand(3, size, size, generator=generator) + 2.0 * label for label in self.labels]

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> dict:
        return {"image": self.images[index], "label": self.labels[index], "path": f"{index}.tif"}


COMMON = {"dataset": "d", "variants": ["t"], "batch_size": 8}


def context(model_dir, tmp_path=None, n_classes=2, artifact_dir=None):
    """A job on in-memory train/test parts (the runners open them through ``open_part``)."""
    return EvaluationContext(model_dir, progress=False, artifact_dir=artifact_dir,
                             cache_dir=None if tmp_path is None else tmp_path / "cache",
                             datasets={"train": Blobs(24, 0, n_classes=n_classes),
                                       "test": Blobs(12, 1, n_classes=n_classes)})


def source(model_dir, tmp_path=None, n_classes=2):
    """The ``FeatureSource`` the runners build for ``context(...)`` and ``COMMON`` settings."""
    return feature_source(context(model_dir, tmp_path, n_classes),
                          KnnFaissEvaluation(protocol="knn_faiss", **COMMON))


def test_multiscale_sizes_floor_to_patch_multiples():
    assert multiscale_sizes(64, 16, [1, 0.5, 0.25, 0.125]) == [64, 32, 16, 16]
    assert multiscale_sizes(256, 16, [1, 0.5, 0.25, 0.125]) == [256, 128, 64, 32]
    assert multiscale_sizes(100, 8, [1, 0.5]) == [96, 48]
    with pytest.raises(ValueError):
        multiscale_sizes(0, 16, [1])


def test_knn_faiss_job_matches_a_direct_majority_vote(tiny_vit_dir):
    src = source(tiny_vit_dir)
    settings = KnnFaissEvaluation(protocol="knn_faiss", k=5, **COMMON)
    result = run_knn_faiss(context(tiny_vit_dir), settings, NullTracker())
    train, train_y = src.features(src.model, "train", ["cls"])
    test, test_y = src.features(src.model, "test", ["cls"])
    distances = torch.cdist(test["cls"].double(), train["cls"].double())
    neighbours = distances.topk(5, largest=False).indices
    votes = F.one_hot(train_y[neighbours], 2).sum(dim=1)
    expected = 100.0 * (votes.argmax(dim=1) == test_y).double().mean().item()
    assert result["metrics"]["top1_k5"] == pytest.approx(expected)
    assert "top1_k5" in result["baselines"]["random_init"]


def test_multiscale_knn_averages_the_scales(tiny_vit_dir):
    settings = MultiscaleKnnEvaluation(protocol="knn_multiscale", scales=[1.0, 0.5], k=5,
                                       random_baseline=False, **COMMON)
    metrics = run_knn_multiscale(context(tiny_vit_dir), settings, NullTracker())["metrics"]
    assert set(metrics) == {"top1_s16", "top1_s8", "top1"}
    assert metrics["top1"] == pytest.approx((metrics["top1_s16"] + metrics["top1_s8"]) / 2)


def test_dino_feature_choice_follows_the_width():
    assert dino_feature_variant(torch.nn.Module(), "cls_n2") == "cls_n2"
    assert dino_feature_variant(torch.nn.Module(), "auto") == "cls"  # a CNN: its pooled features
    small, wide = torch.nn.Module(), torch.nn.Module()
    small.embed_dim, wide.embed_dim = 384, 768
    small.blocks = wide.blocks = torch.nn.ModuleList()
    assert dino_feature_variant(small, "auto") == "cls_n4"
    assert dino_feature_variant(wide, "auto") == "cls_n1_avgpool"


def test_linear_dino_and_dinov2_jobs_separate_easy_classes(tiny_vit_dir):
    src = context(tiny_vit_dir)
    dino = LinearDinoEvaluation(protocol="linear_dino", epochs=30, base_lr=0.5, train_batch_size=8,
                                random_baseline=False, **COMMON)
    assert run_linear_dino(src, dino, NullTracker())["metrics"]["top1"] == 100.0
    grid = LinearDinov2Evaluation(protocol="linear_dinov2", learning_rates=[1e-3, 1.0], n_blocks=[1, 2],
                                  epochs=20, train_batch_size=8, val_fraction=0.25,
                                  random_baseline=False, **COMMON)
    metrics = run_linear_dinov2(src, grid, NullTracker())["metrics"]
    assert metrics["top1"] == 100.0 and metrics["val_top1"] == 100.0
    assert metrics["best_lr"] in {1e-3, 1.0}


def test_stratified_split_holds_out_a_share_of_every_class():
    labels = torch.tensor([0] * 10 + [1] * 20)
    keep, held = stratified_split(labels, 0.1, seed=0)
    assert sorted(labels[held].tolist()) == [0, 1, 1]
    assert len(keep) + len(held) == 30 and not set(keep.tolist()) & set(held.tolist())


def test_feature_cache_is_reused_and_resumes(tiny_vit_dir, tmp_path):
    src = source(tiny_vit_dir, tmp_path)
    first, labels = src.features(src.model, "train", ["cls", "cls_n2"])
    cache = next((tmp_path / "cache").iterdir())
    assert (cache / "features.pt").is_file() and not list(cache.glob("chunk_*"))
    again, _ = src.features(src.model, "train", ["cls", "cls_n2"])
    torch.testing.assert_close(again["cls_n2"], first["cls_n2"])
    # an interrupted extraction: one chunk of 1 batch written, then resumed
    folder = tmp_path / "partial"
    data = Blobs(24, 0)
    kwargs = {"mean": [1.5] * 3, "std": [1.6] * 3, "batch_size": 8, "progress": False, "chunk_batches": 1}
    full, _ = extract_feature_sets(src.model, data, ["cls"], cache_dir=tmp_path / "full", **kwargs)
    chunk, chunk_labels = extract_feature_sets(src.model, torch.utils.data.Subset(data, range(8)), ["cls"],
                                               **kwargs)
    folder.mkdir()
    record = {"weights": "w", "split": "train"}
    torch.save({"features": {"cls": chunk["cls"] + 1000}, "labels": chunk_labels,
                "built_from": canonical(record)}, folder / "chunk_00000.pt")
    resumed, resumed_labels = extract_feature_sets(src.model, data, ["cls"], cache_dir=folder, record=record,
                                                   **kwargs)
    assert torch.equal(resumed["cls"][:8], chunk["cls"] + 1000)  # the chunk was read, not recomputed
    torch.testing.assert_close(resumed["cls"][8:], full["cls"][8:])
    assert resumed_labels.tolist() == labels.tolist()
    # a chunk of other inputs is recomputed, not resumed from
    (folder / "features.pt").unlink()
    torch.save({"features": {"cls": chunk["cls"] + 1000}, "labels": chunk_labels,
                "built_from": canonical({**record, "split": "test"})}, folder / "chunk_00000.pt")
    fresh, _ = extract_feature_sets(src.model, data, ["cls"], cache_dir=folder, record=record, **kwargs)
    torch.testing.assert_close(fresh["cls"], full["cls"])


def test_retrieval_job_scores_and_draws(tiny_vit_dir, tmp_path):
    settings = RetrievalEvaluation(protocol="retrieval", ks=[1, 3], n_plot_queries=2, n_plot_neighbours=3,
                                   random_baseline=False, **COMMON)
    tracker = NullTracker()
    metrics = run_retrieval(context(tiny_vit_dir, artifact_dir=tmp_path / "art"), settings,
                            tracker)["metrics"]
    assert set(metrics) == {"precision_at_1", "precision_at_3", "map"}
    assert all(0.0 <= v <= 100.0 for v in metrics.values())
    assert (tmp_path / "art" / "retrieval.png").stat().st_size > 1000


def test_finetune_job_learns_the_classes(tiny_vit_dir):
    src = context(tiny_vit_dir, n_classes=2)
    settings = FinetuneEvaluation(protocol="finetune", dataset="d", variants=["t"], epochs=6, lr=5e-2,
                                  warmup_epochs=1, train_batch_size=8, batch_size=8, layer_decay=0.75)
    metrics = run_finetune(src, settings, NullTracker())["metrics"]
    assert metrics["top1"] == 100.0 and metrics["train_loss"] < 0.7


def test_run_evaluation_writes_the_metrics_file_of_a_new_protocol(tiny_vit_dir, tmp_path, monkeypatch):
    import json
    from pathlib import Path

    from rsdino.config import load_params
    from rsdino.evaluate import run

    params = load_params(Path(__file__).resolve().parents[2] / "params.yaml", "demo")
    monkeypatch.chdir(tmp_path)
    captured = {}

    def fake_part(self, settings, part):
        captured.update(vars(self))
        return {"train": Blobs(24, 0), "test": Blobs(12, 1)}[part]

    monkeypatch.setattr(EvaluationContext, "open_part", fake_part)
    monkeypatch.setattr(run, "evaluation_bands", lambda *args: None)  # an RGB model on 13-band data
    out = tmp_path / "metrics" / "demo_retrieval" / "v.json"
    record = run.run_evaluation("demo_retrieval", params.evaluations["demo_retrieval"], "demo_dino_vit",
                                params.variants["demo_dino_vit"], model_dir=tiny_vit_dir, raw_dir=tmp_path,
                                prepared_dir=tmp_path, out=out, params=params, tracker=NullTracker())
    written = json.loads(out.read_text())
    assert written["protocol"] == "retrieval" and written["metrics"] == record["metrics"]
    assert set(written["baselines"]["random_init"]) == {"precision_at_1", "precision_at_5",
                                                         "precision_at_10", "map"}
    assert (out.parent / "v_artifacts" / "retrieval.png").is_file()
    assert captured["native_size"] == 32 and captured["cache_dir"] == Path("data") / "features"


def test_student_backbone_setting_reads_the_student_folder(tiny_vit_dir, tmp_path, monkeypatch):
    from pathlib import Path

    from rsdino.config import load_params
    from rsdino.evaluate import run
    from rsdino.models.backbones import backbone_spec, build_backbone, export_backbone

    params = load_params(Path(__file__).resolve().parents[2] / "params.yaml", "full")
    assert {params.evaluations[name].backbone for name in params.evaluations
            if name.startswith("dinov2rs_")} == {"student"}
    torch.manual_seed(2)  # the student: another tiny ViT inside the teacher's folder
    meta = {**backbone_spec("vit_tiny_patch8", 3, 16, depth=2), "bands": ["R", "G", "B"], "method": "dino",
            "variant": "t", "mean": [1.5] * 3, "std": [1.6] * 3}
    export_backbone(build_backbone("vit_tiny_patch8", 3, 16, depth=2), tiny_vit_dir / "student", meta)
    monkeypatch.chdir(tmp_path)
    results = {}
    for branch in ("teacher", "student"):
        settings = KnnFaissEvaluation(protocol="knn_faiss", k=5, backbone=branch, random_baseline=False,
                                      **{**COMMON, "dataset": "eurosat_rgb"})
        read = []

        def fake_part(self, settings, part, read=read):
            read.append(Path(self.model_dir))
            return {"train": Blobs(24, 0), "test": Blobs(12, 1)}[part]

        monkeypatch.setattr(EvaluationContext, "open_part", fake_part)
        out = tmp_path / branch / "metrics.json"
        record = run.run_evaluation("dinov2rs_knn_eurosat", settings, "demo_dino_vit",
                                    params.variants["demo_dino_vit"], model_dir=tiny_vit_dir,
                                    raw_dir=tmp_path, prepared_dir=tmp_path, out=out, params=params,
                                    tracker=NullTracker())
        assert read == [tiny_vit_dir if branch == "teacher" else tiny_vit_dir / "student"] * 2
        assert set(record["metrics"]) == {"top1_k5"}
        train, _ = source(read[0]).features(source(read[0]).model, "train", ["cls"])
        results[branch] = train["cls"]
    assert not torch.equal(results["teacher"], results["student"])  # two different backbones were read


@pytest.mark.parametrize(("evaluation", "expected_train", "expected_test"), [
    ("satdino_mknn_ucmerced", "satdino/train", "satdino/test"),   # SatDINO's 80/20 split
    ("dinov2rs_knn_ucmerced", "train", "test"),                   # the default 90/10 split
    ("satdino_linear_fmow", "train", "test"),                     # fMoW train, scored on fMoW val
])
def test_evaluations_open_their_split_through_the_task_registry(tmp_path, evaluation, expected_train,
                                                                expected_test):
    from pathlib import Path

    from rsdino.config import load_params
    from rsdino.data import prepare_dataset
    from rsdino.data.catalog import archive_name, make_fake
    from rsdino.data.extract import extract_archive

    params = load_params(Path(__file__).resolve().parents[2] / "params.yaml", "full")
    settings = params.evaluations[evaluation]
    cfg = params.datasets[settings.dataset]
    archive = tmp_path / archive_name(settings.dataset, cfg)
    make_fake(settings.dataset, cfg, archive)
    raw = extract_archive(archive, tmp_path / "raw")
    prepare_dataset(cfg, settings.dataset, raw, tmp_path / "prepared", progress=False)
    job = EvaluationContext(tmp_path / "model", raw, tmp_path / "prepared", dataset_cfg=cfg)
    train = job.open_part(settings, "train")
    test = job.open_part(settings, "test")
    assert (train.split, test.split) == (expected_train, expected_test)
    assert len(train) > 0 and len(test) > 0 and 0 <= test[0]["label"] < len(test.classes)
    if cfg.task == "fmow":
        assert test.rows[0]["split"] == "val" and "gsd" in test[0]
