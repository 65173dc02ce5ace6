"""Warm starts: a step run through the warm server behaves as the same command run cold."""

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RSDINO = str(Path(sys.executable).parent / "rsdino")


@pytest.fixture()
def server(tmp_path):
    """A warm server preloading nothing (fast to start), on a socket in tmp_path."""
    socket_path = tmp_path / "s.sock"
    code = ("import sys; from rsdino.cli import main; from rsdino.launch.warm import serve; "
            "serve(sys.argv[1], main, preload=())")
    process = subprocess.Popen([sys.executable, "-c", code, str(socket_path)])
    for _ in range(200):
        if socket_path.exists():
            break
        time.sleep(0.05)
    yield socket_path
    process.terminate()
    process.wait(timeout=10)
    assert not socket_path.exists()  # removed on the way out


def rsdino(*args, cwd, socket_path=None):
    env = {k: v for k, v in os.environ.items() if not k.startswith("RSDINO_")}
    if socket_path is not None:
        env["RSDINO_WARM_SOCKET"] = str(socket_path)
    return subprocess.run([RSDINO, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_a_warm_step_writes_in_the_clients_folder_streams_and_exit_status(server, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    args = ("make-demo", "--params", str(ROOT / "params.yaml"), "--dataset", "demo_eurosat",
            "--out", "archive.tar")
    warm = rsdino(*args, cwd=work, socket_path=server)
    assert warm.returncode == 0, warm.stderr
    assert warm.stdout.startswith("wrote archive.tar (sha256 ") and (work / "archive.tar").is_file()
    cold_dir = tmp_path / "cold"
    cold_dir.mkdir()
    cold = rsdino(*args, cwd=cold_dir)
    assert cold.stdout == warm.stdout  # the same archive, the same line
    bad = rsdino("make-demo", "--params", str(ROOT / "params.yaml"), "--dataset", "nope", "--out", "x.tar",
                 cwd=work, socket_path=server)
    assert bad.returncode == 2 and bad.stdout == ""
    assert bad.stderr.startswith("rsdino make-demo: error: datasets: no dataset 'nope'")
    assert bad.stderr.count("\n") == 1


def test_without_a_reachable_server_the_step_runs_cold(tmp_path):
    result = rsdino("make-demo", "--params", str(ROOT / "params.yaml"), "--dataset", "nope", "--out", "x.tar",
                    cwd=tmp_path, socket_path=tmp_path / "missing.sock")
    assert result.returncode == 2 and "no dataset 'nope'" in result.stderr



def test_a_warm_step_fails_with_the_same_one_line_as_cold(server, tmp_path):
    bad = tmp_path / "params.yaml"
    bad.write_text("scale: [demo\n  : :")
    args = ("prepare", "--params", str(bad), "--dataset", "demo_eurosat", "--raw", "raw", "--out", "out")
    warm = rsdino(*args, cwd=tmp_path, socket_path=server)
    cold = rsdino(*args, cwd=tmp_path)
    assert warm.returncode == cold.returncode == 2
    assert warm.stdout == cold.stdout == ""
    assert warm.stderr == cold.stderr and warm.stderr.count("\n") == 1
    assert warm.stderr.startswith(f"rsdino prepare: error: {bad}: not valid YAML")
    debug = rsdino("--debug", *args, cwd=tmp_path, socket_path=server)
    assert debug.returncode == 2 and "Traceback" in debug.stderr
    assert debug.stderr.splitlines()[-1] == warm.stderr.strip()
    assert (tmp_path / "logs" / "debug" / "prepare.log").read_text().count("Traceback") == 3
