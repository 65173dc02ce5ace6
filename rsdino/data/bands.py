"""Bands matched by name: which channels of a dataset feed a model trained on other data.

A model knows the names of the bands it was trained on (``model.json`` ``bands``); an evaluation
dataset declares its own (``datasets.<name>.bands``). They match by name, never by position:

* Sentinel-2 names are compared in one spelling, ``B1`` = ``B01`` and ``B8A`` = ``B8a``
  (``canonical_band``), so SeCo's ``B4`` is EuroSAT's ``B04``;
* a dataset may declare what its own band names mean (``datasets.<name>.band_aliases``, e.g.
  EuroSAT-RGB ``{R: B04, G: B03, B: B02}``), so a model trained on ``B04, B03, B02`` reads its
  ``R, G, B`` and the reverse;
* the dataset's bands are then reordered and subset to the model's order (``match_bands``), so
  EuroSAT-MS (B8A last) feeds a model trained on SEN12MS-CR-TS order (B8A after B08).

``BandSelected`` applies such a selection to any prepared dataset (its items' images, band names and
statistics), and the settings preflight (``rsdino.config.preflight``) runs ``match_bands`` on every
(variant, evaluation) pair when the settings load.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from torch.utils.data import Dataset

_SENTINEL2 = re.compile(r"^B0*(\d{1,2})(A?)$", re.IGNORECASE)
#: Item keys holding images whose channels are bands (change detection has two dates).
IMAGE_KEYS = ("image", "image2")


class BandMismatchError(ValueError):
    """The evaluation data lacks bands the model was trained on."""


def canonical_band(name: str) -> str:
    """One spelling per band: Sentinel-2 ``B<n>`` with two digits (``B4`` -> ``B04``, ``b8a`` -> ``B8A``)."""
    match = _SENTINEL2.match(name.strip())
    if match:
        return f"B{int(match.group(1)):02d}{match.group(2).upper()}"
    return name.strip()


def band_identities(bands: Sequence[str], aliases: Mapping[str, str] | None = None) -> list[set[str]]:
    """For each band, the canonical names it answers to: its own, and its declared alias."""
    aliases = aliases or {}
    out = []
    for band in bands:
        names = {canonical_band(band)}
        if band in aliases:
            names.add(canonical_band(aliases[band]))
        out.append(names)
    return out


def match_bands(trained: Sequence[str], available: Sequence[str], *,
                trained_aliases: Mapping[str, str] | None = None,
                available_aliases: Mapping[str, str] | None = None) -> list[int]:
    """Indices into ``available`` giving the ``trained`` bands in the model's order.

    Raises:
        BandMismatchError: some trained band has no counterpart (the message lists them), or one
            matches several available bands.
    """
    have = band_identities(available, available_aliases)
    index, missing = [], []
    for band, wanted in zip(trained, band_identities(trained, trained_aliases), strict=True):
        hits = [i for i, names in enumerate(have) if names & wanted]
        if len(hits) > 1:
            raise BandMismatchError(f"band {band} matches several bands {[available[i] for i in hits]}")
        if hits:
            index.append(hits[0])
        else:
            missing.append(band)
    if missing:
        raise BandMismatchError(f"the model was trained on bands {list(trained)}; the data has "
                                f"{list(available)}, which lacks {missing} (declare what a band means "
                                "with datasets.<name>.band_aliases, or train on bands it has with "
                                "variants.<name>.input_bands)")
    return index


class BandSelected(Dataset):
    """A view of a dataset with its bands reordered / subset to ``index`` (from ``match_bands``).

    Items are the wrapped dataset's with every image (``image``, ``image2``) indexed on its channel
    axis; ``bands`` and ``stats`` follow; every other attribute is the wrapped dataset's.
    """

    def __init__(self, dataset: Any, index: Sequence[int]) -> None:
        self.dataset = dataset
        self.index = list(index)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int) -> Any:
        item = self.dataset[i]
        if isinstance(item, dict):
            item = dict(item)
            for key in IMAGE_KEYS:
                if key in item:
                    item[key] = item[key][self.index]
        return item

    @property
    def bands(self) -> list[str]:
        return [self.dataset.bands[i] for i in self.index]

    @property
    def stats(self) -> dict[str, Any]:
        stats = dict(self.dataset.stats)
        for key in ("mean", "std"):
            if key in stats:
                stats[key] = [stats[key][i] for i in self.index]
        return stats

    def __getattr__(self, name: str) -> Any:
        if name in ("dataset", "index"):  # not yet set (unpickling)
            raise AttributeError(name)
        return getattr(self.dataset, name)


def select_bands_of(dataset: Any, index: Sequence[int] | None) -> Any:
    """``dataset`` itself when ``index`` keeps every band in order, else a ``BandSelected`` view."""
    if index is None or list(index) == list(range(len(dataset.bands))):
        return dataset
    return BandSelected(dataset, index)
