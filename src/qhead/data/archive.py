"""Safe extraction of the archives publishers distribute (.zip, .tar, .tar.gz, .tgz, .tar.bz2).

Every member is checked before anything is written; an archive is refused (with
:class:`~qhead.errors.DataError` naming the member) if it has

* an absolute member name (``/etc/x``, ``C:\\x``, ``\\\\server\\x``) or a ``..`` component;
* a symbolic or hard link whose target lies outside the extraction folder;
* a device, FIFO or other special member;
* more than ``max_members`` members, or more than ``max_bytes`` uncompressed bytes in
  total (counted while writing too, so a zip whose headers lie is still stopped).

Links that stay inside the archive are materialised as copies of their target file.
"""

from __future__ import annotations

import re
import shutil
import stat
import tarfile
import tempfile
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from qhead.errors import DataError

#: Default limit on the total uncompressed size of an archive (the real FGVC-Aircraft
#: archive is 2.75 GB; the largest of the four datasets).
DEFAULT_MAX_BYTES: int = 8 * 1024**3
DEFAULT_MAX_MEMBERS: int = 1_000_000
ARCHIVE_SUFFIXES: tuple[str, ...] = (".zip", ".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2")

_DRIVE = re.compile(r"^[A-Za-z]:")


def is_archive(path: str | Path) -> bool:
    """Whether ``path`` names a file with a supported archive suffix."""
    name = Path(path).name.lower()
    return Path(path).is_file() and name.endswith(ARCHIVE_SUFFIXES)


def _safe_parts(name: str, archive: Path) -> tuple[str, ...]:
    """The member's path components, or DataError if it is absolute or climbs out."""
    if not name or name.startswith(("/", "\\")) or _DRIVE.match(name):
        raise DataError(f"archive {archive} has an absolute member path {name!r}; refused")
    parts = tuple(p for p in re.split(r"[/\\]+", name) if p not in ("", "."))
    if ".." in parts:
        raise DataError(f"archive {archive} has a member path with '..': {name!r}; refused")
    return parts


def _link_target(member_parts: tuple[str, ...], target: str, archive: Path, name: str,
                 *, relative_to_member: bool) -> tuple[str, ...]:
    """Resolves a link target to components inside the archive, or refuses it."""
    if not target or target.startswith(("/", "\\")) or _DRIVE.match(target):
        raise DataError(
            f"archive {archive}: link {name!r} points outside the archive ({target!r}); refused"
        )
    base = list(member_parts[:-1]) if relative_to_member else []
    for part in re.split(r"[/\\]+", target):
        if part in ("", "."):
            continue
        if part == "..":
            if not base:
                raise DataError(
                    f"archive {archive}: link {name!r} points outside the archive "
                    f"({target!r}); refused"
                )
            base.pop()
        else:
            base.append(part)
    return tuple(base)


@dataclass
class _Plan:
    dirs: list[tuple[str, ...]]
    files: list[tuple[tuple[str, ...], object, int]]  # parts, member handle, declared size
    links: list[tuple[tuple[str, ...], tuple[str, ...]]]  # link parts, target parts


def _check_totals(count: int, total: int, archive: Path, max_bytes: int, max_members: int) -> None:
    if count > max_members:
        raise DataError(f"archive {archive} has more than {max_members} members; refused")
    if total > max_bytes:
        raise DataError(
            f"archive {archive} unpacks to more than {max_bytes} bytes (limit); refused"
        )


def _plan_zip(zf: zipfile.ZipFile, archive: Path, max_bytes: int, max_members: int) -> _Plan:
    plan = _Plan([], [], [])
    total = 0
    for count, info in enumerate(zf.infolist(), start=1):
        parts = _safe_parts(info.filename, archive)
        mode = info.external_attr >> 16
        if stat.S_ISLNK(mode):
            target = zf.read(info).decode("utf-8", "replace")
            plan.links.append((parts, _link_target(parts, target, archive, info.filename,
                                                   relative_to_member=True)))
        elif info.is_dir():
            if parts:
                plan.dirs.append(parts)
        elif mode and not (stat.S_ISREG(mode) or stat.S_IFMT(mode) == 0):
            raise DataError(f"archive {archive}: special member {info.filename!r}; refused")
        else:
            total += info.file_size
            plan.files.append((parts, info, info.file_size))
        _check_totals(count, total, archive, max_bytes, max_members)
    return plan


def _plan_tar(tf: tarfile.TarFile, archive: Path, max_bytes: int, max_members: int) -> _Plan:
    plan = _Plan([], [], [])
    total = 0
    for count, member in enumerate(tf, start=1):
        parts = _safe_parts(member.name, archive)
        if member.issym():
            plan.links.append((parts, _link_target(parts, member.linkname, archive, member.name,
                                                   relative_to_member=True)))
        elif member.islnk():
            plan.links.append((parts, _link_target(parts, member.linkname, archive, member.name,
                                                   relative_to_member=False)))
        elif member.isdir():
            if parts:
                plan.dirs.append(parts)
        elif member.isfile():
            total += member.size
            plan.files.append((parts, member, member.size))
        else:
            raise DataError(f"archive {archive}: special member {member.name!r}; refused")
        _check_totals(count, total, archive, max_bytes, max_members)
    return plan


def _copy_limited(src: IO[bytes], dst: IO[bytes], budget: int, archive: Path) -> int:
    written = 0
    while block := src.read(1 << 20):
        written += len(block)
        if written > budget:
            raise DataError(
                f"archive {archive} unpacks to more bytes than its headers say or than "
                "the limit allows; refused"
            )
        dst.write(block)
    return written


def extract_archive(
    archive: str | Path,
    dest: str | Path,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_members: int = DEFAULT_MAX_MEMBERS,
) -> Path:
    """Extracts ``archive`` into the folder ``dest`` after checking every member.

    Args:
        archive: a .zip, .tar, .tar.gz, .tgz or .tar.bz2 file.
        dest: the folder to extract into (created if needed).
        max_bytes: limit on the total uncompressed size.
        max_members: limit on the number of members.

    Returns:
        ``dest``.

    Raises:
        DataError: naming the archive and member, for an unsafe or oversized archive
            or one that cannot be read.
    """
    archive = Path(archive)
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    name = archive.name.lower()
    try:
        if name.endswith(".zip"):
            with zipfile.ZipFile(archive) as zf:
                plan = _plan_zip(zf, archive, max_bytes, max_members)
                _write(plan, dest, archive, max_bytes, lambda h: zf.open(h))  # type: ignore[arg-type]
        elif name.endswith(ARCHIVE_SUFFIXES):
            with tarfile.open(archive, "r:*") as tf:
                plan = _plan_tar(tf, archive, max_bytes, max_members)
                _write(plan, dest, archive, max_bytes, tf.extractfile)  # type: ignore[arg-type]
        else:
            raise DataError(
                f"{archive} is not a supported archive ({', '.join(ARCHIVE_SUFFIXES)})"
            )
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError) as error:
        raise DataError(f"cannot read archive {archive}: {error}") from None
    return dest


def _write(plan: _Plan, dest: Path, archive: Path, max_bytes: int, opener) -> None:
    root = dest.resolve()
    for parts in plan.dirs:
        (dest.joinpath(*parts)).mkdir(parents=True, exist_ok=True)
    budget = max_bytes
    written: set[tuple[str, ...]] = set()
    for parts, handle, _size in plan.files:
        target = dest.joinpath(*parts)
        target.parent.mkdir(parents=True, exist_ok=True)
        if not target.resolve().is_relative_to(root):  # e.g. a folder symlink planted earlier
            raise DataError(f"archive {archive}: member {'/'.join(parts)!r} escapes; refused")
        src = opener(handle)
        if src is None:
            raise DataError(f"archive {archive}: cannot read member {'/'.join(parts)!r}")
        with src, open(target, "wb") as out:
            budget -= _copy_limited(src, out, budget, archive)
        written.add(parts)
    for link, target_parts in plan.links:
        if target_parts not in written:
            raise DataError(
                f"archive {archive}: link {'/'.join(link)!r} points to "
                f"{'/'.join(target_parts)!r}, which is not a file in the archive; refused"
            )
        out = dest.joinpath(*link)
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(dest.joinpath(*target_parts), out)


@contextmanager
def source_folder(
    source: str | Path, *, max_bytes: int = DEFAULT_MAX_BYTES
) -> Iterator[Path]:
    """Yields a folder holding ``source``: the folder itself, or an archive safely
    extracted into a temporary folder (removed afterwards).

    Raises:
        DataError: if ``source`` does not exist or is neither a folder nor an archive.
    """
    path = Path(source).expanduser()
    if path.is_dir():
        yield path
        return
    if not path.exists():
        raise DataError(f"source {path} does not exist")
    if not is_archive(path):
        raise DataError(
            f"source {path} is neither a folder nor an archive ({', '.join(ARCHIVE_SUFFIXES)})"
        )
    with tempfile.TemporaryDirectory(prefix="qhead-extract-") as tmp:
        yield extract_archive(path, Path(tmp) / "src", max_bytes=max_bytes)


__all__ = [
    "ARCHIVE_SUFFIXES",
    "DEFAULT_MAX_BYTES",
    "extract_archive",
    "is_archive",
    "source_folder",
]
