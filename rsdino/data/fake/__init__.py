"""Generators of tiny fake datasets in the real on-disk layout, for tests and the demo pipeline.

``FAKE_GENERATORS`` maps a generator name (``datasets.<name>.source.generator`` in params.yaml) to a
function ``f(out_archive: Path, **kwargs) -> str`` that writes the fake archive atomically and returns
its sha256. The same keyword arguments always give a byte-identical archive.
"""

from __future__ import annotations

from collections.abc import Callable

from rsdino.data.fake.bigearthnet import make_fake_bigearthnet
from rsdino.data.fake.eurosat import make_fake_eurosat_ms
from rsdino.data.fake.fmow import make_fake_fmow_archive
from rsdino.data.fake.imagelists import make_fake_image_lists
from rsdino.data.fake.oscd import make_fake_oscd
from rsdino.data.fake.scene import make_fake_scene_folders
from rsdino.data.fake.seco import make_fake_seco
from rsdino.data.fake.segmentation import make_fake_segmentation
from rsdino.data.fake.sen12mscrts import make_fake_sen12mscrts_archive

FAKE_GENERATORS: dict[str, Callable[..., str]] = {
    "bigearthnet": make_fake_bigearthnet,
    "eurosat_ms": make_fake_eurosat_ms,
    "fmow": make_fake_fmow_archive,
    "image_lists": make_fake_image_lists,
    "oscd": make_fake_oscd,
    "scene_folders": make_fake_scene_folders,
    "seco": make_fake_seco,
    "segmentation": make_fake_segmentation,
    "sen12mscrts": make_fake_sen12mscrts_archive,
}
