"""Datasets: download and extract archives, read images, split, compute band statistics, serve samples.

Modules (import them directly; this package imports none of them):

- ``download``: fetch a ``file://`` or ``http(s)://`` source with resume and checksum verification.
- ``extract``: unpack ``.tar``, ``.tar.gz``/``.tgz`` and ``.zip`` archives safely and atomically.
- ``readers``: read one image (GeoTIFF, JPEG, PNG) or a set of per-band GeoTIFFs as ``(C, H, W)`` arrays.
- ``splits``: list a class-per-folder dataset, split it (seeded, stratified), read and write split files.
- ``stats``: streaming per-band mean and standard deviation.
- ``prepare``: turn an extracted dataset into a prepared folder (splits, classes, stats, metadata).
- ``scene``: ``SceneDataset``, the torch dataset over a prepared folder.
- ``chips``: the chipped training store (a prepared split decoded once into memory maps).
- ``bands``: band names matched across datasets (``match_bands``, aliases, subsets).
- ``version``: a raw folder's data version (its DVC hash, else a digest of its content).
- ``local``: a folder of the user's own images copied in as a scene-classification dataset.
- ``fake``: generators of tiny fake datasets in the real on-disk layout (``FAKE_GENERATORS``).
- ``catalog``: ``CATALOG``, the real layout (fake generator, known classes) of every declared dataset,
  and the "data missing: how to get it" message.
- per task, a ``prepare_*`` function and a torch dataset over its prepared folder: ``seco``
  (``TemporalSeriesDataset``), ``pairs`` (``S1S2PairDataset``, files paired by ``sen12mscrts``),
  ``multilabel`` (BigEarthNet, ``MultiLabelPatchDataset``, labels and metadata read by
  ``bigearthnet``), ``segmentation`` (LoveDA, Potsdam, Vaihingen tiles), ``change`` (OSCD),
  ``filelist`` (Million-AID + SkyScript, ``ImageListDataset``), ``fmow_dataset`` (fMoW-RGB,
  ``FmowDataset``, around the CSV preparation of ``fmow``); ``prepared`` holds their shared parts and
  ``preparers`` adapts each ``prepare_*`` to the registry's ``prepare(cfg, name, raw, out, progress)``.
  ``local_segmentation`` is a whole task in one module (your own ``images/`` + ``masks/`` folder).
- ``registry``: ``TASKS``, one record per task (prepare, reader, fake generator, local import, labels),
  torch-free; ``prepare_dataset`` and ``open_dataset`` for any task (re-exported here, imported lazily).
"""

from __future__ import annotations

from typing import Any

__all__ = ["open_dataset", "prepare_dataset"]


def __getattr__(name: str) -> Any:
    """Import ``open_dataset`` / ``prepare_dataset`` from ``registry`` on first use."""
    if name in __all__:
        from rsdino.data import registry

        return getattr(registry, name)
    raise AttributeError(f"module 'rsdino.data' has no attribute {name!r}")
