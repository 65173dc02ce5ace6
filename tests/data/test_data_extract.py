"""Tests for rsdino.data.extract: formats, refused members, truncated archives, atomicity."""

from __future__ import annotations

import io
import tarfile
import zipfile

import pytest

from rsdino.data.extract import ArchiveError, UnsafeArchiveError, extract_archive, extract_archives


def _tar(path, members, mode="w"):
    """Write a tar with ``members``: name -> bytes (file) or TarInfo (anything else)."""
    with tarfile.open(path, mode) as tar:
        for name, content in members.items():
            if isinstance(content, tarfile.TarInfo):
                tar.addfile(content)
            else:
                info = tarfile.TarInfo(name)
                info.size = len(content)
                tar.addfile(info, io.BytesIO(content))
    return path


def _link(name, target, kind=tarfile.SYMTYPE):
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    return info


@pytest.mark.parametrize(("suffix", "mode"), [(".tar", "w"), (".tar.gz", "w:gz"), (".tgz", "w:gz")])
def test_extract_tar(tmp_path, suffix, mode):
    archive = _tar(tmp_path / f"a{suffix}", {"top/a.txt": b"alpha", "top/sub/b.txt": b"beta"}, mode)
    dest = extract_archive(archive, tmp_path / "out")
    assert (dest / "top" / "a.txt").read_bytes() == b"alpha"
    assert (dest / "top" / "sub" / "b.txt").read_bytes() == b"beta"


def test_extract_zip_and_replace_existing(tmp_path):
    archive = tmp_path / "a.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("top/a.txt", "alpha")
    dest = tmp_path / "out"
    dest.mkdir()
    (dest / "stale.txt").write_text("old")
    extract_archive(archive, dest)
    assert (dest / "top" / "a.txt").read_text() == "alpha"
    assert not (dest / "stale.txt").exists()


@pytest.mark.parametrize(
    ("member", "content", "reason"),
    [
        ("../x", b"evil", "'..'"),
        ("ok/../../x", b"evil", "'..'"),
        ("/etc/evil", b"evil", "absolute"),
        ("link", _link("link", "/etc/passwd"), "link"),
        ("hard", _link("hard", "a.txt", tarfile.LNKTYPE), "link"),
        ("fifo", _link("fifo", "", tarfile.FIFOTYPE), "special"),
        ("dev", _link("dev", "", tarfile.CHRTYPE), "special"),
    ],
)
def test_unsafe_tar_members_are_refused(tmp_path, member, content, reason):
    archive = _tar(tmp_path / "evil.tar", {"a.txt": b"fine", member: content})
    dest = tmp_path / "out"
    with pytest.raises(UnsafeArchiveError, match=reason) as excinfo:
        extract_archive(archive, dest)
    assert "evil.tar" in str(excinfo.value) and member in str(excinfo.value)
    assert not dest.exists()
    assert list(tmp_path.iterdir()) == [archive]  # no temporary folder left either


@pytest.mark.parametrize(("member", "reason"), [("../x", "'..'"), ("/abs", "absolute")])
def test_unsafe_zip_members_are_refused(tmp_path, member, reason):
    archive = tmp_path / "evil.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("a.txt", "fine")
        zf.writestr(zipfile.ZipInfo(member), "evil")
    with pytest.raises(UnsafeArchiveError, match=reason):
        extract_archive(archive, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_zip_symlink_is_refused(tmp_path):
    archive = tmp_path / "evil.zip"
    info = zipfile.ZipInfo("link")
    info.external_attr = (0o120777 << 16)
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr(info, "/etc/passwd")
    with pytest.raises(UnsafeArchiveError, match="link"):
        extract_archive(archive, tmp_path / "out")


@pytest.mark.parametrize(
    ("suffix", "mode", "where"),
    [(".tar", "w", "middle"), (".tar.gz", "w:gz", "middle"), (".tar", "w", "between members")],
)
def test_truncated_tar_is_an_error(tmp_path, suffix, mode, where):
    payload = bytes(range(256)) * 200
    archive = _tar(tmp_path / f"t{suffix}", {"a.bin": payload, "b.bin": payload}, mode)
    data = archive.read_bytes()
    # "between members": cut right after the first member's padded data, where tarfile stops silently
    cut = 512 + len(payload) + (-len(payload) % 512) if where == "between members" else len(data) // 2
    archive.write_bytes(data[:cut])
    with pytest.raises(ArchiveError, match="truncated") as excinfo:
        extract_archive(archive, tmp_path / "out")
    assert archive.name in str(excinfo.value)
    assert not (tmp_path / "out").exists()


def test_truncated_zip_is_an_error(tmp_path):
    archive = tmp_path / "t.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("a.bin", bytes(range(256)) * 100)
    archive.write_bytes(archive.read_bytes()[:-40])
    with pytest.raises(ArchiveError, match="t.zip"):
        extract_archive(archive, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_missing_and_unsupported_archives(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.tar"):
        extract_archive(tmp_path / "nope.tar", tmp_path / "out")
    rar = tmp_path / "x.rar"
    rar.write_bytes(b"x")
    with pytest.raises(ArchiveError, match="unsupported"):
        extract_archive(rar, tmp_path / "out")


def test_several_archives_into_one_folder(tmp_path):
    images, labels = tmp_path / "images.zip", tmp_path / "labels.tar"
    with zipfile.ZipFile(images, "w") as zf:
        zf.writestr("Images/city/B01.tif", b"pixels")
    _tar(labels, {"Train Labels/city/cm/cm.png": b"mask"})
    out = extract_archives([images, labels], tmp_path / "raw")
    assert (out / "Images/city/B01.tif").read_bytes() == b"pixels"
    assert (out / "Train Labels/city/cm/cm.png").read_bytes() == b"mask"


def test_one_bad_archive_of_several_leaves_the_old_folder(tmp_path):
    good, bad = tmp_path / "good.zip", tmp_path / "bad.zip"
    with zipfile.ZipFile(good, "w") as zf:
        zf.writestr("a.txt", b"new")
    with zipfile.ZipFile(bad, "w") as zf:
        zf.writestr("../escape.txt", b"x")
    (tmp_path / "raw").mkdir()
    (tmp_path / "raw" / "old.txt").write_text("old")
    with pytest.raises(UnsafeArchiveError):
        extract_archives([good, bad], tmp_path / "raw")
    assert sorted(p.name for p in (tmp_path / "raw").iterdir()) == ["old.txt"]
    assert not (tmp_path / "escape.txt").exists()
