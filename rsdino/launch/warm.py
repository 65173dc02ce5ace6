"""Warm starts: one process holds torch, timm and MLflow imported and forks every ``rsdino`` step.

A step spends about 14 s of CPU importing torch, torchvision, timm and MLflow before it does any
work; a DAG of a few hundred small jobs on one machine (the demo, the ``mini`` scale) would spend
most of its time there. ``serve`` imports them once and listens on a UNIX socket; ``rsdino <step>``
(``rsdino.cli.main``) finds the socket through ``RSDINO_WARM_SOCKET`` and hands over its command
line, working directory, environment and standard streams (file descriptors over the socket); the
server forks, the fork runs the step exactly as the command line would (``rsdino serve`` passes the
command's entry point, ``rsdino.cli.main``, to ``serve``: this module does not import the CLI), and
its exit status comes back as the client's own. Signals sent to the client (snakemake stopping a
job) are forwarded to the step.

Nothing depends on it: without the variable, with no socket, or when the server cannot be reached,
the step runs in its own process as always. The Snakefile starts a server for local runs only
(``workflow/Snakefile`` ``onstart``); cluster jobs run cold in their own allocations. The server
exits when it is told to (SIGTERM) or when the process that started it is gone.
"""

from __future__ import annotations

import importlib
import json
import os
import select
import signal
import socket
import struct
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

SOCKET_ENV = "RSDINO_WARM_SOCKET"
#: Imported once by the server (the costly part of every step's start).
PRELOAD = ("torch", "torchvision", "timm", "mlflow", "rsdino.tracking", "rsdino.data.registry",
           "rsdino.train.pretrain", "rsdino.evaluate.run", "rsdino.evaluate.protocols", "rsdino.evaluate.knn",
           "rsdino.evaluate.dense", "rsdino.report.tables", "rsdino.report.plots")
_HEADER = struct.Struct("!I")
#: The step's entry point: ``rsdino <argv>`` -> exit status (``rsdino.cli.main``).
Entry = Callable[[list[str]], int]
FORWARDED_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


def _send(conn: socket.socket, message: dict, fds: Sequence[int] = ()) -> None:
    data = json.dumps(message).encode()
    payload = _HEADER.pack(len(data)) + data
    if fds:
        sent = socket.send_fds(conn, [payload], list(fds))
        conn.sendall(payload[sent:])
    else:
        conn.sendall(payload)


def _receive(conn: socket.socket, with_fds: bool = False) -> tuple[dict | None, list[int]]:
    """One message (and the descriptors sent with it); ``(None, [])`` at end of stream."""
    fds: list[int] = []
    if with_fds:
        data, fds, _, _ = socket.recv_fds(conn, 65536, 3)
    else:
        data = conn.recv(65536)
    if not data:
        return None, fds
    while len(data) < _HEADER.size:
        more = conn.recv(65536)
        if not more:
            return None, fds
        data += more
    (size,) = _HEADER.unpack(data[:_HEADER.size])
    data = data[_HEADER.size:]
    while len(data) < size:
        more = conn.recv(65536)
        if not more:
            return None, fds
        data += more
    return json.loads(data[:size]), fds


# ------------------------------------------------------------------------------------------ client


def run_warm(argv: Sequence[str]) -> int | None:
    """Run ``rsdino <argv>`` in the warm server; its exit status, or None to run it here instead."""
    path = os.environ.get(SOCKET_ENV)
    if not path or not Path(path).exists():
        return None
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        conn.connect(path)
        _send(conn, {"argv": list(argv), "cwd": os.getcwd(), "env": dict(os.environ)}, [0, 1, 2])
        started, _ = _receive(conn)
    except OSError:
        conn.close()
        return None
    if not started or "pid" not in started:  # the server could not start it: nothing ran
        conn.close()
        return None

    def forward(signum: int, _frame: object) -> None:
        try:
            _send(conn, {"signal": signum})
        except OSError:
            pass

    for signum in FORWARDED_SIGNALS:
        signal.signal(signum, forward)
    while True:
        try:
            message, _ = _receive(conn)
        except InterruptedError:
            continue
        if message is None:
            print(f"rsdino {argv[0] if argv else ''}: error: the warm server ({path}) went away",
                  file=sys.stderr)
            return 1
        if "exit" in message:
            return int(message["exit"])


# ------------------------------------------------------------------------------------------ server


def _run_step(request: dict, fds: list[int], entry: Entry) -> None:
    """In the step's own process: take over the client's streams, directory and environment; run."""
    for target, fd in enumerate(fds[:3]):
        os.dup2(fd, target)
    for fd in fds:
        os.close(fd)
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    os.environ.pop(SOCKET_ENV, None)  # the step runs here; its own children start cold
    for signum in FORWARDED_SIGNALS:
        signal.signal(signum, signal.SIG_DFL)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    code = 1
    try:
        code = entry(request["argv"])
    except SystemExit as stop:
        code = stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
    except BaseException:  # noqa: BLE001 - reported like an uncaught error of the command
        import traceback

        traceback.print_exc()
        code = 1
    finally:
        import atexit

        atexit._run_exitfuncs()  # what a normal exit runs (MLflow's and logging's flushes, ...)
        sys.stdout.flush()
        sys.stderr.flush()
    os._exit(code)  # not sys.exit: unwinding would run the server's own clean-up in this fork


def _handle(conn: socket.socket, entry: Entry) -> int:
    """In a fork of the server: start the step, forward signals to it, report its exit status."""
    request, fds = _receive(conn, with_fds=True)
    if request is None or len(fds) != 3:
        return 1
    pid = os.fork()
    if pid == 0:
        conn.close()
        _run_step(request, fds, entry)
    for fd in fds:
        os.close(fd)
    _send(conn, {"pid": pid})
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            code = os.waitstatus_to_exitcode(status)
            _send(conn, {"exit": code if code >= 0 else 128 - code})
            return 0
        readable, _, _ = select.select([conn], [], [], 0.2)
        if readable:
            message, _ = _receive(conn)
            if message is None:  # the client is gone: stop the step
                os.kill(pid, signal.SIGTERM)
            elif "signal" in message:
                os.kill(pid, int(message["signal"]))


def serve(path: Path, entry: Entry, preload: Sequence[str] = PRELOAD) -> None:
    """Import ``preload``, then fork a step for every client of the socket ``path`` (module docstring).

    Args:
        path: the UNIX socket to listen on (replaced if it exists).
        entry: runs one step in the fork, ``entry(argv) -> exit status`` (``rsdino.cli.main``).
        preload: modules imported once, before the first fork.
    """
    for module in preload:
        importlib.import_module(module)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen(64)
    parent = os.getppid()
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # handlers are reaped by the kernel
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        while os.getppid() == parent:
            readable, _, _ = select.select([listener], [], [], 1.0)
            if not readable:
                continue
            conn, _ = listener.accept()
            if os.fork() == 0:
                listener.close()
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                try:
                    code = _handle(conn, entry)
                finally:
                    conn.close()
                os._exit(code)
            conn.close()
    finally:
        listener.close()
        path.unlink(missing_ok=True)


class WarmServer:
    """The warm server of one Snakemake run: started for local runs, stopped when the run ends.

    ``start`` launches ``rsdino serve`` on a socket in a fresh temporary folder (a short path: UNIX
    sockets have a length limit) and sets ``RSDINO_WARM_SOCKET`` for the jobs snakemake starts
    afterwards; it does nothing for cluster executors, dry runs, or when the user set
    ``RSDINO_WARM_SOCKET=off``. Jobs that start before the server is listening run cold.
    """

    def __init__(self, log: str | Path) -> None:
        self.log = Path(log)
        self.process = None
        self.folder: Path | None = None

    def start(self, *, local: bool, dryrun: bool) -> None:
        import subprocess
        import tempfile

        if os.environ.get(SOCKET_ENV) == "off" or not local or dryrun or self.process is not None:
            return
        self.folder = Path(tempfile.mkdtemp(prefix="rsdino-warm-"))
        socket_path = self.folder / "steps.sock"
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("w") as log:
            self.process = subprocess.Popen([sys.executable, "-m", "rsdino.cli", "serve", "--socket",
                                             str(socket_path)], stdout=log, stderr=log,
                                            stdin=subprocess.DEVNULL)
        os.environ[SOCKET_ENV] = str(socket_path)

    def stop(self) -> None:
        import shutil
        import subprocess

        if self.process is None:
            return
        os.environ.pop(SOCKET_ENV, None)
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self.process = None
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)
