"""Nearest neighbour against its definition, computed by brute force in numpy."""
from __future__ import annotations

import numpy as np
import pytest

from ufd_lib.classifiers.nearest_neighbour import NearestNeighbourClassifier


def banks(seed: int = 0, n_real: int = 40, n_fake: int = 30, n_test: int = 25, d: int = 12):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n_real + n_fake, d)) * rng.uniform(0.5, 3.0, size=(n_real + n_fake, 1))
    y = np.array([0] * n_real + [1] * n_fake)
    X[y == 1, 0] += 1.0  # some structure, so that both decisions occur
    queries = rng.normal(size=(n_test, d))
    queries[: n_test // 2, 0] += 1.0
    return X.astype(np.float32), y, queries.astype(np.float32)


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return a.astype(np.float64) @ b.astype(np.float64).T


def brute_force_margin(X, y, queries, k) -> np.ndarray:
    fake = np.sort(cosine(queries, X[y == 1]), axis=1)[:, ::-1][:, :k].mean(axis=1)
    real = np.sort(cosine(queries, X[y == 0]), axis=1)[:, ::-1][:, :k].mean(axis=1)
    return fake - real


def test_k1_is_nearest_fake_closer_than_nearest_real():
    X, y, queries = banks()
    knn = NearestNeighbourClassifier(k=1, device="cpu").fit(X, y)
    similarity = cosine(queries, X)
    nearest_fake = similarity[:, y == 1].max(axis=1)
    nearest_real = similarity[:, y == 0].max(axis=1)
    expected = (nearest_fake > nearest_real).astype(int)
    assert 0 < expected.sum() < len(expected), "the example must contain both decisions"
    np.testing.assert_array_equal(knn.predict(queries), expected)
    np.testing.assert_allclose(knn.decision_function(queries), nearest_fake - nearest_real, atol=1e-5)


@pytest.mark.parametrize("k", [2, 5, 9])
def test_margin_is_mean_of_top_k_difference(k):
    X, y, queries = banks(seed=k)
    knn = NearestNeighbourClassifier(k=k, device="cpu").fit(X, y)
    np.testing.assert_allclose(knn.decision_function(queries), brute_force_margin(X, y, queries, k), atol=1e-5)


@pytest.mark.parametrize("k", [1, 4])
@pytest.mark.parametrize("block_size", [1, 3, 7])
def test_block_size_smaller_than_the_bank_gives_identical_results(k, block_size):
    X, y, queries = banks(seed=11)
    whole = NearestNeighbourClassifier(k=k, device="cpu").fit(X, y).decision_function(queries)
    blocked = NearestNeighbourClassifier(k=k, block_size=block_size, device="cpu").fit(X, y).decision_function(queries)
    np.testing.assert_allclose(blocked, whole, rtol=0, atol=1e-6)


def test_scale_of_features_does_not_matter():
    X, y, queries = banks(seed=3)
    knn = NearestNeighbourClassifier(k=3, device="cpu").fit(X, y)
    scaled = NearestNeighbourClassifier(k=3, device="cpu").fit(X * 7.0, y)
    np.testing.assert_allclose(scaled.decision_function(queries * 0.1), knn.decision_function(queries), atol=1e-5)


def test_k_larger_than_a_bank_is_refused():
    X, y, _ = banks(n_real=10, n_fake=4)
    with pytest.raises(ValueError, match="fake bank has 4"):
        NearestNeighbourClassifier(k=5, device="cpu").fit(X, y)
    NearestNeighbourClassifier(k=4, device="cpu").fit(X, y)  # k equal to the bank is fine


@pytest.mark.parametrize("k", [0, -1, 1.5])
def test_k_must_be_a_positive_integer(k):
    X, y, _ = banks()
    with pytest.raises(ValueError, match="k must be"):
        NearestNeighbourClassifier(k=k, device="cpu").fit(X, y)


def test_feature_dimension_mismatch_is_refused():
    X, y, queries = banks()
    knn = NearestNeighbourClassifier(device="cpu").fit(X, y)
    with pytest.raises(ValueError, match="dimensions"):
        knn.decision_function(queries[:, :5])


def test_float16_memory_mapped_bank_is_searched_in_place(tmp_path):
    """Contiguous classes of a memory-mapped float16 X become views of it, not copies."""
    X, y, queries = banks(seed=5)
    np.save(tmp_path / "bank.npy", X.astype(np.float16))
    mapped = np.load(tmp_path / "bank.npy", mmap_mode="r")
    knn = NearestNeighbourClassifier(k=3, block_size=16, device="cpu").fit(mapped, y)
    assert np.shares_memory(knn.real_bank_, mapped) and np.shares_memory(knn.fake_bank_, mapped)
    assert knn.real_bank_.dtype == np.float16
    expected = brute_force_margin(np.asarray(mapped, dtype=np.float32), y, queries, 3)
    np.testing.assert_allclose(knn.decision_function(queries), expected, atol=1e-5)


def test_order_of_training_rows_does_not_matter():
    X, y, queries = banks(seed=8)
    order = np.random.default_rng(0).permutation(len(y))
    interleaved = NearestNeighbourClassifier(k=4, device="cpu").fit(X[order], y[order])
    grouped = NearestNeighbourClassifier(k=4, device="cpu").fit(X, y)
    np.testing.assert_allclose(interleaved.decision_function(queries), grouped.decision_function(queries), atol=1e-6)


def test_tensors_are_accepted_and_margins_are_float32():
    import torch

    X, y, queries = banks(seed=9)
    knn = NearestNeighbourClassifier(k=2, device="cpu").fit(torch.from_numpy(X), y)
    margins = knn.decision_function(torch.from_numpy(queries))
    assert margins.dtype == np.float32
    np.testing.assert_allclose(margins, brute_force_margin(X, y, queries, 2), atol=1e-5)
    assert knn.decision_function(queries[:0]).shape == (0,)
