"""13-band 120 px patches per second per worker: the chip store against the per-file rasterio path.

    python benchmarks/bench_chip_store.py [--work /tmp/chipbench] [--per-class 40] [--rounds 5]

Writes the fake EuroSAT-MS (``rsdino make-demo``'s generator: 13-band uint16 GeoTIFFs, here 120 px
like BigEarthNet's 10 m grid; /work/shared/data has no 13-band 120 px tiles), prepares it, builds
its chip store (``rsdino.data.chips``) and reads every training item through each path in one
process with one thread (= one DataLoader worker), in alternating rounds of a seeded random order
so a busy machine slows both alike. The items are checked equal. Prints patches/s of each and the
ratio (the issue's acceptance: at least 5).
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

from rsdino.data.chips import build_chip_store, chipped
from rsdino.data.extract import extract_archive
from rsdino.data.fake.eurosat import BANDS, ROOT, make_fake_eurosat_ms
from rsdino.data.prepare import prepare_scene_dataset
from rsdino.data.scene import SceneDataset


def _dataset(work: Path, per_class: int, size: int) -> tuple[SceneDataset, Path]:
    raw, prepared = work / f"raw_{per_class}_{size}", work / f"prepared_{per_class}_{size}"
    if not (prepared / "chips" / "index.json").is_file():
        archive = work / f"eurosat_{per_class}_{size}.tar"
        make_fake_eurosat_ms(archive, n_per_class=per_class, size=size, seed=0)
        extract_archive(archive, raw)
        prepare_scene_dataset(raw, prepared, name="bench", class_root=ROOT, extensions=(".tif",), bands=BANDS,
                              rgb_bands=["B04", "B03", "B02"], gsd=10.0, native_size=size, test_fraction=0.2,
                              seed=0, progress=False)
        build_chip_store(SceneDataset(raw, prepared, "train"), prepared / "chips", progress=False)
    return SceneDataset(raw, prepared, "train"), prepared


def _rate(dataset, order: list[int]) -> float:  # noqa: ANN001
    start = time.perf_counter()
    for i in order:
        dataset[i]
    return len(order) / (time.perf_counter() - start)


def main() -> None:
    """Run the comparison and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/rsdino_chipbench"))
    parser.add_argument("--per-class", type=int, default=40,
                        help="images per class (10 classes, 80 %% of them training)")
    parser.add_argument("--size", type=int, default=120)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(1)
    files, prepared = _dataset(args.work, args.per_class, args.size)
    chips = chipped(files, prepared)
    order = torch.randperm(len(files), generator=torch.Generator().manual_seed(0)).tolist()
    assert all(torch.equal(files[i]["image"], chips[i]["image"]) for i in order[:50]), "the paths differ"
    rates: dict[str, list[float]] = {"rasterio": [], "chips": []}
    for _ in range(args.rounds):
        rates["rasterio"].append(_rate(files, order))
        rates["chips"].append(_rate(chips, order))
    med = {k: statistics.median(v) for k, v in rates.items()}
    print(f"{len(order)} patches of {len(BANDS)} bands x {args.size} px, median of {args.rounds} rounds, "
          "1 thread")
    for name, rate in med.items():
        print(f"{name:>9}: {rate:9.0f} patches/s  (rounds: {', '.join(f'{r:.0f}' for r in rates[name])})")
    print(f"chips / rasterio = {med['chips'] / med['rasterio']:.1f}x")


if __name__ == "__main__":
    main()
