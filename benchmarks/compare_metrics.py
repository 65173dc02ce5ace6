"""Compare two runs' metrics files value by value: are the numbers of the tables the same?

    python benchmarks/compare_metrics.py BEFORE/results/metrics AFTER/results/metrics

Every ``<evaluation>/<variant>.json`` under both folders is read; its ``metrics`` and ``baselines``
(the numbers the tables print) must be equal exactly (``==`` on the floats, no tolerance). What
differs between any two runs by design (MLflow run ids, git commit, creation time, data-version
digests of generated files) is not compared. Prints one line per file and a total; exits 1 when a
file is missing on one side or a number differs.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

COMPARED = ("metrics", "baselines")


def numbers(path: Path) -> dict:
    record = json.loads(path.read_text(encoding="utf-8"))
    return {key: record.get(key) for key in COMPARED}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("before", type=Path)
    parser.add_argument("after", type=Path)
    args = parser.parse_args(argv)
    names = {p.relative_to(args.before) for p in args.before.glob("*/*.json")}
    names |= {p.relative_to(args.after) for p in args.after.glob("*/*.json")}
    bad = 0
    for name in sorted(names):
        sides = [root / name for root in (args.before, args.after)]
        if not all(side.is_file() for side in sides):
            print(f"{name}: only in {'before' if sides[0].is_file() else 'after'}")
            bad += 1
            continue
        before, after = (numbers(side) for side in sides)
        if before == after:
            print(f"{name}: identical ({sum(len(v or {}) for v in before.values())} values)")
        else:
            print(f"{name}: DIFFERS\n  before {before}\n  after  {after}")
            bad += 1
    print(f"{len(names) - bad} of {len(names)} metrics files identical")
    return 1 if bad or not names else 0


if __name__ == "__main__":
    sys.exit(main())
