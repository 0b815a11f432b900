"""A CPU-time deadline for decoding one image, so that a crafted file (a progressive JPEG with
thousands of scans, say: small, under the pixel limit, and minutes to decode) is refused as too
slow instead of holding a run.

The deadline is a ``SIGVTALRM`` timer on the process's CPU time (``setitimer(ITIMER_VIRTUAL)``),
armed around the decode and raising :class:`DecodeTooSlow` when it fires; PIL decodes in
blocks, between which the signal is handled. Signals can only be handled on the main thread:
elsewhere the decode runs without a deadline. A timer and handler already set (by a test
runner, say) are put back afterwards.
"""
from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

# CPU seconds one image may take to decode and convert: an ordinary image of the largest size
# allowed (config.MAX_IMAGE_PIXELS) takes a small fraction of it.
DECODE_DEADLINE_S = 20.0


class DecodeTooSlow(Exception):
    """Decoding one image took more CPU time than its deadline."""


def _raise(signum, frame) -> None:
    raise DecodeTooSlow


@contextmanager
def cpu_deadline(seconds: float) -> Iterator[None]:
    """Raise :class:`DecodeTooSlow` inside the block once it has used ``seconds`` of CPU time
    (on the main thread; elsewhere, no deadline)."""
    if not hasattr(signal, "setitimer") or threading.current_thread() is not threading.main_thread():
        yield
        return
    previous_handler = signal.signal(signal.SIGVTALRM, _raise)
    started = time.process_time()
    previous_timer = signal.setitimer(signal.ITIMER_VIRTUAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_VIRTUAL, 0)
        signal.signal(signal.SIGVTALRM, previous_handler)
        if previous_timer[0] > 0:
            left = previous_timer[0] - (time.process_time() - started)
            signal.setitimer(signal.ITIMER_VIRTUAL, max(left, 1e-3), previous_timer[1])
