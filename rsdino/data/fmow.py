"""fMoW-RGB: turn the per-image metadata JSON files into ``train.csv`` / ``val.csv`` and a location index.

``rsdino.data.fmow_dataset`` builds the prepared folder of task ``fmow`` around these files.

On-disk layout (``s3://spacenet-dataset/Hosted-Datasets/fmow/fmow-rgb``)::

    <root>/{train,val}/<category>/<category>_<loc>/<category>_<loc>_<t>_rgb.jpg
                                                  <category>_<loc>_<t>_rgb.json

Each JSON holds ``gsd`` (m), ``timestamp`` (ISO ``YYYY-MM-DDTHH:MM:SSZ``) and ``bounding_boxes`` (a
list of ``{"box": [x, y, w, h], "category": str, "ID": int}``, or a single such dict), among many
other fields. The label of an image is the category of its first box.

Labels: 63 names, ``false_detection`` at index 0 (as in SatDINO) followed by the 62 fMoW categories
in the order of the fMoW README.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
from datetime import datetime
from pathlib import Path

import numpy as np

from rsdino.errors import UserError
from rsdino.io import atomic_path, write_json, write_text

SPLITS = ("train", "val")
CATEGORIES = (
    "airport", "airport_hangar", "airport_terminal", "amusement_park", "aquaculture", "archaeological_site",
    "barn", "border_checkpoint", "burial_site", "car_dealership", "construction_site", "crop_field", "dam",
    "debris_or_rubble", "educational_institution", "electric_substation", "factory_or_powerplant",
    "fire_station", "flooded_road", "fountain", "gas_station", "golf_course",
    "ground_transportation_station", "helipad", "hospital", "impoverished_settlement", "interchange",
    "lake_or_pond", "lighthouse", "military_facility", "multi-unit_residential", "nuclear_powerplant",
    "office_building", "oil_or_gas_facility", "park", "parking_lot_or_garage", "place_of_worship",
    "police_station", "port", "prison", "race_track", "railway_bridge", "recreational_facility",
    "road_bridge", "runway", "shipyard", "shopping_mall", "single-unit_residential", "smokestack",
    "solar_farm", "space_facility", "stadium", "storage_tank", "surface_mine", "swimming_pool",
    "toll_booth", "tower", "tunnel_opening", "waste_disposal", "water_treatment_facility", "wind_farm",
    "zoo",
)
LABELS = ("false_detection", *CATEGORIES)
LABEL_INDEX = {name: i for i, name in enumerate(LABELS)}
COLUMNS = ("id", "image_path", "split", "category_name", "category_idx", "gsd", "year", "month", "hour",
           "location", "timestamp", "box")
# <category>_<loc>_<t>_rgb.json, the category itself may hold underscores
JSON_RE = re.compile(r"^(?P<location>.+_\d+)_(?P<t>\d+)_rgb\.json$")


class FmowMetadataError(UserError, ValueError):
    """A metadata JSON file is malformed or lacks a field the CSV needs."""


def _read_metadata(path: Path) -> dict:
    """Load one metadata JSON; raise ``FmowMetadataError`` naming the file on any problem."""
    try:
        with open(path, encoding="utf-8") as handle:
            meta = json.load(handle)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise FmowMetadataError(f"{path}: malformed metadata JSON ({err})") from err
    if not isinstance(meta, dict):
        raise FmowMetadataError(f"{path}: metadata JSON is not an object")
    return meta


def _row(meta: dict, path: Path, image_id: str, image_rel: str, split: str) -> dict:
    """One CSV row from a metadata dict; ``path`` only names the file in errors."""
    boxes = meta.get("bounding_boxes")
    if isinstance(boxes, dict):
        boxes = [boxes]
    if not boxes or not isinstance(boxes, list) or not isinstance(boxes[0], dict):
        raise FmowMetadataError(f"{path}: no bounding_boxes")
    category = boxes[0].get("category")
    if category not in LABEL_INDEX:
        raise FmowMetadataError(f"{path}: unknown category {category!r}")
    box = boxes[0].get("box")
    if not isinstance(box, list) or len(box) != 4 or not all(isinstance(v, int | float) for v in box):
        raise FmowMetadataError(f"{path}: bounding box {box!r} is not [x, y, w, h]")
    try:
        gsd = float(meta["gsd"])
        stamp = datetime.fromisoformat(str(meta["timestamp"]).replace("Z", "+00:00"))
    except KeyError as err:
        raise FmowMetadataError(f"{path}: missing field {err}") from err
    except (TypeError, ValueError) as err:
        raise FmowMetadataError(f"{path}: bad gsd or timestamp ({err})") from err
    return {"id": image_id, "image_path": image_rel, "split": split, "category_name": category,
            "category_idx": LABEL_INDEX[category], "gsd": gsd, "year": stamp.year, "month": stamp.month,
            "hour": stamp.hour, "timestamp": stamp.isoformat(), "box": " ".join(str(int(v)) for v in box)}


def _scan_split(root: Path, split: str) -> tuple[list[dict], list[str]]:
    """Rows of one split and the JSON files whose image is missing."""
    rows, missing = [], []
    split_dir = root / split
    for category in sorted(e.name for e in os.scandir(split_dir) if e.is_dir() and e.name[0] != "."):
        for loc in sorted((e for e in os.scandir(split_dir / category) if e.is_dir() and e.name[0] != "."),
                          key=lambda e: e.name):
            names = {e.name for e in os.scandir(loc.path)}
            for name in names:
                match = JSON_RE.match(name)
                if match is None:
                    continue
                stem = name.removesuffix(".json")
                image_id = stem.removesuffix("_rgb")
                rel = f"{split}/{category}/{loc.name}/{stem}.jpg"
                if f"{stem}.jpg" not in names:
                    missing.append(rel)
                    continue
                path = Path(loc.path) / name
                row = _row(_read_metadata(path), path, image_id, rel, split)
                row["location"], row["_t"] = match["location"], int(match["t"])
                rows.append(row)
    return rows, missing


def prepare_fmow_csv(root: Path, out_dir: Path, *, splits: tuple[str, ...] = SPLITS) -> dict:
    """Write ``<split>.csv`` for each split and ``locations.json`` from the fMoW-RGB metadata.

    CSV columns: ``id, image_path, split, category_name, category_idx, gsd, year, month, hour,
    location, timestamp, box`` (``image_path`` relative to ``root``, POSIX; ``category_idx`` indexes
    ``LABELS``; ``gsd`` in metres per pixel; the time is UTC, ``timestamp`` ISO 8601; ``location``
    ``<category>_<n>``; ``box`` the labelled bounding box ``x y w h`` in pixels). Rows are sorted
    by category, location number and time index. ``locations.json`` maps
    ``split -> location -> [image ids]`` in chronological order, for temporal views. Images whose
    JSON has no ``.jpg`` beside it are skipped and listed in the returned summary. Every file is
    written atomically.

    Returns:
        ``{"counts": {split: n}, "missing_images": [...], "labels": [...], "outputs": [...]}``.

    Raises:
        FileNotFoundError: ``root/<split>`` is missing.
        FmowMetadataError: naming the JSON file that is malformed or lacks a needed field.
    """
    root, out_dir = Path(root), Path(out_dir)
    for split in splits:
        if not (root / split).is_dir():
            raise FileNotFoundError(f"fMoW folder {root / split} does not exist; download fmow-rgb from "
                                    f"s3://spacenet-dataset/Hosted-Datasets/fmow/fmow-rgb into {root}")
    counts, missing, locations, outputs = {}, [], {}, []
    for split in splits:
        rows, split_missing = _scan_split(root, split)
        missing += split_missing
        rows.sort(key=lambda r: (r["category_name"], int(r["location"].rsplit("_", 1)[1]), r["_t"]))
        by_location: dict[str, list[dict]] = {}
        for row in rows:
            by_location.setdefault(row["location"], []).append(row)
        locations[split] = {loc: [r["id"] for r in sorted(group, key=lambda r: (r["timestamp"], r["_t"]))]
                            for loc, group in by_location.items()}
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=COLUMNS, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        outputs.append(write_text(out_dir / f"{split}.csv", buffer.getvalue()))
        counts[split] = len(rows)
    outputs.append(write_json(out_dir / "locations.json", locations))
    return {"counts": counts, "missing_images": sorted(missing), "labels": list(LABELS),
            "outputs": [str(p) for p in outputs]}


def make_fake_fmow(root: Path, *, categories: tuple[str, ...] = ("airport", "crop_field", "zoo"),
                   n_locations: int = 2, n_times: int = 2, splits: tuple[str, ...] = SPLITS,
                   size: int = 16, seed: int = 0) -> dict:
    """Write a tiny fMoW-RGB tree (``size`` x ``size`` JPEGs and their metadata JSON) in the real layout.

    Each JSON carries the fields listed for fake data in DATASETS.md (``bounding_boxes``, ``gsd``,
    ``timestamp``, ``utm``, ``country_code``, ``cloud_cover``, image size, angles). Time points of one
    location are written with timestamps in reverse order of ``t`` every other location, so
    chronological order and ``t`` order differ. The first image of each split stores its boxes as
    a single dict rather than a list (the real data does both).

    Returns:
        ``{split: [image ids]}`` of what was written.
    """
    from PIL import Image

    root = Path(root)
    rng = np.random.default_rng(seed)
    written: dict[str, list[str]] = {}
    for split in splits:
        written[split] = []
        for category in categories:
            for loc in range(n_locations):
                folder = root / split / category / f"{category}_{loc}"
                folder.mkdir(parents=True, exist_ok=True)
                for t in range(n_times):
                    image_id = f"{category}_{loc}_{t}"
                    order = n_times - 1 - t if loc % 2 else t
                    stamp = (f"{2015 + order}-{1 + (loc + t) % 12:02d}-1{t % 10}"
                             f"T{(7 + loc + t) % 24:02d}:30:00Z")
                    meta = _fake_metadata(category, stamp, size, rng, as_list=bool(written[split]))
                    pixels = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
                    with atomic_path(folder / f"{image_id}_rgb.jpg", suffix=".jpg") as tmp:
                        Image.fromarray(pixels).save(tmp, format="JPEG")
                    write_json(folder / f"{image_id}_rgb.json", meta)
                    written[split].append(image_id)
    return written


def _fake_metadata(category: str, stamp: str, size: int, rng: np.random.Generator, as_list: bool) -> dict:
    """Metadata of one fake image; its single box is a dict unless ``as_list``."""
    box = {"box": [1, 1, size // 2, size // 2], "category": category, "ID": int(rng.integers(1_000_000))}
    return {"bounding_boxes": [box] if as_list else box, "gsd": round(float(rng.uniform(0.3, 2.0)), 4),
            "timestamp": stamp, "utm": "15R", "country_code": "USA", "cloud_cover": 0, "img_width": size,
            "img_height": size, "scan_direction": "Forward", "off_nadir_angle_dbl": 10.0,
            "target_azimuth_dbl": 90.0, "sun_azimuth_dbl": 150.0, "sun_elevation_dbl": 45.0}
