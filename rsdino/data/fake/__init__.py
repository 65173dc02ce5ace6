"""Generators of tiny fake datasets in the real on-disk layout, for tests and the demo pipeline.

``FAKE_GENERATORS`` maps a generator name (``datasets.<name>.source.generator`` in params.yaml) to a
function ``f(out_archive: Path, **kwargs) -> str`` that writes the fake archive atomically and returns
its sha256. The same keyword arguments always give a byte-identical archive. Every task's own
generator (``fake`` of its ``rsdino.data.registry`` record) is there under the task's name too,
imported on first use (a task's module may itself build on ``rsdino.data.fake.common``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping

from rsdino.data.fake.bigearthnet import make_fake_bigearthnet
from rsdino.data.fake.eurosat import make_fake_eurosat_ms
from rsdino.data.fake.fmow import make_fake_fmow_archive
from rsdino.data.fake.imagelists import make_fake_image_lists
from rsdino.data.fake.oscd import make_fake_oscd
from rsdino.data.fake.scene import make_fake_scene_folders
from rsdino.data.fake.seco import make_fake_seco
from rsdino.data.fake.segmentation import make_fake_segmentation
from rsdino.data.fake.sen12mscrts import make_fake_sen12mscrts_archive
from rsdino.data.registry import TASKS, resolve

_NAMED: dict[str, Callable[..., str]] = {
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


class _Generators(Mapping[str, Callable[..., str]]):
    """The generators above by name, then each task's own under the task's name (resolved when asked for)."""

    def __getitem__(self, name: str) -> Callable[..., str]:
        if name in _NAMED:
            return _NAMED[name]
        if name in TASKS:
            return resolve(TASKS[name].fake)
        raise KeyError(name)

    def __iter__(self) -> Iterator[str]:
        return iter([*_NAMED, *(task for task in TASKS if task not in _NAMED)])

    def __len__(self) -> int:
        return len(_NAMED.keys() | TASKS.keys())


FAKE_GENERATORS: Mapping[str, Callable[..., str]] = _Generators()
