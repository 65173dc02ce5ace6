"""Pretraining off a terminal: one progress line per epoch with an ETA, and where a resumed run resumed."""

from __future__ import annotations

import logging

import pytest
import torch
from torch.utils.data import Dataset

from rsdino import progress
from rsdino.config import CropSettings, DinoLossSettings, HeadSettings, OptimSettings, VariantConfig
from rsdino.tracking import NullTracker
from rsdino.train import pretrain

BANDS = ["B02", "B03", "B04"]


class Scenes(Dataset):
    def __init__(self, n: int = 8) -> None:
        self.images = torch.rand(n, 3, 16, 16, generator=torch.Generator().manual_seed(0)) * 3000

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> dict:
        return {"image": self.images[index], "label": 0, "path": f"{index}.tif"}


def _run(out_dir, **variant_fields):
    variant = VariantConfig(
        method="dino", backbone="vit_tiny_patch8", pretrain_data="synthetic", seed=1,
        backbone_kwargs={"embed_dim": 24, "depth": 1, "num_heads": 2},
        crops=CropSettings(global_size=16, local_size=8, n_global=2, n_local=0),
        head=HeadSettings(out_dim=16, hidden_dim=16, bottleneck_dim=8),
        optim=OptimSettings(epochs=2, batch_size=4, warmup_epochs=0, freeze_last_layer_epochs=0),
        loss=DinoLossSettings(warmup_teacher_temp_epochs=0), **variant_fields)
    return pretrain.run_pretraining("tiny", variant, Scenes(), bands=BANDS, rgb_bands=BANDS[::-1],
                                    mean=[1500.0] * 3, std=[800.0] * 3, out_dir=out_dir,
                                    tracker=NullTracker(), progress=True)


def test_one_line_per_epoch_with_eta_and_the_resume_step(tmp_path, monkeypatch, caplog) -> None:
    caplog.set_level(logging.INFO)
    monkeypatch.setattr(progress, "on_terminal", lambda stream=None: False)

    def killed(epoch: int, step: int) -> None:
        if step == 3:
            raise KeyboardInterrupt("simulated kill")

    monkeypatch.setattr(pretrain, "_after_checkpoint", killed)
    with pytest.raises(KeyboardInterrupt):
        _run(tmp_path, checkpoint_every_steps=1)
    first = [r.getMessage() for r in caplog.records if r.name == "rsdino.progress"]
    assert len(first) == 1 and first[0].startswith("tiny: step 2/4 (50%) epoch 1/2 | loss ")
    assert " img/s | ETA " in first[0] and "lr " in first[0]
    caplog.clear()
    monkeypatch.setattr(pretrain, "_after_checkpoint", lambda epoch, step: None)
    _run(tmp_path, checkpoint_every_steps=1)
    messages = [r.getMessage() for r in caplog.records]
    assert any("resuming tiny at step 3 of 4" in m for m in messages)
    lines = [m.split(" |")[0] for m in messages if m.startswith("tiny: step")]
    assert lines == ["tiny: step 4/4 (100%) epoch 2/2"]
