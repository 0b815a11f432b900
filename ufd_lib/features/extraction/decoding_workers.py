"""Decoding for extraction: files read, checked and decoded into a ring of uint8 batches, in this
process or in DataLoader worker processes, which can be kept from one extraction to the next.

In: batches of (ring slot, position, index, path, planned SHA-256) from the extraction's sampler.
Out: per batch (slot, [(position, index)] decoded, [(index, reason)] rejected); each decoded crop,
uint8 (224, 224, 3), is written to ``ring[slot, position]``. A file whose bytes no longer match
the planned digest is rejected, never decoded.

The ring is allocated once per pool: fresh memory for every batch costs more in page faults than
the decoding it carries. Inside :func:`kept_decoding_workers`, extractions with the same
:class:`DecodeSettings` share one pool; other settings replace it, so at most one set of workers
is ever idle. A worker that dies is reported by PyTorch at once, and the next extraction starts
new workers.
"""
from __future__ import annotations

import contextlib
import functools
import multiprocessing
import os
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from ufd_lib import config
from ufd_lib.features.preprocess import ImageRejected, Perturbation, load_pixels

# Batches each DataLoader worker decodes ahead of the model (PyTorch's default is 2).
PREFETCH_BATCHES_PER_WORKER = 4


@dataclass(frozen=True)
class DecodeSettings:
    """What a pool's workers are started with; extractions that agree on all of it share a pool.

    max_pixels: images with more pixels are refused from their header; max_bytes: files with more
    bytes are refused unread; batch_size: images per ring slot; num_workers: decoding processes
    (0: decode in this process).
    """

    perturbation: Perturbation
    max_pixels: int
    max_bytes: int
    batch_size: int
    num_workers: int

    @property
    def slots(self) -> int:
        """Batches in the ring: a worker may be decoding every batch the loader has asked for
        while the model holds one more."""
        return PREFETCH_BATCHES_PER_WORKER * self.num_workers + 1


class ImageFiles(Dataset):
    """Reads, checks and decodes the file of one item into its slot of the ring.

    An item is (slot, position, index, path, SHA-256 (32 bytes) the plan used); returns
    (slot, position, index, reason the file was rejected or None).
    """

    def __init__(self, settings: DecodeSettings, ring: torch.Tensor):
        self.settings, self.ring = settings, ring
        self._slots: np.ndarray | None = None  # numpy's view of the ring, made where the items are read

    def __getitem__(self, item: tuple[int, int, int, str, bytes]):
        slot, position, index, path, digest = item
        settings = self.settings
        try:
            pixels = load_pixels(path, settings.perturbation, settings.max_pixels, settings.max_bytes,
                                 expected_sha256=digest)
        except ImageRejected as error:
            return slot, position, index, str(error)
        if self._slots is None:
            self._slots = self.ring.numpy()  # numpy assignment is cheaper than tensor indexing (benchmarks/README.md)
        self._slots[slot, position] = pixels
        return slot, position, index, None


def _collate(items):
    """→ (ring slot, [(position, index)] of decoded images, [(index, reason)] of rejected files)."""
    good = [(position, index) for _, position, index, reason in items if reason is None]
    bad = [(index, reason) for _, _, index, reason in items if reason is not None]
    return items[0][0], good, bad


def _ring(slots: int, batch_size: int, shared: bool) -> torch.Tensor:
    """uint8 (slots, batch_size, 224, 224, 3): decoded batches on their way to the model, in
    shared memory when worker processes write them."""
    shape = (slots, batch_size, config.CROP_SIZE, config.CROP_SIZE, 3)
    if not shared:
        return torch.empty(shape, dtype=torch.uint8)
    # Made in shared memory (share_memory_ would first fill private pages, then copy them over).
    storage = torch.UntypedStorage._new_shared(int(np.prod(shape)))
    return torch.empty(0, dtype=torch.uint8).set_(storage).view(shape)


def _record_pid(pids: torch.Tensor, worker_id: int) -> None:
    """In a worker, as it starts: its process id into the pool's shared ``pids``."""
    pids[worker_id] = os.getpid()


class _CurrentBatches:
    """The loader's batch sampler: whichever batches the pass under way hands out."""

    def __init__(self):
        self.batches: Iterable[list] = ()

    def __iter__(self):
        return iter(self.batches)


class DecodingPool:
    """A ring of decoded batches and the DataLoader that fills it, for one :class:`DecodeSettings`.

    With workers they are persistent: they start with the first pass and stay, idle, until
    :meth:`close`; a pass that ends early (an error, an interruption) must be followed by
    :meth:`close`, as :func:`decoding_pool` does, since its workers may still hold its batches.
    """

    def __init__(self, settings: DecodeSettings):
        self.settings = settings
        self.ring = _ring(settings.slots, settings.batch_size, settings.num_workers > 0)
        self._sampler = _CurrentBatches()
        self._pass: Iterator | None = None
        # The workers' process ids (0 until started), in shared memory: whether they still live.
        self._pids = torch.zeros(settings.num_workers, dtype=torch.int64)
        workers = {}
        if settings.num_workers:
            workers = {"prefetch_factor": PREFETCH_BATCHES_PER_WORKER, "persistent_workers": True,
                       "worker_init_fn": functools.partial(_record_pid, self._pids.share_memory_())}
        self._loader: DataLoader | None = DataLoader(ImageFiles(settings, self.ring), batch_sampler=self._sampler,
                                                     num_workers=settings.num_workers, collate_fn=_collate, **workers)

    def batches(self, sampler: Iterable[list]) -> Iterator:
        """Decoded batches of one pass: (ring slot, [(position, index)], [(index, reason)]) for
        each batch ``sampler`` hands out, in its order."""
        if self._loader is None:
            raise RuntimeError("this decoding pool is closed")
        self._sampler.batches = sampler
        self._pass = self._decoded(self._loader)
        return self._pass

    def _decoded(self, loader: DataLoader) -> Iterator:
        try:
            yield from loader
        finally:
            self._sampler.batches = ()  # a kept pool holds no extraction's paths between extractions

    def workers_alive(self) -> bool:
        """False when a worker this pool started has ended since (killed while idle, say)."""
        started = [pid for pid in self._pids.tolist() if pid]
        return not started or set(started) <= {child.pid for child in multiprocessing.active_children()}

    def close(self) -> None:
        """Stop the workers and let the ring go. The DataLoader shuts its workers down with its
        last iterator: the pass under way lets go of it here, not when a traceback that holds it
        is dropped (a notebook keeps the last one)."""
        if self._pass is not None:
            self._pass.close()
        self._loader = self._pass = None


class _KeptPool:
    """The pool kept by :func:`kept_decoding_workers`: at most one, with workers, used by one
    extraction at a time (``in_use``)."""

    def __init__(self):
        self.pool: DecodingPool | None = None
        self.in_use = threading.Lock()

    def take(self, settings: DecodeSettings) -> DecodingPool:
        if self.pool is None or self.pool.settings != settings or not self.pool.workers_alive():
            self.discard()
            self.pool = DecodingPool(settings)
        return self.pool

    def discard(self) -> None:
        if self.pool is not None:
            self.pool.close()
            self.pool = None


_kept: _KeptPool | None = None


@contextlib.contextmanager
def kept_decoding_workers():
    """Within this block (or a function it decorates), extractions that decode in worker
    processes with the same :class:`DecodeSettings` share them, started once; they stop when
    the block ends. Nested blocks share the outermost one's."""
    global _kept
    if _kept is not None:
        yield
        return
    _kept = kept = _KeptPool()
    try:
        yield
    finally:
        _kept = None
        with kept.in_use:  # an extraction on another thread finishes first
            kept.discard()


@contextlib.contextmanager
def decoding_pool(settings: DecodeSettings):
    """The pool one extraction decodes with: the kept one (:func:`kept_decoding_workers`) when it
    uses workers and no other thread's extraction is using it, otherwise its own, closed when it
    ends. A kept pool whose pass failed is closed."""
    kept = _kept if settings.num_workers > 0 else None
    if kept is None or not kept.in_use.acquire(blocking=False):
        pool = DecodingPool(settings)
        try:
            yield pool
        finally:
            pool.close()
        return
    try:
        yield kept.take(settings)
    except BaseException:
        kept.discard()
        raise
    finally:
        kept.in_use.release()
