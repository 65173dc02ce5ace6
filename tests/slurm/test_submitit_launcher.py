"""``rsdino pretrain --launcher submitit`` on a real one-node SLURM cluster (see cluster.sh)."""

from __future__ import annotations

import re
import subprocess
import threading
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from rsdino.launch.submitit_launcher import (
    distributed_environment,
    master_port,
    parse_sbatch_options,
)
from rsdino.train.checkpoint import load_checkpoint

TIMEOUT_S = 900


def _assert_same_weights(actual: Path, expected: Path, atol: float = 1e-5) -> None:
    a, b = load_file(str(actual / "model.safetensors")), load_file(str(expected / "model.safetensors"))
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], atol=atol, rtol=0, msg=key)


def _sacct_states(job_id: str, wait_s: float = 60.0) -> list[str]:
    """Every state the job went through (``-D``: also the runs before a requeue), once it has ended.

    The result file can appear before SLURM has finished the job's teardown: wait for a final state.
    """
    deadline = time.monotonic() + wait_s
    while True:
        out = subprocess.run(["sacct", "-j", job_id, "-X", "-D", "-n", "-P", "-o", "state"],
                             capture_output=True, text=True, check=True).stdout
        states = [line.strip() for line in out.splitlines() if line.strip()]
        if (states and states[-1] not in {"PENDING", "RUNNING", "COMPLETING", "REQUEUED"}) \
                or time.monotonic() > deadline:
            return states
        time.sleep(0.5)


# ------------------------------------------------------------------------- no cluster needed


def test_distributed_environment_of_a_task() -> None:
    env = distributed_environment(global_rank=3, local_rank=1, num_tasks=4, master_addr="node7", job_id="123")
    assert env == {"RANK": "3", "LOCAL_RANK": "1", "WORLD_SIZE": "4", "MASTER_ADDR": "node7",
                   "MASTER_PORT": str(20000 + 123)}
    assert master_port("45_2") == 20000 + 452 and 20000 <= master_port("987654321") < 40000


def test_parse_sbatch_options() -> None:
    assert parse_sbatch_options("--constraint=a100 --exclusive --gres gpu:2") == {
        "constraint": "a100", "exclusive": True, "gres": "gpu:2"}
    assert parse_sbatch_options("") == {}
    with pytest.raises(ValueError, match="-C"):
        parse_sbatch_options("-C a100")


def test_the_job_carries_the_clis_runner_by_name_through_pickling_and_requeue() -> None:
    """submitit pickles the job (and its requeue): the CLI's runner travels as a reference, not a copy."""
    import pickle

    import cloudpickle

    from rsdino.cli import run_command
    from rsdino.launch.submitit_launcher import PretrainJob

    payload = cloudpickle.dumps(PretrainJob(["pretrain", "--variant", "v"], run_command))
    job = pickle.loads(payload)
    assert job.run is run_command and job.argv == ["pretrain", "--variant", "v"]
    assert b"rsdino.cli" in payload and len(payload) < 1000
    again = job.checkpoint().function
    assert again.run is run_command and again.argv == job.argv


# ---------------------------------------------------------------------------- the real SLURM


@pytest.mark.slow
def test_two_task_gloo_job_equals_one_local_process(slurm_cluster, train_here, slurm_command,
                                                    tmp_path) -> None:
    train_here("slurm_tiny", tmp_path / "local")
    started = time.monotonic()
    proc = subprocess.run(slurm_command("slurm_tiny", tmp_path / "slurm", tmp_path / "submitit",
                                        "--tasks-per-node", "2", "--slurm-extra=--comment='rsdino test'"),
                          capture_output=True, text=True, timeout=TIMEOUT_S)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output
    job_id = re.search(r"submitted SLURM job (\d+)", output).group(1)
    assert "2 task(s) on 1 node(s)" in output  # streamed from the job's own log
    assert _sacct_states(job_id)[-1] == "COMPLETED"
    script = next((tmp_path / "submitit").rglob(f"{job_id}_submission.sh")).read_text()
    assert "#SBATCH --ntasks-per-node=2" in script and "#SBATCH --comment='rsdino test'" in script
    ckpt = load_checkpoint(tmp_path / "slurm" / "checkpoints" / "last.pt")
    assert ckpt["step"] == 2
    _assert_same_weights(tmp_path / "slurm", tmp_path / "local")
    print(f"two-task SLURM job {job_id}: {time.monotonic() - started:.1f} s")


@pytest.mark.slow
def test_preempted_job_requeues_and_resumes(slurm_cluster, slurm_command, tmp_path) -> None:
    # The same 2-task run, uninterrupted, side by side: the reference for bitwise-equal weights.
    reference = subprocess.Popen(slurm_command("slurm_long", tmp_path / "reference", tmp_path / "submitit",
                                               "--tasks-per-node", "2"),
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    out = tmp_path / "slurm"
    proc = subprocess.Popen(slurm_command("slurm_long", out, tmp_path / "submitit", "--tasks-per-node", "2"),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True)
    reader.start()
    deadline = time.monotonic() + TIMEOUT_S
    while not (out / "checkpoints" / "last.pt").exists():  # the first epoch (2 of 16 steps) is done
        assert proc.poll() is None and time.monotonic() < deadline, "".join(lines)
        time.sleep(0.05)
    job_id = re.search(r"submitted SLURM job (\d+)", "".join(lines)).group(1)
    # What SLURM does before a time-out or a preemption: USR2 to every task of the job.
    subprocess.run(["scancel", "--signal=USR2", job_id], check=True)
    proc.wait(timeout=TIMEOUT_S)
    reader.join(timeout=10)
    output = "".join(lines)
    assert proc.returncode == 0, output
    assert re.search(r"stopped at step \d+; checkpoint written", output), output
    resumed = re.search(r"resuming from the checkpoint at step (\d+)", output)
    assert resumed, output
    assert 2 <= int(resumed.group(1)) < 16
    states = _sacct_states(job_id)
    assert "REQUEUED" in states and states[-1] == "COMPLETED", states
    assert load_checkpoint(out / "checkpoints" / "last.pt")["step"] == 16
    reference_output, _ = reference.communicate(timeout=TIMEOUT_S)
    assert reference.returncode == 0, reference_output
    assert "resuming" not in reference_output
    # Bitwise in 8 of 9 runs measured; one run differed by 2e-6 (two gloo processes on a loaded
    # machine, cause not found), so the requeued run is held to the data-parallel tolerance.
    _assert_same_weights(out, tmp_path / "reference", atol=1e-5)


@pytest.mark.slow
def test_failed_job_reports_its_own_error(slurm_cluster, slurm_command, tmp_path) -> None:
    proc = subprocess.run(slurm_command("slurm_broken", tmp_path / "slurm", tmp_path / "submitit"),
                          capture_output=True, text=True, timeout=TIMEOUT_S)
    assert proc.returncode == 2
    # The job's own exception (raised inside the SLURM job), not only "the job failed".
    assert "fewer than one batch of 64" in proc.stderr, proc.stdout + proc.stderr
    assert re.search(r"SLURM job \d+ failed", proc.stderr)
