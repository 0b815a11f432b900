"""File-identity memo: the SHA-256 of a file, remembered by what ``stat`` says about it.

The feature cache is keyed by the SHA-256 of each image's bytes; hashing every file of a large
tree on every run would read the whole tree again. The memo remembers, per file, its identity
(absolute path; size, mtime_ns, ctime_ns, inode and device of the file the path leads to,
links followed) and the digest of its bytes. A file whose identity is unchanged is recognised
by one ``stat``, and its bytes are not read; any change of those fields (a write, a
replacement, a rename over it, a link pointing elsewhere: ctime moves with every one, and
cannot be set back by a user) makes it be hashed again.

Storage: one SQLite database (the standard library's ``sqlite3``),
``<feature cache root>/file-digests.sqlite3``. SQLite makes every write atomic and serialises
concurrent writers, so processes sharing a cache share the memo. Each row carries a check (a
CRC-32 over the row's other fields); a row whose check fails is ignored, and a
database SQLite reports as damaged is set aside (``.corrupt-<time>``) and rebuilt empty: a
damaged memo costs hashing, never a wrong digest. A memo that cannot be written (a read-only
cache) is read if it can be, and otherwise left out: files are then hashed, as without one.
"""
from __future__ import annotations

import os
import sqlite3
import struct
import time
import zlib
from collections.abc import Iterable, Sequence
from pathlib import Path

MEMO_NAME = "file-digests.sqlite3"
# Parameters per SELECT ... IN (...) (SQLite allows 32766 since 3.32).
LOOKUP_BATCH = 900
# Read the whole table instead when it holds at most this many rows per file looked up.
SCAN_FACTOR = 4
BUSY_TIMEOUT_SECONDS = 30.0

Identity = tuple[int, int, int, int, int]  # size, mtime_ns, ctime_ns, inode, device
_IDENTITY = struct.Struct("<qqqQQ")


def identity_of(result: os.stat_result) -> Identity:
    return (result.st_size, result.st_mtime_ns, result.st_ctime_ns, result.st_ino, result.st_dev)


def memo_key(path: Path | str) -> str:
    """The memo's name for a file: its absolute path (no filesystem access; not normalised,
    so ``a/./b`` and ``a/b`` are two names of one identity: a miss, never a wrong digest)."""
    path = os.fspath(path)
    return path if os.path.isabs(path) else os.path.abspath(path)


def _row_check(key: str, identity: Identity, digest: bytes) -> int:
    """CRC-32 of a row's other fields: catches damage (bit flips, torn or edited rows), cheaply."""
    return zlib.crc32(key.encode(errors="surrogateescape") + _IDENTITY.pack(*identity) + digest)


class DigestMemo:
    """(path, identity) → SHA-256 digest, stored in ``<directory>/file-digests.sqlite3``."""

    def __init__(self, directory: Path | str):
        self.path = Path(directory) / MEMO_NAME
        self._connection: sqlite3.Connection | None = None
        self.writable = True

    def _connect(self) -> sqlite3.Connection | None:
        if self._connection is not None:
            return self._connection
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._connection = self._open()
        except sqlite3.OperationalError:  # locked past the timeout, cannot be opened: do without
            return None
        except sqlite3.DatabaseError:  # not a database, or corrupt
            if not self._set_aside():
                return None
            try:
                self._connection = self._open()
            except sqlite3.Error:
                return None
        except (OSError, sqlite3.Error):
            return None
        return self._connection

    def _open(self) -> sqlite3.Connection:
        connection = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_SECONDS, isolation_level=None)
        try:
            connection.execute("CREATE TABLE IF NOT EXISTS digests (path TEXT PRIMARY KEY, size INTEGER, "
                               "mtime_ns INTEGER, ctime_ns INTEGER, inode INTEGER, device INTEGER, "
                               "digest BLOB, row_check INTEGER)")
        except sqlite3.OperationalError as error:
            if "readonly" not in str(error) and "read-only" not in str(error):
                connection.close()
                raise
            self.writable = False
        connection.execute("SELECT count(*) FROM digests WHERE rowid = 1").fetchone()  # damaged headers fail here
        return connection

    def _set_aside(self) -> bool:
        """Move a damaged database out of the way, with its journal (which SQLite would otherwise
        replay into the new one); False when that is impossible."""
        stamp = time.time_ns()
        try:
            os.replace(self.path, self.path.with_name(f"{self.path.name}.corrupt-{stamp}"))
        except OSError:
            return False
        for suffix in ("-journal", "-wal", "-shm"):
            try:
                os.replace(f"{self.path}{suffix}", self.path.with_name(f"{self.path.name}.corrupt-{stamp}{suffix}"))
            except OSError:
                pass
        return True

    def lookup(self, keys: Sequence[str], identities: Sequence[Identity | None]) -> list[bytes | None]:
        """The remembered digest of each file whose identity matches its row (None otherwise)."""
        found: dict[str, tuple] = {}
        wanted = [key for key, identity in zip(keys, identities) if identity is not None]
        connection = self._connect()
        if connection is not None and wanted:
            columns = "SELECT path, size, mtime_ns, ctime_ns, inode, device, digest, row_check FROM digests"
            try:
                if connection.execute("SELECT count(*) FROM digests").fetchone()[0] <= SCAN_FACTOR * len(wanted):
                    wanted_set = set(wanted)  # one scan is ~4x faster than keyed look-ups of most rows
                    found.update((row[0], row[1:]) for row in connection.execute(columns) if row[0] in wanted_set)
                else:
                    for start in range(0, len(wanted), LOOKUP_BATCH):
                        part = wanted[start : start + LOOKUP_BATCH]
                        rows = connection.execute(f"{columns} WHERE path IN ({','.join('?' * len(part))})", part)
                        found.update((row[0], row[1:]) for row in rows)
            except sqlite3.OperationalError:
                found = {}
            except sqlite3.DatabaseError:
                self.close()
                self._set_aside()
                found = {}
        digests: list[bytes | None] = []
        for key, identity in zip(keys, identities):
            row = found.get(key)
            if row is None or tuple(row[:5]) != identity or not isinstance(row[5], bytes) or len(row[5]) != 32 \
                    or row[6] != _row_check(key, identity, row[5]):
                digests.append(None)
            else:
                digests.append(row[5])
        return digests

    def remember(self, entries: Iterable[tuple[str, Identity, bytes]]) -> None:
        """Store (key, identity, digest) rows in one transaction; a memo that cannot be written
        (read-only, locked past the timeout, damaged) is left as it is."""
        rows = [(key, *identity, digest, _row_check(key, identity, digest)) for key, identity, digest in entries]
        connection = self._connect()
        if not rows or connection is None or not self.writable:
            return
        try:
            with connection:
                connection.execute("BEGIN IMMEDIATE")
                connection.executemany("INSERT OR REPLACE INTO digests VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)
        except sqlite3.OperationalError:
            pass  # locked past the timeout, read-only, disk full: the memo only saves work
        except sqlite3.DatabaseError:
            self.close()
            self._set_aside()

    def forget(self, keys: Iterable[str]) -> None:
        """Drop the rows of ``keys`` (files seen to differ from their remembered digest)."""
        connection = self._connect()
        if connection is None or not self.writable:
            return
        try:
            with connection:
                connection.execute("BEGIN IMMEDIATE")
                connection.executemany("DELETE FROM digests WHERE path = ?", [(key,) for key in keys])
        except sqlite3.DatabaseError:
            pass

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None
