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

A holder that is stopped (Ctrl-Z, ``SIGSTOP``) keeps its lock but does no work. Each claim
names its holder beside the lock (``<group id>.holder``: process id and start time, so that a
reused process id is not mistaken for it); a process that finds a group held by a stopped
process says so, once, naming it, and takes the group over (encodes it too): the cache keeps
one copy of each image's features whichever run commits first.
"""
from __future__ import annotations

import hashlib
import os
import warnings
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
        self._warned: set[int] = set()

    def try_claim(self, group: str) -> bool:
        """Claim ``group`` (an id from :func:`group_id`); False while another running process
        holds it. A group held by a stopped process is taken over, with a warning naming it."""
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            lock = FileLock(self.folder / f"{group}.lock", timeout=0)
            lock.acquire()
        except Timeout:
            holder = _stopped_holder(self.folder / f"{group}.holder")
            if holder is None:
                return False
            if holder not in self._warned:
                self._warned.add(holder)
                warnings.warn(f"process {holder} holds work in {self.folder} but is stopped (Ctrl-Z or SIGSTOP); "
                              f"encoding its images here too (resume it with `kill -CONT {holder}`, or end it)",
                              stacklevel=2)
            self._held[group] = None
            return True
        except OSError:
            lock = None
        if lock is not None:
            try:
                (self.folder / f"{group}.holder").write_text(_identity(os.getpid()) or "")
            except OSError:
                pass
        self._held[group] = lock
        return True

    def release(self, group: str) -> None:
        """Give up a claim taken by :meth:`try_claim` (after its chunk is committed, or on failure)."""
        lock = self._held.pop(group)
        if lock is None:
            return
        for leftover in (self.folder / f"{group}.holder", lock.lock_file):
            try:
                os.unlink(leftover)
            except OSError:
                pass
        lock.release()

    def release_all(self) -> None:
        for group in list(self._held):
            self.release(group)


def _stat_fields(pid: int) -> list[str] | None:
    """The fields of ``/proc/<pid>/stat`` after the command name (state first), or None."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (OSError, ValueError):
        return None
    return text[text.rfind(")") + 2 :].split()


def _identity(pid: int) -> str | None:
    """"<pid> <start time>" of a running process (Linux), or None."""
    fields = _stat_fields(pid)
    return f"{pid} {fields[19]}" if fields and len(fields) > 19 else None


def _stopped_holder(record: Path) -> int | None:
    """The process id in a ``.holder`` record when that very process (same start time) is
    stopped; None when it runs, is gone, or cannot be told."""
    try:
        pid_text, start = record.read_text().split()
        pid = int(pid_text)
    except (OSError, ValueError):
        return None
    fields = _stat_fields(pid)
    if not fields or len(fields) <= 19 or fields[19] != start:
        return None
    return pid if fields[0] in ("T", "t") else None
