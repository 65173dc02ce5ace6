"""Tests for rsdino.data.extract: formats, refused members, truncated archives, atomicity."""

from __future__ import annotations

import io
import tarfile
import zipfile

import pytest

from rsdino.data.extract import (
    ArchiveError,
    ArchiveLimitError,
    ExtractionLimits,
    UnsafeArchiveError,
    extract_archive,
    extract_archives,
)


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


# ------------------------------------------------------------------------------ extraction limits


def _zeros_zip(path, megabytes):
    """A zip holding one member of ``megabytes`` MiB of zeros (ratio about 1000), written in chunks."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf, zf.open("zeros.bin", "w") as out:
        block = bytes(1 << 20)
        for _ in range(megabytes):
            out.write(block)
    return path


def test_zip_bomb_is_refused_under_a_lowered_limit(tmp_path):
    archive = _zeros_zip(tmp_path / "bomb.zip", 4)
    limits = ExtractionLimits(max_ratio=50.0)
    with pytest.raises(ArchiveLimitError, match=r"bomb.zip: .*times its size.*max_ratio \(50\)"):
        extract_archive(archive, tmp_path / "out", limits=limits)
    assert not (tmp_path / "out").exists()
    # the same archive within a raised limit unpacks
    extract_archive(archive, tmp_path / "ok", limits=ExtractionLimits(max_ratio=5000.0))
    assert (tmp_path / "ok" / "zeros.bin").stat().st_size == 4 << 20


def test_zip_bomb_is_refused_by_the_default_limits(tmp_path):
    archive = _zeros_zip(tmp_path / "bomb.zip", 64)
    assert archive.stat().st_size < 1 << 20
    with pytest.raises(ArchiveLimitError, match="a zip bomb"):
        extract_archive(archive, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_total_size_limit(tmp_path):
    archive = _tar(tmp_path / "big.tar", {"a.bin": bytes(3000), "b.bin": bytes(3000)})
    with pytest.raises(ArchiveLimitError, match=r"big.tar: unpacks to 6e-06 GB.*max_total_gb \(5e-06\)"):
        extract_archive(archive, tmp_path / "out", limits=ExtractionLimits(max_total_gb=5e-6))


def _flood_tar(path, members):
    """A tar of ``members`` empty files ``f0000000``..., headers patched from one template (fast)."""
    template = bytearray(tarfile.TarInfo("f0000000").tobuf(format=tarfile.USTAR_FORMAT))
    template[148:156] = b" " * 8  # the checksum is summed with its own field as spaces
    base = sum(template) - sum(b"f0000000")
    with open(path, "wb") as handle:
        for index in range(members):
            name = b"f%07d" % index
            template[0:8] = name
            template[148:155] = b"%06o\0" % (base + sum(name))  # the header checksum field
            handle.write(template)
        handle.write(bytes(1024))
    return path


def test_tar_with_100000_members_is_refused(tmp_path):
    archive = _flood_tar(tmp_path / "flood.tar", 100_000)
    with pytest.raises(ArchiveLimitError, match=r"flood.tar: 10001 members, more than .*max_members"):
        extract_archive(archive, tmp_path / "out", limits=ExtractionLimits(max_members=10_000))
    assert not (tmp_path / "out").exists()
    small = _flood_tar(tmp_path / "small.tar", 3)  # the patched headers are valid tar headers
    assert sorted(p.name for p in extract_archive(small, tmp_path / "ok").iterdir()) == \
        ["f0000000", "f0000001", "f0000002"]


def test_limits_come_from_the_settings():
    from rsdino.config import parse_params
    from rsdino.config.params import load_params

    params = load_params("params.yaml", preflight_checks=False)
    assert params.extraction.max_ratio == ExtractionLimits().max_ratio
    raw = __import__("yaml").safe_load(open("params.yaml", encoding="utf-8"))
    raw["extraction"]["max_ratio"] = 0.5
    with pytest.raises(ValueError, match="extraction.max_ratio"):
        parse_params(raw, source="params.yaml", preflight_checks=False)
