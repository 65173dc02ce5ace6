"""BigEarthNet v1.0: read Sentinel-2 and Sentinel-1 patch folders and their multi-labels.

On-disk layout (Zenodo 12687186; S2 extracts to ``BigEarthNet-v1.0/``, S1 to ``BigEarthNet-S1-v1.0/``)::

    <S2 root>/<P>/<P>_B01.tif ... <P>_B12.tif, <P>_B8A.tif, <P>_labels_metadata.json
    <S1 root>/<Q>/<Q>_VV.tif, <Q>_VH.tif, <Q>_labels_metadata.json

S2: 12 single-band uint16 GeoTIFFs (L2A reflectance x 10000, no B10) at 120 px (B02, B03, B04,
B08; 10 m), 60 px (B05, B06, B07, B8A, B11, B12; 20 m) and 20 px (B01, B09; 60 m). They are
resampled (bilinear) to one 120 x 120 grid in the order ``S2_BANDS``. S1: VV and VH sigma0 in dB,
float32, 120 px. Labels are CORINE Land Cover level-3 names in the JSON ``labels`` list.

Two nomenclatures: the original 43 classes (``LABELS_43``, in the order of BigEarthNet's
``label_indices.json``, as torchgeo) and the 19 classes of Sumbul et al. 2021 (``LABELS_19``, in the
order of that paper and DATASETS.md section 19). ``LABEL_43_TO_19`` maps each 43-class name to a
19-class index, or ``None`` for the 11 classes the 19-class nomenclature drops.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import rasterio

from rsdino.data.readers import read_band_files
from rsdino.errors import UserError

#: S2 band order of the stacked array (B8A after B08, as in the Sentinel-2 band numbering; no B10).
S2_BANDS = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B11", "B12")
S2_RGB_BANDS = ("B04", "B03", "B02")
#: S1 band order of the stacked array.
S1_BANDS = ("VV", "VH")
PATCH_SIZE = 120

#: The 43 CORINE level-3 names of BigEarthNet v1.0, in ``label_indices.json`` order.
LABELS_43 = (
    "Continuous urban fabric", "Discontinuous urban fabric", "Industrial or commercial units",
    "Road and rail networks and associated land", "Port areas", "Airports", "Mineral extraction sites",
    "Dump sites", "Construction sites", "Green urban areas", "Sport and leisure facilities",
    "Non-irrigated arable land", "Permanently irrigated land", "Rice fields", "Vineyards",
    "Fruit trees and berry plantations", "Olive groves", "Pastures",
    "Annual crops associated with permanent crops", "Complex cultivation patterns",
    "Land principally occupied by agriculture, with significant areas of natural vegetation",
    "Agro-forestry areas", "Broad-leaved forest", "Coniferous forest", "Mixed forest", "Natural grassland",
    "Moors and heathland", "Sclerophyllous vegetation", "Transitional woodland/shrub",
    "Beaches, dunes, sands", "Bare rock", "Sparsely vegetated areas", "Burnt areas", "Inland marshes",
    "Peatbogs", "Salt marshes", "Salines", "Intertidal flats", "Water courses", "Water bodies",
    "Coastal lagoons", "Estuaries", "Sea and ocean",
)

#: The 19 classes, each with the 43-class names it groups.
_GROUPS_19: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("Urban fabric", ("Continuous urban fabric", "Discontinuous urban fabric")),
    ("Industrial or commercial units", ("Industrial or commercial units",)),
    ("Arable land", ("Non-irrigated arable land", "Permanently irrigated land", "Rice fields")),
    ("Permanent crops", ("Vineyards", "Fruit trees and berry plantations", "Olive groves",
                         "Annual crops associated with permanent crops")),
    ("Pastures", ("Pastures",)),
    ("Complex cultivation patterns", ("Complex cultivation patterns",)),
    ("Land principally occupied by agriculture, with significant areas of natural vegetation",
     ("Land principally occupied by agriculture, with significant areas of natural vegetation",)),
    ("Agro-forestry areas", ("Agro-forestry areas",)),
    ("Broad-leaved forest", ("Broad-leaved forest",)),
    ("Coniferous forest", ("Coniferous forest",)),
    ("Mixed forest", ("Mixed forest",)),
    ("Natural grassland and sparsely vegetated areas", ("Natural grassland", "Sparsely vegetated areas")),
    ("Moors, heathland and sclerophyllous vegetation", ("Moors and heathland", "Sclerophyllous vegetation")),
    ("Transitional woodland, shrub", ("Transitional woodland/shrub",)),
    ("Beaches, dunes, sands", ("Beaches, dunes, sands",)),
    ("Inland wetlands", ("Inland marshes", "Peatbogs")),
    ("Coastal wetlands", ("Salt marshes", "Salines")),
    ("Inland waters", ("Water courses", "Water bodies")),
    ("Marine waters", ("Coastal lagoons", "Estuaries", "Sea and ocean")),
)
LABELS_19 = tuple(name for name, _ in _GROUPS_19)
#: 43-class name -> 19-class index, ``None`` where the 19-class nomenclature drops the class.
LABEL_43_TO_19: dict[str, int | None] = {name: None for name in LABELS_43} | {
    member: index for index, (_, members) in enumerate(_GROUPS_19) for member in members
}
NOMENCLATURES = {43: LABELS_43, 19: LABELS_19}


class BigEarthNetError(UserError, ValueError):
    """A BigEarthNet patch folder is incomplete or its metadata is malformed."""


def labels_to_multihot(labels: list[str], nomenclature: int = 19) -> np.ndarray:
    """Multi-hot float32 vector of 43-class label names in the 43- or 19-class nomenclature.

    With ``nomenclature=19``, labels the 19-class nomenclature drops are ignored, so a patch with
    only such labels gets an all-zero vector (57 patches of the dataset do).

    Raises:
        ValueError: an unknown label name or nomenclature.
    """
    if nomenclature not in NOMENCLATURES:
        raise ValueError(f"nomenclature must be 43 or 19, got {nomenclature}")
    target = np.zeros(len(NOMENCLATURES[nomenclature]), dtype=np.float32)
    for label in labels:
        if label not in LABEL_43_TO_19:
            raise ValueError(f"unknown BigEarthNet label {label!r}")
        index = LABELS_43.index(label) if nomenclature == 43 else LABEL_43_TO_19[label]
        if index is not None:
            target[index] = 1.0
    return target


def read_patch_metadata(folder: Path) -> dict:
    """Load ``<folder>/<folder name>_labels_metadata.json``.

    Raises:
        FileNotFoundError: the JSON is missing (naming it).
        BigEarthNetError: it is malformed or has no ``labels`` list (naming it).
    """
    folder = Path(folder)
    path = folder / f"{folder.name}_labels_metadata.json"
    if not path.is_file():
        raise FileNotFoundError(f"BigEarthNet metadata {path} is missing")
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise BigEarthNetError(f"{path}: malformed metadata JSON ({err})") from err
    if not isinstance(meta, dict) or not isinstance(meta.get("labels"), list):
        raise BigEarthNetError(f"{path}: no 'labels' list")
    return meta


def _read_patch(folder: Path, bands: tuple[str, ...], reference_band: str) -> dict:
    """Stack the band files of one patch folder and attach its georeference and labels."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"BigEarthNet patch folder {folder} does not exist")
    paths = [folder / f"{folder.name}_{band}.tif" for band in bands]
    for path in paths:
        if not path.is_file():
            raise FileNotFoundError(f"BigEarthNet band file {path} is missing")
    image = read_band_files(paths, PATCH_SIZE)
    with rasterio.open(folder / f"{folder.name}_{reference_band}.tif") as src:
        crs = src.crs.to_string() if src.crs else None
        transform = tuple(src.transform)[:6]
    meta = read_patch_metadata(folder)
    labels = list(meta["labels"])
    return {"image": image, "bands": list(bands), "name": folder.name, "crs": crs, "transform": transform,
            "labels": labels, "label_43": labels_to_multihot(labels, 43),
            "label_19": labels_to_multihot(labels, 19), "metadata": meta}


def read_s2_patch(folder: Path) -> dict:
    """Read a BigEarthNet S2 patch folder as a dict sample.

    Returns:
        ``image`` (12, 120, 120) uint16 in ``S2_BANDS`` order (20 and 60 m bands resampled
        bilinearly to 120 px), ``bands``, ``name``, ``crs`` (e.g. ``"EPSG:32635"``) and ``transform``
        of the 10 m grid (from B02), ``labels`` (43-class names), ``label_43`` / ``label_19``
        (multi-hot float32) and the raw ``metadata``.

    Raises:
        FileNotFoundError: the folder, a band file or the metadata is missing (naming it).
        rsdino.data.readers.ImageReadError: a band file is corrupt.
        BigEarthNetError: the metadata is malformed.
    """
    return _read_patch(folder, S2_BANDS, "B02")


def read_s1_patch(folder: Path) -> dict:
    """Read a BigEarthNet S1 patch folder as a dict sample.

    Returns:
        the same keys as ``read_s2_patch`` with ``image`` a (2, 120, 120) float32 array of sigma0 in
        dB in ``S1_BANDS`` order (VV, VH); ``metadata`` holds ``corresponding_s2_patch``.
    """
    return _read_patch(folder, S1_BANDS, "VV")
