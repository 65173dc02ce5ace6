"""A tiny fake Million-AID + SkyScript collection in the real layouts (JPEGs of varying sizes).

- ``millionaid/train/<L1>/<L2>/<L3>/P<7 digits>.jpg`` (or one level less where no L3 exists) and the
  flat ``millionaid/test/P<7 digits>.jpg``;
- ``skyscript/images<k>/<w|n|r><OSM id>_<source>_<yy>.jpg`` and the caption CSV
  ``skyscript/SkyScript_train_top30pct_filtered_by_CLIP_openai.csv`` (``filepath,title,...``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from rsdino.data.fake.common import pil_bytes, write_archive

MILLIONAID_TRAIN = [
    "agriculture_land/grassland/meadow",
    "water_area/beach",
    "transportation_land/airport_area/runway",
]


def make_fake_image_lists(
    out_archive: Path, *, n_per_folder: int = 2, min_size: int = 12, max_size: int = 24, seed: int = 0
) -> str:
    """Write the fake collection archive and return its sha256 (byte-reproducible)."""
    rng = np.random.default_rng(seed)
    members: dict[str, bytes] = {}

    def jpeg() -> bytes:
        height, width = (int(v) for v in rng.integers(min_size, max_size + 1, 2))
        colour = rng.integers(40, 216, 3)
        image = colour + rng.normal(0, 12, (height, width, 3))
        return pil_bytes(np.clip(image, 0, 255).astype(np.uint8), "JPEG")

    ident = 115918
    for folder in MILLIONAID_TRAIN:
        for _ in range(n_per_folder):
            members[f"millionaid/train/{folder}/P{ident:07d}.jpg"] = jpeg()
            ident += 1
    for _ in range(n_per_folder):
        members[f"millionaid/test/P{ident + 600000:07d}.jpg"] = jpeg()
        ident += 1
    rows = ["filepath,title,title_multi_objects,similarity_CLIP_openai"]
    for k in (2, 3):
        for i in range(n_per_folder):
            rel = f"images{k}/w{779523169 + 10 * k + i}_CH_18.jpg"
            members[f"skyscript/{rel}"] = jpeg()
            rows.append(f"{rel},a satellite image of a meadow,a meadow,0.31")
    members["skyscript/SkyScript_train_top30pct_filtered_by_CLIP_openai.csv"] = (
        "\n".join(rows) + "\n"
    ).encode()
    return write_archive(Path(out_archive), members)
