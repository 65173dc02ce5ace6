"""Linear probes: separable synthetic problems, scikit-learn side by side, and real UC Merced images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from rsdino.evaluate.linear import (
    dino_linear_probe,
    dinov2_linear_grid,
    fit_logistic_regression,
    logistic_regression_probe,
    standardise,
)

UCMERCED = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "ucmerced"


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny problems: many small ops, which threads on a shared 2-core machine only slow down."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def blobs(n_per_class: int, n_classes: int, dim: int, separation: float, seed: int):
    """Gaussian blobs around random class means (unit noise), offset and scaled per dimension."""
    gen = torch.Generator().manual_seed(seed)
    means = torch.randn(n_classes, dim, generator=gen) * separation
    labels = torch.arange(n_classes).repeat_interleave(n_per_class)
    x = means[labels] + torch.randn(len(labels), dim, generator=gen)
    scale = torch.rand(dim, generator=gen) * 5 + 0.1  # unequal units: standardisation matters
    return x * scale + 3.0, labels


def split(x, y, seed, parts=2):
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))
    chunks = order.chunk(parts)
    return [(x[i], y[i]) for i in chunks]


def sklearn_probe(train_x, train_y, test_x, test_y, c):
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    model = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=10000, tol=1e-8))
    model.fit(train_x.double().numpy(), train_y.numpy())
    return model, 100.0 * float((model.predict(test_x.double().numpy()) == test_y.numpy()).mean())


def test_all_probes_solve_a_separable_problem():
    x, y = blobs(60, 5, 16, separation=3.0, seed=0)
    (train_x, train_y), (test_x, test_y) = split(x, y, seed=1)
    assert logistic_regression_probe(train_x, train_y, test_x, test_y)["top1"] > 95
    # Cached features, so a larger lr than DINO's default (1e-3 with augmented images) is fine.
    dino = dino_linear_probe(train_x, train_y, test_x, test_y, epochs=30, base_lr=0.05, batch_size=32)
    assert dino["top1"] > 95, dino
    assert dino["lr"] == pytest.approx(0.05 * 32 / 256)
    variants = {"raw": x, "half": x[:, :8]}
    parts = torch.randperm(len(y), generator=torch.Generator().manual_seed(2)).chunk(3)
    feats = [{name: v[i] for name, v in variants.items()} for i in parts]
    labels = [y[i] for i in parts]
    grid = dinov2_linear_grid(feats[0], labels[0], feats[1], labels[1], feats[2], labels[2],
                              learning_rates=(1e-4, 1e-2, 1e-1), epochs=20, batch_size=32)
    assert grid["top1"] > 95, grid
    assert set(grid["grid"]) == {f"{v}/lr{lr:g}" for v in variants for lr in (1e-4, 1e-2, 1e-1)}
    assert grid["val_top1"] == max(grid["grid"].values())
    assert grid["grid"][f"{grid['best_variant']}/lr{grid['best_lr']:g}"] == grid["val_top1"]


def test_grid_heads_are_independent_of_each_other():
    """A head trained alone equals the same head trained inside the grid (same batches, same init)."""
    x, y = blobs(20, 3, 6, separation=1.0, seed=3)
    (train_x, train_y), (test_x, test_y) = split(x, y, seed=4)
    alone = dinov2_linear_grid({"a": train_x}, train_y, {"a": test_x}, test_y, {"a": test_x}, test_y,
                               learning_rates=(1e-2,), epochs=3, batch_size=8)
    both = dinov2_linear_grid({"a": train_x}, train_y, {"a": test_x}, test_y, {"a": test_x}, test_y,
                              learning_rates=(1e-2, 1e-3), epochs=3, batch_size=8)
    assert both["grid"]["a/lr0.01"] == alone["grid"]["a/lr0.01"]


@pytest.mark.parametrize("c", [0.05, 1.0])
def test_logistic_regression_matches_sklearn(c):
    """Same objective as sklearn's LogisticRegression(C=c) on standardised features: same optimum."""
    x, y = blobs(80, 5, 20, separation=0.6, seed=5)  # overlapping classes: accuracy well below 100
    (train_x, train_y), (test_x, test_y) = split(x, y, seed=6)
    ours = logistic_regression_probe(train_x, train_y, test_x, test_y, c=c)
    model, theirs = sklearn_probe(train_x, train_y, test_x, test_y, c)
    assert 30 < theirs < 95
    assert abs(ours["top1"] - theirs) <= 1.0, (ours, theirs)
    # The optimum itself: predicted probabilities agree.
    train, test = standardise(train_x, test_x)
    weight, bias = fit_logistic_regression(train, train_y, 5, c=c)
    ours_p = torch.softmax(test @ weight + bias, dim=1).numpy()
    theirs_p = model.predict_proba(test_x.double().numpy())
    np.testing.assert_allclose(ours_p, theirs_p, atol=1e-4)


def test_logistic_regression_without_standardising_matches_sklearn_on_raw_features():
    """``standardize=False``: sklearn's LogisticRegression(C=0.316) fit on the raw features, the
    DINOv2-RS seed's probe; here (unequal units per dimension) not what standardising gives."""
    from sklearn.linear_model import LogisticRegression

    x, y = blobs(80, 5, 20, separation=0.6, seed=5)
    (train_x, train_y), (test_x, test_y) = split(x, y, seed=6)
    raw = logistic_regression_probe(train_x, train_y, test_x, test_y, c=0.316, standardize=False)
    standardised = logistic_regression_probe(train_x, train_y, test_x, test_y, c=0.316)
    model = LogisticRegression(C=0.316, max_iter=100_000, tol=1e-10)
    model.fit(train_x.double().numpy(), train_y.numpy())
    def accuracy(features, labels) -> float:
        return 100.0 * float((model.predict(features.double().numpy()) == labels.numpy()).mean())

    theirs = {"top1": accuracy(test_x, test_y), "train_top1": accuracy(train_x, train_y)}
    assert {key: raw[key] for key in theirs} == theirs
    assert raw != standardised
    weight, bias = fit_logistic_regression(train_x, train_y, 5, c=0.316)
    ours_p = torch.softmax(test_x.double() @ weight + bias, dim=1).numpy()
    np.testing.assert_allclose(ours_p, model.predict_proba(test_x.double().numpy()), atol=1e-4)


def _uc_merced_subset():
    from PIL import Image

    rng = np.random.default_rng(0)
    classes = sorted(rng.choice(sorted(p.name for p in UCMERCED.iterdir() if p.is_dir()), 10, replace=False))
    images, labels, is_train = [], [], []
    for label, name in enumerate(classes):
        files = sorted((UCMERCED / name).glob("*.jpg"))
        for i, path in enumerate(rng.choice(files, 20, replace=False)):
            with Image.open(path) as image:
                array = np.asarray(image.convert("RGB").resize((64, 64), Image.BILINEAR), dtype=np.float32)
            images.append(torch.from_numpy(array).permute(2, 0, 1))
            labels.append(label)
            is_train.append(i < 10)
    return torch.stack(images), torch.tensor(labels), torch.tensor(is_train)


@pytest.mark.skipif(not UCMERCED.is_dir(), reason="real UC Merced sample (../shared/data) not present")
def test_logistic_regression_matches_sklearn_on_real_uc_merced_features():
    """Features of a fixed random tiny ViT on 10 UC Merced classes x 20 images (64 px)."""
    import timm

    images, labels, is_train = _uc_merced_subset()
    mean = images[is_train].mean(dim=(0, 2, 3), keepdim=True)
    std = images[is_train].std(dim=(0, 2, 3), keepdim=True)
    torch.manual_seed(0)
    model = timm.create_model("vit_tiny_patch16_224", patch_size=8, img_size=64, num_classes=0,
                              pretrained=False).eval()
    with torch.no_grad():
        features = model((images - mean) / std)  # (200, 192)
    train_x, train_y = features[is_train], labels[is_train]
    test_x, test_y = features[~is_train], labels[~is_train]
    ours = logistic_regression_probe(train_x, train_y, test_x, test_y, c=1.0)
    _, theirs = sklearn_probe(train_x, train_y, test_x, test_y, 1.0)
    print(f"UC Merced random tiny ViT, logistic regression top-1: ours {ours['top1']:.1f} %, "
          f"scikit-learn {theirs:.1f} %")
    assert abs(ours["top1"] - theirs) <= 1.0, (ours, theirs)
    assert ours["top1"] > 10.0  # above chance even with random weights


def test_adamw_probe_follows_torch_adamw():
    """SatDINO's probe: the head trained by ``optimizer="adamw"`` equals one trained by torch.optim.AdamW
    on the same batches (cosine per epoch), and it solves an easy problem."""
    import math

    from rsdino.evaluate.linear import _train_heads

    x, y = blobs(20, 4, 6, separation=3.0, seed=5)
    epochs, batch, lr, decay = 4, 16, 0.01, 0.05
    heads = _train_heads({"x": x}, y, 4, torch.tensor([lr]), epochs=epochs, batch_size=batch, momentum=0.9,
                         weight_decay=decay, seed=0, per_iteration=False, optimizer="adamw")
    weight = (torch.randn(6, 4, generator=torch.Generator().manual_seed(0)) * 0.01).requires_grad_()
    bias = torch.zeros(4, requires_grad=True)
    reference = torch.optim.AdamW([weight, bias], lr=lr, weight_decay=decay)
    gen = torch.Generator().manual_seed(1)
    for epoch in range(epochs):
        for group in reference.param_groups:
            group["lr"] = lr * 0.5 * (1 + math.cos(math.pi * epoch / epochs))
        order = torch.randperm(len(y), generator=gen)
        for start in range(0, len(y), batch):
            index = order[start:start + batch]
            reference.zero_grad()
            torch.nn.functional.cross_entropy(x[index] @ weight + bias, y[index]).backward()
            reference.step()
    torch.testing.assert_close(heads["x"][0][0], weight.detach(), rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(heads["x"][1][0], bias.detach(), rtol=1e-4, atol=1e-6)
    (train_x, train_y), (test_x, test_y) = split(x, y, seed=6)
    result = dino_linear_probe(train_x, train_y, test_x, test_y, epochs=30, base_lr=0.5, batch_size=16,
                               optimizer="adamw")
    assert result["top1"] > 90, result
    with pytest.raises(ValueError, match="optimizer"):
        dino_linear_probe(train_x, train_y, test_x, test_y, epochs=1, optimizer="lbfgs")
