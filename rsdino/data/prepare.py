"""Turn an extracted class-per-folder dataset into a prepared folder (see docs/architecture.md).

The prepared folder holds ``train.txt``, ``test.txt``, ``classes.json``, ``stats.json`` (per-band
statistics of the training split) and ``dataset.json``, and ``splits/<name>/{train,test}.txt,
stats.json`` for every named split (``rsdino.data.splits``); it is built in a temporary folder and swapped
in whole, so it is either the previous complete folder or the new one.
"""

from __future__ import annotations

import logging
from pathlib import Path, PurePosixPath

from tqdm import tqdm

from rsdino.data.readers import read_band_count
from rsdino.data.splits import NAMED_SPLITS_DIR, list_scene_folder, stratified_split, write_split_file
from rsdino.data.stats import compute_band_stats
from rsdino.errors import UserError
from rsdino.io import atomic_directory, write_json

log = logging.getLogger(__name__)


class BandCountError(UserError, ValueError):
    """An image does not have the number of bands the dataset declares."""

    hint = "make datasets.<name>.bands in params.yaml list the files' bands"


def prepare_scene_dataset(
    raw_dir: Path,
    out_dir: Path,
    *,
    name: str,
    class_root: str,
    extensions: tuple[str, ...],
    bands: list[str],
    rgb_bands: list[str],
    gsd: float,
    native_size: int,
    test_fraction: float,
    seed: int,
    class_depth: int = 1,
    named_splits: dict[str, tuple[float, int]] | None = None,
    progress: bool = True,
) -> dict:
    """List, check, split and describe the dataset under ``raw_dir``; write the result to ``out_dir``.

    Args:
        raw_dir: the extracted dataset folder; split-file paths are relative to it.
        out_dir: the prepared folder to (re)write.
        name: dataset name recorded in ``dataset.json``.
        class_root: folder, relative to ``raw_dir`` (POSIX), holding one sub-folder per class.
        extensions: image suffixes to list (e.g. ``(".tif",)``).
        bands: band names in channel order; every image must have ``len(bands)`` bands.
        rgb_bands: the bands (a subset of ``bands``) that make the RGB composite, in R, G, B order.
        gsd: ground sampling distance in metres.
        native_size: image side in pixels as distributed.
        test_fraction: share of each class held out for testing.
        seed: seed of the stratified split.
        class_depth: folder levels below ``class_root`` where the class folders are (see
            ``list_scene_folder``).
        named_splits: ``{name: (test_fraction, seed)}`` of further splits, each written with its
            own training statistics under ``splits/<name>/``.
        progress: show progress bars.

    Returns:
        ``{"name", "n_train", "n_test", "n_classes"}``, plus ``"splits": {name: {"n_train",
        "n_test"}}`` when there are named splits.

    Raises:
        ValueError: an entry of ``rgb_bands`` is not in ``bands``.
        BandCountError: naming the first image whose band count differs from ``len(bands)``.
        FileNotFoundError: the class folder is missing or empty.
    """
    raw_dir, out_dir = Path(raw_dir), Path(out_dir)
    missing = [band for band in rgb_bands if band not in bands]
    if missing:
        raise ValueError(f"dataset {name}: rgb_bands {missing} are not among bands {bands}")
    found, classes = list_scene_folder(raw_dir / class_root, extensions, class_depth)
    prefix = PurePosixPath(class_root)
    items = [((prefix / rel).as_posix(), label) for rel, label in found]
    _check_band_counts(raw_dir, items, len(bands), progress=progress)
    train, test = stratified_split(items, test_fraction, seed)
    stats = compute_band_stats([raw_dir / rel for rel, _ in train], progress=progress)
    named = {split: stratified_split(items, fraction, split_seed)
             for split, (fraction, split_seed) in (named_splits or {}).items()}
    named_stats = {split: compute_band_stats([raw_dir / rel for rel, _ in parts[0]], progress=progress)
                   for split, parts in named.items()}
    metadata = {"name": name, "bands": list(bands), "rgb_bands": list(rgb_bands), "gsd": gsd,
                "native_size": native_size}
    with atomic_directory(out_dir) as tmp:
        write_split_file(tmp / "train.txt", train)
        write_split_file(tmp / "test.txt", test)
        for split, (split_train, split_test) in named.items():
            folder = tmp / NAMED_SPLITS_DIR / split
            write_split_file(folder / "train.txt", split_train)
            write_split_file(folder / "test.txt", split_test)
            write_json(folder / "stats.json", {"bands": list(bands), **named_stats[split]})
        write_json(tmp / "classes.json", classes)
        write_json(tmp / "stats.json", {"bands": list(bands), **stats})
        write_json(tmp / "dataset.json", metadata)
    summary = {"name": name, "n_train": len(train), "n_test": len(test), "n_classes": len(classes)}
    if named:
        summary["splits"] = {split: {"n_train": len(a), "n_test": len(b)} for split, (a, b) in named.items()}
    log.info("prepared %s in %s: %s", name, out_dir, summary)
    return summary


def _check_band_counts(raw_dir: Path, items: list[tuple[str, int]], expected: int, *, progress: bool) -> None:
    """Raise ``BandCountError`` naming the first image whose header does not show ``expected`` bands."""
    for rel, _ in tqdm(items, desc="checking bands", unit="img", disable=not progress):
        count = read_band_count(raw_dir / rel)
        if count != expected:
            raise BandCountError(f"{raw_dir / rel}: {count} bands, expected {expected}")
