"""Run ``rsdino pretrain`` as one SLURM job through submitit: distributed, streamed, preemption-safe.

The submitting side (``run_on_slurm``) submits one job of ``nodes x tasks_per_node`` tasks, prints
the job's log as it grows, and returns when the job ends, or raises ``SlurmJobError`` carrying the
job's own error. Inside the job (``PretrainJob``) each task sets ``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT`` from submitit's job environment and runs the
same ``rsdino pretrain`` code path as a local run (``rsdino.train.pretrain`` initialises
``torch.distributed`` from these variables): the CLI hands over the command line and the function
that runs it (``rsdino.cli.run_command``, pickled by name), so this module does not import the CLI.

Preemption and time-out: SLURM sends ``SIGUSR2`` (submitit's ``--signal=USR2@90``) to every task.
submitit's own handler would call ``checkpoint()`` and requeue at once, in the middle of a training
step. ``PretrainJob`` replaces it with a handler that only asks the loop to stop
(``rsdino.train.pretrain.request_stop``, rank 0 only: the other ranks go on with the step, whose
collectives rank 0 still joins). Rank 0 finishes its step, writes ``checkpoints/last.pt`` and raises
``TrainingInterrupted``; only then is submitit's handler called, which pickles ``checkpoint()``'s
resubmission and requeues the job (``scontrol requeue``). The other ranks wait to be killed by the
requeue. The requeued job resumes from ``last.pt``.
"""

from __future__ import annotations

import logging
import os
import re
import shlex
import signal
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

import submitit
from submitit.core.utils import FailedJobError, UncompletedJobError

from rsdino.config import ResourceSettings

log = logging.getLogger(__name__)

#: SLURM sends this signal before the time limit (and ``scancel --signal`` on preemption).
PREEMPT_SIGNAL_ENV = "SUBMITIT_PREEMPT_SIGNAL"


class SlurmJobError(RuntimeError):
    """A SLURM job ended without a result; the message holds the job's own error and its log path."""


@dataclass(frozen=True)
class SlurmOptions:
    """Where and how the pretraining job is submitted.

    Args:
        folder: submitit folder of this submission (job pickles and per-task logs); each
            submission must use a new folder (job ids restart after a controller state purge).
        partition: SLURM partition (``None``: the cluster's default).
        account: account billed (``None``: the user's default).
        qos: quality of service (``None``: default).
        tasks_per_node: processes per node; ``None`` means one per GPU (at least one).
        extra: further ``sbatch`` options, name without dashes -> value (``{"constraint": "a100"}``);
            a value of ``True`` gives a bare flag (``--exclusive``).
        poll_s: seconds between forced job-state checks (``sacct``) while waiting.
        max_timeouts: how many time-outs the job may requeue itself after (preemptions are unlimited).
        signal_delay_s: seconds before the time limit at which SLURM sends the checkpoint signal.
    """

    folder: Path
    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    tasks_per_node: int | None = None
    extra: dict[str, str | bool] = field(default_factory=dict)
    poll_s: float = 15.0
    max_timeouts: int = 3
    signal_delay_s: int = 90


def parse_sbatch_options(text: str) -> dict[str, str | bool]:
    """Turn ``"--constraint=a100 --exclusive -C x"``-style sbatch flags into ``{name: value}``.

    Accepts ``--name=value``, ``--name value`` and bare ``--flag`` (value ``True``); raises
    ``ValueError`` on anything else (short options have ambiguous arity).
    """
    options: dict[str, str | bool] = {}
    tokens = shlex.split(text)
    i = 0
    while i < len(tokens):
        token = tokens[i]
        if not token.startswith("--") or len(token) < 3:
            raise ValueError(f"sbatch options {text!r}: expected --name[=value], got {token!r}")
        name, eq, value = token[2:].partition("=")
        if not eq and i + 1 < len(tokens) and not tokens[i + 1].startswith("-"):
            value, eq = tokens[i + 1], "="
            i += 1
        options[name] = value if eq else True
        i += 1
    return options


def master_port(job_id: str) -> int:
    """A rendezvous port in [20000, 40000) derived from the job id (the same in every task)."""
    digits = re.sub(r"\D", "", str(job_id))
    return 20000 + (int(digits) if digits else 0) % 20000


def distributed_environment(*, global_rank: int, local_rank: int, num_tasks: int, master_addr: str,
                            job_id: str) -> dict[str, str]:
    """The ``torch.distributed`` variables of one task (``RANK``, ``WORLD_SIZE``, ...)."""
    return {"RANK": str(global_rank), "LOCAL_RANK": str(local_rank), "WORLD_SIZE": str(num_tasks),
            "MASTER_ADDR": master_addr, "MASTER_PORT": str(master_port(job_id))}


def _task_argv(argv: Sequence[str], local_rank: int) -> list[str]:
    """``argv`` for one task: ``--device cuda`` becomes the task's own GPU ``cuda:<local_rank>``."""
    out = list(argv)
    for i, token in enumerate(out[:-1]):
        if token == "--device" and out[i + 1] == "cuda":
            out[i + 1] = f"cuda:{local_rank}"
    return out


def _preempt_signal() -> signal.Signals:
    name = os.environ.get(PREEMPT_SIGNAL_ENV, "USR2")
    return signal.Signals[name if name.startswith("SIG") else f"SIG{name}"]


class _StopOnSignal:
    """Turns SLURM's checkpoint signal into a step-boundary stop; requeues once the checkpoint is on disk."""

    def __init__(self, rank: int) -> None:
        self.rank = rank
        self.signum: int | None = None
        self._submitit_handler: Any = None

    def install(self) -> None:
        sig = _preempt_signal()
        self._submitit_handler = signal.getsignal(sig)
        signal.signal(sig, self._on_signal)

    def _on_signal(self, signum: int, frame: Any) -> None:  # noqa: ARG002 - the signal API
        self.signum = signum
        # os.write, not print: a signal handler must not re-enter a buffered stream being written.
        os.write(2, f"rsdino: rank {self.rank} got {signal.Signals(signum).name}: stopping after this "
                    f"step\n".encode())
        if self.rank == 0:
            from rsdino.train.pretrain import request_stop

            request_stop()

    @property
    def signalled(self) -> bool:
        return self.signum is not None

    def requeue(self) -> None:
        """Rank 0: let submitit pickle ``checkpoint()`` and requeue the job (it then exits)."""
        if not callable(self._submitit_handler):
            raise RuntimeError("not running under submitit: cannot requeue")
        self._submitit_handler(self.signum, None)

    def wait_for_requeue(self, limit_s: float = 600.0) -> None:
        """Other ranks: wait to be killed by rank 0's requeue (leaving no result behind)."""
        print(f"rsdino: rank {self.rank} waits for the requeue", file=sys.stderr, flush=True)
        time.sleep(limit_s)
        sys.exit(1)


def _checkpoint_step(argv: Sequence[str]) -> int | None:
    """The step stored in ``<--out>/checkpoints/last.pt``, if there is one."""
    if "--out" not in argv:
        return None
    path = Path(argv[list(argv).index("--out") + 1]) / "checkpoints" / "last.pt"
    if not path.is_file():
        return None
    from rsdino.train.checkpoint import load_checkpoint

    try:
        return int(load_checkpoint(path).get("step", 0))
    except Exception:  # noqa: BLE001 - a corrupt checkpoint is reported by the training code itself
        return None


#: Runs one ``rsdino`` command line in this process, letting its errors propagate (so submitit
#: records them): ``rsdino.cli.run_command``.
Command = Callable[[Sequence[str]], None]


class PretrainJob(submitit.helpers.Checkpointable):
    """The callable submitted to SLURM: one ``rsdino`` command line, run in every task.

    Args:
        argv: the ``rsdino`` arguments run by every task (``["pretrain", "--variant", ...,
            "--launcher", "local"]``).
        run: runs them (``rsdino.cli.run_command``; a module-level function, pickled by name).
    """

    def __init__(self, argv: Sequence[str], run: Command) -> None:
        self.argv = list(argv)
        self.run = run

    def __call__(self) -> str:
        from rsdino.train.pretrain import TrainingInterrupted

        env = submitit.JobEnvironment()
        os.environ.update(distributed_environment(
            global_rank=env.global_rank, local_rank=env.local_rank, num_tasks=env.num_tasks,
            master_addr=env.hostnames[0], job_id=str(env.job_id)))
        handler = _StopOnSignal(env.global_rank)
        handler.install()
        if env.global_rank == 0:
            step = _checkpoint_step(self.argv)
            print(f"rsdino: SLURM job {env.job_id}, {env.num_tasks} task(s) on {env.num_nodes} node(s)"
                  + (f"; resuming from the checkpoint at step {step}" if step is not None else ""),
                  flush=True)
        try:
            self.run(_task_argv(self.argv, env.local_rank))
        except TrainingInterrupted as stopped:
            if env.global_rank == 0 and handler.signalled:
                print(f"rsdino: {stopped}; requeueing", file=sys.stderr, flush=True)
                handler.requeue()  # exits
            raise
        except Exception:
            if env.global_rank != 0 and handler.signalled:
                handler.wait_for_requeue()  # rank 0 left mid-collective on purpose
            raise
        return "done"

    def checkpoint(self, *args: Any, **kwargs: Any) -> submitit.helpers.DelayedSubmission:
        """Resubmit the same command: the training resumes from ``checkpoints/last.pt``."""
        return submitit.helpers.DelayedSubmission(PretrainJob(self.argv, self.run))


def new_folder(root: Path, name: str) -> Path:
    """A fresh submitit folder ``root/name/<UTC time>-<pid>`` for one submission."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%fZ")
    return Path(root) / name / f"{stamp}-{os.getpid()}"


def submit(argv: Sequence[str], run: Command, resources: ResourceSettings, options: SlurmOptions,
           job_name: str) -> submitit.Job:
    """Submit ``rsdino <argv>`` as one SLURM job of ``nodes x tasks_per_node`` tasks.

    Args:
        argv: the ``rsdino`` arguments of every task.
        run: the function that runs them in each task (``rsdino.cli.run_command``).
        resources: nodes, GPUs per node, CPUs per task, memory per node (MB) and time limit (min).
        options: partition, account, qos, tasks per node, extra sbatch options, the folder.
        job_name: the SLURM job name.
    """
    tasks = options.tasks_per_node or max(1, resources.gpus_per_node)
    if resources.gpus_per_node and tasks != resources.gpus_per_node:
        log.warning("%s: %d tasks per node for %d GPUs per node", job_name, tasks, resources.gpus_per_node)
    executor = submitit.SlurmExecutor(folder=options.folder, max_num_timeout=options.max_timeouts)
    params: dict[str, Any] = {
        "job_name": job_name, "nodes": resources.nodes, "ntasks_per_node": tasks,
        "cpus_per_task": resources.cpus_per_task, "mem": f"{resources.mem_mb}M",
        "time": resources.runtime_min, "signal_delay_s": options.signal_delay_s,
        "additional_parameters": dict(options.extra),
    }
    if resources.gpus_per_node:
        params["gpus_per_node"] = resources.gpus_per_node
    for key in ("partition", "account", "qos"):
        if getattr(options, key):
            params[key] = getattr(options, key)
    executor.update_parameters(**params)
    return executor.submit(PretrainJob(argv, run))


class _Tail:
    """Copies what is appended to a growing file to a stream (starts over when the file is truncated)."""

    def __init__(self, path: Path, stream: TextIO) -> None:
        self.path, self.stream, self.offset = Path(path), stream, 0

    def pump(self) -> None:
        try:
            size = self.path.stat().st_size
        except FileNotFoundError:
            return
        if size < self.offset:  # a requeued job starts its log again
            self.stream.write(f"--- {self.path.name} restarted ---\n")
            self.offset = 0
        if size == self.offset:
            return
        with self.path.open("rb") as handle:
            handle.seek(self.offset)
            chunk = handle.read(size - self.offset)
        self.offset += len(chunk)
        self.stream.write(chunk.decode("utf-8", errors="replace"))
        self.stream.flush()


def wait_streaming(job: submitit.Job, *, poll_s: float = 15.0, tick_s: float = 1.0,
                   out: TextIO | None = None, err: TextIO | None = None) -> Any:
    """Wait for ``job``, copying task 0's stdout/stderr to ``out``/``err``; return task 0's result.

    Raises ``SlurmJobError`` with the job's own error (its traceback, or the end of its log when
    it died without one) when the job fails or is cancelled.
    """
    tails = [_Tail(job.paths.stdout, out or sys.stdout), _Tail(job.paths.stderr, err or sys.stderr)]
    last_check = time.monotonic()
    while True:
        for tail in tails:
            tail.pump()
        force = time.monotonic() - last_check >= poll_s
        if force:
            last_check = time.monotonic()
        if job.done(force_check=force):
            break
        time.sleep(tick_s)
    for tail in tails:
        tail.pump()
    try:
        return job.results()[0]
    except (FailedJobError, UncompletedJobError) as error:
        raise SlurmJobError(f"SLURM job {job.job_id} failed (state {job.state}; logs in "
                            f"{job.paths.folder}):\n{error}") from error


def run_on_slurm(argv: Sequence[str], run: Command, resources: ResourceSettings, options: SlurmOptions,
                 job_name: str, *, on_submit: Callable[[submitit.Job], None] | None = None) -> Any:
    """Submit ``rsdino <argv>`` run by ``run`` (``submit``), stream its log and wait (``wait_streaming``)."""
    job = submit(argv, run, resources, options, job_name)
    print(f"rsdino: submitted SLURM job {job.job_id} ({job_name}; folder {options.folder})", flush=True)
    if on_submit is not None:
        on_submit(job)
    return wait_streaming(job, poll_s=options.poll_s)
