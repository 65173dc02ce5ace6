"""SEN12MS-CR-TS: pair Sentinel-1 and Sentinel-2 patches, split by ROI, and write the JSON index.

On-disk layout (mediaTUM 1639953 / 1659251, all archives merged into one root)::

    <root>/ROIs<season>/<roi>/S1/<t>/s1_ROIs<season>_<roi>_ImgNo_<t>_<date>_patch_<id>.tif
    <root>/ROIs<season>/<roi>/S2/<t>/s2_ROIs<season>_<roi>_ImgNo_<t>_<date>_patch_<id>.tif

S1 holds 2 bands (VV, VH, sigma0 in dB, float32); S2 holds 13 L1C bands (B01 ... B12 with B8A and
B10, reflectance x 10000, uint16). An S1 and an S2 file form a pair when they share the key
``(season, roi, t, patch id)``. The acquisition dates of the two sensors differ, so the date is not
part of the key, and the order in which a folder lists its files is never used.

Train and validation are split by ROI (``ROIs<season>/<roi>``), so no ROI, and hence no place,
is in both splits. The index files are ``{train,val}_all.json`` holding ``[[s1_rel, s2_rel], ...]``
with POSIX paths relative to the data root, the format the DINOv2 SEN12MS loader reads.
"""

from __future__ import annotations

import os
import random
import re
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import date, timedelta
from pathlib import Path

import numpy as np

from rsdino.data.readers import ImageReadError, read_band_count
from rsdino.io import atomic_path, write_json

NAME_RE = re.compile(r"^(s[12])_ROIs(\d+)_(\d+)_ImgNo_(\d+)_(\d{4}-\d{2}-\d{2})_patch_(\d+)\.tif$")
S1_BANDS = ("VV", "VH")
S2_BANDS = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10", "B11", "B12")
BAND_COUNTS = {"s1": len(S1_BANDS), "s2": len(S2_BANDS)}
N_TIMES = 30
SPLITS = ("train", "val")

#: The 53 ROIs of the dataset, by season folder (DATASETS.md section 17).
ROIS: dict[str, tuple[str, ...]] = {
    "1158": ("106",),
    "1868": ("17", "36", "56", "73", "85", "100", "114", "119", "121", "126", "127", "139", "142", "143"),
    "1970": ("20", "21", "35", "40", "57", "65", "71", "82", "83", "91", "112", "116", "119", "128",
             "132", "133", "135", "139", "142", "144", "149"),
    "2017": ("8", "22", "25", "32", "49", "61", "63", "69", "75", "103", "108", "115", "116", "117",
             "130", "140", "146"),
}
#: The official validation ROIs (``region='all'`` in PatrickTUM/SEN12MS-CR-TS ``data/dataLoader.py``).
OFFICIAL_VAL_ROIS = ("ROIs2017/22", "ROIs1970/65", "ROIs2017/117", "ROIs1868/127", "ROIs1868/17")


@dataclass
class PairingReport:
    """What ``index_sen12mscrts`` found: pairs per split and every file it could not use.

    Attributes:
        root: the data root all paths are relative to.
        seed: seed of the ROI shuffle.
        val_fraction: requested fraction of ROIs in the validation split.
        n_files: files seen under ``root`` (hidden files and folders excluded).
        pairs: split -> sorted ``(s1_rel, s2_rel)`` pairs.
        rois: split -> sorted ROI names (``ROIs<season>/<roi>``).
        unpaired_s1: S1 files with no S2 file of the same key.
        unpaired_s2: S2 files with no S1 file of the same key.
        misnamed: files whose name does not match ``NAME_RE``.
        misplaced: files whose name disagrees with their folder (season, roi, sensor or t).
        duplicates: second and later files of one sensor with the same key (e.g. two dates).
        bad_bands: ``{"path", "error"}`` for files unreadable or with the wrong band count (only
            with ``check_bands``); pairs holding such a file are dropped.
    """

    root: str
    seed: int
    val_fraction: float
    n_files: int = 0
    pairs: dict[str, list[tuple[str, str]]] = field(default_factory=lambda: {s: [] for s in SPLITS})
    rois: dict[str, list[str]] = field(default_factory=lambda: {s: [] for s in SPLITS})
    unpaired_s1: list[str] = field(default_factory=list)
    unpaired_s2: list[str] = field(default_factory=list)
    misnamed: list[str] = field(default_factory=list)
    misplaced: list[str] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)
    bad_bands: list[dict[str, str]] = field(default_factory=list)

    def summary(self) -> dict[str, int]:
        """Counts of every list in the report."""
        counts = {f"pairs_{s}": len(p) for s, p in self.pairs.items()}
        counts |= {f"rois_{s}": len(r) for s, r in self.rois.items()}
        for name in ("unpaired_s1", "unpaired_s2", "misnamed", "misplaced", "duplicates", "bad_bands"):
            counts[name] = len(getattr(self, name))
        return counts | {"n_files": self.n_files}

    def to_json(self) -> dict:
        """The report as JSON-ready data (without the pair lists, which go to the index files)."""
        data = asdict(self)
        del data["pairs"]
        return data | {"summary": self.summary()}


def _walk(root: str) -> Iterator[tuple[str, list[str]]]:
    """Yield ``(relative folder, names of its files)`` for every folder under ``root``, hidden ones skipped.

    Uses ``os.scandir`` and the file type it reports (no ``stat`` call per file on Linux).
    """
    stack = [("", root)]
    while stack:
        rel, path = stack.pop()
        names = []
        with os.scandir(path) as entries:
            for entry in entries:
                if entry.name.startswith("."):
                    continue
                if entry.is_dir():
                    stack.append((f"{rel}{entry.name}/", entry.path))
                else:
                    names.append(entry.name)
        yield rel, names


def _folder_signature(rel: str) -> tuple[str, str, str, str] | None:
    """``(sensor, season, roi, t)`` of a folder ``ROIs<season>/<roi>/<S1|S2>/<t>/``, else ``None``."""
    parts = rel.split("/")
    if len(parts) != 5 or not parts[0].startswith("ROIs") or parts[2] not in ("S1", "S2"):
        return None
    return parts[2].lower(), parts[0][4:], parts[1], parts[3]


def _split_rois(rois: list[str], val_fraction: float, seed: int,
                val_rois: Iterable[str] | None) -> dict[str, list[str]]:
    """Assign each ROI to train or val: the given ``val_rois``, else a seeded shuffle."""
    if val_rois is not None:
        chosen = set(val_rois)
    else:
        if not 0.0 <= val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
        order = sorted(rois)
        random.Random(seed).shuffle(order)
        n_val = round(val_fraction * len(order))
        if val_fraction > 0 and len(order) > 1:
            n_val = min(max(n_val, 1), len(order) - 1)
        chosen = set(order[:n_val])
    return {"train": sorted(r for r in rois if r not in chosen),
            "val": sorted(r for r in rois if r in chosen)}


def index_sen12mscrts(root: Path, *, val_fraction: float = 0.2, seed: int = 0,
                      check_bands: bool = False, val_rois: Iterable[str] | None = None) -> PairingReport:
    """Find the S1/S2 pairs of a SEN12MS-CR-TS tree and split them by ROI.

    Args:
        root: the data root holding the ``ROIs<season>`` folders.
        val_fraction: fraction of the ROIs (not of the pairs) put in the validation split.
        seed: seed of the ROI shuffle; the same seed and tree give the same split.
        check_bands: also open every paired file's header (rasterio) and drop pairs with an
            unreadable file or a band count other than 2 (S1) or 13 (S2).
        val_rois: explicit validation ROIs (``"ROIs2017/22"`` ...; e.g. ``OFFICIAL_VAL_ROIS``),
            overriding ``val_fraction`` and ``seed``.

    Returns:
        A ``PairingReport``; nothing is written (see ``write_index``).

    Raises:
        FileNotFoundError: ``root`` is not a folder.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"SEN12MS-CR-TS folder {root} does not exist; download the s1_*/s2_* "
                                "archives from mediaTUM 1639953 (and 1659251 for test) and extract them "
                                "into it (see `rsdino download`)")
    report = PairingReport(root=str(root), seed=seed, val_fraction=val_fraction)
    # sensor -> (season, roi, t) -> patch id -> file name; a folder's files are checked together
    found: dict[str, dict[tuple[str, str, str], dict[str, str]]] = {"s1": {}, "s2": {}}
    match = NAME_RE.match
    for rel, names in _walk(str(root)):
        report.n_files += len(names)
        signature = _folder_signature(rel)
        patches: dict[str, str] = {}
        for name in names:
            m = match(name)
            if m is None:
                report.misnamed.append(rel + name)
            elif m.group(1, 2, 3, 4) != signature:
                report.misplaced.append(rel + name)
            else:
                patch = m.group(6)
                if patch in patches:
                    # keep the first name in sort order so the result does not depend on listing order
                    kept = min(name, patches[patch])
                    report.duplicates.append(rel + max(name, patches[patch]))
                    patches[patch] = kept
                else:
                    patches[patch] = name
        if patches:
            found[signature[0]][signature[1:]] = patches

    pairs: list[tuple[str, str, str]] = []  # (roi, s1_rel, s2_rel)
    s1, s2 = found["s1"], found["s2"]
    for folder in s1.keys() | s2.keys():
        season, roi, t = folder
        s1_names, s2_names = s1.get(folder, {}), s2.get(folder, {})
        s1_dir, s2_dir = f"ROIs{season}/{roi}/S1/{t}/", f"ROIs{season}/{roi}/S2/{t}/"
        roi_name = f"ROIs{season}/{roi}"
        pairs.extend((roi_name, s1_dir + s1_names[p], s2_dir + s2_names[p])
                     for p in s1_names.keys() & s2_names.keys())
        report.unpaired_s1.extend(s1_dir + s1_names[p] for p in s1_names.keys() - s2_names.keys())
        report.unpaired_s2.extend(s2_dir + s2_names[p] for p in s2_names.keys() - s1_names.keys())
    if check_bands:
        # check both files of a pair (no short-circuit) so every bad file is reported
        pairs = [p for p in pairs
                 if _bands_ok(root, p[1], "s1", report) & _bands_ok(root, p[2], "s2", report)]

    rois = sorted({roi for roi, _, _ in pairs})
    report.rois = _split_rois(rois, val_fraction, seed, val_rois)
    split_of = {roi: split for split, names in report.rois.items() for roi in names}
    for roi, s1_rel, s2_rel in pairs:
        report.pairs[split_of[roi]].append((s1_rel, s2_rel))
    for split in report.pairs:
        report.pairs[split].sort()
    for name in ("unpaired_s1", "unpaired_s2", "misnamed", "misplaced", "duplicates"):
        getattr(report, name).sort()
    report.bad_bands.sort(key=lambda item: item["path"])
    return report


def _bands_ok(root: Path, rel: str, sensor: str, report: PairingReport) -> bool:
    """Check the band count of one file from its header; record a failure in ``report``."""
    try:
        count = read_band_count(root / rel)
    except ImageReadError as err:
        report.bad_bands.append({"path": rel, "error": str(err)})
        return False
    if count != BAND_COUNTS[sensor]:
        report.bad_bands.append({"path": rel, "error": f"{count} bands, expected {BAND_COUNTS[sensor]}"})
        return False
    return True


def write_index(report: PairingReport, out_dir: Path) -> dict[str, Path]:
    """Write ``train_all.json``, ``val_all.json`` (``[[s1_rel, s2_rel], ...]``) and ``pairing_report.json``.

    Every file is written atomically. Returns the written paths by name (``train``, ``val``, ``report``).
    """
    out_dir = Path(out_dir)
    written = {}
    for split in SPLITS:
        written[split] = write_json(out_dir / f"{split}_all.json", [list(p) for p in report.pairs[split]])
    written["report"] = write_json(out_dir / "pairing_report.json", report.to_json())
    return written


def make_fake_sen12mscrts(root: Path, *, rois: Iterable[tuple[str, str]] = (("1158", "106"), ("1868", "17"),
                                                                             ("1970", "21"), ("2017", "8")),
                          n_times: int = 2, n_patches: int = 3, seed: int = 0, size: int = 8,
                          shuffle: bool = True, drop_s1: int = 0, drop_s2: int = 0) -> dict:
    """Write a tiny SEN12MS-CR-TS tree in the real layout and return what a correct index must find.

    S1 files are 2-band float32 sigma0 in dB within [-25, 0]; S2 files are 13-band uint16 in
    [0, 10000]; both ``size`` x ``size`` GeoTIFFs in EPSG:32632 with a 10 m pixel. The S2 date of a
    time point is one to three days after the S1 date, as in the real data. The real dataset has 30
    time points per ROI (the official loader needs all of them); ``n_times`` keeps tests small.

    Args:
        root: folder to write into (created).
        rois: ``(season, roi)`` pairs.
        n_times: time points per ROI.
        n_patches: patches per time point.
        seed: seed of the pixel values, the dates, the write order and the dropped files.
        size: patch side in pixels.
        shuffle: write the files in a random order (so creation order says nothing about pairing).
        drop_s1: number of S1 files left out (their S2 partners become unpaired).
        drop_s2: number of S2 files left out (their S1 partners become unpaired).

    Returns:
        ``{"pairs": sorted [(s1_rel, s2_rel)], "unpaired_s1": [...], "unpaired_s2": [...],
        "rois": ["ROIs<season>/<roi>", ...], "n_files": int}``.
    """
    import rasterio
    from affine import Affine
    from rasterio.crs import CRS

    root = Path(root)
    rng = np.random.default_rng(seed)
    slots = []
    for season, roi in rois:
        for t in range(n_times):
            s1_date = date(2018, 1, 1) + timedelta(days=12 * t)
            s2_date = s1_date + timedelta(days=int(rng.integers(1, 4)))
            for patch in range(n_patches):
                stem = f"ROIs{season}_{roi}_ImgNo_{t}"
                slots.append((f"ROIs{season}/{roi}/S1/{t}/s1_{stem}_{s1_date.isoformat()}_patch_{patch}.tif",
                              f"ROIs{season}/{roi}/S2/{t}/s2_{stem}_{s2_date.isoformat()}_patch_{patch}.tif"))
    if drop_s1 + drop_s2 > len(slots):
        raise ValueError(f"cannot drop {drop_s1 + drop_s2} files from {len(slots)} pairs")
    dropped = rng.permutation(len(slots))[: drop_s1 + drop_s2]
    no_s1, no_s2 = set(dropped[:drop_s1].tolist()), set(dropped[drop_s1:].tolist())
    files = []
    for i, (s1_rel, s2_rel) in enumerate(slots):
        if i not in no_s1:
            files.append(s1_rel)
        if i not in no_s2:
            files.append(s2_rel)
    if shuffle:
        files = [files[i] for i in rng.permutation(len(files))]
    profile = {"driver": "GTiff", "width": size, "height": size, "crs": CRS.from_epsg(32632),
               "transform": Affine(10.0, 0.0, 500000.0, 0.0, -10.0, 5000000.0)}
    for rel in files:
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if "/S1/" in rel:
            data = rng.uniform(-25.0, 0.0, (2, size, size)).astype(np.float32)
        else:
            data = rng.integers(0, 10001, (13, size, size), dtype=np.uint16)
        with atomic_path(path, suffix=".tif") as tmp, \
                rasterio.open(tmp, "w", count=data.shape[0], dtype=data.dtype, **profile) as dst:
            dst.write(data)
    return {
        "pairs": sorted(p for i, p in enumerate(slots) if i not in no_s1 | no_s2),
        "unpaired_s1": sorted(slots[i][0] for i in no_s2),
        "unpaired_s2": sorted(slots[i][1] for i in no_s1),
        "rois": sorted({f"ROIs{season}/{roi}" for season, roi in rois}),
        "n_files": len(files),
    }
