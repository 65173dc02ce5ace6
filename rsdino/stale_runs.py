"""MLflow runs whose process died: found by owner tags and closed when the next step starts.

A run killed with SIGKILL (or by the out-of-memory killer, or a node failure) never reaches the code
that ends it, and stays RUNNING forever. Every step run carries its owner, ``rsdino.host`` (the host
name), ``rsdino.pid`` and ``rsdino.pid_start`` (the process's start time in clock ticks since boot,
from ``/proc/<pid>/stat``, so that a recycled pid is not taken for the old process). When a step
starts, ``end_runs_of_dead_processes`` ends every RUNNING run of the experiment owned by a process
of this host that no longer exists, as KILLED. Runs of other hosts (cluster jobs) and runs without
owner tags are left alone: their process cannot be checked from here. An exception inside a live
step ends its run FAILED as before (``mlflow.start_run``).
"""

from __future__ import annotations

import logging
import os
import socket
from typing import Any

log = logging.getLogger(__name__)

HOST_TAG, PID_TAG, START_TAG = "rsdino.host", "rsdino.pid", "rsdino.pid_start"


def _stat(pid: int) -> list[str]:
    """The fields of ``/proc/<pid>/stat`` after the command name (state first), or [] where unknown."""
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8") as handle:
            return handle.read().rsplit(")", 1)[-1].split()
    except OSError:
        return []


def process_start(pid: int) -> str:
    """Start time of process ``pid`` (field 22 of ``/proc/<pid>/stat``), or ``""`` where unknown."""
    fields = _stat(pid)
    return fields[19] if len(fields) > 19 else ""


def owner_tags() -> dict[str, str]:
    """The tags naming this process as the owner of a run."""
    pid = os.getpid()
    return {HOST_TAG: socket.gethostname(), PID_TAG: str(pid), START_TAG: process_start(pid)}


def is_alive(pid: int, start: str) -> bool:
    """Whether process ``pid`` runs and (when ``start`` is known) is the one that started then.

    A zombie (killed, not yet reaped by its parent) counts as dead.
    """
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by someone else
    fields = _stat(pid)
    if not fields:
        return not os.path.isdir("/proc")  # no /proc (not Linux): trust kill(0)
    if fields[0] in ("Z", "X"):
        return False
    return not (start and len(fields) > 19 and fields[19] != start)


def end_runs_of_dead_processes(client: Any, experiment_id: str) -> list[str]:
    """End as KILLED the RUNNING runs of ``experiment_id`` owned by dead processes of this host."""
    host = socket.gethostname()
    running = client.search_runs([experiment_id], filter_string="attributes.status = 'RUNNING'",
                                 max_results=1000)
    ended = []
    for run in running:
        tags = run.data.tags
        if tags.get(HOST_TAG) != host or not tags.get(PID_TAG, "").isdigit():
            continue
        if is_alive(int(tags[PID_TAG]), tags.get(START_TAG, "")):
            continue
        client.set_terminated(run.info.run_id, "KILLED")
        ended.append(run.info.run_id)
    if ended:
        log.warning("marked %d run(s) of killed processes KILLED: %s", len(ended), ", ".join(ended))
    return ended
