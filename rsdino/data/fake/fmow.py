"""A tiny fake fMoW-RGB archive: ``rsdino.data.fmow.make_fake_fmow``'s tree (JPEGs + JSON), packed."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from rsdino.data.fake.common import pack_folder
from rsdino.data.fmow import make_fake_fmow


def make_fake_fmow_archive(out_archive: Path, **kwargs: Any) -> str:
    """Write the fake fMoW-RGB tree (``make_fake_fmow(**kwargs)``) as an archive; return its sha256."""
    with tempfile.TemporaryDirectory() as tmp:
        make_fake_fmow(Path(tmp), **kwargs)
        return pack_folder(Path(tmp), Path(out_archive))
