"""A CPU-time deadline per decoded image: a slow decode is refused, named as too slow, and a
timer set before is put back."""
from __future__ import annotations

import io
import signal

import numpy as np
import pytest
from PIL import Image

from ufd_lib.features import preprocess
from ufd_lib.features.decode_deadline import DecodeTooSlow, cpu_deadline
from ufd_lib.features.preprocess import ImageRejected, decode_image


def _large_png() -> bytes:
    pixels = np.random.default_rng(0).integers(0, 256, (2000, 2000, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def test_a_decode_over_its_deadline_is_refused_as_too_slow(monkeypatch):
    data = _large_png()
    assert decode_image(data).size == (2000, 2000)
    monkeypatch.setattr(preprocess, "DECODE_DEADLINE_S", 0.001)
    with pytest.raises(ImageRejected, match="too slow to decode"):
        decode_image(data)


def test_a_timer_set_before_is_put_back():
    fired = []
    previous = signal.signal(signal.SIGVTALRM, lambda *_: fired.append(True))
    try:
        signal.setitimer(signal.ITIMER_VIRTUAL, 100.0)
        with cpu_deadline(50.0):
            pass
        remaining, _ = signal.getitimer(signal.ITIMER_VIRTUAL)
        assert 90 < remaining <= 100.1 and signal.getsignal(signal.SIGVTALRM) is not None and not fired
    finally:
        signal.setitimer(signal.ITIMER_VIRTUAL, 0)
        signal.signal(signal.SIGVTALRM, previous)


def test_the_deadline_fires_inside_python_work():
    with pytest.raises(DecodeTooSlow), cpu_deadline(0.01):
        while True:
            sum(range(1000))
