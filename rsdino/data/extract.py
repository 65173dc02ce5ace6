"""Unpack ``.tar``, ``.tar.gz``/``.tgz`` and ``.zip`` archives safely and atomically.

Every member is checked before anything is written: absolute paths, ``..`` components, symbolic and
hard links (whatever their target), device files and FIFOs are refused with ``UnsafeArchiveError``,
and so is an archive beyond the limits of ``extraction:`` in params.yaml (``ExtractionLimits``: total
unpacked size, number of members, unpacked/packed ratio: a zip bomb, a flood of tiny files), read from
the member list before a byte is written.
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
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from rsdino.errors import UserError
from rsdino.io import atomic_directory

log = logging.getLogger(__name__)

TAR_SUFFIXES = (".tar", ".tar.gz", ".tgz")
ZIP_SUFFIXES = (".zip",)
_BLOCK = 512


class ArchiveError(UserError, RuntimeError):
    """An archive is truncated, corrupt or of an unsupported kind."""

    hint = "delete the archive and download it again"


class UnsafeArchiveError(ArchiveError):
    """An archive member could write outside the destination or create a link or special file."""

    hint = "the archive is refused; get it from the dataset's official source"


class ArchiveLimitError(UnsafeArchiveError):
    """An archive exceeds the extraction limits (size, members, compression ratio)."""

    hint = "if you trust this archive, raise the limit under extraction: in params.yaml"


@dataclass(frozen=True)
class ExtractionLimits:
    """What one archive may unpack to (the defaults of ``extraction:`` in params.yaml).

    ``max_total_gb``: sum of member sizes in 10^9 bytes; ``max_members``: members of any kind;
    ``max_ratio``: unpacked bytes / archive bytes, and each zip member's size / its compressed size.
    """

    max_total_gb: float = 4000.0
    max_members: int = 20_000_000
    max_ratio: float = 200.0


#: Zip members smaller than this are not held to the per-member ratio (tiny files compress wildly).
_RATIO_FLOOR = 1 << 20


def extract_archive(archive: Path, destination: Path, limits: ExtractionLimits | None = None) -> Path:
    """Extract ``archive`` so that its members end up under ``destination``; return ``destination``.

    An existing ``destination`` is replaced only after the new extraction has completed.

    Raises:
        FileNotFoundError: the archive does not exist.
        UnsafeArchiveError: naming the archive and the first unsafe member.
        ArchiveLimitError: the archive exceeds ``limits`` (default: ``ExtractionLimits()``).
        ArchiveError: the archive is truncated or corrupt, or its suffix is not supported.
    """
    return extract_archives([archive], destination, limits=limits)


def extract_archives(archives: list[Path], destination: Path, limits: ExtractionLimits | None = None) -> Path:
    """Extract several archives into one ``destination`` (e.g. images + labels); return ``destination``.

    All archives are unpacked into the same temporary folder, which replaces ``destination`` only
    when every one of them has been extracted; a later archive's member overwrites an earlier one's.

    Raises:
        FileNotFoundError: an archive does not exist.
        UnsafeArchiveError: naming the archive and the first unsafe member.
        ArchiveLimitError: an archive exceeds ``limits`` (any object with the fields of
            ``ExtractionLimits``, such as the validated ``extraction:`` settings).
        ArchiveError: an archive is truncated or corrupt, or its suffix is not supported.
    """
    archives, destination = [Path(a) for a in archives], Path(destination)
    limits = limits or ExtractionLimits()
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
            unpack(archive, tmp, limits)
    return destination


def _check_limits(archive: Path, limits: ExtractionLimits, members: int, total: int) -> None:
    """Refuse an archive whose member list exceeds ``limits`` (before anything is written)."""
    if members > limits.max_members:
        raise ArchiveLimitError(archive, f"{members} members, more than extraction.max_members "
                                         f"({limits.max_members})")
    if total > limits.max_total_gb * 1e9:
        raise ArchiveLimitError(archive, f"unpacks to {total / 1e9:.3g} GB, more than "
                                         f"extraction.max_total_gb ({limits.max_total_gb:g})")
    packed = max(archive.stat().st_size, 1)
    if total > _RATIO_FLOOR and total / packed > limits.max_ratio:
        raise ArchiveLimitError(archive, f"unpacks to {total / packed:.0f} times its size, more than "
                                         f"extraction.max_ratio ({limits.max_ratio:g}): a zip bomb?")


def _check_member_name(archive: Path, name: str) -> None:
    """Refuse a member name that is absolute or climbs out of the destination."""
    normalised = name.replace("\\", "/")
    path = PurePosixPath(normalised)
    if path.is_absolute() or (len(normalised) > 1 and normalised[1] == ":"):
        raise UnsafeArchiveError(f"{archive}: member {name!r} has an absolute path")
    if ".." in path.parts:
        raise UnsafeArchiveError(f"{archive}: member {name!r} has a '..' component")


def _extract_tar(archive: Path, target: Path, limits: ExtractionLimits) -> None:
    """Check every member of a tar archive, then extract it into ``target``."""
    try:
        with tarfile.open(archive, "r:*") as tar:
            members = []
            for member in tar:  # counted while read: a flood of members stops at the limit
                members.append(member)
                if len(members) > limits.max_members:
                    break
            _check_limits(archive, limits, len(members), sum(member.size for member in members))
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


def _extract_zip(archive: Path, target: Path, limits: ExtractionLimits) -> None:
    """Check every member of a zip archive, then extract it into ``target`` (CRCs are checked)."""
    try:
        with zipfile.ZipFile(archive) as zf:
            infos = zf.infolist()
            _check_limits(archive, limits, len(infos), sum(info.file_size for info in infos))
            for info in infos:
                ratio = info.file_size / max(info.compress_size, 1)
                if info.file_size > _RATIO_FLOOR and ratio > limits.max_ratio:
                    raise ArchiveLimitError(archive, f"member {info.filename!r} unpacks to {ratio:.0f} times "
                                                     f"its size, more than extraction.max_ratio "
                                                     f"({limits.max_ratio:g}): a zip bomb?")
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
