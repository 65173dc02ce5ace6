"""The kNN probe during pretraining: a curve in history.csv and MLflow, and bitwise the same weights."""

from __future__ import annotations

import random

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import load_file
from torch.utils.data import Dataset

from rsdino.config import CropSettings, DinoLossSettings, HeadSettings, OptimSettings, VariantConfig
from rsdino.config.variants import ProbeSettings
from rsdino.tracking import NullTracker
from rsdino.train import pretrain
from rsdino.train.probe import PROBE_METRIC, KnnProbe, isolated, spaced_indices

BANDS = [f"B{i:02d}" for i in range(1, 14)]


class Scenes(Dataset):
    """Random 13-band 32 px images; class c is brighter in band c (so a probe has something to find)."""

    def __init__(self, n: int, seed: int) -> None:
        generator = torch.Generator().manual_seed(seed)
        self.images = torch.rand(n, 13, 32, 32, generator=generator) * 3000 + 500
        self.labels = [i % 2 for i in range(n)]
        for i, label in enumerate(self.labels):
            self.images[i, label] += 3000

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> dict:
        return {"image": self.images[index], "label": self.labels[index], "path": f"img{index}.tif"}


def _variant() -> VariantConfig:
    # drop_path > 0 draws from the global RNG at every step: a probe that consumed it would show.
    return VariantConfig(
        method="dino", backbone="vit_tiny_patch8", pretrain_data="synthetic", drop_path=0.1, seed=3,
        crops=CropSettings(global_size=32, local_size=16, n_global=2, n_local=2,
                           global_scale=(0.5, 1.0), local_scale=(0.2, 0.5)),
        head=HeadSettings(out_dim=64, hidden_dim=64, bottleneck_dim=32),
        optim=OptimSettings(epochs=2, batch_size=8, lr=0.005, warmup_epochs=1, freeze_last_layer_epochs=1,
                            momentum_teacher=0.9),
        loss=DinoLossSettings(warmup_teacher_temp_epochs=1))


def _probe(every_steps: int = 1, bands: list[str] | None = None) -> KnnProbe:
    settings = ProbeSettings(dataset="synthetic", every_steps=every_steps, n_train=10, n_test=6, k=3)
    return KnnProbe(settings, Scenes(12, seed=1), Scenes(8, seed=2), mean=[2500.0] * 13, std=[1200.0] * 13,
                    bands=bands or BANDS)


def _run(out_dir, probe: KnnProbe | None, tracker: NullTracker):
    return pretrain.run_pretraining(
        "tiny", _variant(), Scenes(16, seed=0), bands=BANDS, rgb_bands=["B04", "B03", "B02"],
        mean=[2500.0] * 13, std=[1200.0] * 13, out_dir=out_dir, tracker=tracker, progress=False,
        probe=probe)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    plain, probed = tmp_path_factory.mktemp("plain"), tmp_path_factory.mktemp("probed")
    plain_tracker, probed_tracker = NullTracker(), NullTracker()
    _run(plain, None, plain_tracker)
    _run(probed, _probe(), probed_tracker)
    return plain, probed, plain_tracker, probed_tracker


def test_the_probe_leaves_the_trained_weights_bitwise_identical(runs) -> None:
    plain, probed, _, _ = runs
    for name in ("model.safetensors", "student/model.safetensors", pretrain.TEACHER_FILE):
        a, b = load_file(plain / name), load_file(probed / name)
        assert a.keys() == b.keys()
        for key in a:
            assert torch.equal(a[key], b[key]), f"{name}: {key}"


def test_the_probe_curve_is_in_history_csv_and_the_tracker(runs) -> None:
    plain, probed, plain_tracker, probed_tracker = runs
    history = pd.read_csv(probed / pretrain.HISTORY_FILE)
    assert history["step"].tolist() == [0, 1, 2, 3, 4]  # step 0: before training
    curve = history[PROBE_METRIC]
    assert curve.notna().all() and ((curve >= 0) & (curve <= 100)).all()
    assert np.isnan(history["loss"].iloc[0]) and history["loss"].iloc[1:].notna().all()
    logged = {step: m[PROBE_METRIC] for step, m in probed_tracker.metrics if PROBE_METRIC in m}
    assert logged == pytest.approx(dict(zip(history["step"], curve, strict=True)))
    plain_history = pd.read_csv(plain / pretrain.HISTORY_FILE)
    assert PROBE_METRIC not in plain_history.columns and plain_history["step"].tolist() == [1, 2, 3, 4]
    # the losses are the same with and without the probe
    assert history["loss"].iloc[1:].tolist() == plain_history["loss"].tolist()


def test_a_resumed_run_keeps_its_probe_curve_and_weights(runs, tmp_path, monkeypatch) -> None:
    _, probed, _, _ = runs

    def killed(epoch: int, step: int) -> None:
        if step == 2:
            raise KeyboardInterrupt("simulated kill after the first epoch's checkpoint")

    monkeypatch.setattr(pretrain, "_after_checkpoint", killed)
    with pytest.raises(KeyboardInterrupt):
        _run(tmp_path, _probe(), NullTracker())
    monkeypatch.undo()
    tracker = NullTracker()
    _run(tmp_path, _probe(), tracker)
    assert [step for step, m in tracker.metrics if PROBE_METRIC in m] == [3, 4]  # 0-2: in the checkpoint
    history, reference = (pd.read_csv(folder / pretrain.HISTORY_FILE) for folder in (tmp_path, probed))
    assert history[PROBE_METRIC].tolist() == reference[PROBE_METRIC].tolist()
    a, b = load_file(tmp_path / "model.safetensors"), load_file(probed / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in b)


def test_the_probe_runs_every_n_steps_and_at_the_end(tmp_path) -> None:
    tracker = NullTracker()
    _run(tmp_path, _probe(every_steps=3), tracker)
    assert [step for step, m in tracker.metrics if PROBE_METRIC in m] == [0, 3, 4]


def test_isolated_restores_rngs_and_train_flags() -> None:
    module = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Dropout(0.5))
    module[1].eval()  # a mixed state comes back as it was
    torch.manual_seed(0)
    np.random.seed(0)
    random.seed(0)
    expected = (torch.rand(3), np.random.rand(), random.random())
    torch.manual_seed(0)
    np.random.seed(0)
    random.seed(0)
    with isolated(module, "cpu"):
        assert not module.training and not torch.is_grad_enabled()
        torch.rand(5), np.random.rand(4), random.random()
    assert module.training and not module[1].training
    got = (torch.rand(3), np.random.rand(), random.random())
    assert torch.equal(got[0], expected[0]) and got[1:] == expected[1:]


class BandMeans(torch.nn.Module):
    """A 'backbone' whose feature is the mean of each band (the CNN interface of timm)."""

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def forward_head(self, x: torch.Tensor, pre_logits: bool = True) -> torch.Tensor:
        return x.mean(dim=(2, 3))


def test_probe_separates_an_easy_set_and_refuses_other_bands() -> None:
    probe = _probe()
    assert len(probe.train) == 10 and len(probe.test) == 6 and probe.n_classes == 2
    assert probe(BandMeans())[PROBE_METRIC] == 100.0  # the brighter band gives the class away
    with pytest.raises(ValueError, match="probe dataset 'synthetic' has bands"):
        probe.check_bands(BANDS[::-1])


def test_spaced_indices_cover_the_split_evenly() -> None:
    assert spaced_indices(10, 5) == [0, 2, 4, 7, 9]
    assert spaced_indices(3, 10) == [0, 1, 2] and spaced_indices(0, 4) == []
