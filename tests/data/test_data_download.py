"""Tests for rsdino.data.download, against a loopback HTTP server and file:// sources."""

from __future__ import annotations

import hashlib
import os

import pytest

from rsdino.data.download import ChecksumError, DownloadError, download, file_digest, verify_checksum

PAYLOAD = os.urandom(300_000)
SHA256 = hashlib.sha256(PAYLOAD).hexdigest()
MD5 = hashlib.md5(PAYLOAD).hexdigest()


def test_http_download_verifies(http_server, tmp_path):
    http_server.state.files["data.bin"] = PAYLOAD
    path = download(http_server.url("data.bin"), tmp_path, sha256=SHA256, md5=MD5, progress=False)
    assert path == tmp_path / "data.bin"
    assert path.read_bytes() == PAYLOAD
    assert not (tmp_path / "data.bin.part").exists()


def test_existing_verified_file_is_not_downloaded_again(http_server, tmp_path):
    http_server.state.files["data.bin"] = PAYLOAD
    download(http_server.url("data.bin"), tmp_path, sha256=SHA256, progress=False)
    download(http_server.url("data.bin"), tmp_path, sha256=SHA256, progress=False)
    assert len(http_server.state.requests) == 1


def test_checksum_mismatch_keeps_the_fetched_copy_unnamed(http_server, tmp_path):
    http_server.state.files["data.bin"] = PAYLOAD
    wrong = "0" * 64
    with pytest.raises(ChecksumError) as excinfo:
        download(http_server.url("data.bin"), tmp_path, sha256=wrong, progress=False)
    message = str(excinfo.value)
    assert "data.bin" in message and wrong in message and SHA256 in message
    assert not (tmp_path / "data.bin").exists()
    assert not (tmp_path / "data.bin.corrupt").exists()
    assert (tmp_path / "data.bin.part").read_bytes() == PAYLOAD


def test_wrong_existing_file_is_kept_and_not_fetched_again(http_server, tmp_path):
    http_server.state.files["data.bin"] = PAYLOAD
    existing = tmp_path / "data.bin"
    existing.write_bytes(b"the user's own copy")
    actual = hashlib.sha256(b"the user's own copy").hexdigest()
    with pytest.raises(ChecksumError) as excinfo:
        download(http_server.url("data.bin"), tmp_path, sha256=SHA256, progress=False)
    message = str(excinfo.value)
    assert str(existing) in message and SHA256 in message and actual in message
    assert "kept" in message and "--refetch" in excinfo.value.hint
    assert existing.read_bytes() == b"the user's own copy"
    assert http_server.state.requests == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data.bin"]


def test_refetch_replaces_only_with_a_verified_copy(http_server, tmp_path):
    existing = tmp_path / "data.bin"
    existing.write_bytes(b"old")
    http_server.state.files["data.bin"] = b"also wrong"
    with pytest.raises(ChecksumError, match="kept as it is"):
        download(http_server.url("data.bin"), tmp_path, sha256=SHA256, refetch=True, progress=False)
    assert existing.read_bytes() == b"old"
    http_server.state.files["data.bin"] = PAYLOAD
    path = download(http_server.url("data.bin"), tmp_path, sha256=SHA256, refetch=True, progress=False)
    assert path.read_bytes() == PAYLOAD
    assert http_server.state.requests[-1]["range"] is None  # a refetch starts from byte zero


def test_short_content_length_verifies_what_arrived(http_server, tmp_path):
    http_server.state.files["data.bin"] = PAYLOAD
    http_server.state.extra_length = 1000  # the server announces more than the file holds
    path = download(http_server.url("data.bin"), tmp_path, sha256=SHA256, retries=0, progress=False)
    assert path.read_bytes() == PAYLOAD


def test_short_content_length_with_wrong_bytes_fails(http_server, tmp_path):
    http_server.state.files["data.bin"] = PAYLOAD
    http_server.state.cut_after = 1000
    with pytest.raises(DownloadError, match="received 1000 of 300000 bytes.*kept and the next run resumes"):
        download(http_server.url("data.bin"), tmp_path, sha256=SHA256, retries=0, progress=False)


def test_503_without_partial_file_promises_no_resume(http_server, tmp_path):
    http_server.state.fail_status = 503
    with pytest.raises(DownloadError) as excinfo:
        download(http_server.url("data.bin"), tmp_path, sha256=SHA256, retries=1, backoff=0.01,
                 progress=False)
    message = str(excinfo.value)
    assert "503" in message and "nothing was saved" in message and "resume" not in message
    assert list(tmp_path.iterdir()) == []


def test_http_requires_a_checksum(http_server, tmp_path):
    with pytest.raises(DownloadError, match="checksum"):
        download(http_server.url("data.bin"), tmp_path, progress=False)
    assert http_server.state.requests == []


def test_http_404_is_a_download_error(http_server, tmp_path):
    with pytest.raises(DownloadError, match="404"):
        download(http_server.url("missing.bin"), tmp_path, sha256=SHA256, retries=0, progress=False)


def test_resume_after_interrupted_download(http_server, tmp_path):
    http_server.state.files["data.bin"] = PAYLOAD
    http_server.state.cut_after = 100_000
    with pytest.raises(DownloadError, match="attempt"):
        download(http_server.url("data.bin"), tmp_path, sha256=SHA256, retries=0, progress=False)
    part = tmp_path / "data.bin.part"
    assert part.stat().st_size == 100_000
    assert not (tmp_path / "data.bin").exists()

    path = download(http_server.url("data.bin"), tmp_path, sha256=SHA256, retries=0, progress=False)
    assert [r["range"] for r in http_server.state.requests] == [None, "bytes=100000-"]
    verify_checksum(path, sha256=SHA256)
    assert not part.exists()


def test_retry_resumes_within_one_call(http_server, tmp_path):
    http_server.state.files["data.bin"] = PAYLOAD
    http_server.state.cut_after = 50_000
    path = download(http_server.url("data.bin"), tmp_path, md5=MD5, retries=2, backoff=0.01, progress=False)
    assert path.read_bytes() == PAYLOAD
    assert http_server.state.requests[-1]["range"] == "bytes=50000-"


def test_server_ignoring_range_restarts_from_zero(http_server, tmp_path):
    http_server.state.files["data.bin"] = PAYLOAD
    http_server.state.ignore_range = True
    (tmp_path / "data.bin.part").write_bytes(PAYLOAD[:1234])
    path = download(http_server.url("data.bin"), tmp_path, sha256=SHA256, progress=False)
    assert http_server.state.requests[0]["range"] == "bytes=1234-"
    assert path.read_bytes() == PAYLOAD


def test_file_url_relative_to_base_dir(tmp_path):
    (tmp_path / "demo").mkdir()
    (tmp_path / "demo" / "archive.tar").write_bytes(PAYLOAD)
    dest = tmp_path / "downloads"
    path = download("file://demo/archive.tar", dest, sha256=SHA256, base_dir=tmp_path, progress=False)
    assert path == dest / "archive.tar"
    assert path.read_bytes() == PAYLOAD


def test_file_url_absolute_and_relative_to_cwd(tmp_path, monkeypatch):
    source = tmp_path / "archive.tar"
    source.write_bytes(PAYLOAD)
    assert download(f"file://{source}", tmp_path / "a", progress=False).read_bytes() == PAYLOAD
    monkeypatch.chdir(tmp_path)
    assert download("file://archive.tar", tmp_path / "b", md5=MD5, progress=False).read_bytes() == PAYLOAD


def test_file_url_checksum_mismatch_and_missing_source(tmp_path):
    (tmp_path / "archive.tar").write_bytes(PAYLOAD)
    with pytest.raises(ChecksumError, match="md5"):
        download("file://archive.tar", tmp_path / "out", md5="f" * 32, base_dir=tmp_path, progress=False)
    assert not (tmp_path / "out" / "archive.tar").exists()
    assert not (tmp_path / "out" / "archive.tar.corrupt").exists()
    assert (tmp_path / "archive.tar").read_bytes() == PAYLOAD
    with pytest.raises(DownloadError, match="nothere.tar"):
        download("file://nothere.tar", tmp_path / "out", base_dir=tmp_path, progress=False)


def test_unsupported_scheme(tmp_path):
    with pytest.raises(DownloadError, match="ftp"):
        download("ftp://example.org/x.zip", tmp_path, sha256=SHA256)


def test_file_digest_and_verify(tmp_path):
    path = tmp_path / "x"
    path.write_bytes(PAYLOAD)
    assert file_digest(path, "sha256") == SHA256
    assert file_digest(path, "md5") == MD5
    verify_checksum(path, sha256=SHA256.upper(), md5=MD5)
    with pytest.raises(ChecksumError):
        verify_checksum(path, md5="0" * 32)
    with pytest.raises(ValueError):
        verify_checksum(path)
