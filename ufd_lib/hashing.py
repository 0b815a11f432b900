"""SHA-256 of files, and the one guarded way an input file is read.

:func:`file_sha256` hashes files we made or were given on purpose (checkpoints, cache chunks,
downloads), read in 1 MiB blocks. Image inputs go through :func:`read_steadily` instead:
only a regular file is ever read (a FIFO, device or socket named ``x.png`` is refused after a
non-blocking open, so it cannot hang the reader), its size is checked against a byte limit
before anything is read, and a dangling symbolic link is reported as such.
"""
from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

BLOCK_BYTES = 1 << 20


class FileRefused(OSError):
    """An input file that is not read; the message is the reason (one line)."""


def _hash_blocks(handle, digest) -> None:
    for block in iter(lambda: handle.read(BLOCK_BYTES), b""):
        digest.update(block)


def file_sha256(path: Path | str) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        _hash_blocks(handle, digest)
    return digest.hexdigest()


_KINDS = ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
          (stat.S_ISSOCK, "a socket"), (stat.S_ISDIR, "a directory"))


def _open_regular(path: Path | str, max_bytes: int | None) -> tuple[int, os.stat_result]:
    """A descriptor open for reading on ``path`` if it is a regular file of at most ``max_bytes``
    bytes, and the ``stat`` of that descriptor. Raises :class:`FileRefused` with the reason
    otherwise; nothing has been read by then. The open is non-blocking (a FIFO would otherwise
    wait for a writer) and follows symbolic links."""
    try:
        descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise FileRefused("dangling symbolic link" if os.path.islink(path) else "unreadable: no such file") from None
    except OSError as error:
        raise FileRefused(f"unreadable: {error.strerror or error}") from None
    try:
        identity = os.fstat(descriptor)
        if not stat.S_ISREG(identity.st_mode):
            kind = next((name for test, name in _KINDS if test(identity.st_mode)), "not a regular file")
            raise FileRefused(f"not a regular file ({kind})")
        if max_bytes is not None and identity.st_size > max_bytes:
            raise FileRefused(f"{identity.st_size} bytes exceeds the limit of {max_bytes} "
                              "(--max-bytes, UFD_MAX_IMAGE_BYTES)")
    except BaseException:
        os.close(descriptor)
        raise
    return descriptor, identity


def _read_up_to(descriptor: int, limit: int | None) -> bytes:
    """The bytes from the descriptor's position on, until ``limit`` of them (None: no limit)
    or the end of the file."""
    blocks, total = [], 0
    while limit is None or total < limit:
        block = os.read(descriptor, BLOCK_BYTES if limit is None else limit - total)
        if not block:
            break
        blocks.append(block)
        total += len(block)
    return b"".join(blocks)


def read_steadily(path: Path | str, max_bytes: int | None = None) -> tuple[bytes, os.stat_result | None]:
    """(bytes, identity) of a regular file of at most ``max_bytes`` bytes (:func:`_open_regular`),
    read once through its descriptor; a file that grows past the limit while being read is
    refused too.

    identity: ``os.stat_result`` of the open file if it did not change while it was read (size,
    mtime and ctime the same before and after), else None: the bytes may then not be any
    version of the file, and nothing may be remembered about them. Raises :class:`FileRefused`.
    """
    descriptor, before = _open_regular(path, max_bytes)
    try:
        # Ask for the size stat gave, plus one byte to see growth: a fixed request of
        # max_bytes + 1 (or a megabyte block) would allocate that much for every file. Exactly
        # that size back is the whole file (growth after this read shows in the second fstat);
        # fewer bytes (a short read) or one more (it grew): read on to the end.
        data = os.read(descriptor, before.st_size + 1)
        if len(data) != before.st_size:
            data += _read_up_to(descriptor, None if max_bytes is None else max_bytes + 1 - len(data))
        after = os.fstat(descriptor)
    except OSError as error:
        raise FileRefused(f"unreadable: {error.strerror or error}") from None
    finally:
        os.close(descriptor)
    if max_bytes is not None and len(data) > max_bytes:
        raise FileRefused(f"grew past the limit of {max_bytes} bytes while being read")
    steady = (before.st_size, before.st_mtime_ns, before.st_ctime_ns) == (after.st_size, after.st_mtime_ns,
                                                                          after.st_ctime_ns)
    return data, after if steady else None


def read_regular_file(path: Path | str, max_bytes: int | None = None) -> bytes:
    """The bytes of :func:`read_steadily`."""
    return read_steadily(path, max_bytes)[0]


def regular_file_sha256(path: Path | str, max_bytes: int | None = None) -> tuple[bytes, os.stat_result | None]:
    """(SHA-256 digest, 32 bytes; identity) of a regular file read once (:func:`read_steadily`):
    a digest whose identity is None describes bytes that may not be the file's, and must not be
    remembered. Raises :class:`FileRefused`."""
    data, identity = read_steadily(path, max_bytes)
    return hashlib.sha256(data).digest(), identity
