"""Pieces shared by the two trained models (linear probe, end-to-end detector)."""
from __future__ import annotations

import contextlib

import torch


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


class ReleasedLearningRateSchedule:
    """Early stopping of the released training code (UniversalFakeDetect ``train.py``).

    After ``patience`` epochs without a validation accuracy gain of at least ``min_delta``
    the learning rate is divided by 10 and counting starts afresh; training stops once the
    learning rate falls below ``min_lr``.
    """

    def __init__(self, optimiser: torch.optim.Optimizer, patience: int, min_delta: float, min_lr: float):
        self.optimiser = optimiser
        self.patience = patience
        self.min_delta = min_delta
        self.min_lr = min_lr
        self._best = -1.0
        self._since_improvement = 0

    def step(self, accuracy: float) -> bool:
        """Record one epoch's validation accuracy; False when training should stop."""
        if accuracy >= self._best + self.min_delta:
            self._best, self._since_improvement = accuracy, 0
            return True
        self._since_improvement += 1
        if self._since_improvement < self.patience:
            return True
        for group in self.optimiser.param_groups:
            group["lr"] /= 10
        if self.optimiser.param_groups[0]["lr"] < self.min_lr:
            return False
        self._best, self._since_improvement = -1.0, 0
        return True
