"""Generators of tiny fake datasets in the real on-disk layout, for tests and the demo pipeline.

``FAKE_GENERATORS`` maps a dataset name to a function ``f(out_archive: Path, **kwargs) -> str`` that
writes the fake archive atomically and returns its sha256.
"""

from __future__ import annotations

from collections.abc import Callable

from rsdino.data.fake.eurosat import make_fake_eurosat_ms

FAKE_GENERATORS: dict[str, Callable[..., str]] = {
    "eurosat_ms": make_fake_eurosat_ms,
}
