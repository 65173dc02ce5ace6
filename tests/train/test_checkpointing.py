"""Model-folder safety: the output lock, stale temporary files, the two kept checkpoints, dead runs."""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys

import pytest
import torch

from rsdino.cli import UserError
from rsdino.stale_runs import is_alive, owner_tags, process_start
from rsdino.train.checkpointing import (
    OutputFolderBusy,
    load_latest,
    output_lock,
    remove_stale_temporaries,
    save_rotating,
)


def _try_lock(folder, queue) -> None:
    try:
        with output_lock(folder):
            queue.put("locked")
    except OutputFolderBusy as error:
        queue.put(str(error))


def test_a_second_process_cannot_write_a_locked_folder(tmp_path):
    fork = multiprocessing.get_context("fork")
    queue = fork.Queue()
    with output_lock(tmp_path / "model"), output_lock(tmp_path / "model"):  # re-entrant in one process
        child = fork.Process(target=_try_lock, args=(tmp_path / "model", queue))
        child.start()
        child.join()
        message = queue.get(timeout=10)
    assert issubclass(OutputFolderBusy, UserError)
    assert str(tmp_path / "model") in message and f"pid {os.getpid()}" in message and "\n" not in message
    child = fork.Process(target=_try_lock, args=(tmp_path / "model", queue))
    child.start()
    child.join()
    assert queue.get(timeout=10) == "locked"  # released
    assert (tmp_path / "model" / ".rsdino.lock").read_text() == ""


def test_stale_temporaries_are_removed_and_outputs_kept(tmp_path):
    (tmp_path / "checkpoints").mkdir()
    stale = [tmp_path / "checkpoints" / ".last.pt.x1y2.pt.tmp",
             tmp_path / ".model.safetensors.ab.safetensors.tmp"]
    for path in stale:
        path.write_bytes(b"partial")
    (tmp_path / ".student.q9.tmp").mkdir()  # an interrupted atomic_directory
    kept = [tmp_path / "model.safetensors", tmp_path / "checkpoints" / "last.pt", tmp_path / ".rsdino.lock"]
    for path in kept:
        path.write_bytes(b"complete")
    assert len(remove_stale_temporaries(tmp_path)) == 3
    assert not any(p.exists() for p in stale) and not (tmp_path / ".student.q9.tmp").exists()
    assert all(p.read_bytes() == b"complete" for p in kept)


def test_two_checkpoints_are_kept_and_a_truncated_last_falls_back(tmp_path, caplog):
    path = tmp_path / "checkpoints" / "last.pt"
    assert load_latest(path) is None
    for step in (1, 2, 3):
        save_rotating(path, {"step": step, "w": torch.full((4,), float(step))})
    assert load_latest(path)["step"] == 3
    assert torch.load(path.with_name("previous.pt"), weights_only=True)["step"] == 2
    assert sorted(p.name for p in path.parent.iterdir()) == ["last.pt", "previous.pt"]
    path.write_bytes(path.read_bytes()[:100])
    assert load_latest(path)["step"] == 2
    assert f"{path}: cannot read the checkpoint" in caplog.text and "falling back" in caplog.text
    path.with_name("previous.pt").write_bytes(b"")
    with pytest.raises(ValueError, match=f"{path}: cannot read the checkpoint"):  # never a silent restart
        load_latest(path)


def test_owner_tags_tell_a_live_process_from_a_dead_one():
    tags = owner_tags()
    assert tags["rsdino.pid"] == str(os.getpid()) and tags["rsdino.pid_start"] == process_start(os.getpid())
    assert is_alive(os.getpid(), tags["rsdino.pid_start"])
    assert not is_alive(os.getpid(), str(int(tags["rsdino.pid_start"]) + 1))  # a recycled pid
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    assert not is_alive(child.pid, "")


@pytest.mark.parametrize("pause", ["0", "0.01"])
def test_the_pause_hook_writes_the_same_bytes(tmp_path, monkeypatch, pause):
    monkeypatch.setenv("RSDINO_TEST_CHECKPOINT_PAUSE_S", pause)
    save_rotating(tmp_path / "last.pt", {"w": torch.arange(10.0), "step": 4})
    monkeypatch.delenv("RSDINO_TEST_CHECKPOINT_PAUSE_S")
    save_rotating(tmp_path / "again.pt", {"w": torch.arange(10.0), "step": 4})
    assert (tmp_path / "last.pt").read_bytes() == (tmp_path / "again.pt").read_bytes()
