"""Content-addressed, memory-mappable store of image features.

One folder per setting (encoder name and checkpoint hash, preprocessing, perturbation), holding
chunks: ``<chunk>.features.npy`` float16 (n, d), ``<chunk>.keys.npy`` uint8 (n, 32) image
SHA-256 digests, and ``<chunk>.json``, the commit record written last. Images are keyed by the
digest of their bytes, so a changed file is never served stale features and a file present twice
is encoded once; an interrupted extraction loses at most the chunk in progress.

A chunk that fails its checksums, its record, its width, finiteness, or is reached through a link
is set aside and never served; features that are not finite as float16, or of another width, are
never stored (:class:`FeatureCacheError`). A chunk is checked whole once, then recognised by the
identity of its files. ``docs/architecture.md`` lists every case.
"""
from __future__ import annotations

import functools
import hashlib
import io
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
import torch

from ufd_lib import config
from ufd_lib.atomic_files import atomic_write
from ufd_lib.devices import torch_threads
from ufd_lib.features.extraction.digest_memo import DigestMemo, Identity, identity_of, memo_key, regular_identity
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
_CHECKED_SUFFIXES = CHUNK_SUFFIXES[:2]  # the files whose checks the memo lets an open skip
# Memo rows of chunk files say "these bytes passed every check of a chunk", more than an image
# file's row ("these bytes hash to this"), so they are kept apart: memo_key is an absolute path,
# and these keys never are.
_MEMO_KEY_PREFIX = "checked feature chunk file:"


class FeatureCacheError(OSError):
    """A chunk cannot be committed: the cache folder cannot be written (read-only, full, ...) or
    the features are unfit to store (not finite, of another width). Nothing half-written is left."""


def setting_id(setting: dict) -> str:
    """Stable short id of a setting dict (its canonical JSON's SHA-256, 20 hex digits)."""
    canonical = json.dumps(setting, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:20]


def _open_chunk_file(path: Path) -> tuple[BinaryIO, os.stat_result]:
    """Binary handle on a chunk file, and the ``stat`` of the opened descriptor. Raises ValueError
    for a symbolic link (never followed, even if one replaces the file between the check and the
    open) or anything but a regular file."""
    if stat.S_ISLNK(os.lstat(path).st_mode):
        raise ValueError(f"{path.name} is a symbolic link")
    descriptor = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    found = os.fstat(descriptor)
    if not stat.S_ISREG(found.st_mode):
        os.close(descriptor)
        raise ValueError(f"{path.name} is not a regular file")
    return os.fdopen(descriptor, "rb"), found


def _chunk_memo_key(path: Path) -> str:
    return _MEMO_KEY_PREFIX + memo_key(path)



def _sha256(handle: BinaryIO) -> str:
    """Hex SHA-256 of an open file from its start; leaves the handle at its start."""
    digest = hashlib.file_digest(handle, "sha256").hexdigest()
    handle.seek(0)
    return digest


def _check_sum(handle: BinaryIO, found: os.stat_result, expected: str,
               remembered: tuple[Identity, bytes] | None) -> bool:
    """Raise ValueError unless the open file's SHA-256 is ``expected`` (hex). remembered: the
    memo's (identity, digest) for this file, or None. Returns True, reading nothing, when the
    memo vouches for the file: ``found`` (the descriptor's ``stat``) is that identity and the
    digest is ``expected``; False when it was hashed."""
    if remembered is not None and remembered == (identity_of(found), bytes.fromhex(expected)):
        return True
    if _sha256(handle) != expected:
        raise ValueError("checksum mismatch")
    return False


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


def _npy_header(handle: BinaryIO) -> tuple[tuple[int, ...], np.dtype]:
    """(shape, dtype) of the C-ordered .npy (format 1.0) array in an open file, from its start;
    leaves the handle at the data. ValueError for any other format or order."""
    prefix = handle.read(10)  # magic string, version, header length
    if len(prefix) == 10 and prefix[6:8] != b"\x01\x00":
        raise ValueError(f".npy format {tuple(prefix[6:8])} where the cache writes (1, 0)")
    header = prefix + handle.read(int.from_bytes(prefix[8:10], "little") if len(prefix) == 10 else 0)
    return _parsed_header(header)


@functools.lru_cache(maxsize=64)
def _parsed_header(header: bytes) -> tuple[tuple[int, ...], np.dtype]:
    """Parsed by numpy, once per distinct header (a cache's chunks share a few: numpy's parser
    compiles the header's text, a third of the cost of opening a chunk)."""
    stream = io.BytesIO(header)
    np.lib.format.read_magic(stream)
    shape, fortran_order, dtype = np.lib.format.read_array_header_1_0(stream)
    if fortran_order or dtype.hasobject:
        raise ValueError(f"an array in Fortran order or of Python objects ({dtype})")
    return shape, dtype


def _memory_map(handle: BinaryIO) -> np.ndarray:
    """The .npy features in an open file, memory-mapped read-only from the same descriptor."""
    shape, dtype = _npy_header(handle)
    if len(shape) != 2 or dtype.kind != "f" or dtype.itemsize not in (2, 4, 8):
        raise ValueError(f"features of shape {shape}, dtype {dtype}")
    return np.memmap(handle, dtype=dtype, mode="r", offset=handle.tell(), shape=shape)


def _read_array(handle: BinaryIO) -> np.ndarray:
    """The .npy array in an open file, read whole."""
    shape, dtype = _npy_header(handle)
    count = int(np.prod(shape))
    array = np.fromfile(handle, dtype=dtype, count=count)
    if len(array) != count:
        raise ValueError(f"{len(array)} of {count} values ({shape}, {dtype}): the file is cut short")
    return array.reshape(shape)


def fresh_features(rows: int, dim: int) -> torch.Tensor:
    """A float32 (rows, dim) tensor with its memory touched in order, on the calling thread alone
    (no thread pool). Allocated by torch: numpy asks the kernel for huge pages for large arrays,
    and where it compacts memory to find them (transparent huge pages with defrag=madvise, a
    common default) a first write costs several times more. Touched in order: rows later written
    in another order would otherwise fault page by page at random."""
    features = torch.empty((rows, dim), dtype=torch.float32)
    features.numpy().fill(0)
    return features


def stored_features(features: np.ndarray) -> np.ndarray:
    """Features (n, d) as the cache stores them: C-contiguous :data:`ufd_lib.config.FEATURE_STORE_DTYPE`
    (float16), values beyond its range made ±inf. float32, what encoders give, is converted by
    torch on one thread (the processor's float16 instructions, faster than numpy's value-by-value
    conversion, with the same IEEE rounding, to nearest, ties to even)."""
    if isinstance(features, np.ndarray) and features.dtype == np.float32 and features.flags.writeable \
            and config.FEATURE_STORE_DTYPE == "float16":
        with torch_threads(1):
            return torch.from_numpy(features).to(torch.float16, memory_format=torch.contiguous_format).numpy()
    with np.errstate(over="ignore"):
        return np.ascontiguousarray(features, dtype=config.FEATURE_STORE_DTYPE)


def _non_finite(features: np.ndarray) -> np.ndarray:
    """bool, the shape of ``features`` (float16/32/64): NaN or ±inf, i.e. every IEEE 754 exponent
    bit set; a bit test, cheaper than ``np.isfinite`` on float16."""
    info = np.finfo(features.dtype)
    exponent = ((1 << info.nexp) - 1) << info.nmant
    bits = features.view(f"u{features.dtype.itemsize}")
    return (bits & exponent) == exponent


def all_finite(features: np.ndarray) -> bool:
    """Whether a float16/32/64 array holds no NaN or ±inf (:func:`_non_finite`)."""
    return not _non_finite(features).any()


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
        self._index: dict[bytes, int] | None = None  # digest -> row number across the chunks, in order
        self._chunks: list[np.ndarray] = []
        self._chunk_starts: list[int] = [0]  # row number of each chunk's first row, then the total
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
        names = [marker.name[: -len(".json")] for marker in sorted(self.directory.glob("chunk-*.json"))]
        names = [name for name in names if name not in self._chunk_names and name not in self._rejected]
        if not names:
            return
        memo = DigestMemo(self.directory.parent)
        try:
            readable = self._read_chunks(names, memo)
            if self._dim is None and readable:
                rows_by_width = Counter()
                for _, keys, features, _ in readable:
                    rows_by_width[features.shape[1]] += len(keys)
                self._dim = max(rows_by_width, key=rows_by_width.get)  # a tie goes to the oldest chunk's
            accepted = []
            for name, keys, features, checked in readable:
                if features.shape[1] == self._dim:
                    accepted.append((name, keys, features, checked))
                else:
                    self._set_aside(name, f"{features.shape[1]} feature columns where the setting has {self._dim}")
            memo.remember([entry for *_, checked in accepted for entry in checked])  # only chunks that passed all
        finally:
            memo.close()
        self._add_to_index(accepted)

    def _add_to_index(self, chunks: Sequence[tuple[str, np.ndarray, np.ndarray, list]]) -> None:
        """Serve (name, keys, features, _) chunks after those already served; a digest already
        indexed keeps its row, and within ``chunks`` the first row holding a digest wins."""
        digests = []
        for name, keys, features, _ in chunks:
            self._chunks.append(features)
            self._chunk_names.add(name)
            self._chunk_starts.append(self._chunk_starts[-1] + len(keys))
            digests += np.frombuffer(keys.tobytes(), dtype="V32").tolist()  # 32-byte strings, zeros kept
        total = self._chunk_starts[-1]
        found = dict(zip(reversed(digests), range(total - 1, total - len(digests) - 1, -1)))  # reversed: first wins
        found.update(self._index)
        self._index = found

    def _read_chunks(self, names: Sequence[str], memo: DigestMemo) -> list[tuple[str, np.ndarray, np.ndarray, list]]:
        """(name, keys, features, memo entries) of each chunk of ``names`` that passes its checks
        (:meth:`_read_chunk`, told what ``memo`` remembers of its files); the others are set aside."""
        paths = [self.directory / f"{name}{suffix}" for name in names for suffix in _CHECKED_SUFFIXES]
        keys = [_chunk_memo_key(path) for path in paths]
        identities = [regular_identity(path, follow_symlinks=False) for path in paths]
        remembered = {key: (identity, digest)
                      for key, identity, digest in zip(keys, identities, memo.lookup(keys, identities))
                      if digest is not None}
        readable = []
        for name in names:
            try:
                readable.append((name, *self._read_chunk(name, remembered)))
            except (OSError, ValueError, EOFError, RecursionError) as error:  # RecursionError: JSON nested too deep
                self._set_aside(name, str(error))
        return readable

    def _read_chunk(self, name: str, remembered: dict[str, tuple[Identity, bytes]]
                    ) -> tuple[np.ndarray, np.ndarray, list]:
        """Keys uint8 (n, 32) and memory-mapped finite features (n, d) of a committed chunk, and
        the memo entries (key, identity, 32-byte digest) of its ``.npy`` files that were checked
        whole. Each file is read through one descriptor that is checked, hashed (unless
        ``remembered``, memo key -> (identity, digest), vouches for it) and then read; features
        the memo vouches for are not scanned for NaN/inf either."""
        handle, _ = _open_chunk_file(self.directory / f"{name}.json")
        with handle:
            commit = _commit_record(handle.read(_RECORD_MAX_BYTES + 1))
        features_path, keys_path = (self.directory / f"{name}{suffix}" for suffix in _CHECKED_SUFFIXES)
        handle, features_found = _open_chunk_file(features_path)
        with handle:
            features_vouched = _check_sum(handle, features_found, commit["features_sha256"],
                                          remembered.get(_chunk_memo_key(features_path)))
            features = _memory_map(handle)
        handle, keys_found = _open_chunk_file(keys_path)
        with handle:
            keys_vouched = _check_sum(handle, keys_found, commit["keys_sha256"],
                                      remembered.get(_chunk_memo_key(keys_path)))
            keys = _read_array(handle)
        if keys.shape != (commit["rows"], 32) or keys.dtype != np.uint8 \
                or features.shape != (commit["rows"], commit["dim"]) or str(features.dtype) != commit["dtype"]:
            raise ValueError("shape or dtype does not match its commit record")
        if not features_vouched and not all_finite(features):
            raise ValueError("non-finite features (NaN or ±inf)")
        # The identities are those taken before reading: a file changed since never matches its row.
        files = ((features_path, features_found, features_vouched, commit["features_sha256"]),
                 (keys_path, keys_found, keys_vouched, commit["keys_sha256"]))
        checked = [(_chunk_memo_key(path), identity_of(found), bytes.fromhex(sha256))
                   for path, found, vouched, sha256 in files if not vouched]
        return keys, features, checked

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
        try:
            names = os.listdir(self.directory)
        except OSError:
            return 0
        # The names globs ".chunk-*-{tag}.*.tmp" and "chunk-*-{tag}{suffix}" would match, tested
        # as strings: a glob would compile a pattern for every new tag.
        marker = f"-{tag}."
        leftovers = [self.directory / name for name in names
                     if name.startswith(".chunk-") and name.endswith(".tmp")
                     and marker in name[len(".chunk-") : -len(".tmp")]]
        for suffix in CHUNK_SUFFIXES[:-1]:
            for name in names:
                if name.startswith("chunk-") and name[len("chunk-") :].endswith(f"-{tag}{suffix}") \
                        and not os.path.lexists(self.directory / f"{name[: -len(suffix)]}.json"):
                    leftovers.append(self.directory / name)
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
        return np.fromiter(map(self._index.__contains__, digests), dtype=bool, count=len(digests))

    def load(self, digests: Sequence[bytes], out: torch.Tensor | None = None) -> np.ndarray:
        """Features float32 (n, d) for the given digests, read from the memory-mapped chunks.

        out: float32 (n, d) to write them into, e.g. allocated (and its pages touched) while
        something else was going on; by default a new array. Raises KeyError naming the first
        digest that is not cached.
        """
        self.refresh()
        if not digests:
            return np.zeros((0, self._dim or 0), dtype=np.float32)
        try:
            rows = np.fromiter(map(self._index.__getitem__, digests), dtype=np.int64, count=len(digests))
        except KeyError as missing:
            raise KeyError(f"no cached features for image digest {missing.args[0].hex()}") from None
        if out is None or tuple(out.shape) != (len(digests), self._dim) or out.dtype != torch.float32:
            out = fresh_features(len(digests), self._dim)
        order = np.argsort(rows, kind="stable")  # by chunk, rows ascending within it: sequential reads
        ordered_rows = rows[order]
        bounds = np.searchsorted(ordered_rows, self._chunk_starts)
        target = out.numpy()
        # One chunk's rows at a time, converted by torch (with the processor's float16
        # instructions; numpy converts one value at a time) on one thread,
        # then put in place: no intermediate the size of the result. A chunk is too small for
        # torch's thread pool to pay: its threads would spin for milliseconds after each one.
        with torch_threads(1):
            for chunk, start, low, high in zip(self._chunks, self._chunk_starts, bounds[:-1], bounds[1:]):
                if low < high:
                    picked = np.take(chunk, ordered_rows[low:high] - start, axis=0)
                    native = picked.astype(picked.dtype.newbyteorder("="), copy=False)
                    target[order[low:high]] = torch.from_numpy(native).float().numpy()
        return target

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
        stored = stored_features(features)  # values beyond float16 become inf, refused just below
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
        bad = np.flatnonzero(_non_finite(stored).any(axis=1))
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
