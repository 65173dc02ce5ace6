"""Two gloo processes on a global batch make the same update as one process on it."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

WORKER = Path(__file__).with_name("ddp_worker.py")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _launch(out_dir: Path, world_size: int, method: str) -> None:
    port = _free_port()
    procs = []
    for rank in range(world_size):
        env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
        if world_size > 1:
            env.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world_size),
                       MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
        procs.append(subprocess.Popen([sys.executable, str(WORKER), str(out_dir), method], env=env,
                                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    for proc in procs:
        output, _ = proc.communicate(timeout=300)
        assert proc.returncode == 0, output


@pytest.mark.parametrize("method", ["dino", "dinov2"])
def test_two_gloo_processes_equal_one_process(tmp_path, method: str) -> None:
    _launch(tmp_path / "one", 1, method)
    _launch(tmp_path / "two", 2, method)
    one = json.loads((tmp_path / "one" / "metrics.json").read_text())
    two = json.loads((tmp_path / "two" / "metrics.json").read_text())
    assert len(one) == len(two) == 2
    for a, b in zip(one, two, strict=True):
        for key in ("loss", "loss_dino", "loss_ibot"):
            if key in a:
                assert b[key] == pytest.approx(a[key], abs=1e-5), key
    w1, w2 = (load_file(str(tmp_path / name / "model.safetensors")) for name in ("one", "two"))
    assert w1.keys() == w2.keys()
    for key in w1:
        torch.testing.assert_close(w2[key], w1[key], atol=1e-5, rtol=0, msg=key)
    assert not (tmp_path / "two" / "checkpoints" / "last.pt.tmp").exists()
