"""Nearest neighbour in cosine similarity against a real and a fake feature bank (paper §4).

No official code exists. A test image's score is the mean cosine similarity to its k nearest
fake-bank features minus the mean similarity to its k nearest real-bank features; it is called
fake when the score is above 0. For k = 1 this is the paper's rule: fake when the nearest fake
feature is closer than the nearest real one.
"""
from __future__ import annotations

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin

from . import config
from .encoders import resolve_device


def l2_normalise(features: np.ndarray | torch.Tensor) -> torch.Tensor:
    """(n, d) → float32 tensor (n, d) with unit rows."""
    tensor = torch.as_tensor(np.asarray(features, dtype=np.float32))
    return torch.nn.functional.normalize(tensor, dim=1)


def topk_similarity(queries: torch.Tensor, bank: torch.Tensor, k: int, block_size: int) -> torch.Tensor:
    """Mean of the k largest cosine similarities of each query to the bank.

    queries: (q, d) and bank: (n, d), both unit-norm float32 on one device. The bank is scanned
    in blocks of ``block_size`` rows so memory stays O(q · (block_size + k)). Returns (q,).
    """
    best = torch.full((queries.shape[0], k), -torch.inf, device=queries.device)
    for start in range(0, bank.shape[0], block_size):
        similarity = queries @ bank[start : start + block_size].T
        best = torch.topk(torch.cat([best, similarity], dim=1), k, dim=1).values
    return best.mean(dim=1)


class NearestNeighbourClassifier(ClassifierMixin, BaseEstimator):
    """k-nearest-neighbour real/fake classifier on cosine similarity.

    k: neighbours averaged per bank ("voting pool size"); the paper reports k = 1..9.
    block_size: bank rows compared at once. device: torch device for the search.
    Labels: 0 = real, 1 = fake. Learned state: ``real_bank_``, ``fake_bank_`` (unit rows).
    """

    threshold = config.KNN_THRESHOLD

    def __init__(self, k: int = 1, block_size: int = 65536, device: str | None = None):
        self.k = k
        self.block_size = block_size
        self.device = device

    def fit(self, X, y):
        """X: (n, d) training features, y: (n,) labels in {0, 1}; both classes needed."""
        y = np.asarray(y)
        if not (isinstance(self.k, int | np.integer) and self.k >= 1):
            raise ValueError(f"k must be a positive integer, got {self.k!r}")
        for label, name in ((0, "real"), (1, "fake")):
            count = int((y == label).sum())
            if count < self.k:
                raise ValueError(f"the {name} bank has {count} features, fewer than k={self.k}")
        device = resolve_device(self.device)
        features = l2_normalise(X)
        self.real_bank_ = features[torch.as_tensor(y == 0)].to(device)
        self.fake_bank_ = features[torch.as_tensor(y == 1)].to(device)
        self.classes_ = np.array([0, 1])
        self.n_features_in_ = features.shape[1]
        return self

    def decision_function(self, X) -> np.ndarray:
        """Cosine margin (n,): mean top-k fake similarity − mean top-k real similarity."""
        queries = l2_normalise(X).to(self.real_bank_.device)
        if queries.shape[1] != self.n_features_in_:
            raise ValueError(f"features have {queries.shape[1]} dimensions, the banks {self.n_features_in_}")
        margins = []
        for start in range(0, queries.shape[0], 4096):
            block = queries[start : start + 4096]
            fake = topk_similarity(block, self.fake_bank_, self.k, self.block_size)
            real = topk_similarity(block, self.real_bank_, self.k, self.block_size)
            margins.append((fake - real).cpu())
        return torch.cat(margins).numpy() if margins else np.zeros(0, dtype=np.float32)

    def predict(self, X) -> np.ndarray:
        return (self.decision_function(X) > self.threshold).astype(int)
