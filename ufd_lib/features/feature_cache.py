"""Content-addressed, memory-mappable store of image features.

One folder per *setting* (encoder name and checkpoint hash, preprocessing, perturbation):
``<root>/<setting id>/setting.json`` plus chunks. A chunk is three files written in order,
each atomically (temporary name, fsync, rename):

- ``<chunk>.features.npy``: float16 (n, d) features, memory-mapped on read;
- ``<chunk>.keys.npy``: uint8 (n, 32), the SHA-256 digests of the image files' bytes;
- ``<chunk>.json``: the commit record, a JSON object of row count, dimension, dtype and the
  SHA-256 of both files. It is written last and is the commit mark: a chunk without it is an
  interrupted write and is never read.

Images are keyed by the SHA-256 of their bytes, so a changed file is never served stale
features and a file that appears twice is encoded once. An interrupted extraction loses at
most the chunk in progress.

What the cache never serves. A committed chunk is set aside (its files renamed
``corrupt-<chunk>.*``) with a warning, and its images are encoded again, when:

- its files no longer match their checksums (truncated, bit-flipped);
- its commit record is not JSON, or is JSON of the wrong type (``null``, a list, a number,
  an object lacking a field or with a field of the wrong type);
- its features have another width than the setting's: the ``dim`` the cache was opened with
  (the encoder's), or, when none was given, the width holding most rows among the chunks
  first read (so features of two widths are never mixed);
- its features hold NaN or ±inf;
- any of its files is a symbolic link (e.g. to a file outside the cache) or not a regular
  file: files are opened with ``O_NOFOLLOW`` and checked on the open descriptor, so a link
  is never read through, and setting it aside renames the link, never its target.

In a read-only cache a damaged chunk cannot be renamed: it stays, is warned about once per
:class:`FeatureCache`, and is never served.

What the cache never stores. :meth:`FeatureCache.write_chunk` refuses, before writing
anything, features that are not finite once stored as float16 (NaN, ±inf, beyond ±65504)
and features of another width than the cache's, with a :class:`FeatureCacheError` naming
the images' digests (or their count) and the setting.

What a killed writer leaves. Temporary files and chunk files without a commit record (an
orphan ``.features.npy``, say) are deleted by the next writer of the same chunk tag once it
holds the claim that proves the dead writer is gone (:meth:`FeatureCache.remove_leftovers`,
called by :mod:`ufd_lib.features.extract` under :mod:`ufd_lib.features.work_claims`). Those
of a tag no later run claims stay on disk, never read.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import stat
import time
import uuid
import warnings
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import BinaryIO

import numpy as np

from ufd_lib import config
from ufd_lib.atomic_files import atomic_write
from ufd_lib.hashing import file_sha256

# Chunk file suffixes, in the order they are written; the last is the commit record.
CHUNK_SUFFIXES = (".features.npy", ".keys.npy", ".json")
_SHA256 = re.compile(r"[0-9a-f]{64}")
# Commit record field -> the test its value must pass.
_RECORD_FIELDS = {
    "rows": lambda value: type(value) is int and value > 0,
    "dim": lambda value: type(value) is int and value > 0,
    "dtype": lambda value: isinstance(value, str),
    "features_sha256": lambda value: isinstance(value, str) and _SHA256.fullmatch(value) is not None,
    "keys_sha256": lambda value: isinstance(value, str) and _SHA256.fullmatch(value) is not None,
}
_JSON_TYPES = {type(None): "null", bool: "boolean", int: "number", float: "number", str: "string", list: "array"}
_SHOWN_DIGESTS = 3  # digests named in a refusal; the rest are counted
_RECORD_MAX_BYTES = 1 << 16  # a commit record is ~250 bytes; a larger one is damage, not read whole


class FeatureCacheError(OSError):
    """A chunk cannot be committed: the cache folder cannot be written (read-only, full, ...) or
    the features are unfit to store (not finite, of another width). Nothing half-written is left."""


def setting_id(setting: dict) -> str:
    """Stable short id of a setting dict (its canonical JSON's SHA-256, 20 hex digits)."""
    canonical = json.dumps(setting, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:20]


def _open_chunk_file(path: Path) -> BinaryIO:
    """Binary handle on a chunk file. Raises ValueError for a symbolic link (never followed, even
    if one replaces the file between the check and the open) or anything but a regular file."""
    if stat.S_ISLNK(os.lstat(path).st_mode):
        raise ValueError(f"{path.name} is a symbolic link")
    descriptor = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    if not stat.S_ISREG(os.fstat(descriptor).st_mode):
        os.close(descriptor)
        raise ValueError(f"{path.name} is not a regular file")
    return os.fdopen(descriptor, "rb")


def _sha256(handle: BinaryIO) -> str:
    """Hex SHA-256 of an open file from its start; leaves the handle at its start."""
    digest = hashlib.file_digest(handle, "sha256").hexdigest()
    handle.seek(0)
    return digest


def _commit_record(data: bytes) -> dict:
    """The fields of a commit record's bytes; ValueError unless it is a JSON object with every
    field of :data:`_RECORD_FIELDS`, each of the right type."""
    if len(data) > _RECORD_MAX_BYTES:
        raise ValueError(f"commit record of more than {_RECORD_MAX_BYTES} bytes")
    record = json.loads(data)
    if not isinstance(record, dict):
        raise ValueError(f"commit record is a JSON {_JSON_TYPES.get(type(record), 'value')}, not an object")
    for field, valid in _RECORD_FIELDS.items():
        if field not in record:
            raise ValueError(f"commit record lacks {field!r}")
        if not valid(record[field]):
            raise ValueError(f"commit record has an invalid {field!r}: {str(record[field])[:40]!r}")
    return record


def _memory_map(handle: BinaryIO) -> np.ndarray:
    """The .npy array in an open file, memory-mapped read-only from the same descriptor."""
    version = np.lib.format.read_magic(handle)
    if version != (1, 0):
        raise ValueError(f".npy format {version} where the cache writes (1, 0)")
    shape, fortran_order, dtype = np.lib.format.read_array_header_1_0(handle)
    if fortran_order or len(shape) != 2 or dtype.kind != "f" or dtype.itemsize not in (2, 4, 8):
        raise ValueError(f"features of shape {shape}, dtype {dtype} (Fortran order: {fortran_order})")
    return np.memmap(handle, dtype=dtype, mode="r", offset=handle.tell(), shape=shape)


def all_finite(features: np.ndarray) -> bool:
    """Whether a float16/32/64 array holds no NaN or ±inf, i.e. no value whose IEEE 754 exponent
    bits are all ones: a bit test, about 6x faster than ``np.isfinite`` on float16 chunks."""
    info = np.finfo(features.dtype)
    exponent = ((1 << info.nexp) - 1) << info.nmant
    bits = features.view(f"u{features.dtype.itemsize}")
    return not ((bits & exponent) == exponent).any()


class FeatureCache:
    """Features of one setting, addressed by image content digest.

    root: cache root (see :func:`ufd_lib.config.cache_dir`).
    setting: JSON-able dict describing everything that changes features.
    dim: the width of this setting's features (the encoder's ``embed_dim``); chunks of another
    width are set aside and writes of another width refused. None: the width of the chunks read
    first (the one holding most rows), or of the first chunk written.
    """

    def __init__(self, root: Path | str, setting: dict, dim: int | None = None):
        self.setting = setting
        self.directory = Path(root) / setting_id(setting)
        self._dim = dim
        self._index: dict[bytes, tuple[int, int]] | None = None
        self._chunks: list[np.ndarray] = []
        self._chunk_names: set[str] = set()
        self._rejected: set[str] = set()  # chunks found damaged, not read again by this instance

    def _ensure_directory(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        marker = self.directory / "setting.json"
        if not marker.exists():
            payload = json.dumps(self.setting, sort_keys=True, indent=2).encode()
            atomic_write(marker, lambda handle: handle.write(payload))

    def refresh(self) -> None:
        """Index every committed chunk not yet known (chunks are immutable once committed)."""
        if self._index is None:
            self._index = {}
        if not self.directory.is_dir():
            return
        readable = []
        for marker in sorted(self.directory.glob("chunk-*.json")):
            name = marker.name[: -len(".json")]
            if name in self._chunk_names or name in self._rejected:
                continue
            try:
                readable.append((name, *self._read_chunk(name)))
            except (OSError, ValueError, EOFError, RecursionError) as error:  # RecursionError: JSON nested too deep
                self._set_aside(name, str(error))
        if self._dim is None and readable:
            rows_by_width = Counter()
            for _, keys, features in readable:
                rows_by_width[features.shape[1]] += len(keys)
            self._dim = max(rows_by_width, key=rows_by_width.get)  # a tie goes to the oldest chunk's
        for name, keys, features in readable:
            if features.shape[1] != self._dim:
                self._set_aside(name, f"{features.shape[1]} feature columns where the setting has {self._dim}")
                continue
            chunk_number = len(self._chunks)
            self._chunks.append(features)
            self._chunk_names.add(name)
            for row, key in enumerate(keys):
                self._index.setdefault(key.tobytes(), (chunk_number, row))

    def _read_chunk(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """Keys uint8 (n, 32) and memory-mapped finite features (n, d) of a committed chunk, each
        file read through one descriptor that is checked, hashed and then read."""
        with _open_chunk_file(self.directory / f"{name}.json") as handle:
            commit = _commit_record(handle.read(_RECORD_MAX_BYTES + 1))
        with _open_chunk_file(self.directory / f"{name}.features.npy") as handle:
            if _sha256(handle) != commit["features_sha256"]:
                raise ValueError("checksum mismatch")
            features = _memory_map(handle)
        with _open_chunk_file(self.directory / f"{name}.keys.npy") as handle:
            if _sha256(handle) != commit["keys_sha256"]:
                raise ValueError("checksum mismatch")
            keys = np.load(handle)
        if keys.shape != (commit["rows"], 32) or keys.dtype != np.uint8 \
                or features.shape != (commit["rows"], commit["dim"]) or str(features.dtype) != commit["dtype"]:
            raise ValueError("shape or dtype does not match its commit record")
        if not all_finite(features):
            raise ValueError("non-finite features (NaN or ±inf)")
        return keys, features

    def _set_aside(self, name: str, reason: str) -> None:
        """Warn, and rename a damaged chunk's files (a link itself, never its target) out of the
        index's way; they stay in place if the folder is read-only."""
        warnings.warn(f"feature cache chunk {self.directory / name} is corrupt ({reason}); "
                      "it is set aside and its images will be encoded again")
        self._rejected.add(name)
        for suffix in CHUNK_SUFFIXES:
            path = self.directory / f"{name}{suffix}"
            try:
                os.replace(path, self.directory / f"corrupt-{name}{suffix}")
            except OSError:
                pass

    def remove_leftovers(self, tag: str) -> int:
        """Delete what a killed writer of chunks named with ``tag`` left: temporary files, and
        chunk files without a commit record (never read: only committed chunks are). Call it only
        while no live process can be writing such a chunk, e.g. holding the claim the tag names.
        Files that cannot be deleted (a read-only cache) are left. Returns the files removed."""
        leftovers = list(self.directory.glob(f".chunk-*-{tag}.*.tmp"))
        for suffix in CHUNK_SUFFIXES[:-1]:
            for part in self.directory.glob(f"chunk-*-{tag}{suffix}"):
                if not os.path.lexists(self.directory / f"{part.name[: -len(suffix)]}.json"):
                    leftovers.append(part)
        removed = 0
        for leftover in leftovers:
            try:
                leftover.unlink()
                removed += 1
            except OSError:
                pass
        return removed

    def contains(self, digests: Sequence[bytes]) -> np.ndarray:
        """Boolean mask (n,): which digests have cached features."""
        self.refresh()
        return np.array([d in self._index for d in digests], dtype=bool)

    def load(self, digests: Sequence[bytes]) -> np.ndarray:
        """Features float32 (n, d) for the given digests, read from the memory-mapped chunks.

        Raises KeyError naming the first digest that is not cached.
        """
        self.refresh()
        if not digests:
            return np.zeros((0, self._dim or 0), dtype=np.float32)
        try:
            locations = np.array([self._index[digest] for digest in digests], dtype=np.int64)
        except KeyError as missing:
            raise KeyError(f"no cached features for image digest {missing.args[0].hex()}") from None
        chunks, rows = locations[:, 0], locations[:, 1]
        out = np.empty((len(digests), self._dim), dtype=np.float32)
        order = np.lexsort((rows, chunks))  # by chunk, rows ascending within it: sequential reads
        for group in np.split(order, np.flatnonzero(np.diff(chunks[order])) + 1):
            out[group] = self._chunks[int(chunks[group[0]])][rows[group]]
        return out

    @property
    def dim(self) -> int | None:
        """Width of the features (given, or found in the chunks); None while unknown."""
        self.refresh()
        return self._dim

    def __len__(self) -> int:
        self.refresh()
        return len(self._index)

    def write_chunk(self, digests: Sequence[bytes], features: np.ndarray, tag: str | None = None) -> None:
        """Commit one chunk: digests (n,) of 32 bytes, features (n, d) (stored as float16).

        tag: ends the chunk's name (and its temporary files' names) instead of a random one,
        so that the files a killed writer left half-written can be found (:meth:`remove_leftovers`).
        Raises FeatureCacheError, writing nothing, when the features are not finite as float16 or
        not of the cache's width, or when the folder cannot be written.
        """
        if len(digests) != len(features):
            raise ValueError(f"{len(digests)} digests for {len(features)} feature rows")
        if not len(digests):
            return
        if np.ndim(features) != 2:
            raise ValueError(f"features of shape {np.shape(features)}; expected (n, d)")
        with np.errstate(over="ignore"):  # values beyond float16 become inf, refused just below
            stored = np.ascontiguousarray(features, dtype=config.FEATURE_STORE_DTYPE)
        self._refuse_unfit(digests, stored)
        try:
            self._write_chunk(digests, stored, tag or uuid.uuid4().hex[:8])
        except OSError as error:
            raise FeatureCacheError(
                f"cannot write to the feature cache {self.directory}: {error.strerror or error}; "
                "free space, fix its permissions or choose another with --cache-dir / UFD_CACHE_DIR"
            ) from error
        if self._dim is None:
            self._dim = stored.shape[1]

    def _refuse_unfit(self, digests: Sequence[bytes], stored: np.ndarray) -> None:
        """FeatureCacheError naming the setting, and the digests of non-finite rows, unless
        ``stored`` (n, d) is finite and of the cache's width."""
        encoder = self.setting.get("encoder", "?")
        where = f"encoder {encoder}, cache setting {self.directory}"
        if self._dim is not None and stored.shape[1] != self._dim:
            raise FeatureCacheError(f"refusing to cache {stored.shape[1]}-column features where the setting has "
                                    f"{self._dim} ({where}); nothing was written")
        bad = np.flatnonzero(~np.isfinite(stored).all(axis=1))
        if len(bad):
            named = ", ".join(digests[i].hex() for i in bad[:_SHOWN_DIGESTS])
            more = f" and {len(bad) - _SHOWN_DIGESTS} more" if len(bad) > _SHOWN_DIGESTS else ""
            limit = float(np.finfo(stored.dtype).max)
            raise FeatureCacheError(
                f"refusing to cache non-finite features (NaN, ±inf or beyond ±{limit:g} as {stored.dtype}) "
                f"of {len(bad)} of {len(stored)} images, digests {named}{more} ({where}); nothing was written")

    def _write_chunk(self, digests: Sequence[bytes], stored: np.ndarray, tag: str) -> None:
        self._ensure_directory()
        name = f"chunk-{time.time_ns():020d}-{os.getpid()}-{tag}"
        keys = np.frombuffer(b"".join(digests), dtype=np.uint8).reshape(len(digests), 32)
        features_path = self.directory / f"{name}.features.npy"
        keys_path = self.directory / f"{name}.keys.npy"
        atomic_write(features_path, lambda handle: np.save(handle, stored))
        atomic_write(keys_path, lambda handle: np.save(handle, keys))
        commit = {
            "rows": int(stored.shape[0]),
            "dim": int(stored.shape[1]),
            "dtype": str(stored.dtype),
            "features_sha256": file_sha256(features_path),
            "keys_sha256": file_sha256(keys_path),
        }
        payload = json.dumps(commit, indent=2).encode()
        atomic_write(self.directory / f"{name}.json", lambda handle: handle.write(payload))
