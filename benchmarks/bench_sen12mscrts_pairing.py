"""SEN12MS-CR-TS pairing speed and correctness: rsdino's keyed index vs the reference's glob-and-zip.

    python benchmarks/bench_sen12mscrts_pairing.py [--patches 126] [--drop 0.005] [--repeat 3]

Writes a tree of zero-byte files in the real layout (53 ROIs x 30 time points x ``--patches``
patches per sensor, ~400,000 files at the default), written in shuffled order, with a fraction
``--drop`` of the S2 files left out so some folders hold more S1 than S2 files. Pairing without
band checks only needs the names, so empty files are enough.

The baseline is the reference loaders' approach: per ROI and time point, ``glob`` the S1 and the
S2 folder, natural-sort each listing and zip them. Prints the best time of each over ``--repeat``
runs, their ratio, and how many of the true pairs each finds (a pair is right when both files
carry the same ``(season, roi, t, patch)``).
"""

import argparse
import glob
import os
import re
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from rsdino.data.sen12mscrts import NAME_RE, ROIS, index_sen12mscrts


def make_empty_tree(root: Path, n_patches: int, drop: float, seed: int = 0) -> set[tuple[str, str]]:
    """Write the zero-byte tree; return the true pairs (relative paths)."""
    rng = np.random.default_rng(seed)
    slots = []
    folders = set()
    for season, rois in ROIS.items():
        for roi in rois:
            for t in range(30):
                s1_date = f"2018-{1 + t % 12:02d}-{1 + t % 28:02d}"
                s2_date = f"2018-{1 + t % 12:02d}-{2 + t % 27:02d}"
                for sensor in ("S1", "S2"):
                    folders.add(root / f"ROIs{season}/{roi}/{sensor}/{t}")
                for patch in range(n_patches):
                    stem = f"ROIs{season}_{roi}_ImgNo_{t}"
                    slots.append((f"ROIs{season}/{roi}/S1/{t}/s1_{stem}_{s1_date}_patch_{patch}.tif",
                                  f"ROIs{season}/{roi}/S2/{t}/s2_{stem}_{s2_date}_patch_{patch}.tif"))
    dropped = set(rng.permutation(len(slots))[: round(drop * len(slots))].tolist())
    files = [s1 for s1, _ in slots] + [s2 for i, (_, s2) in enumerate(slots) if i not in dropped]
    for folder in folders:
        folder.mkdir(parents=True, exist_ok=True)
    for i in rng.permutation(len(files)):
        os.close(os.open(root / files[i], os.O_CREAT | os.O_WRONLY, 0o644))
    return {pair for i, pair in enumerate(slots) if i not in dropped}


def _natural_key(name: str) -> list:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def glob_zip_baseline(root: Path) -> list[tuple[str, str]]:
    """The reference approach: per ROI and time point, zip the natural-sorted S1 and S2 listings."""
    pairs = []
    for season, rois in ROIS.items():
        for roi in rois:
            for t in range(30):
                base = f"{root}/ROIs{season}/{roi}"
                s1 = sorted(glob.glob(f"{base}/S1/{t}/*.tif"), key=_natural_key)
                s2 = sorted(glob.glob(f"{base}/S2/{t}/*.tif"), key=_natural_key)
                # the reference assumes equal counts; zip truncates where they differ
                pairs.extend((os.path.relpath(a, root), os.path.relpath(b, root))
                             for a, b in zip(s1, s2, strict=False))
    return pairs


def _key(rel: str) -> tuple[str, ...]:
    sensor, season, roi, t, _date, patch = NAME_RE.match(os.path.basename(rel)).groups()
    return season, roi, t, patch


def n_correct(pairs: list[tuple[str, str]], truth: set[tuple[str, str]]) -> int:
    """Pairs found that are true pairs (checked both against the truth and by key)."""
    return sum(1 for s1, s2 in pairs if (s1, s2) in truth and _key(s1) == _key(s2))


def best_time(fn, repeat: int):
    best, result = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patches", type=int, default=126, help="patches per sensor and time point")
    parser.add_argument("--drop", type=float, default=0.005, help="fraction of S2 files left out")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench_sen12mscrts_"))
    try:
        start = time.perf_counter()
        truth = make_empty_tree(tmp, args.patches, args.drop)
        n_files = sum(len(files) for _, _, files in os.walk(tmp))
        print(f"tree: {n_files:,} empty files, {len(truth):,} true pairs, "
              f"written in {time.perf_counter() - start:.1f} s ({tmp})")

        ours_s, report = best_time(lambda: index_sen12mscrts(tmp, val_fraction=0.2, seed=0), args.repeat)
        base_s, base_pairs = best_time(lambda: glob_zip_baseline(tmp), args.repeat)
        ours = report.pairs["train"] + report.pairs["val"]
        print(f"rsdino index_sen12mscrts: {ours_s:.2f} s  pairs {len(ours):,}  "
              f"correct {n_correct(ours, truth):,}/{len(truth):,}  "
              f"unpaired s1 {len(report.unpaired_s1):,} s2 {len(report.unpaired_s2):,}")
        print(f"baseline glob + zip     : {base_s:.2f} s  pairs {len(base_pairs):,}  "
              f"correct {n_correct(base_pairs, truth):,}/{len(truth):,}")
        print(f"ratio baseline/rsdino time: {base_s / ours_s:.2f}x (higher is better for rsdino)")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
