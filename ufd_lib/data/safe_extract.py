"""Extract a zip or tar archive so that nothing can land outside the target directory.

Every member is checked before anything is written. A member with an absolute path, a '..'
component, a link (symbolic or hard) or a special file type (device, FIFO) makes the whole
archive refused. Links are refused even when they point inside: image datasets need none, and
a link that is harmless alone can combine with a later member to write outside the target
(a symlink to a directory, then a file "through" it). Tar extraction additionally runs
Python's ``filter="data"`` where available.

The archive is extracted into a temporary directory next to the target, which is renamed into
place only on success; on any failure the temporary directory is removed, so nothing
half-written remains.
"""
from __future__ import annotations

import os
import re
import shutil
import stat
import tarfile
import tempfile
import zipfile
from pathlib import Path, PureWindowsPath


class ArchiveError(ValueError):
    """An archive that could not be extracted; nothing was written to the target."""


class UnsafeArchiveError(ArchiveError):
    """An archive refused because one of its members could escape the target directory."""

    def __init__(self, archive: Path, member: str, reason: str):
        super().__init__(
            f"{archive}: refused, member {member!r} {reason}; nothing was extracted"
        )
        self.member = member


def safe_extract(archive: Path, target: Path) -> Path:
    """Extract ``archive`` (zip, or tar plain/gz/bz2/xz) into the new directory ``target``.

    Raises FileExistsError if ``target`` exists, UnsafeArchiveError naming the first
    offending member, or ArchiveError when the file is not a readable zip/tar archive.
    Returns ``target``.
    """
    archive, target = Path(archive), Path(target)
    if target.exists() or target.is_symlink():
        raise FileExistsError(f"{target} already exists; extraction only creates new directories")
    extract = _extractor(archive)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent))
    try:
        extract(archive, staging)
    except BaseException as error:
        shutil.rmtree(staging, ignore_errors=True)
        if isinstance(error, Exception) and not isinstance(error, ArchiveError):
            raise ArchiveError(
                f"{archive}: extraction failed ({type(error).__name__}: {error}); nothing was extracted"
            ) from error
        raise
    os.replace(staging, target)
    return target


def _extractor(archive: Path):
    try:
        if zipfile.is_zipfile(archive):
            return _extract_zip
        if tarfile.is_tarfile(archive):
            return _extract_tar
    except Exception as error:  # a damaged compressed stream can fail in many ways
        raise ArchiveError(f"{archive}: could not be read ({type(error).__name__}: {error})") from error
    raise ArchiveError(f"{archive}: not a zip or tar archive")


def _check_name(archive: Path, name: str) -> None:
    if not name.strip("/\\") or "\x00" in name:
        raise UnsafeArchiveError(archive, name, "has an empty or invalid name")
    if name.startswith(("/", "\\")) or PureWindowsPath(name).drive:
        raise UnsafeArchiveError(archive, name, "has an absolute path")
    # Split on both separators: a '..\\' member is a traversal on Windows.
    if ".." in re.split(r"[\\/]", name):
        raise UnsafeArchiveError(archive, name, "contains a '..' component")


def _extract_zip(archive: Path, staging: Path) -> None:
    with zipfile.ZipFile(archive) as zf:
        for info in zf.infolist():
            _check_name(archive, info.filename)
            mode = info.external_attr >> 16  # Unix mode, 0 when written on other systems
            if stat.S_ISLNK(mode):
                raise UnsafeArchiveError(archive, info.filename, "is a symbolic link")
            if stat.S_IFMT(mode) not in (0, stat.S_IFREG, stat.S_IFDIR):
                raise UnsafeArchiveError(archive, info.filename, "is a device, FIFO or other special file")
        zf.extractall(staging)


def _extract_tar(archive: Path, staging: Path) -> None:
    with tarfile.open(archive, "r:*") as tf:
        members = tf.getmembers()
        for member in members:
            _check_name(archive, member.name)
            if member.issym():
                raise UnsafeArchiveError(archive, member.name, f"is a symbolic link (to {member.linkname!r})")
            if member.islnk():
                raise UnsafeArchiveError(archive, member.name, f"is a hard link (to {member.linkname!r})")
            if not (member.isfile() or member.isdir()):
                raise UnsafeArchiveError(archive, member.name, "is a device, FIFO or other special file")
        if hasattr(tarfile, "data_filter"):
            tf.extractall(staging, members=members, filter="data")
        else:  # Python without PEP 706; the checks above already refuse every unsafe member
            tf.extractall(staging, members=members)
