r"""The version of a raw dataset folder: its DVC hash, or else a digest of its content.

``data_version(raw_dir)`` is what a metrics file, a model and an MLflow run record about the data
they read. Two identifiers exist:

- ``dvc_md5``: the ``md5`` of the ``outs`` entry of ``<raw_dir>.dvc`` (written by ``rsdino track`` /
  ``dvc add``; a ``.dir`` hash). It is what ``dvc checkout`` restores, so it is *the* version when
  the pointer file exists and still describes the folder (same number of files and bytes as the
  pointer's ``nfiles`` and ``size``; a folder changed after ``dvc add`` has a stale pointer. This
  check is cheap, a stat of every file: an edit that keeps the size is left to ``dvc status``).
- ``content_sha256``: computed here when there is no usable pointer (a manual dataset before it is
  tracked, a project outside a DVC repository). With ``files`` the sorted POSIX relative paths of
  the regular files under ``raw_dir`` that DVC does not ignore (``IGNORED``)::

      content_sha256 = sha256( concat_{p in files} p "\0" size(p) "\0" sha256(bytes(p)) "\n" )

  It depends on names and bytes only, not on timestamps or the order the file system lists them.

``version`` is ``"md5:<dvc_md5>"`` or ``"sha256:<content_sha256>"``, the one string written to tables
and tags. Per-file hashes are cached in ``<raw_dir>.digest.json`` *beside* the folder (a file inside
it would change the folder's DVC hash), keyed on (relative path, size, mtime_ns), so that evaluating
many models on one large dataset reads its bytes once.
"""

from __future__ import annotations

import contextlib
import fnmatch
import hashlib
import json
import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path
from stat import S_ISREG
from typing import Any

import yaml

from rsdino.io import file_digest, write_json

log = logging.getLogger(__name__)

#: Format of the per-file hash cache ``<raw_dir>.digest.json``; another format is ignored.
CACHE_FORMAT = 1
#: Files modified this recently are hashed but not cached: a write in the same clock tick could
#: leave size and mtime unchanged ("racy" entries, as git calls them).
RACY_SECONDS = 2.0
#: Names that neither DVC nor the digest count, anywhere in a dataset folder: the patterns of the
#: project's ``.dvcignore`` (Snakemake's ``.snakemake_timestamp`` in directory outputs among them).
IGNORED = (".snakemake_timestamp", "__pycache__", "*.pyc", "*.egg-info")


def pointer_path(raw_dir: Path) -> Path:
    """``data/raw/<dataset>.dvc`` for ``data/raw/<dataset>``."""
    raw_dir = Path(raw_dir)
    return raw_dir.with_name(raw_dir.name + ".dvc")


def cache_path(raw_dir: Path) -> Path:
    """``data/raw/<dataset>.digest.json``: outside the folder, so DVC's hash of it is unaffected."""
    raw_dir = Path(raw_dir)
    return raw_dir.with_name(raw_dir.name + ".digest.json")


def has_files(folder: Path) -> bool:
    """Whether ``folder`` holds at least one regular file (stops at the first)."""
    folder = Path(folder)
    if not folder.is_dir():
        return False
    return any(True for _ in _files(folder))


def _ignored(name: str) -> bool:
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in IGNORED)


def _files(folder: Path) -> Any:
    """``(relative POSIX path, os.stat_result)`` of the regular files under ``folder`` DVC counts."""
    for root, dirs, names in os.walk(folder, followlinks=True):
        dirs[:] = sorted(d for d in dirs if not _ignored(d))
        for name in names:
            if _ignored(name):
                continue
            path = Path(root, name)
            try:
                stat = path.stat()
            except OSError:
                continue  # a dangling link: no data to version
            if S_ISREG(stat.st_mode):
                yield path.relative_to(folder).as_posix(), stat


def read_pointer(raw_dir: Path) -> dict[str, Any] | None:
    """``{"md5", "size", "nfiles"}`` of the first ``outs`` entry of ``<raw_dir>.dvc``, or None.

    A pointer file that exists but is not a DVC pointer raises ``ValueError`` naming it.
    """
    path = pointer_path(raw_dir)
    if not path.is_file():
        return None
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        out = data["outs"][0]
        md5 = out["md5"]
    except (OSError, UnicodeDecodeError, yaml.YAMLError, KeyError, IndexError, TypeError) as error:
        raise ValueError(f"{path}: not a DVC pointer file with outs[0].md5 ({error!r})") from None
    if not isinstance(md5, str) or not md5:
        raise ValueError(f"{path}: outs[0].md5 must be a non-empty string")
    return {"md5": md5, "size": out.get("size"), "nfiles": out.get("nfiles")}


def _load_cache(path: Path) -> dict[str, list[Any]]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return {}
    if not isinstance(data, dict) or data.get("format") != CACHE_FORMAT:
        return {}
    if not isinstance(data.get("files"), dict):
        return {}
    return data["files"]


def content_digest(raw_dir: Path, *, cache: bool = True) -> tuple[str, int, int]:
    """``(content_sha256, nfiles, bytes)`` of ``raw_dir`` (formula in the module docstring).

    With ``cache``, per-file hashes are read from and written to ``cache_path(raw_dir)`` (a folder
    that cannot be written to only costs the cache, with a warning).
    """
    raw_dir = Path(raw_dir)
    if not raw_dir.is_dir():
        raise FileNotFoundError(f"{raw_dir}: dataset folder not found")
    store = cache_path(raw_dir)
    cached = _load_cache(store) if cache else {}
    fresh: dict[str, list[Any]] = {}
    racy_after = time.time_ns() - int(RACY_SECONDS * 1e9)
    total = hashlib.sha256()
    nfiles = nbytes = 0
    for rel, stat in sorted(_files(raw_dir)):
        entry = cached.get(rel)
        if entry and entry[0] == stat.st_size and entry[1] == stat.st_mtime_ns:
            sha = entry[2]
        else:
            sha = file_digest(raw_dir / rel)
        if stat.st_mtime_ns < racy_after:
            fresh[rel] = [stat.st_size, stat.st_mtime_ns, sha]
        total.update(f"{rel}\0{stat.st_size}\0{sha}\n".encode("utf-8", "surrogateescape"))
        nfiles += 1
        nbytes += stat.st_size
    if cache and fresh != cached:
        try:
            write_json(store, {"format": CACHE_FORMAT, "files": fresh})
        except OSError as error:
            log.warning("%s: cannot write the digest cache (%s); the next run hashes again", store, error)
    return total.hexdigest(), nfiles, nbytes


def _folder_size(raw_dir: Path) -> tuple[int, int]:
    nfiles = nbytes = 0
    for _, stat in _files(raw_dir):
        nfiles += 1
        nbytes += stat.st_size
    return nfiles, nbytes


@contextlib.contextmanager
def _digest_lock(raw_dir: Path, cache: bool) -> Iterator[None]:
    """Parallel jobs on one dataset: the first hashes it, the others wait and read its cache."""
    lock = None
    if cache:
        from filelock import FileLock, Timeout

        lock = FileLock(str(cache_path(raw_dir)) + ".lock")
        try:
            lock.acquire()
        except (OSError, Timeout) as error:  # a read-only folder: hash without the lock
            log.warning("%s: cannot lock (%s)", lock.lock_file, error)
            lock = None
    try:
        yield
    finally:
        if lock is not None:
            lock.release()


def data_version(raw_dir: Path, *, cache: bool = True) -> dict[str, Any]:
    r"""The version of a raw dataset folder (see the module docstring).

    Returns ``{"version", "dvc_md5", "content_sha256", "source"}``; ``source`` is ``"dvc"`` (the
    pointer, checked against the folder's file count and size), ``"content"`` (no pointer) or
    ``"content, stale dvc pointer"`` (a pointer that no longer matches the folder: its ``dvc_md5``
    is kept for reference, the version is the content digest).
    """
    raw_dir = Path(raw_dir)
    if not raw_dir.is_dir():
        raise FileNotFoundError(f"{raw_dir}: dataset folder not found")
    pointer = read_pointer(raw_dir)
    if pointer is not None:
        nfiles, nbytes = _folder_size(raw_dir)
        matches = ((pointer["nfiles"] is None or pointer["nfiles"] == nfiles)
                   and (pointer["size"] is None or pointer["size"] == nbytes))
        if matches:
            return {"version": f"md5:{pointer['md5']}", "dvc_md5": pointer["md5"], "content_sha256": None,
                    "source": "dvc"}
        log.warning("%s: records %s files / %s bytes, the folder holds %d / %d; versioning by content "
                    "(run `rsdino track --path %s` to update it)", pointer_path(raw_dir), pointer["nfiles"],
                    pointer["size"], nfiles, nbytes, raw_dir)
    with _digest_lock(raw_dir, cache):
        sha, _, _ = content_digest(raw_dir, cache=cache)
    return {"version": f"sha256:{sha}", "dvc_md5": pointer["md5"] if pointer else None, "content_sha256": sha,
            "source": "content" if pointer is None else "content, stale dvc pointer"}


def data_version_tags(role: str, dataset: str, version: dict[str, Any] | None) -> dict[str, str]:
    """MLflow tags ``rsdino.<role>.<dataset>`` = version string (none for an unknown version)."""
    if not version or not version.get("version"):
        return {}
    return {f"rsdino.{role}.{dataset}": str(version["version"])}
