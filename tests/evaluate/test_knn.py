"""kNN protocols against brute-force loop implementations, hand-made cases and real UC Merced images."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from rsdino.config import KnnEvaluation
from rsdino.evaluate import knn
from rsdino.evaluate.features import extract_features
from rsdino.evaluate.knn import majority_knn_faiss, run_knn_evaluation, weighted_knn
from rsdino.tracking import NullTracker

UCMERCED = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "ucmerced"


def brute_weighted_knn(train, train_labels, test, test_labels, k, temperature, n_classes):
    """The DINO formula with plain Python loops (float64), as an independent reference."""
    train = train.double().numpy()
    test = test.double().numpy()
    train = train / np.linalg.norm(train, axis=1, keepdims=True)
    test = test / np.linalg.norm(test, axis=1, keepdims=True)
    top1 = top5 = 0
    for x, y in zip(test, test_labels.tolist(), strict=True):
        sims = [(float(np.dot(x, t)), int(label))
                for t, label in zip(train, train_labels.tolist(), strict=True)]
        sims.sort(key=lambda pair: -pair[0])
        scores = [0.0] * n_classes
        for sim, label in sims[:k]:
            scores[label] += math.exp(sim / temperature)
        ranking = sorted(range(n_classes), key=lambda c: (-scores[c], c))
        top1 += ranking[0] == y
        top5 += y in ranking[:min(5, k)]
    n = len(test)
    return {f"top1_k{k}": 100.0 * top1 / n, f"top5_k{k}": 100.0 * top5 / n}


@pytest.mark.parametrize("temperature", [0.07, 0.5, 2.0])
def test_weighted_knn_matches_brute_force(temperature):
    gen = torch.Generator().manual_seed(0)
    n_classes = 7
    train = torch.randn(60, 16, generator=gen)
    test = torch.randn(25, 16, generator=gen)
    train_labels = torch.randint(0, n_classes, (60,), generator=gen)
    test_labels = torch.randint(0, n_classes, (25,), generator=gen)
    ks = (1, 3, 10, 20)
    got = weighted_knn(train, train_labels, test, test_labels, ks=ks, temperature=temperature,
                       n_classes=n_classes, batch_size=7)
    expected = {}
    for k in ks:
        expected.update(brute_weighted_knn(train, train_labels, test, test_labels, k, temperature, n_classes))
    assert got == pytest.approx(expected, abs=1e-9)


def test_weighted_knn_hand_made_two_classes():
    # Two class-0 points at cosine 0.6 from the test point, one class-1 point at cosine 0.8.
    train = torch.tensor([[1.0, 0.0], [2.0, 0.0], [0.0, 1.0]])
    labels = torch.tensor([0, 0, 1])
    test, test_labels = torch.tensor([[0.6, 0.8]]), torch.tensor([1])
    # T = 0.07: 2 exp(0.6/0.07) ~ 1.06e4 < exp(0.8/0.07) ~ 9.2e4, class 1 wins.
    sharp = weighted_knn(train, labels, test, test_labels, ks=(1, 3), temperature=0.07, n_classes=2)
    assert sharp == {"top1_k1": 100.0, "top1_k3": 100.0}  # no top-5 with 2 classes
    # T = 1: 2 exp(0.6) ~ 3.64 > exp(0.8) ~ 2.23, the two class-0 neighbours win.
    flat = weighted_knn(train, labels, test, test_labels, ks=(1, 3), temperature=1.0, n_classes=2)
    assert flat == {"top1_k1": 100.0, "top1_k3": 0.0}
    # Majority vote on raw L2 distances: (1,0) and (0,1) are nearest (0.8 each), then (2,0) at 1.6.
    assert majority_knn_faiss(train, labels, test, test_labels, k=2, n_classes=2) == {"top1_k2": 0.0}
    assert majority_knn_faiss(train, labels, test, test_labels, k=1, n_classes=2) == {"top1_k1": 100.0}


def test_weighted_knn_k_above_train_size_uses_all():
    train, labels = torch.eye(3), torch.tensor([0, 1, 1])
    test, test_labels = torch.tensor([[1.0, 0.0, 0.0]]), torch.tensor([0])
    got = weighted_knn(train, labels, test, test_labels, ks=(200,), temperature=0.07, n_classes=2)
    assert got == {"top1_k200": 100.0}


def test_weighted_knn_tie_rules_differ_only_in_unvoted_classes():
    # 12 classes, k = 2: each test point has at most 2 voted classes, so top-5 is decided by how
    # the ten zero-score classes are ordered.
    gen = torch.Generator().manual_seed(3)
    n_classes, k = 12, 2
    train = torch.randn(40, 8, generator=gen)
    train_labels = torch.randint(0, n_classes, (40,), generator=gen)
    test = torch.randn(30, 8, generator=gen)
    ranked = {ties: knn.weighted_knn_ranked(train, train_labels, test, ks=[k], temperature=0.07,
                                            n_classes=n_classes, ties=ties)[k]
              for ties in ("smallest_label", "torch_sort")}
    assert torch.equal(ranked["smallest_label"][:, 0], ranked["torch_sort"][:, 0])  # same top-1
    # Independently: the float32 vote of each test point, then torch's own descending sort.
    sims = F_normalize(test) @ F_normalize(train).T
    top_sims, index = sims.topk(k, dim=1)
    for row in range(test.shape[0]):
        scores = torch.zeros(n_classes)
        for sim, neighbour in zip(top_sims[row], index[row], strict=True):
            scores[train_labels[neighbour]] += torch.exp(sim / 0.07)
        voted = scores.nonzero().flatten().tolist()
        expected_small = sorted(voted, key=lambda c: -float(scores[c])) + \
            [c for c in range(n_classes) if c not in voted]
        assert ranked["smallest_label"][row].tolist() == expected_small[:5]
        assert ranked["torch_sort"][row].tolist() == scores.sort(0, True).indices[:5].tolist()
    with pytest.raises(ValueError, match="ties"):
        knn.weighted_knn_ranked(train, train_labels, test, ks=[k], temperature=0.07,
                                n_classes=n_classes, ties="random")
    with pytest.raises(ValueError, match="ties"):
        KnnEvaluation(protocol="knn", dataset="d", variants=["v"], ties="random")


def F_normalize(x):
    return x / x.norm(dim=1, keepdim=True)


def test_weighted_knn_rejects_bad_labels():
    with pytest.raises(ValueError, match="labels"):
        weighted_knn(torch.randn(4, 3), torch.tensor([0, 1, 2, 5]), torch.randn(2, 3),
                     torch.tensor([0, 1]), n_classes=3)


def brute_majority(train, train_labels, test, k, n_classes):
    dist = ((test[:, None, :] - train[None, :, :]) ** 2).sum(-1)
    neighbours = np.argsort(dist, axis=1, kind="stable")[:, :k]
    return np.array([np.bincount(train_labels[row], minlength=n_classes).argmax() for row in neighbours])


def test_majority_knn_matches_brute_force():
    rng = np.random.default_rng(1)
    n_classes = 4
    train = rng.normal(size=(80, 8)).astype(np.float32) * 3
    test = rng.normal(size=(30, 8)).astype(np.float32) * 3
    train_labels = rng.integers(0, n_classes, 80)
    test_labels = rng.integers(0, n_classes, 30)
    for k in (1, 4, 20):
        predictions = brute_majority(train, train_labels, test, k, n_classes)
        got = majority_knn_faiss(torch.from_numpy(train), torch.from_numpy(train_labels),
                                 torch.from_numpy(test), torch.from_numpy(test_labels), k=k,
                                 n_classes=n_classes)
        assert got == pytest.approx({f"top1_k{k}": 100.0 * float(np.mean(predictions == test_labels))})


def test_majority_tie_goes_to_smallest_label():
    train, labels = torch.tensor([[0.0], [2.0]]), torch.tensor([3, 1])
    predictions = knn.majority_knn_faiss_predict(train, labels, torch.tensor([[1.0]]), k=2, n_classes=4)
    assert predictions.tolist() == [1]


# ----------------------------------------------------------------------------- the evaluation job


class ListDataset(torch.utils.data.Dataset):
    """In-memory scene dataset with the ``SceneDataset`` interface."""

    def __init__(self, images, labels, classes, bands=("R", "G", "B")):
        self.images, self.labels, self.classes, self.bands = images, labels, list(classes), list(bands)

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        return {"image": self.images[i], "label": int(self.labels[i]), "path": f"img{i}.tif"}


class MeanColour(nn.Module):
    """Stand-in backbone: per-band mean plus a random projection (learned weights differ per seed)."""

    def __init__(self):
        super().__init__()
        self.proj = nn.Linear(3, 8)

    def forward(self, x):
        return self.proj(x.mean(dim=(2, 3)))


def colour_dataset(n_per_class, seed):
    gen = torch.Generator().manual_seed(seed)
    images, labels = [], []
    for label, colour in enumerate(([200.0, 20, 20], [20, 200, 20], [20, 20, 200])):
        for _ in range(n_per_class):
            images.append(torch.tensor(colour).view(3, 1, 1) + 10 * torch.randn(3, 8, 8, generator=gen))
            labels.append(label)
    return ListDataset(images, labels, ["red", "green", "blue"])


def test_run_knn_evaluation_with_stand_ins(tmp_path, monkeypatch):
    meta = {"backbone": "stand_in", "timm_kwargs": {}, "in_chans": 3, "img_size": 8, "bands": ["R", "G", "B"],
            "method": "dino", "variant": "demo", "mean": [100.0] * 3, "std": [50.0] * 3}
    monkeypatch.setattr(knn, "_load_backbone", lambda model_dir: (MeanColour(), dict(meta)))
    built = []

    def random_backbone(meta_, seed):
        torch.manual_seed(seed)
        built.append(seed)
        return MeanColour()

    monkeypatch.setattr(knn, "_random_backbone", random_backbone)
    settings = KnnEvaluation(protocol="knn", dataset="d", variants=["demo"], ks=[1, 20], seed=3)
    tracker = NullTracker()
    result = run_knn_evaluation(tmp_path / "model", colour_dataset(10, 0), colour_dataset(4, 1), settings,
                                tracker, progress=False, artifact_dir=tmp_path / "art",
                                features_fn=lambda model, x: model(x))
    assert set(result["metrics"]) == {"top1_k1", "top1_k20", "faiss_majority_top1_k20"}
    assert result["metrics"]["top1_k1"] == 100.0
    assert set(result["baselines"]["random_init"]) == set(result["metrics"])
    assert built == [3]
    logged = {key for _, metrics in tracker.metrics for key in metrics}
    assert "top1_k20" in logged and "random_init/top1_k20" in logged
    png = tmp_path / "art" / "confusion_knn_k20.png"
    assert tracker.artifacts == [png] and png.read_bytes()[:4] == b"\x89PNG"


def test_run_knn_evaluation_rejects_other_bands(tmp_path, monkeypatch):
    meta = {"backbone": "x", "timm_kwargs": {}, "in_chans": 3, "img_size": 8, "bands": ["B02", "B03", "B04"],
            "mean": [0.0] * 3, "std": [1.0] * 3}
    monkeypatch.setattr(knn, "_load_backbone", lambda model_dir: (MeanColour(), meta))
    settings = KnnEvaluation(protocol="knn", dataset="d", variants=["v"])
    with pytest.raises(ValueError, match="bands"):
        run_knn_evaluation(tmp_path, colour_dataset(2, 0), colour_dataset(2, 1), settings, NullTracker(),
                           progress=False)


# ----------------------------------------------------------------------------- real data


@pytest.mark.skipif(not UCMERCED.is_dir(), reason="real UC Merced sample (../shared/data) not present")
def test_random_vit_knn_on_real_uc_merced_beats_chance():
    """A fixed random tiny ViT on 10 UC Merced classes x 20 images (64 px): kNN top-1 well above 10 %."""
    import timm
    from PIL import Image

    rng = np.random.default_rng(0)
    classes = sorted(rng.choice(sorted(p.name for p in UCMERCED.iterdir() if p.is_dir()), 10, replace=False))
    split = {"train": ([], []), "test": ([], [])}
    for label, name in enumerate(classes):
        files = sorted((UCMERCED / name).glob("*.jpg"))
        for i, path in enumerate(rng.choice(files, 20, replace=False)):
            with Image.open(path) as image:
                array = np.asarray(image.convert("RGB").resize((64, 64), Image.BILINEAR), dtype=np.float32)
            images, labels = split["train" if i < 10 else "test"]
            images.append(torch.from_numpy(array).permute(2, 0, 1).contiguous())
            labels.append(label)
    train, test = (ListDataset(*split[s], classes) for s in ("train", "test"))
    pixels = torch.stack(train.images)
    mean, std = pixels.mean(dim=(0, 2, 3)).tolist(), pixels.std(dim=(0, 2, 3)).tolist()

    torch.manual_seed(0)
    model = timm.create_model("vit_tiny_patch16_224", patch_size=8, img_size=64, depth=4, num_classes=0)
    feats = {name: extract_features(model, ds, mean=mean, std=std, batch_size=50, progress=False,
                                    features_fn=lambda m, x: m(x))
             for name, ds in (("train", train), ("test", test))}
    metrics = weighted_knn(*feats["train"], *feats["test"], ks=(20,), n_classes=10)
    chance = 100.0 / 10
    assert metrics["top1_k20"] > 2 * chance, metrics
