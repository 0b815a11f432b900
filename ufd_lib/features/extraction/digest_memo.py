"""File-identity memo: the SHA-256 of a file, remembered by what ``stat`` says about it.

In: file paths (as strings). Out: each file's 32-byte SHA-256 when its identity (size,
mtime_ns, ctime_ns, inode, device; links followed) is the one remembered, else None. Stored in
one SQLite database per feature cache root (``file-digests.sqlite3``), one row per directory with
a CRC-32 check, changed in ``BEGIN IMMEDIATE`` transactions so processes sharing a cache share it.

Hashing a large tree on every run would read it again; one ``stat`` per unchanged file does not.
Any write, replacement or rename changes the ctime, which no user can set back, so the file is
hashed again. A damaged row or database costs hashing, never a wrong digest.

Racy identities (git's "racily clean" entries, :mod:`ufd_lib.racy_timestamps`): a file whose
ctime is too recent when the memo was opened (before any of its files were read) could be
rewritten in place at the same size without its identity changing on a coarse-timestamp file
system; :meth:`DigestMemo.remember` drops such files, which are hashed again on the next run.
"""
from __future__ import annotations

import os
import sqlite3
import stat
import struct
import time
import zlib
from collections.abc import Callable, Iterable, Sequence
from functools import partial
from itertools import chain, groupby, repeat
from operator import attrgetter, itemgetter, methodcaller
from pathlib import Path
from typing import NamedTuple

import numpy as np

from ufd_lib.hashing import file_sha256
from ufd_lib.racy_timestamps import is_racy

MEMO_NAME = "file-digests.sqlite3"
# The layout of the ``digests`` table, in the database's ``user_version``; 0 is the old
# one-row-per-file table, dropped on sight.
LAYOUT_VERSION = 2
# Parameters per SELECT ... IN (...) (SQLite allows 32766 since 3.32).
LOOKUP_BATCH = 900
BUSY_TIMEOUT_SECONDS = 30.0

Identity = tuple[int, int, int, int, int]  # size, mtime_ns, ctime_ns, inode, device
_WRAP = 1 << 64
_INT64 = np.dtype("<i8")  # stored little-endian whatever the machine
_LENGTHS = struct.Struct("<QQQ")


def identity_of(result: os.stat_result) -> Identity:
    return (result.st_size, result.st_mtime_ns, result.st_ctime_ns, result.st_ino, result.st_dev)


def regular_identity(path: Path | str, follow_symlinks: bool = True) -> Identity | None:
    """The identity of a regular file (of a link's target when ``follow_symlinks``); None for
    anything else, or when ``stat`` fails."""
    try:
        found = os.stat(path, follow_symlinks=follow_symlinks)
    except OSError:
        return None
    return identity_of(found) if stat.S_ISREG(found.st_mode) else None


class Identities(NamedTuple):
    """The identities of n files. values: int64 (n, 5), the fields of :data:`Identity` (taken
    modulo 2**64, as stored); regular: bool (n,), False for anything but a regular file or a
    failed ``stat`` (whose row of ``values`` means nothing)."""

    values: np.ndarray
    regular: np.ndarray

    @classmethod
    def of(cls, identities: Sequence[Identity | None]) -> Identities:
        regular = np.array([identity is not None for identity in identities], dtype=bool).reshape(-1)
        return cls(_identity_array([identity or (0, 0, 0, 0, 0) for identity in identities]), regular)


# st_mode, then the fields of Identity
_STAT_FIELDS = attrgetter("st_mode", "st_size", "st_mtime_ns", "st_ctime_ns", "st_ino", "st_dev")
_FILE_TYPE_BITS = 0o170000
# Open a directory only to stat what is in it: no read permission needed (Linux), else read-only.
_DIRECTORY_FLAGS = getattr(os, "O_PATH", os.O_RDONLY) | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_CLOEXEC", 0)


def regular_identities(keys: Sequence[str], follow_symlinks: bool = True) -> Identities:
    """The identities of the files named by ``keys`` (absolute paths, :func:`memo_key`), as
    :func:`regular_identity` gives them: links followed when ``follow_symlinks``.

    A large tree is stat-ed directory by directory, each name relative to its open directory
    (one path component to resolve, not the whole path) and with no Python work per file;
    a directory where any ``stat`` fails is redone file by file, keeping the failures apart.
    """
    return _identities(keys, *_split_keys(keys), follow_symlinks)


def _identities(keys: Sequence[str], heads: list[str], names: list[str], follow_symlinks: bool) -> Identities:
    """:func:`regular_identities`, given the keys split at their last "/" (:func:`_split_keys`)."""
    fields = np.zeros((len(keys), 6), dtype=np.int64)
    found = np.zeros(len(keys), dtype=bool)
    for head, run in groupby(range(len(keys)), heads.__getitem__):
        run = list(run)
        start, stop = run[0], run[-1] + 1
        try:
            fields[start:stop] = _stat_fields(head or "/", names[start:stop], follow_symlinks)
            found[start:stop] = True
            continue
        except (OSError, OverflowError, ValueError):  # a failed stat, a field past 2**63, a NUL in a name
            pass
        for index in run:
            try:
                result = os.stat(keys[index], follow_symlinks=follow_symlinks)
            except (OSError, ValueError):
                continue
            fields[index] = np.array([field % _WRAP for field in _STAT_FIELDS(result)], np.uint64).view(np.int64)
            found[index] = True
    regular = found & ((fields[:, 0] & _FILE_TYPE_BITS) == stat.S_IFREG)
    return Identities(fields[:, 1:], regular)


def _stat_fields(directory: str, names: Sequence[str], follow_symlinks: bool) -> np.ndarray:
    """int64 (n, 6): :data:`_STAT_FIELDS` of each name, relative to ``directory`` opened once.
    Raises OSError (any failed ``stat``, or no ``dir_fd`` here), OverflowError or ValueError."""
    if os.stat not in os.supports_dir_fd:
        raise OSError("stat relative to a directory is not supported here")
    descriptor = os.open(directory, _DIRECTORY_FLAGS)
    try:
        results = map(partial(os.stat, dir_fd=descriptor, follow_symlinks=follow_symlinks), names)
        return np.fromiter(chain.from_iterable(map(_STAT_FIELDS, results)), np.int64, 6 * len(names)).reshape(-1, 6)
    finally:
        os.close(descriptor)


def memo_key(path: Path | str) -> str:
    """The memo's name for a file: its absolute path (no filesystem access; not normalised,
    so ``a/./b`` and ``a/b`` are two names of one identity: a miss, never a wrong digest)."""
    path = os.fspath(path)
    return path if path.startswith(os.sep) or os.path.isabs(path) else os.path.abspath(path)


def _split_keys(keys: Sequence[str]) -> tuple[list[str], list[str]]:
    """(directory without its final "/", name) of each key, split at its last "/"."""
    parts = list(map(methodcaller("rpartition", "/"), keys))
    return list(map(itemgetter(0), parts)), list(map(itemgetter(2), parts))


def memo_keys(paths: Sequence[Path | str]) -> list[str]:
    """:func:`memo_key` of each path; for absolute path strings, the usual case, without Python
    work per path."""
    keys = list(map(os.fspath, paths))
    return keys if all(map(methodcaller("startswith", os.sep), keys)) else list(map(memo_key, keys))


def _encode(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")


def _identity_array(identities: Sequence[Identity]) -> np.ndarray:
    """int64 (n, 5); inode and device may exceed 2**63, so fields are taken modulo 2**64
    (one-to-one for every signed or unsigned 64-bit field)."""
    try:
        return np.fromiter(chain.from_iterable(identities), np.int64, 5 * len(identities)).reshape(-1, 5)
    except OverflowError:
        wrapped = [[field % _WRAP for field in identity] for identity in identities]
        return np.array(wrapped, dtype=np.uint64).reshape(len(identities), 5).view(np.int64)


class _Row:
    """One directory's files: ``names`` (list of str), ``identities`` int64 (n, 5), ``digests`` uint8 (n, 32)."""

    def __init__(self, names: list[str], identities: np.ndarray, digests: np.ndarray):
        self.names, self.identities, self.digests = names, identities, digests

    @classmethod
    def empty(cls) -> _Row:
        return cls([], np.zeros((0, 5), np.int64), np.zeros((0, 32), np.uint8))

    @classmethod
    def decode(cls, directory: bytes, names: bytes, identities: bytes, digests: bytes, check: int) -> _Row | None:
        """The row as stored, or None when its check or its shapes are wrong (damage)."""
        fields = (names, identities, digests)
        if not all(isinstance(field, bytes) for field in (directory, *fields)) or check != _check(directory, *fields):
            return None
        try:
            name_list = names.decode("utf-8", "surrogatepass").split("\0")[:-1]
        except UnicodeDecodeError:
            return None
        if len(identities) != 40 * len(name_list) or len(digests) != 32 * len(name_list):
            return None
        return cls(name_list, np.frombuffer(identities, _INT64).reshape(-1, 5),
                   np.frombuffer(digests, np.uint8).reshape(-1, 32))

    def encode(self, directory: bytes) -> tuple[bytes, bytes, bytes, bytes, int]:
        fields = (_encode("".join(name + "\0" for name in self.names)), self.identities.astype(_INT64).tobytes(),
                  self.digests.astype(np.uint8).tobytes())
        return (directory, *fields, _check(directory, *fields))

    def without(self, names: set[str]) -> _Row:
        kept = np.fromiter((name not in names for name in self.names), bool, len(self.names))
        return _Row([name for name, keep in zip(self.names, kept) if keep], self.identities[kept], self.digests[kept])

    def updated(self, entries: dict[str, tuple[Identity, bytes]]) -> _Row:
        """This row with ``entries`` (name → (identity, digest)) added or replacing theirs."""
        kept = self.without(set(entries))
        identities = _identity_array([identity for identity, _ in entries.values()])
        digests = np.frombuffer(b"".join(digest for _, digest in entries.values()), np.uint8).reshape(-1, 32)
        return _Row(kept.names + list(entries), np.concatenate([kept.identities, identities]),
                    np.concatenate([kept.digests, digests]))


def _check(directory: bytes, names: bytes, identities: bytes, digests: bytes) -> int:
    """CRC-32 of a row (lengths included): catches damage (bit flips, torn or edited rows), cheaply."""
    check = zlib.crc32(_LENGTHS.pack(len(names), len(identities), len(digests)) + directory)
    for field in (names, identities, digests):
        check = zlib.crc32(field, check)
    return check


class DigestMemo:
    """(path, identity) → SHA-256 digest, stored in ``<directory>/file-digests.sqlite3``.

    Open it before reading the files whose digests it will be told: ``opened_ns`` is the
    reference for racy identities (:func:`ufd_lib.racy_timestamps.is_racy`).
    """

    def __init__(self, directory: Path | str):
        self.opened_ns = time.time_ns()
        self.path = Path(directory) / MEMO_NAME
        self._connection: sqlite3.Connection | None = None
        self.writable = True

    def _connect(self) -> sqlite3.Connection | None:
        if self._connection is not None:
            return self._connection
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._connection = self._open()
        except sqlite3.OperationalError:  # locked past the timeout, cannot be opened, old and read-only
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
            if connection.execute("PRAGMA user_version").fetchone()[0] != LAYOUT_VERSION:
                self._lay_out(connection)
            connection.execute("SELECT count(*) FROM digests WHERE rowid = 1").fetchone()  # damaged pages fail here
        except sqlite3.Error:
            connection.close()
            raise
        return connection

    def _lay_out(self, connection: sqlite3.Connection) -> None:
        """Create the table, dropping an older layout's (a memo only saves work); a read-only
        database of another layout raises OperationalError (then it is left out)."""
        try:
            with connection:
                connection.execute("BEGIN IMMEDIATE")
                if connection.execute("PRAGMA user_version").fetchone()[0] != LAYOUT_VERSION:  # or another did it
                    connection.execute("DROP TABLE IF EXISTS digests")
                    connection.execute("CREATE TABLE digests (directory BLOB PRIMARY KEY, names BLOB, "
                                       "identity BLOB, digest BLOB, row_check INTEGER)")
                    connection.execute(f"PRAGMA user_version = {LAYOUT_VERSION}")
        except sqlite3.OperationalError as error:
            if "readonly" in str(error) or "read-only" in str(error):
                self.writable = False
            raise

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

    def _rows(self, connection: sqlite3.Connection, directories: Sequence[str]) -> dict[str, _Row]:
        """The intact stored rows of ``directories`` (damaged and absent ones left out)."""
        encoded = {_encode(directory): directory for directory in directories}
        wanted = list(encoded)
        rows: dict[str, _Row] = {}
        for start in range(0, len(wanted), LOOKUP_BATCH):
            part = wanted[start : start + LOOKUP_BATCH]
            for fields in connection.execute("SELECT directory, names, identity, digest, row_check FROM digests "
                                             f"WHERE directory IN ({','.join('?' * len(part))})", part):
                row = _Row.decode(*fields)
                if row is not None and fields[0] in encoded:  # the row's own (checked) directory names it
                    rows[encoded[fields[0]]] = row
        return rows

    def lookup(self, keys: Sequence[str], identities: Identities | Sequence[Identity | None] | None = None
               ) -> list[bytes | None]:
        """The remembered digest of each file whose identity matches its row (None otherwise).

        identities: those of the files, by default taken now (:func:`regular_identities`).
        """
        digests: list[bytes | None] = [None] * len(keys)
        connection = self._connect()
        if connection is None or not keys:
            return digests
        # every directory ends with "/", so a key without one (not absolute) is never found
        heads, names = _split_keys(keys)
        if identities is None:
            identities = _identities(keys, heads, names, follow_symlinks=True)
        elif not isinstance(identities, Identities):
            identities = Identities.of(identities)
        positions: dict[str, list[int]] = {}
        for head, run in groupby(range(len(keys)), heads.__getitem__):  # runs of one directory
            positions.setdefault(head, []).extend(run)
        try:
            rows = self._rows(connection, [head + "/" for head in positions])
        except sqlite3.OperationalError:
            return digests
        except sqlite3.DatabaseError:
            self.close()
            self._set_aside()
            return digests
        for directory, row in rows.items():
            where = positions[directory[:-1]]
            if where[-1] - where[0] == len(where) - 1:  # the usual case: one run of keys, all as remembered
                span = slice(where[0], where[-1] + 1)
                if names[span] == row.names and (identities.regular[span].all() and
                                                 np.array_equal(row.identities, identities.values[span])):
                    digests[span] = row.digests.view("V32")[:, 0].tolist()  # 32-byte strings
                    continue
            wanted = list(map(names.__getitem__, where))
            if wanted == row.names:  # the files as listed when they were remembered, some changed
                found = np.arange(len(wanted))
            else:
                index = dict(zip(row.names, range(len(row.names))))
                found = np.fromiter(map(index.get, wanted, repeat(-1)), np.int64, len(wanted))
            matches = ((found >= 0) & identities.regular[where]
                       & (row.identities[found] == identities.values[where]).all(axis=1))
            hits = np.flatnonzero(matches).tolist()
            known = np.frombuffer(row.digests[found[hits]].tobytes(), "V32").tolist()
            for hit, digest in zip(hits, known):
                digests[where[hit]] = digest
        return digests

    def _rewrite(self, directories: Iterable[str], change: Callable[[str, _Row], _Row]) -> None:
        """Read, ``change(directory, row) -> row`` and write back each directory's row, in one
        transaction; a memo that cannot be written (read-only, locked past the timeout, full,
        damaged) is left as it is."""
        directories = list(directories)
        connection = self._connect()
        if not directories or connection is None or not self.writable:
            return
        try:
            with connection:
                connection.execute("BEGIN IMMEDIATE")
                stored = self._rows(connection, directories)
                for directory in directories:
                    row = change(directory, stored.get(directory, _Row.empty()))
                    if row.names:
                        connection.execute("INSERT OR REPLACE INTO digests VALUES (?, ?, ?, ?, ?)",
                                           row.encode(_encode(directory)))
                    else:
                        connection.execute("DELETE FROM digests WHERE directory = ?", (_encode(directory),))
        except (sqlite3.OperationalError, sqlite3.DataError):
            pass  # locked past the timeout, read-only, disk full, a row too large: the memo only saves work
        except sqlite3.DatabaseError:
            self.close()
            self._set_aside()

    def remember(self, entries: Iterable[tuple[str, Identity, bytes]]) -> None:
        """Store (key, identity, digest) entries (a later entry for a key wins) in one transaction;
        an entry whose identity is racy (:mod:`ufd_lib.racy_timestamps`) is not stored, and drops what was."""
        learned: dict[str, dict[str, tuple[Identity, bytes]]] = {}
        racy: dict[str, set[str]] = {}
        for key, identity, digest in entries:
            head, slash, name = key.rpartition("/")
            if not slash or "\0" in name or len(digest) != 32:  # NUL ends each stored name
                continue
            if is_racy(identity[2], self.opened_ns):
                learned.get(head + slash, {}).pop(name, None)
                racy.setdefault(head + slash, set()).add(name)
            else:
                learned.setdefault(head + slash, {})[name] = (identity, digest)
                racy.get(head + slash, set()).discard(name)

        def change(directory: str, row: _Row) -> _Row:
            return row.without(racy.get(directory, set())).updated(learned.get(directory, {}))

        self._rewrite(sorted(set(learned) | set(racy)), change)

    def forget(self, keys: Iterable[str]) -> None:
        """Drop the rows of ``keys`` (files seen to differ from their remembered digest)."""
        dropped: dict[str, set[str]] = {}
        for key in keys:
            head, slash, name = key.rpartition("/")
            dropped.setdefault(head + slash, set()).add(name)
        self._rewrite(dropped, lambda directory, row: row.without(dropped[directory]))

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None


def memo_sha256(paths: Sequence[Path | str], directory: Path | str) -> list[str]:
    """Hex SHA-256 of each file, from the memo in ``directory`` where a file's identity is as
    remembered (its bytes are not read), else hashed and remembered."""
    keys = memo_keys(paths)
    identities = [regular_identity(key) for key in keys]
    memo = DigestMemo(directory)
    try:
        known = memo.lookup(keys, identities)
        learned = []
        for index, (key, identity) in enumerate(zip(keys, identities)):
            if known[index] is None:
                known[index] = bytes.fromhex(file_sha256(key))
                if identity is not None:
                    learned.append((key, identity, known[index]))
        memo.remember(learned)
    finally:
        memo.close()
    return [digest.hex() for digest in known]
