"""Devices and CPU threads: where tensors live, and how many threads torch may use."""
from __future__ import annotations

import contextlib
import os

import torch


def available_cores() -> int:
    """CPU cores this process may run on: its affinity where the system tells it (Linux), else
    every core (macOS and Windows have no ``os.sched_getaffinity``)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


@contextlib.contextmanager
def torch_threads(count: int | None):
    """Run the block with ``count`` torch intra-op threads (``None``: leave them as they are).

    Small operations (a 256 × d probe batch, one image's preprocessing) run several times
    faster on one thread than split over two on a busy 2-core machine.
    """
    if count is None:
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """``None``/``"auto"`` → CUDA when present, else CPU."""
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)
