"""Nearest neighbour in cosine similarity against a real and a fake feature bank (paper §4).

No official code exists. A test image's score is the mean cosine similarity to its k nearest
fake-bank features minus the mean similarity to its k nearest real-bank features; it is called
fake when the score is above 0. For k = 1 this is the paper's rule: fake when the nearest fake
feature is closer than the nearest real one.

The search itself (exact, in bounded memory, faiss on CPU and torch on CUDA) is
:mod:`ufd_lib.classifiers.nn_search`, the one nearest-neighbour search of the package.
"""
from __future__ import annotations

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin

from ufd_lib import config
from ufd_lib.classifiers.nn_search import normalise_rows, topk_mean_similarity


def _bank_rows(X: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Rows of X where mask is true: a view when they are one contiguous run (no copy of a
    memory-mapped bank), else a copy in X's own dtype."""
    selected = np.flatnonzero(mask)
    if len(selected) and selected[-1] - selected[0] + 1 == len(selected):
        return X[selected[0] : selected[-1] + 1]
    return X[mask]


class NearestNeighbourClassifier(ClassifierMixin, BaseEstimator):
    """k-nearest-neighbour real/fake classifier on cosine similarity.

    k: neighbours averaged per bank ("voting pool size"); the paper reports k = 1..9.
    block_size: bank rows compared at once. device: torch device for the search (CPU: faiss;
    CUDA: torch matmul; see :mod:`ufd_lib.classifiers.nn_search`).
    Labels: 0 = real, 1 = fake. Learned state: ``real_bank_``, ``fake_bank_``: the training
    features of each class as given, (n, d) numpy arrays in their own dtype (a float16
    memory-mapped X whose classes are contiguous is kept as views, not copied); rows are
    L2-normalised block by block at search time.
    """

    threshold = config.KNN_THRESHOLD

    def __init__(self, k: int = 1, block_size: int = 65536, device: str | None = None):
        self.k = k
        self.block_size = block_size
        self.device = device

    def fit(self, X, y):
        """X: (n, d) training features (array, memmap or tensor), y: (n,) labels in {0, 1};
        both classes needed."""
        y = np.asarray(y)
        if not (isinstance(self.k, int | np.integer) and self.k >= 1):
            raise ValueError(f"k must be a positive integer, got {self.k!r}")
        X = X.detach().cpu().numpy() if isinstance(X, torch.Tensor) else np.asarray(X)
        if not np.issubdtype(X.dtype, np.floating):
            X = X.astype(np.float32)
        if X.ndim != 2 or len(X) != len(y):
            raise ValueError(f"X of shape {X.shape} for {len(y)} labels; expected (n, d) with n = len(y)")
        for label, name in ((0, "real"), (1, "fake")):
            count = int((y == label).sum())
            if count < self.k:
                raise ValueError(f"the {name} bank has {count} features, fewer than k={self.k}")
        self.real_bank_ = _bank_rows(X, y == 0)
        self.fake_bank_ = _bank_rows(X, y == 1)
        self.classes_ = np.array([0, 1])
        self.n_features_in_ = X.shape[1]
        return self

    def bank_similarities(self, X) -> tuple[np.ndarray, np.ndarray]:
        """(fake, real): the mean cosine similarity (n,) float32 of each row of X to its k
        nearest features in the fake bank and in the real bank."""
        queries = normalise_rows(X)
        if queries.ndim != 2 or queries.shape[1] != self.n_features_in_:
            raise ValueError(f"features have {queries.shape[-1]} dimensions, the banks {self.n_features_in_}")
        if len(queries) == 0:
            return np.zeros(0, dtype=np.float32), np.zeros(0, dtype=np.float32)
        options = {"block_rows": self.block_size, "device": self.device}
        fake = topk_mean_similarity(queries, self.fake_bank_, self.k, **options)
        real = topk_mean_similarity(queries, self.real_bank_, self.k, **options)
        return fake, real

    def decision_function(self, X) -> np.ndarray:
        """Cosine margin (n,) float32: mean top-k fake similarity − mean top-k real similarity."""
        fake, real = self.bank_similarities(X)
        return fake - real

    def predict(self, X) -> np.ndarray:
        return (self.decision_function(X) > self.threshold).astype(int)
