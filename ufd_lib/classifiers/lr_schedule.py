"""The released training code's learning-rate schedule with early stopping (linear probe and
the trained detector)."""
from __future__ import annotations

import torch


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
