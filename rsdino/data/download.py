"""Fetch a dataset archive from a ``file://`` or ``http(s)://`` source and verify its checksum.

An HTTP download goes to ``<dest_dir>/<filename>.part``; an interrupted download is resumed with a
``Range`` request, and only a file whose checksum verifies is renamed (atomically) to its final name.

Nothing is destroyed: an existing file that fails verification is kept as it is and reported
(expected and actual digest, with the archive's name); it is fetched again only when asked
(``refetch=True``, ``rsdino download --refetch``), and replaced only once the new copy verifies. A
fetched copy that fails verification stays in ``<filename>.part``, never under the final name. When
every attempt ends short of the announced ``Content-Length``, the bytes that arrived are verified
before giving up (a server may announce a wrong length).
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from pathlib import Path
from urllib.parse import unquote, urlsplit

import requests
from tqdm import tqdm

from rsdino.errors import UserError
from rsdino.io import atomic_path, file_digest

log = logging.getLogger(__name__)

CHUNK_SIZE = 1 << 20
_RETRYABLE = (
    requests.ConnectionError,
    requests.Timeout,
    requests.exceptions.ChunkedEncodingError,
)


class DownloadError(UserError, RuntimeError):
    """A source could not be fetched (missing file, HTTP error, too many failed attempts)."""

    hint = "check the URL in params.yaml and the connection, then run the download again"


class ChecksumError(DownloadError):
    """A fetched file does not match its expected digest."""

    hint = "fix the checksum in params.yaml, or fetch the file again with rsdino download --refetch"


class _IncompleteDownload(Exception):
    """The server closed the response before sending every byte it announced (retried)."""


class _ServerError(Exception):
    """The server answered with a 5xx status (retried)."""


def verify_checksum(path: Path, sha256: str | None = None, md5: str | None = None) -> None:
    """Check ``path`` against every digest given; raise ``ChecksumError`` on the first mismatch.

    Raises:
        ValueError: if neither ``sha256`` nor ``md5`` is given.
        ChecksumError: naming the file, the algorithm, the expected and the actual digest.
    """
    expected = {algo: value for algo, value in (("sha256", sha256), ("md5", md5)) if value}
    if not expected:
        raise ValueError(f"verify_checksum({path}): give sha256 and/or md5")
    for algo, value in expected.items():
        actual = file_digest(path, algo)
        if actual.lower() != value.lower():
            raise ChecksumError(path, f"{algo} mismatch: expected {value.lower()}, got {actual}")


def download(
    url: str,
    dest_dir: Path,
    *,
    sha256: str | None = None,
    md5: str | None = None,
    filename: str | None = None,
    base_dir: Path | None = None,
    retries: int = 3,
    progress: bool = True,
    backoff: float = 1.0,
    timeout: float = 60.0,
    refetch: bool = False,
) -> Path:
    """Fetch ``url`` into ``dest_dir`` and return the path of the verified file.

    Args:
        url: ``file://relative/path`` (resolved against ``base_dir``, else the working directory),
            ``file:///absolute/path``, or ``http(s)://...``.
        dest_dir: folder that receives the file (created if missing).
        sha256: expected SHA-256 hex digest.
        md5: expected MD5 hex digest. At least one digest is required for an HTTP source.
        filename: name of the file in ``dest_dir``; defaults to the last component of the URL path.
        base_dir: folder against which a relative ``file://`` path is resolved.
        retries: extra attempts after a connection error, timeout, 5xx answer or cut-off response.
        progress: show a tqdm progress bar for HTTP downloads.
        backoff: seconds before the first retry; doubled before each further one.
        timeout: seconds to wait for the server to connect or send data.
        refetch: fetch again although ``dest_dir / filename`` exists and does not verify (it is
            replaced only by a copy that verifies), and start an HTTP download from byte zero.

    Returns:
        ``dest_dir / filename``. If it already exists and verifies, it is returned untouched.

    Raises:
        DownloadError: unknown scheme, missing source, HTTP error, or every attempt failed.
        ChecksumError: the existing file (without ``refetch``) or the fetched copy does not match;
            nothing is deleted or renamed.
    """
    try:
        parts = urlsplit(url)
    except ValueError as err:
        raise DownloadError(url, f"not a valid URL ({err})") from None
    scheme = parts.scheme.lower()
    if scheme not in ("file", "http", "https"):
        raise DownloadError(f"{url}: unsupported scheme {parts.scheme!r} (use file://, http:// or https://)")
    if scheme != "file" and not (sha256 or md5):
        raise DownloadError(f"{url}: an HTTP source needs a sha256 or md5 checksum")
    url_path = url[len("file://"):] if scheme == "file" else parts.path
    filename = filename or Path(unquote(url_path)).name
    if not filename:
        raise DownloadError(f"{url}: cannot derive a file name from the URL; pass filename=")
    dest_dir = Path(dest_dir)
    dest_dir.mkdir(parents=True, exist_ok=True)
    dest = dest_dir / filename

    if dest.exists() and (sha256 or md5):
        try:
            verify_checksum(dest, sha256=sha256, md5=md5)
        except ChecksumError as err:
            if not refetch:
                raise ChecksumError(err.what, f"{err.problem}; the file is kept as it is") from None
            log.warning("%s; fetching it again (it is replaced only by a copy that verifies)", err)
        else:
            log.info("%s already present and verified", dest)
            return dest

    if scheme == "file":
        _copy_local(_local_source(url, base_dir), dest, sha256=sha256, md5=md5)
    else:
        part = dest.with_name(dest.name + ".part")
        if refetch:
            part.unlink(missing_ok=True)
        _fetch_with_retries(url, part, retries=retries, backoff=backoff, timeout=timeout, progress=progress,
                            sha256=sha256, md5=md5)
        _verify_fetched(part, dest, sha256=sha256, md5=md5)
        os.replace(part, dest)
    return dest


def _local_source(url: str, base_dir: Path | None) -> Path:
    """Map ``file://rel/path`` or ``file:///abs/path`` to a path on disk."""
    source = Path(unquote(url[len("file://"):]))
    if not source.is_absolute():
        source = Path(base_dir or Path.cwd()) / source
    if not source.is_file():
        raise DownloadError(source, f"source file does not exist (url {url})")
    return source


def _copy_local(source: Path, dest: Path, *, sha256: str | None, md5: str | None) -> None:
    """Copy ``source`` to ``dest`` atomically, verifying the copy first when digests are given."""
    log.info("copying %s -> %s", source, dest)
    with atomic_path(dest) as tmp:
        shutil.copyfile(source, tmp)
        if sha256 or md5:
            try:
                verify_checksum(tmp, sha256=sha256, md5=md5)
            except ChecksumError as err:
                raise ChecksumError(source, f"{err.problem}; nothing was copied to {dest}") from None


def _verify_fetched(part: Path, dest: Path, *, sha256: str | None, md5: str | None) -> None:
    """Verify the fetched ``part`` (to become ``dest``); on a mismatch keep it as it is and raise."""
    try:
        verify_checksum(part, sha256=sha256, md5=md5)
    except ChecksumError as err:
        kept = f"; the existing {dest.name} is kept as it is" if dest.exists() else ""
        raise ChecksumError(dest.name, f"the downloaded copy ({part}) has a {err.problem}{kept}") from None


def _fetch_with_retries(
    url: str, part: Path, *, retries: int, backoff: float, timeout: float, progress: bool,
    sha256: str | None = None, md5: str | None = None,
) -> None:
    """Run ``_fetch_once`` until it succeeds, sleeping ``backoff * 2**attempt`` between attempts.

    When the last attempt still ends short, the bytes that arrived are verified before giving up.
    """
    for attempt in range(retries + 1):
        try:
            _fetch_once(url, part, timeout=timeout, progress=progress)
            return
        except requests.exceptions.InvalidURL as err:
            raise DownloadError(url, f"not a valid URL ({err})") from err
        except (*_RETRYABLE, _IncompleteDownload, _ServerError) as err:
            if attempt == retries:
                if isinstance(err, _IncompleteDownload) and (sha256 or md5) and _verifies(part, sha256, md5):
                    log.warning("%s: %s, but what arrived verifies; keeping it", url, err)
                    return
                if part.is_file() and part.stat().st_size:
                    kept = f"the partial file {part} is kept and the next run resumes it"
                else:
                    part.unlink(missing_ok=True)
                    kept = "nothing was saved"
                raise DownloadError(
                    part.name.removesuffix(".part"),
                    f"download from {url} failed after {retries + 1} attempt(s): {_short(err)}; {kept}",
                ) from err
            delay = backoff * 2**attempt
            log.warning("%s: attempt %d failed (%s); retrying in %.1f s", url, attempt + 1, err, delay)
            time.sleep(delay)


def _fetch_once(url: str, part: Path, *, timeout: float, progress: bool) -> None:
    """Fetch ``url`` into ``part``, resuming from its current size with a ``Range`` request."""
    offset = part.stat().st_size if part.exists() else 0
    headers = {"Range": f"bytes={offset}-"} if offset else {}
    with requests.get(url, headers=headers, stream=True, timeout=timeout) as response:
        if response.status_code == 416 and offset:
            return  # the .part already holds every byte; the checksum decides
        if response.status_code >= 500:
            raise _ServerError(f"HTTP {response.status_code}")
        if response.status_code >= 400:
            raise DownloadError(part.name.removesuffix(".part"),
                                f"{url} answered HTTP {response.status_code} {response.reason}")
        if offset and response.status_code == 206 and not _resumes_at(response, offset):
            part.unlink()
            raise _IncompleteDownload(f"server resumed at the wrong byte (wanted {offset}); restarting")
        if offset and response.status_code != 206:
            log.info("%s: server ignored the Range request; restarting from zero", url)
            offset = 0
        response.raw.enforce_content_length = False  # keep the bytes of a cut-off body; counted below
        length = response.headers.get("Content-Length")
        expected = int(length) if length is not None and "Content-Encoding" not in response.headers else None
        received = 0
        with open(part, "ab" if offset else "wb") as handle, tqdm(
            total=None if expected is None else offset + expected, initial=offset, unit="B",
            unit_scale=True, desc=part.name.removesuffix(".part"), disable=not progress,
        ) as bar:
            for chunk in response.iter_content(CHUNK_SIZE):
                handle.write(chunk)
                received += len(chunk)
                bar.update(len(chunk))
            handle.flush()
            os.fsync(handle.fileno())
    if expected is not None and received < expected:
        raise _IncompleteDownload(f"received {received} of {expected} bytes")


def _resumes_at(response: requests.Response, offset: int) -> bool:
    """True if the ``Content-Range`` of a 206 ``response`` starts at ``offset``."""
    content_range = response.headers.get("Content-Range", "")  # "bytes 100-199/200"
    try:
        start = int(content_range.split()[1].split("-")[0])
    except (IndexError, ValueError):
        return False
    return start == offset


def _verifies(path: Path, sha256: str | None, md5: str | None) -> bool:
    """True if ``path`` exists and matches every digest given."""
    if not path.is_file():
        return False
    try:
        verify_checksum(path, sha256=sha256, md5=md5)
    except ChecksumError:
        return False
    return True


def _short(error: BaseException) -> str:
    """The gist of a requests/urllib3 error (their messages nest the whole connection pool's state)."""
    text = str(error)
    for marker in ("Connection refused", "Name or service not known", "timed out", "Connection reset"):
        if marker in text:
            return marker.lower()
    return text if len(text) <= 160 else text[:157] + "..."
