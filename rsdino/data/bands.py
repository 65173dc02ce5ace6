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

from rsdino.errors import UserError

_SENTINEL2 = re.compile(r"^B0*(\d{1,2})(A?)$", re.IGNORECASE)
#: Item keys holding images whose channels are bands (change detection has two dates).
IMAGE_KEYS = ("image", "image2")


class BandMismatchError(UserError, ValueError):
    """The evaluation data lacks bands the model was trained on."""


def canonical_band(name: str) -> str:
    """One spelling per band: Sentinel-2 ``B<n>`` with two digits (``B4`` -> ``B04``), and ``B8A``."""
    match = _SENTINEL2.match(name.strip())
    if match and match.group(2):
        return f"B{int(match.group(1))}A"
    if match:
        return f"B{int(match.group(1)):02d}"
    return name.strip()


def band_identities(bands: Sequence[str], aliases: Mapping[str, str] | None = None) -> list[set[str]]:
    """For each band, the canonical names it answers to: its own, and its declared alias."""
    aliases = aliases or {}
    return [{canonical_band(band), *([canonical_band(aliases[band])] if band in aliases else [])}
            for band in bands]


def match_bands(trained: Sequence[str], available: Sequence[str], *,
                trained_aliases: Mapping[str, str] | None = None,
                available_aliases: Mapping[str, str] | None = None) -> list[int]:
    """Indices into ``available`` giving the ``trained`` bands in the model's order.

    A trained band (its name and its alias) matches an available band by that band's declared alias
    first, then by its own name: Vaihingen's ``{IR: R, R: G, G: B}`` feeds a model trained on
    ``R, G, B`` its ``IR, R, G`` channels, as the references feed its false-colour images.

    Raises:
        BandMismatchError: some trained band has no counterpart (the message lists them), or one
            matches several available bands equally well.
    """
    aliases = available_aliases or {}
    own = [canonical_band(band) for band in available]
    meant = [canonical_band(aliases[band]) if band in aliases else None for band in available]
    index, missing = [], []
    for band, wanted in zip(trained, band_identities(trained, trained_aliases), strict=True):
        hits = [i for i, name in enumerate(meant) if name in wanted] \
            or [i for i, name in enumerate(own) if name in wanted]
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


class BandSelected:
    """A view of a dataset with its bands reordered / subset to ``index`` (from ``match_bands``).

    A map-style dataset (``len`` and indexing) without importing torch, so that the settings
    preflight, which matches bands too, stays torch-free.

    Items are the wrapped dataset's with every image (``image``, ``image2``) indexed on its channel
    axis, then passed through ``transform`` when given; ``stats`` follow the selection and ``bands``
    are ``names`` (the model's spelling of the same bands) when given. Every other attribute is the
    wrapped dataset's.
    """

    def __init__(self, dataset: Any, index: Sequence[int], *, names: Sequence[str] | None = None,
                 transform: Any = None) -> None:
        self.dataset = dataset
        self.index = list(index)
        self.names = list(names) if names is not None else None
        self.transform = transform

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int) -> Any:
        item = self.dataset[i]
        if isinstance(item, dict):
            item = dict(item)
            for key in IMAGE_KEYS:
                if key in item:
                    item[key] = item[key][self.index]
        return self.transform(item) if self.transform is not None else item

    @property
    def bands(self) -> list[str]:
        return self.names if self.names is not None else [self.dataset.bands[i] for i in self.index]

    @property
    def stats(self) -> dict[str, Any]:
        stats = dict(self.dataset.stats)
        for key in ("mean", "std"):
            if key in stats:
                stats[key] = [stats[key][i] for i in self.index]
        return stats

    def __getattr__(self, name: str) -> Any:
        if name in ("dataset", "index", "names", "transform"):  # not yet set (unpickling)
            raise AttributeError(name)
        return getattr(self.dataset, name)


def select_bands_of(dataset: Any, selection: tuple[list[int], list[str]] | None) -> Any:
    """``dataset`` as a model sees it: a ``BandSelected`` view for ``selection = (index, model's names)``.

    ``dataset`` itself when there is no selection, or when it keeps every band in order under the
    same names.
    """
    if selection is None:
        return dataset
    index, names = selection
    if list(index) == list(range(len(dataset.bands))) and list(names) == list(dataset.bands):
        return dataset
    return BandSelected(dataset, index, names=names)
