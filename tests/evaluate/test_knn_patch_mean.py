"""Protocol ``knn_patch_mean``: the weighted kNN of ``knn`` on the mean final-layer patch token."""

from __future__ import annotations

import pytest
import torch

from rsdino.config import KnnEvaluation
from rsdino.evaluate.context import EvaluationContext
from rsdino.evaluate.features import extract_features, with_dataset_statistics
from rsdino.evaluate.knn import _load_backbone, weighted_knn
from rsdino.evaluate.knn_patch_mean import patch_mean_features, run_knn_patch_mean
from rsdino.tracking import NullTracker


class Blobs(torch.utils.data.Dataset):
    """Two classes of 3-band 16 px noise images: class c has brightness ``contrast * c`` plus noise."""

    def __init__(self, n: int, seed: int, contrast: float = 0.3) -> None:
        generator = torch.Generator().manual_seed(seed)
        self.classes = ["dark", "bright"]
        self.labels = [i % 2 for i in range(n)]
        self.images = [torch.rand(3, 16, 16, generator=generator) + contrast * label
                       for label in self.labels]

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> dict:
        return {"image": self.images[index], "label": self.labels[index]}


def by_hand(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The mean of timm's final (normed) patch tokens, prefix tokens dropped."""
    tokens = model.forward_features(x)  # (B, 1 + N, D)
    return tokens[:, model.num_prefix_tokens:].mean(dim=1)


def test_patch_mean_features_average_the_patch_tokens_not_the_cls(tiny_vit_dir):
    model, _ = _load_backbone(tiny_vit_dir)
    model.eval()
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        features = patch_mean_features(model, x)
        expected = by_hand(model, x)
        cls = model.forward_features(x)[:, 0]
    assert features.shape == (2, model.embed_dim)
    torch.testing.assert_close(features, expected)
    assert not torch.allclose(features, cls)


def test_knn_patch_mean_job_is_the_weighted_knn_of_the_mean_patch_token(tiny_vit_dir):
    train, test = Blobs(24, 0), Blobs(12, 1)  # classes hard to tell apart: the feature matters
    settings = KnnEvaluation(protocol="knn_patch_mean", dataset="d", variants=["t"], ks=[1, 5],
                             temperature=0.1, batch_size=8)
    context = EvaluationContext(tiny_vit_dir, progress=False, datasets={"train": train, "test": test})
    result = run_knn_patch_mean(context, settings, NullTracker())

    model, meta = _load_backbone(tiny_vit_dir)
    meta = with_dataset_statistics(meta, train)
    extract = {"mean": meta["mean"], "std": meta["std"], "batch_size": 8, "image_size": meta["img_size"],
               "progress": False, "features_fn": by_hand}
    train_x, train_y = extract_features(model, train, **extract)
    test_x, test_y = extract_features(model, test, **extract)
    expected = weighted_knn(train_x, train_y, test_x, test_y, ks=[1, 5], temperature=0.1, n_classes=2)
    extract["features_fn"] = lambda model, x: model.forward_features(x)[:, 0]
    cls = weighted_knn(*extract_features(model, train, **extract), *extract_features(model, test, **extract),
                       ks=[1, 5], temperature=0.1, n_classes=2)
    keys = ("top1_k1", "top1_k5")
    assert [result["metrics"][key] for key in keys] == pytest.approx([expected[key] for key in keys])
    assert [cls[key] for key in keys] != [expected[key] for key in keys]  # the CLS token scores otherwise
    assert set(result["baselines"]["random_init"]) == set(result["metrics"])


def test_an_evaluation_of_it_in_params_runs_through_its_record(tiny_vit_dir, tmp_path, monkeypatch):
    """``protocol: knn_patch_mean`` in params.yaml: validated, dispatched, written as a metrics file."""
    import json
    from pathlib import Path

    import yaml

    from rsdino.config import parse_params
    from rsdino.evaluate import run

    path = Path(__file__).resolve().parents[2] / "params.yaml"
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    raw["evaluations"]["demo_knn_patch_mean"] = {"like": "demo_knn", "protocol": "knn_patch_mean",
                                                 "ks": [1, 5], "batch_size": 8, "random_baseline": False}
    params = parse_params(raw, source=path, scale="demo", preflight_checks=False)
    settings = params.evaluations["demo_knn_patch_mean"]
    parts = {"train": Blobs(24, 0), "test": Blobs(12, 1)}
    monkeypatch.setattr(EvaluationContext, "open_part", lambda self, settings, part: parts[part])
    monkeypatch.setattr(run, "evaluation_bands", lambda *args: None)  # an RGB model on 13-band data
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "metrics" / "demo_knn_patch_mean" / "v.json"
    record = run.run_evaluation("demo_knn_patch_mean", settings, "demo_dino_vit",
                                params.variants["demo_dino_vit"], model_dir=tiny_vit_dir, raw_dir=tmp_path,
                                prepared_dir=tmp_path, out=out, params=params, tracker=NullTracker(),
                                progress=False)
    direct = run_knn_patch_mean(EvaluationContext(tiny_vit_dir, progress=False, datasets=parts), settings,
                                NullTracker())
    written = json.loads(out.read_text())
    assert type(settings) is KnnEvaluation and written["protocol"] == "knn_patch_mean"
    assert written["metrics"] == record["metrics"] == direct["metrics"]
