"""Extract a zip or tar archive so that nothing can land outside the target directory.

Every member is checked before anything is written. A member with an absolute path, a '..'
component, a link (symbolic or hard), a special file type (device, FIFO), or a name that
another member already has (after normalising ``./`` and ``//``: the later one would
silently replace the earlier) makes the whole archive refused. So does an archive whose
members would expand to more than ``max_bytes`` (a zip bomb): the sizes are the ones the
archive declares, which bound what is written (zipfile stops each member at its declared
size and checks its CRC; a tar member's data is exactly its declared size). Links are refused
even when they point inside: image datasets need none, and a link that is harmless alone can
combine with a later member to write outside the target (a symlink to a directory, then a
file "through" it). Tar extraction additionally runs Python's ``filter="data"`` where
available.

The archive is extracted into a temporary directory next to the target, which is renamed into
place only on success; on any failure the temporary directory is removed, so nothing
half-written remains.
"""
from __future__ import annotations

import os
import posixpath
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


def safe_extract(archive: Path, target: Path, max_bytes: int | None = None) -> Path:
    """Extract ``archive`` (zip, or tar plain/gz/bz2/xz) into the new directory ``target``.

    max_bytes: the most the members may expand to in total (bytes); None for no limit.
    Raises FileExistsError if ``target`` exists, UnsafeArchiveError naming the first
    offending member, ArchiveError when the file is not a readable zip/tar archive or would
    expand beyond ``max_bytes``. Returns ``target``.
    """
    archive, target = Path(archive), Path(target)
    if target.exists() or target.is_symlink():
        raise FileExistsError(f"{target} already exists; extraction only creates new directories")
    extract = _extractor(archive)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent))
    try:
        extract(archive, staging, max_bytes)
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


class _Members:
    """The names and total declared size of the members checked so far."""

    def __init__(self, archive: Path, max_bytes: int | None):
        self.archive, self.max_bytes = archive, max_bytes
        self.names: set[str] = set()
        self.total_bytes = 0

    def add(self, name: str, size: int) -> None:
        _check_name(self.archive, name)
        key = posixpath.normpath(name.replace("\\", "/")).strip("/")
        if key in self.names:
            raise UnsafeArchiveError(self.archive, name, "appears twice (a later copy would replace the first)")
        self.names.add(key)
        self.total_bytes += size
        if self.max_bytes is not None and self.total_bytes > self.max_bytes:
            raise ArchiveError(
                f"{self.archive}: refused, its members expand to more than {self.max_bytes} bytes (the most "
                f"this dataset can take; at {name!r} already {self.total_bytes}); nothing was extracted"
            )


def _extract_zip(archive: Path, staging: Path, max_bytes: int | None) -> None:
    with zipfile.ZipFile(archive) as zf:
        members = _Members(archive, max_bytes)
        for info in zf.infolist():
            members.add(info.filename, info.file_size)
            mode = info.external_attr >> 16  # Unix mode, 0 when written on other systems
            if stat.S_ISLNK(mode):
                raise UnsafeArchiveError(archive, info.filename, "is a symbolic link")
            if stat.S_IFMT(mode) not in (0, stat.S_IFREG, stat.S_IFDIR):
                raise UnsafeArchiveError(archive, info.filename, "is a device, FIFO or other special file")
        zf.extractall(staging)


def _extract_tar(archive: Path, staging: Path, max_bytes: int | None) -> None:
    with tarfile.open(archive, "r:*") as tf:
        members = tf.getmembers()
        checked = _Members(archive, max_bytes)
        for member in members:
            checked.add(member.name, member.size if member.isfile() else 0)
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
