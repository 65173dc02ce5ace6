"""DINO pretraining on a tiny synthetic 13-band dataset: outputs, resume, logged schedules, checkpoints."""

from __future__ import annotations

import json
import random
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import load_file
from torch.utils.data import Dataset

from rsdino.config import CropSettings, DinoLossSettings, HeadSettings, OptimSettings, VariantConfig
from rsdino.models.backbones import backbone_folder, build_backbone, load_backbone
from rsdino.tracking import NullTracker, step_run
from rsdino.train import pretrain
from rsdino.train.checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state
from rsdino.train.meta_arch import SelfDistillation

BANDS = [f"B{i:02d}" for i in range(1, 14)]
METRICS = {"loss", "loss_dino", "lr", "wd", "momentum", "teacher_temp", "student_std", "teacher_entropy"}


class RandomScenes(Dataset):
    """16 random 13-band 32 px images in reflectance x 10000, with labels."""

    def __init__(self, n: int = 16) -> None:
        generator = torch.Generator().manual_seed(123)
        self.images = torch.rand(n, 13, 32, 32, generator=generator) * 3000 + 500

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> dict:
        return {"image": self.images[index], "label": index % 2, "path": f"img{index}.tif"}


def _variant(**optim) -> VariantConfig:
    return VariantConfig(
        method="dino", backbone="vit_tiny_patch8", pretrain_data="synthetic", drop_path=0.1, seed=7,
        crops=CropSettings(global_size=32, local_size=16, n_global=2, n_local=2,
                           global_scale=(0.5, 1.0), local_scale=(0.2, 0.5)),
        head=HeadSettings(out_dim=64, hidden_dim=64, bottleneck_dim=32),
        optim=OptimSettings(**{"epochs": 2, "batch_size": 8, "lr": 0.005, "warmup_epochs": 1,
                               "freeze_last_layer_epochs": 1, "momentum_teacher": 0.9, **optim}),
        loss=DinoLossSettings(warmup_teacher_temp_epochs=1))


def _run(out_dir, variant: VariantConfig | None = None, tracker: NullTracker | None = None):
    return pretrain.run_pretraining(
        "tiny", variant or _variant(), RandomScenes(), bands=BANDS, rgb_bands=["B04", "B03", "B02"],
        mean=[2000.0] * 13, std=[870.0] * 13, out_dir=out_dir, tracker=tracker or NullTracker(),
        progress=False)


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    out_dir = tmp_path_factory.mktemp("uninterrupted")
    tracker = NullTracker()
    weights = _run(out_dir, tracker=tracker)
    return out_dir, weights, tracker


def test_two_epochs_write_the_model_folder(finished) -> None:
    out_dir, weights, tracker = finished
    assert weights == out_dir / "model.safetensors"
    for name in ("model.safetensors", "model.json", "student/model.safetensors", "student/model.json",
                 "loss.png", "history.csv", "checkpoints/last.pt"):
        assert (out_dir / name).is_file(), name
    meta = json.loads((out_dir / "model.json").read_text())
    assert meta["backbone"] == "vit_tiny_patch8" and meta["img_size"] == 32 and meta["in_chans"] == 13
    assert meta["bands"] == BANDS and meta["mean"] == [2000.0] * 13 and meta["method"] == "dino"
    assert meta["variant"] == "tiny" and meta["branch"] == "teacher"
    student_meta = json.loads((out_dir / "student" / "model.json").read_text())
    assert student_meta == {**meta, "branch": "student"}
    assert tracker.artifacts == [out_dir / "history.csv", out_dir / "loss.png"]
    load_backbone(out_dir)
    load_backbone(backbone_folder(out_dir, "student"))


def test_history_csv_holds_every_logged_metric_per_step(finished) -> None:
    out_dir, _, tracker = finished
    history = pd.read_csv(out_dir / "history.csv")
    logged = [metrics for _, metrics in tracker.metrics]
    assert len(history) == len(logged) == 2 * 2  # 2 epochs x 2 batches of 8 out of 16 images
    assert history["step"].tolist() == [1, 2, 3, 4] and history["epoch"].tolist() == [0.5, 1.0, 1.5, 2.0]
    assert set(logged[0]) | {"step", "epoch"} == set(history.columns)
    for row, metrics in zip(history.to_dict("records"), logged, strict=True):
        assert {k: row[k] for k in metrics} == pytest.approx(metrics, rel=1e-12)


def test_metrics_are_logged_every_step_and_finite(finished) -> None:
    _, _, tracker = finished
    assert [step for step, _ in tracker.metrics] == [0, 1, 2, 3]  # 16 images // 8 = 2 steps x 2 epochs
    for _, metrics in tracker.metrics:
        assert set(metrics) == METRICS
        assert all(np.isfinite(v) for v in metrics.values())
    assert tracker.metrics[0][1]["lr"] == 0.0  # linear warm-up starts at 0
    # DINO's convention: the last warm-up step (1 epoch x 2 steps) and the first cosine step are the peak
    assert tracker.metrics[1][1]["lr"] == pytest.approx(0.005 * 8 / 256)
    assert tracker.metrics[2][1]["lr"] == pytest.approx(0.005 * 8 / 256)


def test_teacher_moved_and_differs_from_the_student(finished) -> None:
    out_dir, weights, _ = finished
    torch.manual_seed(7)  # the student backbone is the first thing built after seeding
    initial = build_backbone("vit_tiny_patch8", 13, 32, 0.1).state_dict()
    teacher = load_file(str(weights))
    model = load_checkpoint(out_dir / "checkpoints" / "last.pt")["model"]
    assert all(torch.equal(teacher[k], model[f"teacher.backbone.{k}"]) for k in teacher)
    assert any(not torch.equal(teacher[k], initial[k]) for k in teacher)
    assert any(not torch.equal(teacher[k], model[f"student.backbone.{k}"]) for k in teacher)
    student = load_file(str(out_dir / "student" / "model.safetensors"))
    assert student.keys() == teacher.keys()
    assert all(torch.equal(student[k], model[f"student.backbone.{k}"]) for k in student)


@pytest.mark.parametrize("kill_at", [1, 3])  # inside the first epoch, and inside the second
def test_resume_after_a_kill_gives_bitwise_the_same_teacher(finished, tmp_path, monkeypatch,
                                                            kill_at: int) -> None:
    def killed(epoch: int, step: int) -> None:
        if step == kill_at:
            raise KeyboardInterrupt("simulated kill after a checkpoint")

    monkeypatch.setattr(pretrain, "_after_checkpoint", killed)
    variant = _variant().model_copy(update={"checkpoint_every_steps": 1})
    with pytest.raises(KeyboardInterrupt):
        _run(tmp_path, variant)
    assert load_checkpoint(tmp_path / "checkpoints" / "last.pt")["step"] == kill_at
    assert not (tmp_path / "model.safetensors").exists()
    monkeypatch.undo()
    tracker = NullTracker()
    resumed = load_file(str(_run(tmp_path, tracker=tracker)))
    assert [step for step, _ in tracker.metrics] == list(range(kill_at, 4))
    reference = load_file(str(finished[1]))
    assert resumed.keys() == reference.keys()
    assert all(torch.equal(resumed[k], reference[k]) for k in reference)
    student, student_reference = (load_file(str(folder / "student" / "model.safetensors"))
                                  for folder in (tmp_path, finished[0]))
    assert all(torch.equal(student[k], student_reference[k]) for k in student_reference)

    again = NullTracker()  # a finished run's checkpoint: nothing more to train
    exported_again = load_file(str(_run(tmp_path, tracker=again)))
    assert all(torch.equal(exported_again[k], reference[k]) for k in reference)
    assert again.metrics == []


def test_request_stop_checkpoints_the_finished_step_and_resumes(finished, tmp_path, monkeypatch) -> None:
    def stop_after_first_step(*args, **kwargs):
        metrics = train_step(*args, **kwargs)
        pretrain.request_stop()
        return metrics

    train_step = pretrain.train_step
    monkeypatch.setattr(pretrain, "train_step", stop_after_first_step)
    with pytest.raises(pretrain.TrainingInterrupted, match="step 1"):
        _run(tmp_path)
    assert load_checkpoint(tmp_path / "checkpoints" / "last.pt")["step"] == 1
    monkeypatch.undo()
    resumed = load_file(str(_run(tmp_path)))
    reference = load_file(str(finished[1]))
    assert all(torch.equal(resumed[k], reference[k]) for k in reference)


def test_last_layer_is_frozen_during_the_first_epochs(tmp_path) -> None:
    variant = _variant(epochs=1, freeze_last_layer_epochs=1)
    _run(tmp_path, variant)
    torch.manual_seed(variant.seed)
    initial = SelfDistillation(variant, 13).state_dict()
    model = load_checkpoint(tmp_path / "checkpoints" / "last.pt")["model"]
    last = [k for k in model if k.startswith("student.dino_head.last_layer.")]
    assert last and all(torch.equal(model[k], initial[k]) for k in last)
    assert not torch.equal(model["student.dino_head.mlp.0.weight"], initial["student.dino_head.mlp.0.weight"])


def test_a_checkpoint_of_other_settings_is_not_resumed(finished, tmp_path) -> None:
    _run(tmp_path, _variant(epochs=1))
    tracker = NullTracker()
    resumed = load_file(str(_run(tmp_path, tracker=tracker)))
    assert [step for step, _ in tracker.metrics] == [0, 1, 2, 3]
    reference = load_file(str(finished[1]))
    assert all(torch.equal(resumed[k], reference[k]) for k in reference)
    # a second identical run from scratch: the same bytes, so DVC sees the same files
    for name in ("model.safetensors", "student/model.safetensors", "teacher.safetensors", "model.json",
                 "checkpoints/last.pt", "checkpoints/previous.pt", "history.csv"):
        assert (tmp_path / name).read_bytes() == (finished[0] / name).read_bytes(), name


def test_global_batches_are_split_over_ranks_and_resume_inside_an_epoch() -> None:
    whole = list(pretrain.GlobalBatchSampler(10, 4, seed=3, epoch=1))
    assert len(whole) == 2 and all(len(batch) == 4 for batch in whole)
    ranks = [list(pretrain.GlobalBatchSampler(10, 4, seed=3, epoch=1, rank=r, world_size=2)) for r in (0, 1)]
    assert [a + b for a, b in zip(*ranks, strict=True)] == whole
    assert list(pretrain.GlobalBatchSampler(10, 4, seed=3, epoch=1, start=1)) == whole[1:]
    assert list(pretrain.GlobalBatchSampler(10, 4, seed=3, epoch=2)) != whole
    with pytest.raises(ValueError, match="divisible"):
        pretrain.GlobalBatchSampler(10, 3, seed=0, epoch=0, world_size=2)


def test_unknown_methods_and_misfit_crops_are_refused(tmp_path) -> None:
    variant = _variant()
    variant = variant.model_copy(update={"crops": variant.crops.model_copy(update={"local_size": 12})})
    with pytest.raises(ValueError, match="patch size 8"):
        _run(tmp_path, variant)


def test_checkpoint_round_trip_restores_random_states(tmp_path) -> None:
    torch.manual_seed(0)
    np.random.seed(0)
    random.seed(0)
    save_checkpoint(tmp_path / "c.pt", {"rng": rng_state(), "x": torch.arange(3)})
    expected = (torch.rand(2), np.random.rand(2), random.random())
    state = load_checkpoint(tmp_path / "c.pt")
    set_rng_state(state["rng"])
    assert torch.equal(torch.rand(2), expected[0]) and np.array_equal(np.random.rand(2), expected[1])
    assert random.random() == expected[2] and torch.equal(state["x"], torch.arange(3))
    (tmp_path / "c.pt").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="c.pt"):
        load_checkpoint(tmp_path / "c.pt")


def _killable_run(out_dir, uri: str, artifacts: str) -> None:
    """In a forked child: one ``rsdino pretrain`` step (MLflow run, checkpoint every step)."""
    torch.set_num_threads(1)  # the parent's OpenMP pool does not survive the fork (a child would hang)
    with step_run(experiment="kills", tracking_uri=uri, artifact_location=artifacts, group="tiny",
                  step="pretrain", run_name="pretrain tiny") as tracker:
        _run(out_dir, _variant().model_copy(update={"checkpoint_every_steps": 1}), tracker=tracker)


def _temporaries(folder) -> list:
    return [p for p in folder.rglob(".*.tmp")]


def _partial_checkpoints(out_dir) -> set[str]:
    return {p.name for p in (out_dir / "checkpoints").glob(".last.pt.*.tmp")}


def _wait_for_writes(child, out_dir, stale: set[str], n: int, deadline: float) -> bool:
    """Wait until ``child`` has begun ``n`` checkpoint writes (new partial files); False if it ended first."""
    import time

    seen: set[str] = set()
    while child.is_alive() and time.monotonic() < deadline:
        seen |= _partial_checkpoints(out_dir) - stale
        if len(seen) >= n:
            return True
        time.sleep(0.005)
    return False


def test_kill_9_at_random_moments_then_resume_gives_the_same_bytes(tmp_path, monkeypatch, caplog) -> None:
    """20 SIGKILLs, half of them inside a checkpoint write; resumes give the uninterrupted run's files."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in the forked children (the bytes depend on the thread count)
    try:
        _kill_and_resume(tmp_path, monkeypatch, caplog)
    finally:
        torch.set_num_threads(threads)


def _kill_and_resume(tmp_path, monkeypatch, caplog) -> None:
    import multiprocessing
    import os
    import signal
    import time

    from mlflow.tracking import MlflowClient

    from rsdino.train.checkpointing import PAUSE_ENV

    reference = tmp_path / "uninterrupted"
    began = time.monotonic()
    _run(reference)
    duration = time.monotonic() - began  # this machine's speed: the random kill times scale with it
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv(PAUSE_ENV, "0.15")
    uri, artifacts = f"sqlite:///{tmp_path / 'mlflow.db'}", str(tmp_path / "mlartifacts")
    # MLflow's lazy imports, once here rather than in every child (a store of its own: no database
    # connection is shared with the forks) ...
    MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'warm-up.db'}").search_experiments()
    # ... and the store's schema, made by a process of its own before the kills: MLflow creates a
    # fresh sqlite store in steps outside one transaction, so a kill during its very creation would
    # leave a half-made schema every later run refuses (a kill -9 of a project's first step ever).
    subprocess.run([sys.executable, "-c", "import sys; from mlflow.tracking import MlflowClient; "
                    "MlflowClient(tracking_uri=sys.argv[1]).search_experiments()", uri],
                   check=True, capture_output=True, timeout=600)
    out_dir = tmp_path / "model"
    rng = random.Random(20261202)
    fork = multiprocessing.get_context("fork")
    kills, in_write, finished_alone, attempts, steps_at_kill = 0, 0, 0, 0, []
    while kills < 20 and attempts < 30:
        attempts += 1
        stale = _partial_checkpoints(out_dir) if out_dir.is_dir() else set()
        last = out_dir / "checkpoints" / "last.pt"
        done = load_checkpoint(last)["step"] if last.is_file() else 0
        # checkpoints this child may complete before the kill: none once one step is left, so that
        # every attempt is killed before the training ends (the final resume finishes it)
        complete = 0 if done >= 3 else rng.randint(0, 1)
        child = fork.Process(target=_killable_run, args=(out_dir, uri, artifacts))
        child.start()
        deadline = time.monotonic() + 10 * duration + 60
        if rng.random() < 0.5:  # inside the next checkpoint write, somewhere in its pause
            if _wait_for_writes(child, out_dir, stale, complete + 1, deadline):
                time.sleep(rng.uniform(0.0, 0.12))
        elif complete == 0 or _wait_for_writes(child, out_dir, stale, complete, deadline):
            # anywhere after that: start-up, MLflow, a step, a write or its rename
            time.sleep(rng.uniform(0.0, duration / 4))
        if child.is_alive():
            in_write += bool(_partial_checkpoints(out_dir) - stale)
            os.kill(child.pid, signal.SIGKILL)
            kills += 1
            steps_at_kill.append(load_checkpoint(last)["step"] if last.is_file() else 0)
        else:
            finished_alone += 1
        child.join()
    assert kills == 20 and in_write >= 5, (kills, in_write, finished_alone)
    left_by_kills = len(_temporaries(out_dir))
    # a truncated last.pt (a full disk, say): the next run falls back to previous.pt with a warning
    last = out_dir / "checkpoints" / "last.pt"
    truncated = last.is_file() and (out_dir / "checkpoints" / "previous.pt").is_file()
    if truncated:
        last.write_bytes(last.read_bytes()[: last.stat().st_size // 2])
    monkeypatch.delenv(PAUSE_ENV)
    _killable_run(out_dir, uri, artifacts)
    assert ("falling back to the previous checkpoint" in caplog.text) == truncated
    assert not _temporaries(out_dir)
    for name in ("model.safetensors", "student/model.safetensors", "teacher.safetensors",
                 "checkpoints/last.pt"):
        assert (out_dir / name).read_bytes() == (reference / name).read_bytes(), name
    client = MlflowClient(tracking_uri=uri)
    runs = client.search_runs([client.get_experiment_by_name("kills").experiment_id])
    statuses = [run.info.status for run in runs if run.data.tags.get("rsdino.step") == "pretrain"]
    assert statuses.count("RUNNING") == 0 and statuses.count("KILLED") >= 10
    assert set(statuses) <= {"FINISHED", "KILLED"}
    print(f"kills {kills} (in a checkpoint write {in_write}; checkpoint step at each kill {steps_at_kill}), "
          f"runs that finished alone {finished_alone}, temporary files left by the kills {left_by_kills}, "
          f"after the resume 0; MLflow: {statuses.count('KILLED')} KILLED, {statuses.count('FINISHED')} "
          f"FINISHED, 0 RUNNING; truncated last.pt fell back to previous.pt: {truncated}")
