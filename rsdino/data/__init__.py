"""Datasets: download and extract archives, read images, split, compute band statistics, serve samples.

Modules (import them directly; this package imports none of them):

- ``download``: fetch a ``file://`` or ``http(s)://`` source with resume and checksum verification.
- ``extract``: unpack ``.tar``, ``.tar.gz``/``.tgz`` and ``.zip`` archives safely and atomically.
- ``readers``: read one image (GeoTIFF, JPEG, PNG) or a set of per-band GeoTIFFs as ``(C, H, W)`` arrays.
- ``splits``: list a class-per-folder dataset, split it (seeded, stratified), read and write split files.
- ``stats``: streaming per-band mean and standard deviation.
- ``prepare``: turn an extracted dataset into a prepared folder (splits, classes, stats, metadata).
- ``scene``: ``SceneDataset``, the torch dataset over a prepared folder.
- ``views``: band-aware multi-crop views (normalisation and crops) for self-distillation.
- ``fake``: generators of tiny fake datasets in the real on-disk layout (``FAKE_GENERATORS``).
"""
