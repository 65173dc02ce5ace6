"""The linear-probe evaluation job on an exported backbone and an in-memory scene dataset."""

import torch
from torch.utils.data import Dataset

from rsdino.config import LinearEvaluation
from rsdino.evaluate.features import extract_features
from rsdino.evaluate.probe import run_linear_evaluation
from rsdino.models.backbones import backbone_spec, build_backbone, export_backbone, load_backbone
from rsdino.tracking import NullTracker


class Blobs(Dataset):
    """Two classes of 3-band 16 px images: dark and bright, with noise."""

    classes = ["dark", "bright"]

    def __init__(self, n: int, seed: int) -> None:
        generator = torch.Generator().manual_seed(seed)
        self.labels = [i % 2 for i in range(n)]
        self.images = [torch.rand(3, 16, 16, generator=generator) + 3.0 * label for label in self.labels]

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> dict:
        return {"image": self.images[index], "label": self.labels[index], "path": f"{index}.tif"}


def test_linear_probe_job_scores_model_and_random_baseline(tmp_path):
    torch.manual_seed(1)
    model = build_backbone("vit_tiny_patch8", 3, 16, depth=1)
    meta = {**backbone_spec("vit_tiny_patch8", 3, 16, depth=1), "bands": ["R", "G", "B"],
            "method": "dino", "variant": "t", "mean": [1.5] * 3, "std": [1.6] * 3}
    export_backbone(model, tmp_path, meta)
    settings = LinearEvaluation(protocol="linear_logistic", dataset="d", variants=["t"], c=1.0,
                                batch_size=8)
    tracker = NullTracker()
    result = run_linear_evaluation(tmp_path, Blobs(24, 0), Blobs(12, 1), settings, tracker,
                                   progress=False)
    assert result["metrics"]["top1"] == 100.0  # brightness separates the classes linearly
    assert set(result["baselines"]["random_init"]) == {"top1", "train_top1"}
    logged = {key for _, metrics in tracker.metrics for key in metrics}
    assert {"top1", "random_init/top1"} <= logged


class Overlapping(Dataset):
    """Three classes of 3-band 16 px noise images, each brightened a little in its own band."""

    classes = ["a", "b", "c"]

    def __init__(self, n: int, seed: int) -> None:
        generator = torch.Generator().manual_seed(seed)
        self.labels = [i % 3 for i in range(n)]
        self.images = []
        for label in self.labels:
            image = torch.rand(3, 16, 16, generator=generator) * 2.0
            image[label] += 0.4 * torch.rand((), generator=generator)
            self.images.append(image)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> dict:
        return {"image": self.images[index], "label": self.labels[index], "path": f"{index}.tif"}


def _narrow_vit(model_dir):
    """An exported 1-block ViT of width 16: features of few dimensions, classes not separable."""
    torch.manual_seed(3)
    overrides = {"depth": 1, "embed_dim": 16, "num_heads": 2}
    model = build_backbone("vit_tiny_patch8", 3, 16, **overrides)
    meta = {**backbone_spec("vit_tiny_patch8", 3, 16, **overrides), "bands": ["R", "G", "B"],
            "method": "dino", "variant": "t", "mean": [1.2] * 3, "std": [0.6] * 3}
    export_backbone(model, model_dir, meta)


def _raw_features(model_dir, dataset):
    """The features the job extracts, extracted here independently of it (float64 numpy)."""
    model, meta = load_backbone(model_dir)
    x, y = extract_features(model, dataset, mean=meta["mean"], std=meta["std"], batch_size=8,
                            image_size=16, progress=False)
    return x.double().numpy(), y.numpy()


def _sklearn_accuracies(model, train, test) -> dict[str, float]:
    model.fit(*train)
    return {"top1": 100.0 * float((model.predict(test[0]) == test[1]).mean()),
            "train_top1": 100.0 * float((model.predict(train[0]) == train[1]).mean())}


def test_linear_probe_standardize_switch_matches_sklearn_on_raw_and_standardised_features(tmp_path):
    """``standardize: false`` = sklearn LogisticRegression on the raw features (the DINOv2-RS seed);
    ``standardize: true`` (the default) = StandardScaler then LogisticRegression, as before."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    _narrow_vit(tmp_path)
    train_set, test_set = Overlapping(90, 0), Overlapping(60, 1)
    train, test = _raw_features(tmp_path, train_set), _raw_features(tmp_path, test_set)
    c = 0.316

    def job(**switch) -> dict[str, float]:
        settings = LinearEvaluation(protocol="linear_logistic", dataset="d", variants=["t"], c=c,
                                    batch_size=8, image_size=16, random_baseline=False, **switch)
        return run_linear_evaluation(tmp_path, train_set, test_set, settings, NullTracker(),
                                     progress=False)["metrics"]

    def logistic() -> LogisticRegression:
        return LogisticRegression(C=c, max_iter=100_000, tol=1e-10)

    on_raw = _sklearn_accuracies(logistic(), train, test)
    on_standardised = _sklearn_accuracies(make_pipeline(StandardScaler(), logistic()), train, test)
    # The problem is one where the switch matters, and neither probe is trivially perfect.
    assert on_raw != on_standardised, (on_raw, on_standardised)
    assert on_raw["train_top1"] < 100.0 and on_standardised["train_top1"] < 100.0

    raw = job(standardize=False)
    assert {key: raw[key] for key in on_raw} == on_raw
    assert LinearEvaluation(protocol="linear_logistic", dataset="d", variants=["t"]).standardize
    default = job()
    assert {key: default[key] for key in on_standardised} == on_standardised
    assert job(standardize=True) == default
