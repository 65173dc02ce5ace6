"""``write_archive``: the same members give the same bytes, whatever the archive is called or where it is."""

from __future__ import annotations

import tarfile

import pytest

from rsdino.data.fake.common import write_archive

MEMBERS = {"b/two.txt": b"2" * 100, "a/one.txt": b"1" * 100}


@pytest.mark.parametrize("suffix", [".tar.gz", ".tgz", ".tar", ".zip"])
def test_same_members_same_bytes_under_another_name(tmp_path, suffix):
    first, second = tmp_path / f"first{suffix}", tmp_path / "elsewhere" / f"second_name{suffix}"
    second.parent.mkdir()
    assert write_archive(first, MEMBERS) == write_archive(second, MEMBERS)
    assert first.read_bytes() == second.read_bytes()
    assert write_archive(first, {**MEMBERS, "a/one.txt": b"x"}) != write_archive(second, MEMBERS)


def test_a_gzip_archive_names_no_file_in_its_header(tmp_path):
    archive = tmp_path / "named.tar.gz"
    write_archive(archive, MEMBERS)
    header = archive.read_bytes()
    assert header[:2] == b"\x1f\x8b" and not header[3] & 0x08  # FNAME flag unset
    with tarfile.open(archive, "r:gz") as tar:
        assert sorted(tar.getnames()) == ["a", "a/one.txt", "b", "b/two.txt"]
