from __future__ import annotations

import io
import stat
import tarfile
import zipfile

import pytest

from qhead.data.archive import extract_archive, source_folder
from qhead.errors import DataError


def _zip(path, members: dict[str, bytes], symlinks: dict[str, str] | None = None):
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
        for name, target in (symlinks or {}).items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            zf.writestr(info, target)
    return path


def _tar(path, members: dict[str, bytes], links: list[tuple[str, str, bytes]] = ()):
    with tarfile.open(path, "w:gz") as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
        for name, target, kind in links:
            info = tarfile.TarInfo(name)
            info.type = kind
            info.linkname = target
            tf.addfile(info)
    return path


def test_good_zip_and_tgz_extract(tmp_path):
    z = _zip(tmp_path / "a.zip", {"top/x.txt": b"hello", "top/sub/y.bin": b"\x00" * 10})
    out = extract_archive(z, tmp_path / "z")
    assert (out / "top" / "x.txt").read_bytes() == b"hello"
    t = _tar(tmp_path / "a.tgz", {"top/x.txt": b"hi"}, [("top/l.txt", "x.txt", tarfile.SYMTYPE)])
    out = extract_archive(t, tmp_path / "t")
    assert (out / "top" / "l.txt").read_bytes() == b"hi"  # internal link materialised
    assert not (out / "top" / "l.txt").is_symlink()


@pytest.mark.parametrize("name", ["../evil.txt", "a/../../evil.txt", "/tmp/evil.txt",
                                  "C:\\evil.txt", "a\\..\\..\\evil.txt"])
def test_zip_with_unsafe_path_is_refused(tmp_path, name):
    z = _zip(tmp_path / "bad.zip", {"ok.txt": b"1", name: b"evil"})
    dest = tmp_path / "deep" / "dest"
    with pytest.raises(DataError, match="refused"):
        extract_archive(z, dest)
    assert not any(dest.rglob("*")), "nothing is written from a refused archive"
    assert not (tmp_path / "deep" / "evil.txt").exists() and not (tmp_path / "evil.txt").exists()


def test_tar_with_unsafe_path_is_refused(tmp_path):
    t = _tar(tmp_path / "bad.tar.gz", {"../evil.txt": b"x"})
    with pytest.raises(DataError, match=r"'\.\.'"):
        extract_archive(t, tmp_path / "dest")


@pytest.mark.parametrize(("target", "kind"), [("../../etc/passwd", tarfile.SYMTYPE),
                                               ("/etc/passwd", tarfile.SYMTYPE),
                                               ("../outside.txt", tarfile.LNKTYPE)])
def test_tar_links_pointing_outside_are_refused(tmp_path, target, kind):
    t = _tar(tmp_path / "bad.tgz", {"a/x.txt": b"x"}, [("a/link", target, kind)])
    with pytest.raises(DataError, match="points outside"):
        extract_archive(t, tmp_path / "dest")


def test_zip_symlink_pointing_outside_is_refused(tmp_path):
    z = _zip(tmp_path / "bad.zip", {"a/x.txt": b"x"}, {"a/link": "../../secret"})
    with pytest.raises(DataError, match="points outside"):
        extract_archive(z, tmp_path / "dest")


def test_size_limit(tmp_path):
    z = _zip(tmp_path / "big.zip", {"a.bin": b"\x00" * 5000, "b.bin": b"\x00" * 5000})
    with pytest.raises(DataError, match="limit"):
        extract_archive(z, tmp_path / "dest", max_bytes=8000)
    extract_archive(z, tmp_path / "ok", max_bytes=10000)


def test_special_members_and_unreadable_archives(tmp_path):
    t = _tar(tmp_path / "dev.tgz", {}, [("a/fifo", "", tarfile.FIFOTYPE)])
    with pytest.raises(DataError, match="special"):
        extract_archive(t, tmp_path / "d")
    (tmp_path / "junk.zip").write_bytes(b"not a zip")
    with pytest.raises(DataError, match=r"junk\.zip"):
        extract_archive(tmp_path / "junk.zip", tmp_path / "e")


def test_source_folder(tmp_path):
    z = _zip(tmp_path / "a.zip", {"top/x.txt": b"hello"})
    with source_folder(z) as folder:
        assert (folder / "top" / "x.txt").is_file()
        extracted = folder
    assert not extracted.exists()  # temporary extraction removed
    with source_folder(tmp_path) as folder:
        assert folder == tmp_path
    (tmp_path / "f.txt").write_text("x")
    with pytest.raises(DataError, match="neither"), source_folder(tmp_path / "f.txt"):
        pass
