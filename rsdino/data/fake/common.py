"""Building blocks of the fake-data generators: reproducible tar/zip archives and in-memory images."""

from __future__ import annotations

import io
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import rasterio
from PIL import Image
from rasterio.crs import CRS
from rasterio.io import MemoryFile

from rsdino.data.download import file_digest
from rsdino.io import atomic_path

Members = dict[str, bytes]


def geotiff_bytes(image: np.ndarray, *, gsd: float = 10.0, x0: float = 500_000.0, y0: float = 5_000_000.0,
                  epsg: int = 32632, nodata: float | None = None) -> bytes:
    """Encode a ``(C, H, W)`` array (any rasterio dtype) as an uncompressed GeoTIFF."""
    count, height, width = image.shape
    with MemoryFile() as memory:
        with memory.open(driver="GTiff", height=height, width=width, count=count, dtype=image.dtype.name,
                         crs=CRS.from_epsg(epsg), transform=rasterio.Affine(gsd, 0, x0, 0, -gsd, y0),
                         nodata=nodata) as dst:
            dst.write(image)
        return bytes(memory.getbuffer())


def pil_bytes(image: np.ndarray, fmt: str) -> bytes:
    """Encode a ``(H, W, 3)`` or ``(H, W)`` uint8 array as ``fmt`` (``"JPEG"``, ``"PNG"``, ``"TIFF"``)."""
    buffer = io.BytesIO()
    options = {"quality": 95} if fmt == "JPEG" else {}
    Image.fromarray(np.ascontiguousarray(image)).save(buffer, format=fmt, **options)
    return buffer.getvalue()


def _folders(names: list[str]) -> list[str]:
    """Every parent folder of ``names``, sorted."""
    folders = set()
    for name in names:
        parts = name.split("/")[:-1]
        folders.update("/".join(parts[: depth + 1]) for depth in range(len(parts)))
    return sorted(folders)


def write_archive(out_archive: Path, members: Members) -> str:
    """Write ``members`` (POSIX name -> bytes) to a reproducible archive and return its sha256.

    The format follows the suffix of ``out_archive``: ``.zip``, ``.tar.gz``/``.tgz`` or ``.tar``.
    Members are sorted, with mtime 0 and no owner names, so the same members always give the same
    bytes. Written atomically.
    """
    out_archive = Path(out_archive)
    name = out_archive.name
    with atomic_path(out_archive) as tmp:
        if name.endswith(".zip"):
            with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as archive:
                for member in sorted(members):
                    info = zipfile.ZipInfo(member, date_time=(1980, 1, 1, 0, 0, 0))
                    archive.writestr(info, members[member])
        else:
            mode = "w:gz" if name.endswith((".tar.gz", ".tgz")) else "w"
            if mode == "w:gz":
                import gzip

                # no file name in the gzip header (it would be the temporary file's), mtime 0
                with open(tmp, "wb") as raw, \
                        gzip.GzipFile(filename="", fileobj=raw, mode="wb", mtime=0) as gz, \
                        tarfile.open(fileobj=gz, mode="w", format=tarfile.USTAR_FORMAT) as tar:
                    _fill_tar(tar, members)
            else:
                with tarfile.open(tmp, "w", format=tarfile.USTAR_FORMAT) as tar:
                    _fill_tar(tar, members)
    return file_digest(out_archive, "sha256")


def _fill_tar(tar: tarfile.TarFile, members: Members) -> None:
    """Add the folders, then the files of ``members`` with fixed headers."""
    for folder in _folders(list(members)):
        info = tarfile.TarInfo(folder)
        info.type, info.mode, info.mtime, info.uname, info.gname = tarfile.DIRTYPE, 0o755, 0, "", ""
        tar.addfile(info)
    for member in sorted(members):
        data = members[member]
        info = tarfile.TarInfo(member)
        info.size, info.mode, info.mtime, info.uname, info.gname = len(data), 0o644, 0, "", ""
        tar.addfile(info, io.BytesIO(data))


def repack(tar_archive: Path, out_archive: Path) -> str:
    """Copy the files of an uncompressed ``tar_archive`` into ``out_archive`` (format by suffix); sha256."""
    with tarfile.open(tar_archive) as tar:
        members = {info.name: tar.extractfile(info).read() for info in tar.getmembers() if info.isfile()}
    return write_archive(Path(out_archive), members)


def pack_folder(folder: Path, out_archive: Path) -> str:
    """Write every file under ``folder`` (paths relative to it) to ``out_archive``; return its sha256."""
    folder = Path(folder)
    files = [p for p in sorted(folder.rglob("*")) if p.is_file()]
    members = {p.relative_to(folder).as_posix(): p.read_bytes() for p in files}
    return write_archive(Path(out_archive), members)
