"""Feature extraction: shapes, per-band normalisation, resizing, determinism."""

from __future__ import annotations

import pytest
import timm
import torch

from rsdino.evaluate.features import extract_features


class ListDataset(torch.utils.data.Dataset):
    """In-memory scene dataset: dict items like ``SceneDataset``."""

    def __init__(self, images, labels):
        self.images, self.labels = images, labels

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        return {"image": self.images[i], "label": self.labels[i], "path": f"img{i}.tif"}


def band_means(model, x):
    """Stand-in features: the mean of each band, so normalisation is visible in the output."""
    return x.mean(dim=(2, 3))


def dataset(n=10, size=8, bands=3, seed=0):
    gen = torch.Generator().manual_seed(seed)
    images = [1000 + 300 * torch.rand(bands, size, size, generator=gen) for _ in range(n)]
    return ListDataset(images, [i % 3 for i in range(n)])


def test_shapes_dtypes_and_normalisation():
    data = dataset()
    mean, std = [1100.0, 1150.0, 1200.0], [50.0, 100.0, 150.0]
    features, labels = extract_features(torch.nn.Identity(), data, mean=mean, std=std, batch_size=4,
                                        progress=False, features_fn=band_means)
    assert features.shape == (10, 3) and features.dtype == torch.float32
    assert labels.dtype == torch.int64 and labels.tolist() == [i % 3 for i in range(10)]
    raw = torch.stack([image.mean(dim=(1, 2)) for image in data.images])
    expected = (raw - torch.tensor(mean)) / torch.tensor(std)
    torch.testing.assert_close(features, expected, rtol=1e-5, atol=1e-5)


def test_resize_to_image_size_and_mixed_sizes():
    data = ListDataset([torch.ones(3, 8, 8), torch.ones(3, 12, 10)], [0, 1])
    seen = []

    def record(model, x):
        seen.append(tuple(x.shape))
        return x.mean(dim=(2, 3))

    features, _ = extract_features(torch.nn.Identity(), data, mean=[0, 0, 0], std=[1, 1, 1], image_size=16,
                                   progress=False, features_fn=record)
    assert seen == [(2, 3, 16, 16)]
    torch.testing.assert_close(features, torch.ones(2, 3))  # resizing a constant image keeps it


def test_deterministic_eval_mode_and_batch_independent():
    torch.manual_seed(0)
    model = timm.create_model("vit_tiny_patch16_224", patch_size=8, img_size=32, depth=2, num_classes=0,
                              drop_path_rate=0.5, drop_rate=0.5)
    model.train()
    data = dataset(n=6, size=32)

    def run(batch_size):
        return extract_features(model, data, mean=[1150.0] * 3, std=[90.0] * 3, batch_size=batch_size,
                                progress=False, features_fn=lambda m, x: m(x))[0]

    first = run(4)
    assert not model.training
    assert first.shape == (6, model.num_features)
    torch.testing.assert_close(run(4), first, rtol=0, atol=0)
    torch.testing.assert_close(run(1), first, rtol=1e-4, atol=1e-5)


def test_errors():
    with pytest.raises(ValueError, match="bands"):
        extract_features(torch.nn.Identity(), dataset(bands=4), mean=[0.0] * 3, std=[1.0] * 3,
                         progress=False, features_fn=band_means)
    with pytest.raises(ValueError, match="std"):
        extract_features(torch.nn.Identity(), dataset(), mean=[0.0] * 3, std=[1.0, 0.0, 1.0],
                         progress=False, features_fn=band_means)
    with pytest.raises(ValueError, match="empty"):
        extract_features(torch.nn.Identity(), ListDataset([], []), mean=[0.0] * 3, std=[1.0] * 3,
                         progress=False, features_fn=band_means)


def test_evaluations_standardise_with_the_evaluation_datasets_statistics() -> None:
    from rsdino.evaluate.features import with_dataset_statistics

    class WithStats:
        stats = {"mean": [100.0, 200.0], "std": [10.0, 20.0]}

    meta = {"mean": [1.0, 2.0], "std": [0.1, 0.2], "img_size": 32}
    out = with_dataset_statistics(meta, WithStats())
    assert out["mean"] == [100.0, 200.0] and out["std"] == [10.0, 20.0] and out["img_size"] == 32
    assert meta["mean"] == [1.0, 2.0]  # not modified in place
    assert with_dataset_statistics(meta, object()) is meta  # no statistics: the model's own

    class OtherBands:
        stats = {"mean": [1.0], "std": [1.0]}

    assert with_dataset_statistics(meta, OtherBands()) is meta
