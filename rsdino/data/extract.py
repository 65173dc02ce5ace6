"""Unpack ``.tar``, ``.tar.gz``/``.tgz`` and ``.zip`` archives safely and atomically.

Every member is checked before anything is written: absolute paths, ``..`` components, symbolic and
hard links (whatever their target), device files and FIFOs are refused with ``UnsafeArchiveError``.
The archive is unpacked into a temporary folder beside the destination, which replaces the
destination only once extraction has finished, so a refused, truncated or corrupt archive leaves no
half-extracted dataset behind.
"""

from __future__ import annotations

import gzip
import logging
import stat
import tarfile
import zipfile
import zlib
from pathlib import Path, PurePosixPath

from rsdino.io import atomic_directory

log = logging.getLogger(__name__)

TAR_SUFFIXES = (".tar", ".tar.gz", ".tgz")
ZIP_SUFFIXES = (".zip",)
_BLOCK = 512


class ArchiveError(RuntimeError):
    """An archive is truncated, corrupt or of an unsupported kind."""


class UnsafeArchiveError(ArchiveError):
    """An archive member could write outside the destination or create a link or special file."""


def extract_archive(archive: Path, destination: Path) -> Path:
    """Extract ``archive`` so that its members end up under ``destination``; return ``destination``.

    An existing ``destination`` is replaced only after the new extraction has completed.

    Raises:
        FileNotFoundError: the archive does not exist.
        UnsafeArchiveError: naming the archive and the first unsafe member.
        ArchiveError: the archive is truncated or corrupt, or its suffix is not supported.
    """
    return extract_archives([archive], destination)


def extract_archives(archives: list[Path], destination: Path) -> Path:
    """Extract several archives into one ``destination`` (e.g. images + labels); return ``destination``.

    All archives are unpacked into the same temporary folder, which replaces ``destination`` only
    when every one of them has been extracted; a later archive's member overwrites an earlier one's.

    Raises:
        FileNotFoundError: an archive does not exist.
        UnsafeArchiveError: naming the archive and the first unsafe member.
        ArchiveError: an archive is truncated or corrupt, or its suffix is not supported.
    """
    archives, destination = [Path(a) for a in archives], Path(destination)
    unpackers = []
    for archive in archives:
        if not archive.is_file():
            raise FileNotFoundError(f"archive {archive} does not exist")
        name = archive.name.lower()
        if name.endswith(TAR_SUFFIXES):
            unpackers.append(_extract_tar)
        elif name.endswith(ZIP_SUFFIXES):
            unpackers.append(_extract_zip)
        else:
            raise ArchiveError(f"{archive}: unsupported archive type "
                               f"(use one of {TAR_SUFFIXES + ZIP_SUFFIXES})")
    with atomic_directory(destination) as tmp:
        for archive, unpack in zip(archives, unpackers, strict=True):
            log.info("extracting %s -> %s", archive, destination)
            unpack(archive, tmp)
    return destination


def _check_member_name(archive: Path, name: str) -> None:
    """Refuse a member name that is absolute or climbs out of the destination."""
    normalised = name.replace("\\", "/")
    path = PurePosixPath(normalised)
    if path.is_absolute() or (len(normalised) > 1 and normalised[1] == ":"):
        raise UnsafeArchiveError(f"{archive}: member {name!r} has an absolute path")
    if ".." in path.parts:
        raise UnsafeArchiveError(f"{archive}: member {name!r} has a '..' component")


def _extract_tar(archive: Path, target: Path) -> None:
    """Check every member of a tar archive, then extract it into ``target``."""
    try:
        with tarfile.open(archive, "r:*") as tar:
            members = tar.getmembers()
            _check_tar_end(archive, tar)
            for member in members:
                _check_member_name(archive, member.name)
                if member.issym() or member.islnk():
                    raise UnsafeArchiveError(f"{archive}: member {member.name!r} is a link "
                                             f"(to {member.linkname!r}); links are refused")
                if not (member.isfile() or member.isdir()):
                    raise UnsafeArchiveError(
                        f"{archive}: member {member.name!r} is a device, FIFO or other special file"
                    )
            tar.extractall(target, members=members, filter="data")
    except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as err:
        raise ArchiveError(f"{archive}: truncated or corrupt tar archive ({err})") from err


def _check_tar_end(archive: Path, tar: tarfile.TarFile) -> None:
    """Raise ``ArchiveError`` unless the member list ends with a tar end-of-archive (zero) block.

    ``tarfile`` stops silently when a file is cut exactly between two members; the missing end
    block is how such a truncated archive is recognised.
    """
    tar.fileobj.seek(tar.offset)
    block = tar.fileobj.read(_BLOCK)
    if len(block) != _BLOCK or block.count(0) != _BLOCK:
        raise ArchiveError(f"{archive}: truncated tar archive (no end-of-archive block after the last "
                           "member)")


def _extract_zip(archive: Path, target: Path) -> None:
    """Check every member of a zip archive, then extract it into ``target`` (CRCs are checked)."""
    try:
        with zipfile.ZipFile(archive) as zf:
            infos = zf.infolist()
            for info in infos:
                _check_member_name(archive, info.filename)
                mode = info.external_attr >> 16
                if stat.S_ISLNK(mode):
                    raise UnsafeArchiveError(f"{archive}: member {info.filename!r} is a link; links are "
                                             "refused")
                if stat.S_IFMT(mode) not in (0, stat.S_IFREG, stat.S_IFDIR):  # 0: no type recorded
                    raise UnsafeArchiveError(
                        f"{archive}: member {info.filename!r} is a device, FIFO or other special file"
                    )
            zf.extractall(target, members=infos)
    except (zipfile.BadZipFile, EOFError, zlib.error) as err:
        raise ArchiveError(f"{archive}: truncated or corrupt zip archive ({err})") from err
