"""Racy file identities: when a file's (size, mtime, ctime, inode, device) may stay the same
across a rewrite, so a hash remembered by that identity must not be trusted yet.

A file system stores timestamps at some granularity (1 s on ext3, ext4 with 128-byte inodes
and many network and FUSE mounts, 2 s on FAT), so a same-size rewrite in place soon after a
file was hashed can leave its whole identity as it was: git's "racily clean" problem. Every
write sets the ctime to the file system's clock, which is never older than the moment the
write began less one kernel tick; so a file whose ctime is older than the moment its hashing
began, by a tick and rounded down to the granularity, cannot be rewritten without its identity
changing. The granularity is judged from the ctime itself: whole seconds are taken as a coarse
file system (:data:`COARSE_GRANULARITY_NS`), anything finer as a fine one.
"""
from __future__ import annotations

# The coarsest timestamp granularity in common use (FAT's; 1 s elsewhere), assumed for a ctime
# in whole seconds; and the most the file system's clock may lag time.time_ns() (a tick at 100 Hz).
COARSE_GRANULARITY_NS = 2_000_000_000
CLOCK_TICK_NS = 10_000_000


def is_racy(ctime_ns: int, hashed_from_ns: int) -> bool:
    """True when a write that began at or after ``hashed_from_ns`` (``time.time_ns()`` taken
    before the file was read) could leave a file whose ctime is ``ctime_ns`` with the same
    identity: its ctime is not older than ``hashed_from_ns`` less a clock tick, rounded down
    to the granularity the ctime's own value shows."""
    reference = hashed_from_ns - CLOCK_TICK_NS
    if ctime_ns % 1_000_000_000 == 0:
        reference -= reference % COARSE_GRANULARITY_NS
    return ctime_ns >= reference
