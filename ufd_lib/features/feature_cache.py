"""Content-addressed, memory-mappable store of image features.

One folder per *setting* (encoder name and checkpoint hash, preprocessing, perturbation):
``<root>/<setting id>/setting.json`` plus chunks. A chunk is three files written in order,
each atomically (temporary name, fsync, rename):

- ``<chunk>.features.npy``: float16 (n, d) features, memory-mapped on read;
- ``<chunk>.keys.npy``: uint8 (n, 32), the SHA-256 digests of the image files' bytes;
- ``<chunk>.json``: row count, dimension and the SHA-256 of both files. It is written last
  and is the commit mark: a chunk without it is an interrupted write and is ignored.

Images are keyed by the SHA-256 of their bytes, so a changed file is never served stale
features and a file that appears twice is encoded once. An interrupted extraction loses at
most the chunk in progress. A committed chunk whose files no longer match their checksums
(truncated, bit-flipped) is set aside with a warning, and its images are encoded again.
"""
from __future__ import annotations

import hashlib
import json
import os
import time
import uuid
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ufd_lib import config
from ufd_lib.atomic_files import atomic_write
from ufd_lib.hashing import file_sha256

class FeatureCacheError(OSError):
    """The cache cannot be written (read-only, full, ...); nothing half-written is left."""


def setting_id(setting: dict) -> str:
    """Stable short id of a setting dict (its canonical JSON's SHA-256, 20 hex digits)."""
    canonical = json.dumps(setting, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:20]


class FeatureCache:
    """Features of one setting, addressed by image content digest.

    root: cache root (see :func:`ufd_lib.config.cache_dir`).
    setting: JSON-able dict describing everything that changes features.
    """

    def __init__(self, root: Path | str, setting: dict):
        self.setting = setting
        self.directory = Path(root) / setting_id(setting)
        self._index: dict[bytes, tuple[int, int]] | None = None
        self._chunks: list[np.ndarray] = []
        self._chunk_names: set[str] = set()

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
        for marker in sorted(self.directory.glob("chunk-*.json")):
            name = marker.name[: -len(".json")]
            if name in self._chunk_names:
                continue
            try:
                keys, features = self._read_chunk(name)
            except (OSError, ValueError, KeyError) as error:
                warnings.warn(f"feature cache chunk {self.directory / name} is corrupt ({error}); "
                              "it is set aside and its images will be encoded again")
                self._set_aside(name)
                continue
            chunk_number = len(self._chunks)
            self._chunks.append(features)
            self._chunk_names.add(name)
            for row, key in enumerate(keys):
                self._index.setdefault(key.tobytes(), (chunk_number, row))

    def _read_chunk(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """Keys (n, 32) and memory-mapped features (n, d) of a committed chunk, checksums verified."""
        commit = json.loads((self.directory / f"{name}.json").read_text())
        features_path = self.directory / f"{name}.features.npy"
        keys_path = self.directory / f"{name}.keys.npy"
        if file_sha256(features_path) != commit["features_sha256"] or file_sha256(keys_path) != commit["keys_sha256"]:
            raise ValueError("checksum mismatch")
        keys = np.load(keys_path)
        features = np.load(features_path, mmap_mode="r")
        if keys.shape != (commit["rows"], 32) or features.shape != (commit["rows"], commit["dim"]):
            raise ValueError("shape does not match its commit record")
        return keys, features

    def _set_aside(self, name: str) -> None:
        """Rename a corrupt chunk out of the index's way (left in place if the folder is read-only)."""
        for suffix in (".json", ".features.npy", ".keys.npy"):
            path = self.directory / f"{name}{suffix}"
            try:
                os.replace(path, self.directory / f"corrupt-{name}{suffix}")
            except OSError:
                pass

    def remove_leftovers(self, tag: str) -> int:
        """Delete the temporary files of chunks named with ``tag`` that a killed writer left
        (never read: only committed chunks are). Call it only while no live process can be
        writing such a chunk, e.g. holding the claim the tag names. Returns the files removed."""
        removed = 0
        for leftover in self.directory.glob(f".chunk-*-{tag}.*.tmp"):
            leftover.unlink(missing_ok=True)
            removed += 1
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
            return np.zeros((0, self.dim or 0), dtype=np.float32)
        locations = []
        for digest in digests:
            if digest not in self._index:
                raise KeyError(f"no cached features for image digest {digest.hex()}")
            locations.append(self._index[digest])
        out = np.empty((len(digests), self._chunks[locations[0][0]].shape[1]), dtype=np.float32)
        by_chunk: dict[int, list[tuple[int, int]]] = {}
        for position, (chunk, row) in enumerate(locations):
            by_chunk.setdefault(chunk, []).append((position, row))
        for chunk, pairs in by_chunk.items():
            positions, rows = map(np.array, zip(*pairs))
            order = np.argsort(rows)
            out[positions[order]] = self._chunks[chunk][rows[order]]
        return out

    @property
    def dim(self) -> int | None:
        self.refresh()
        return self._chunks[0].shape[1] if self._chunks else None

    def __len__(self) -> int:
        self.refresh()
        return len(self._index)

    def write_chunk(self, digests: Sequence[bytes], features: np.ndarray, tag: str | None = None) -> None:
        """Commit one chunk: digests (n,) of 32 bytes, features (n, d) (stored as float16).

        tag: ends the chunk's name (and its temporary files' names) instead of a random one,
        so that the files a killed writer left half-written can be found (:meth:`remove_leftovers`).
        """
        if len(digests) != len(features):
            raise ValueError(f"{len(digests)} digests for {len(features)} feature rows")
        if not len(digests):
            return
        try:
            self._write_chunk(digests, features, tag or uuid.uuid4().hex[:8])
        except OSError as error:
            raise FeatureCacheError(
                f"cannot write to the feature cache {self.directory}: {error.strerror or error}; "
                "free space, fix its permissions or choose another with --cache-dir / UFD_CACHE_DIR"
            ) from error

    def _write_chunk(self, digests: Sequence[bytes], features: np.ndarray, tag: str) -> None:
        self._ensure_directory()
        name = f"chunk-{time.time_ns():020d}-{os.getpid()}-{tag}"
        stored = np.ascontiguousarray(features, dtype=config.FEATURE_STORE_DTYPE)
        keys = np.frombuffer(b"".join(digests), dtype=np.uint8).reshape(len(digests), 32)
        features_path = self.directory / f"{name}.features.npy"
        keys_path = self.directory / f"{name}.keys.npy"
        atomic_write(features_path, lambda handle: np.save(handle, stored))
        atomic_write(keys_path, lambda handle: np.save(handle, keys))
        commit = {
            "rows": int(stored.shape[0]),
            "dim": int(stored.shape[1]),
            "dtype": config.FEATURE_STORE_DTYPE,
            "features_sha256": file_sha256(features_path),
            "keys_sha256": file_sha256(keys_path),
        }
        payload = json.dumps(commit, indent=2).encode()
        atomic_write(self.directory / f"{name}.json", lambda handle: handle.write(payload))
