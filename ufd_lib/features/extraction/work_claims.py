"""Claims on groups of images to encode, so that processes sharing a cache never repeat work.

Extraction encodes images in fixed groups (:func:`ufd_lib.features.extraction.extract.fill_cache`); before it
decodes a group, a process claims it by taking an exclusive, non-blocking ``flock`` on
``<cache setting folder>/claims/<group id>.lock`` (through the ``filelock`` package). Another
process that finds the lock taken leaves that group and comes back to it later; by then the
group is committed and nothing is left to do, or its claimer died, the kernel dropped the
lock, and the group is taken over. So two processes extracting the same images into one
cache share the work, and a process killed at any moment costs at most the group it held.

After taking a claim the caller must look at the cache again: the group may have been
committed between its first look and the claim. A claim is released only after its group's
chunk is committed, so that second look always sees finished work.
"""
from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path

from filelock import FileLock, Timeout



def group_id(digests: Sequence[bytes]) -> str:
    """Stable id of a group of 32-byte image digests (SHA-256 of their concatenation, 24 hex digits)."""
    return hashlib.sha256(b"".join(digests)).hexdigest()[:24]


class GroupClaims:
    """Non-blocking claims on groups of one cache setting folder (``FeatureCache.directory``).

    Where the folder cannot be written (a read-only shared cache) claims are granted without a
    lock: nobody can commit there, so there is nothing to coordinate, and a group that does
    need encoding fails at its commit with :class:`~ufd_lib.features.extraction.feature_cache.FeatureCacheError`.
    Groups whose only missing images are undecodable still need a claim on every run (they
    never become complete), and must work on such a cache.
    """

    def __init__(self, directory: Path):
        self.folder = Path(directory) / "claims"
        self._held: dict[str, FileLock | None] = {}

    def try_claim(self, group: str) -> bool:
        """Claim ``group`` (an id from :func:`group_id`); False while another live process holds it."""
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            lock = FileLock(self.folder / f"{group}.lock", timeout=0)
            lock.acquire()
        except Timeout:
            return False
        except OSError:
            lock = None
        self._held[group] = lock
        return True

    def release(self, group: str) -> None:
        """Give up a claim taken by :meth:`try_claim` (after its chunk is committed, or on failure)."""
        lock = self._held.pop(group)
        if lock is None:
            return
        try:
            os.unlink(lock.lock_file)
        except OSError:
            pass
        lock.release()

    def release_all(self) -> None:
        for group in list(self._held):
            self.release(group)
