"""The version of a raw dataset folder: its DVC pointer's hash, else a digest of names and bytes."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from rsdino.data import version as dv
from rsdino.data.version import cache_path, content_digest, data_version, has_files


@pytest.fixture
def raw(tmp_path):
    """data/raw/ds with two class folders."""
    folder = tmp_path / "raw" / "ds"
    (folder / "a").mkdir(parents=True)
    (folder / "b").mkdir()
    (folder / "a" / "1.tif").write_bytes(b"first image")
    (folder / "b" / "2.tif").write_bytes(b"second image!")
    (folder / ".hidden").write_bytes(b"h")
    return folder


def write_pointer(raw_dir, md5, nfiles, size):
    """A pointer file as `dvc add` writes it (DVC 3)."""
    raw_dir.with_name(raw_dir.name + ".dvc").write_text(
        f"outs:\n- md5: {md5}\n  size: {size}\n  nfiles: {nfiles}\n  hash: md5\n  path: {raw_dir.name}\n")


def test_a_matching_dvc_pointer_is_the_version(raw):
    write_pointer(raw, "d65c6a27ce4fdc0877c44ee2d4a4a823.dir", nfiles=3, size=11 + 13 + 1)
    version = data_version(raw)
    assert version == {"version": "md5:d65c6a27ce4fdc0877c44ee2d4a4a823.dir",
                       "dvc_md5": "d65c6a27ce4fdc0877c44ee2d4a4a823.dir", "content_sha256": None,
                       "source": "dvc"}
    assert not cache_path(raw).exists()  # nothing hashed


def test_a_stale_dvc_pointer_falls_back_to_the_content(raw):
    write_pointer(raw, "0123.dir", nfiles=3, size=11 + 13 + 1)
    (raw / "b" / "3.tif").write_bytes(b"added after dvc add")
    version = data_version(raw)
    assert version["source"] == "content, stale dvc pointer" and version["dvc_md5"] == "0123.dir"
    assert version["version"] == f"sha256:{version['content_sha256']}"


def test_a_broken_pointer_names_the_file(raw):
    raw.with_name("ds.dvc").write_text("outs: []\n")
    with pytest.raises(ValueError, match=r"ds\.dvc: not a DVC pointer"):
        data_version(raw)


def test_content_digest_follows_its_formula(raw):
    lines = "".join(f"{rel}\0{len(data)}\0{hashlib.sha256(data).hexdigest()}\n"
                    for rel, data in sorted([(".hidden", b"h"), ("a/1.tif", b"first image"),
                                             ("b/2.tif", b"second image!")]))
    assert content_digest(raw, cache=False) == (hashlib.sha256(lines.encode()).hexdigest(), 3, 25)


def test_content_digest_is_stable_and_sees_one_byte(raw):
    first = data_version(raw)
    assert first["source"] == "content" and first["dvc_md5"] is None
    assert data_version(raw) == first == data_version(raw, cache=False)
    os.utime(raw / "a" / "1.tif", ns=(1, 1))  # timestamps are not content
    assert data_version(raw) == first
    (raw / "a" / "1.tif").write_bytes(b"first imagE")  # same size, one byte
    os.utime(raw / "a" / "1.tif", ns=(2, 2))
    assert data_version(raw)["content_sha256"] != first["content_sha256"]
    (raw / "a" / "1.tif").write_bytes(b"first image")
    os.utime(raw / "a" / "1.tif", ns=(3, 3))
    assert data_version(raw) == first
    (raw / "a" / "1.tif").rename(raw / "b" / "1.tif")  # a file moved to another class: another dataset
    assert data_version(raw)["content_sha256"] != first["content_sha256"]


def test_the_cache_lives_beside_the_folder_and_spares_rehashing(raw, monkeypatch):
    for path in raw.rglob("*"):
        os.utime(path, ns=(10**9, 10**9))  # old files: not "racy"
    digest = content_digest(raw)
    assert cache_path(raw) == raw.parent / "ds.digest.json" and cache_path(raw).is_file()
    assert not any("digest" in p.name for p in raw.rglob("*"))  # the dataset itself is untouched
    cached = json.loads(cache_path(raw).read_text())["files"]
    assert set(cached) == {".hidden", "a/1.tif", "b/2.tif"}

    hashed = []
    real = dv.file_digest
    monkeypatch.setattr(dv, "file_digest", lambda path: hashed.append(path.name) or real(path))
    assert content_digest(raw) == digest and hashed == []
    (raw / "b" / "2.tif").write_bytes(b"second image?")
    os.utime(raw / "b" / "2.tif", ns=(2 * 10**9, 2 * 10**9))
    assert content_digest(raw) != digest and hashed == ["2.tif"]


def test_recently_modified_files_are_not_cached(raw):
    os.utime(raw / "a" / "1.tif", ns=(10**9, 10**9))
    content_digest(raw)  # the fixture's other files were just written: a same-tick rewrite could hide
    assert set(json.loads(cache_path(raw).read_text())["files"]) == {"a/1.tif"}


def test_what_dvc_ignores_is_not_data(raw):
    """Snakemake's timestamp in a directory output neither changes the digest nor stales a pointer."""
    before = content_digest(raw, cache=False)
    (raw / ".snakemake_timestamp").write_bytes(b"")
    (raw / "a" / "__pycache__").mkdir()
    (raw / "a" / "__pycache__" / "x.pyc").write_bytes(b"bytecode")
    assert content_digest(raw, cache=False) == before
    write_pointer(raw, "ab.dir", nfiles=3, size=25)
    assert data_version(raw)["source"] == "dvc"


def test_ignored_names_are_the_patterns_of_dvcignore():
    dvcignore = Path(__file__).resolve().parents[2] / ".dvcignore"
    patterns = [line.strip() for line in dvcignore.read_text().splitlines()
                if line.strip() and not line.startswith("#")]
    assert sorted(patterns) == sorted(dv.IGNORED)


def test_has_files(tmp_path, raw):
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    assert has_files(raw) and not has_files(tmp_path / "empty") and not has_files(tmp_path / "missing")


def test_the_pointer_of_a_real_dvc_add_is_used(raw, tmp_path):
    """Our file count and size agree with what `dvc add` records (hidden files included)."""
    dvc = shutil.which("dvc", path=str(Path(sys.executable).parent)) or shutil.which("dvc")
    if dvc is None:
        pytest.skip("dvc is not installed")
    env = {**os.environ, "DVC_NO_ANALYTICS": "1"}
    subprocess.run([dvc, "init", "--no-scm", "-q"], cwd=tmp_path, check=True, env=env)
    shutil.copy(Path(__file__).resolve().parents[2] / ".dvcignore", tmp_path / ".dvcignore")
    (raw / ".snakemake_timestamp").write_bytes(b"")  # as in a directory output of the pipeline
    subprocess.run([dvc, "add", "-q", str(raw)], cwd=tmp_path, check=True, env=env)
    version = data_version(raw)
    md5 = yaml.safe_load(raw.with_name("ds.dvc").read_text())["outs"][0]["md5"]
    assert version["source"] == "dvc" and version["version"] == f"md5:{md5}" and md5.endswith(".dir")
