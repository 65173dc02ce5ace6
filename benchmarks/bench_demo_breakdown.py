"""Where the demo's wall time goes: per rule and job, split into start-up, data, training, evaluation.

Reads what a finished ``snakemake --profile local all`` left in a project folder:

- ``logs/benchmarks/<rule>/<wildcards>.tsv``, Snakemake's ``benchmark:`` file of every job (wall
  seconds ``s``, ``cpu_time``, ``max_rss`` MB);
- the newest ``.snakemake/log/*.snakemake.log`` for the overall wall time (first to last time stamp);
- ``models/<variant>/history.csv`` for the seconds the kNN probe took inside each pretraining job
  (column ``knn_probe_seconds``).

and measures, in fresh interpreters, the start-up every job pays before its work (``--imports``;
each repeated ``--repeat`` times, the minimum kept): with the warm server of a local run
(``logs/warm_server.log`` present, ``rsdino.launch.warm``) only the thin client (``import
rsdino.cli``), else importing the modules of its step (torch, timm, MLflow ...). Prints one
line per rule (jobs, summed wall and CPU seconds, start-up share), the phase totals (data, training,
evaluation, report) with their share of the summed job time, and the overall wall time.

On a loaded machine the absolute seconds swell; the shares (ratios) are what carries over. Under the
warm server the ``cpu_time`` of a job is its client's only (the step runs in a fork of the server).

    python benchmarks/bench_demo_breakdown.py --project /path/to/finished/demo [--imports]
"""

from __future__ import annotations

import argparse
import csv
import re
import subprocess
import sys
import time
from collections import defaultdict
from datetime import datetime
from pathlib import Path

#: Rule -> phase of the demo.
PHASES = {"make_demo": "data", "download": "data", "track": "data", "prepare": "data",
          "pretrain": "training", "evaluate": "evaluation", "report": "report", "dvc_record": "report"}
#: What each rule's CLI step imports before it works (start-up cost of one job).
STEP_IMPORTS = {
    "make_demo": "import rsdino.cli, rsdino.data.fake",
    "download": "import rsdino.cli, rsdino.data.download, mlflow",
    "track": "import rsdino.cli",
    "prepare": "import rsdino.cli, rsdino.data.registry, mlflow",
    "pretrain": "import rsdino.cli, rsdino.train.pretrain, rsdino.data.registry, mlflow",
    "evaluate": "import rsdino.cli, rsdino.evaluate.run, mlflow",
    "report": "import rsdino.cli, rsdino.report.tables, rsdino.report.plots, mlflow",
    "dvc_record": "import rsdino.cli",
}
#: What a job's client imports when a warm server runs the step.
WARM_CLIENT = "import rsdino.cli"
_STAMP = re.compile(r"^\[(\w{3} \w{3} +\d+ \d\d:\d\d:\d\d \d{4})\]")


def read_benchmarks(project: Path) -> list[dict]:
    """One dict per job: rule, job (wildcards path), wall s, cpu s, max_rss MB."""
    jobs = []
    for path in sorted((project / "logs" / "benchmarks").rglob("*.tsv")):
        rows = list(csv.DictReader(path.open(), delimiter="\t"))
        if not rows:
            continue
        rel = path.relative_to(project / "logs" / "benchmarks")
        rule = rel.parts[0] if len(rel.parts) > 1 else rel.stem
        row = rows[-1]

        def number(key: str, row: dict = row) -> float:
            try:
                return float(row.get(key, "nan"))
            except ValueError:
                return float("nan")

        jobs.append({"rule": rule, "job": str(rel.with_suffix("")), "wall": number("s"),
                     "cpu": number("cpu_time"), "rss": number("max_rss")})
    return jobs


def overall_wall(project: Path) -> float | None:
    """Seconds from the first to the last time stamp of the newest Snakemake log, or None."""
    logs = sorted((project / ".snakemake" / "log").glob("*.snakemake.log"), key=lambda p: p.stat().st_mtime)
    if not logs:
        return None
    stamps = [datetime.strptime(" ".join(m.group(1).split()), "%a %b %d %H:%M:%S %Y")
              for line in logs[-1].read_text().splitlines() if (m := _STAMP.match(line))]
    return (stamps[-1] - stamps[0]).total_seconds() if len(stamps) > 1 else None


def probe_seconds(project: Path) -> dict[str, float]:
    """Seconds the kNN probe took in each variant's pretraining (``models/<v>/history.csv``)."""
    out = {}
    for history in sorted((project / "models").glob("*/history.csv")):
        with history.open() as handle:
            values = [float(r["knn_probe_seconds"]) for r in csv.DictReader(handle)
                      if r.get("knn_probe_seconds")]
        if values:
            out[history.parent.name] = sum(values)
    return out


def import_seconds(statement: str, repeat: int, cwd: Path) -> float:
    """The fastest of ``repeat`` fresh interpreters running ``statement`` (start-up included)."""
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", statement], cwd=cwd, check=True, capture_output=True)
        best = min(best, time.perf_counter() - start)
    return best


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--project", type=Path, default=Path("."), help="a project folder after the demo")
    parser.add_argument("--imports", action="store_true", help="measure each step's start-up imports")
    parser.add_argument("--repeat", type=int, default=2, help="interpreters per import measurement")
    args = parser.parse_args(argv)
    jobs = read_benchmarks(args.project)
    if not jobs:
        raise SystemExit(f"{args.project}/logs/benchmarks: no Snakemake benchmark files (run the demo first)")
    warm = (args.project / "logs" / "warm_server.log").is_file()
    cold = ({rule: import_seconds(stmt, args.repeat, args.project) for rule, stmt in STEP_IMPORTS.items()}
            if args.imports else {})
    client = import_seconds(WARM_CLIENT, args.repeat, args.project) if args.imports and warm else None
    startup = {rule: client for rule in cold} if client is not None else cold
    by_rule: dict[str, list[dict]] = defaultdict(list)
    for job in jobs:
        by_rule[job["rule"]].append(job)
    total = sum(job["wall"] for job in jobs)
    print(f"{'rule':<12}{'jobs':>5}{'wall s':>10}{'cpu s':>10}{'share':>8}{'start-up s/job':>16}"
          f"{'start-up share':>16}")
    phases: dict[str, float] = defaultdict(float)
    startup_total = 0.0
    for rule, rule_jobs in sorted(by_rule.items(), key=lambda kv: -sum(j["wall"] for j in kv[1])):
        wall = sum(j["wall"] for j in rule_jobs)
        cpu = sum(j["cpu"] for j in rule_jobs)
        phases[PHASES.get(rule, "other")] += wall
        per_job = startup.get(rule)
        share = "" if per_job is None else f"{min(1.0, per_job * len(rule_jobs) / wall):.0%}"
        startup_total += (per_job or 0.0) * len(rule_jobs)
        print(f"{rule:<12}{len(rule_jobs):>5}{wall:>10.1f}{cpu:>10.1f}{wall / total:>8.0%}"
              f"{'' if per_job is None else f'{per_job:.1f}':>16}{share:>16}")
    print(f"\nsummed job wall time: {total:.1f} s (jobs run in parallel; see the overall wall time)")
    for phase, seconds in sorted(phases.items(), key=lambda kv: -kv[1]):
        print(f"  {phase:<11}{seconds:>9.1f} s  {seconds / total:>5.0%}")
    if startup:
        print(f"  of which start-up imports (estimated, {'warm server' if warm else 'cold'}): "
              f"{startup_total:.1f} s  {startup_total / total:.0%}")
    if warm and cold:
        avoided = sum(cold[j["rule"]] for j in jobs if j["rule"] in cold) - startup_total
        print(f"  start-up the warm server saved (cold imports per job, measured now): {avoided:.1f} s")
    probes = probe_seconds(args.project)
    if probes:
        spent = sum(probes.values())
        print(f"  of which kNN probes during pretraining: {spent:.1f} s  {spent / total:.0%} "
              f"({', '.join(f'{v}: {s:.1f}' for v, s in probes.items())})")
    print("\nslowest jobs:")
    for job in sorted(jobs, key=lambda j: -j["wall"])[:8]:
        print(f"  {job['job']:<48}{job['wall']:>8.1f} s  cpu {job['cpu']:>7.1f} s  rss {job['rss']:>6.0f} MB")
    wall = overall_wall(args.project)
    if wall is not None:
        print(f"\noverall wall time (Snakemake log): {wall:.0f} s = {wall / 60:.1f} min")


if __name__ == "__main__":
    main()
