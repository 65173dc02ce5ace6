"""Shared helpers of the workflow tests."""

import pytest


def _job_counts(output: str) -> dict[str, int]:
    """The "Job stats" table of a Snakemake plan: rule -> number of jobs (without the total)."""
    lines = output.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("Job stats:"))
    counts = {}
    for line in lines[start + 3:]:
        parts = line.split()
        if len(parts) != 2 or not parts[1].isdigit():
            break
        counts[parts[0]] = int(parts[1])
    counts.pop("total", None)
    return counts


@pytest.fixture
def job_counts():
    """Parse the job counts of a Snakemake plan."""
    return _job_counts
