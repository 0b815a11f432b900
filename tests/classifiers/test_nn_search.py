"""Exact cosine top-k search against a float64 brute force, on memory-mapped float16 banks."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from ufd_lib.classifiers.nn_search import exact_topk, normalise_rows, topk_mean_similarity


def brute_force(queries: np.ndarray, bank: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    q = queries.astype(np.float64)
    b = bank.astype(np.float64)
    similarity = (q / np.linalg.norm(q, axis=1, keepdims=True)) @ (b / np.linalg.norm(b, axis=1, keepdims=True)).T
    order = np.argsort(-similarity, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(similarity, order, axis=1), order


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    bank = (rng.normal(size=(500, 16)) * rng.uniform(0.2, 5.0, size=(500, 1))).astype(np.float32)
    queries = rng.normal(size=(37, 16)).astype(np.float32)
    return queries, bank


@pytest.fixture
def memmapped_bank(tmp_path, data):
    """The bank as a float16 .npy file opened read-only with mmap, as the feature cache stores it."""
    np.save(tmp_path / "bank.npy", data[1].astype(np.float16))
    return np.load(tmp_path / "bank.npy", mmap_mode="r")


@pytest.mark.parametrize("backend", ["faiss", "torch"])
@pytest.mark.parametrize("k", [1, 5, 9])
@pytest.mark.parametrize("block_rows", [7, 64, 100_000])
def test_top_k_equals_brute_force(data, backend, k, block_rows):
    queries, bank = data
    values, indices = exact_topk(queries, bank, k, block_rows=block_rows, device="cpu", backend=backend)
    expected_values, expected_indices = brute_force(queries, bank, k)
    assert values.dtype == np.float32 and indices.dtype == np.int64 and values.shape == (37, k)
    np.testing.assert_allclose(values, expected_values, atol=1e-5)
    np.testing.assert_array_equal(indices, expected_indices)  # random data: no ties


@pytest.mark.parametrize("backend", ["faiss", "torch"])
def test_memory_mapped_float16_bank_is_searched_exactly(memmapped_bank, data, backend):
    queries, _ = data
    values, indices = exact_topk(queries, memmapped_bank, 4, block_rows=50, device="cpu", backend=backend)
    expected_values, expected_indices = brute_force(queries, np.asarray(memmapped_bank), 4)
    np.testing.assert_allclose(values, expected_values, atol=1e-5)
    np.testing.assert_array_equal(indices, expected_indices)


def test_a_list_of_chunks_is_one_bank(data):
    queries, bank = data
    chunks = [bank[:120], bank[120:121], bank[121:400], bank[400:]]
    whole = exact_topk(queries, bank, 6, device="cpu")
    chunked = exact_topk(queries, chunks, 6, block_rows=64, device="cpu")
    np.testing.assert_allclose(chunked[0], whole[0], atol=1e-6)
    np.testing.assert_array_equal(chunked[1], whole[1])


def test_mean_similarity_is_the_mean_of_the_top_k(data):
    queries, bank = data
    values, _ = brute_force(queries, bank, 3)
    np.testing.assert_allclose(topk_mean_similarity(queries, bank, 3, device="cpu"), values.mean(axis=1), atol=1e-5)
    torch_queries = torch.from_numpy(queries)
    np.testing.assert_allclose(topk_mean_similarity(torch_queries, bank, 3, device="cpu"), values.mean(axis=1),
                               atol=1e-5)


def _peak_rss() -> int:
    with open("/proc/self/status") as handle:
        return next(int(line.split()[1]) * 1024 for line in handle if line.startswith("VmHWM:"))


def _reset_peak_rss() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
        return True
    except OSError:
        return False


def _current_rss() -> int:
    import os

    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.mark.parametrize("backend", ["faiss", "torch"])
def test_no_float32_copy_of_the_whole_bank_is_made(tmp_path, backend):
    """Memory stays bounded by the block: the peak RSS increase of a search over a float16
    memory-mapped bank stays well below the bank's float32 size (its mapped float16 pages,
    half that size, are counted too)."""
    if not (Path("/proc/self/status").exists() and _reset_peak_rss()):
        pytest.skip("needs Linux /proc/self/clear_refs to measure peak RSS")
    rng = np.random.default_rng(1)
    path = tmp_path / "bank.npy"
    rows, dim = 200_000, 128  # float32 size 100 MiB
    writer = np.lib.format.open_memmap(path, mode="w+", dtype=np.float16, shape=(rows, dim))
    for start in range(0, rows, 50_000):
        writer[start : start + 50_000] = rng.normal(size=(50_000, dim))
    writer.flush()
    del writer
    bank = np.load(path, mmap_mode="r")
    queries = rng.normal(size=(10, dim)).astype(np.float32)
    float32_bank_bytes = rows * dim * 4
    exact_topk(queries, bank[:100], 5, device="cpu", backend=backend)  # libraries' one-off set-up
    _reset_peak_rss()
    before = _current_rss()
    exact_topk(queries, bank, 5, block_rows=10_000, device="cpu", backend=backend)
    increase = _peak_rss() - before
    # The mapped float16 pages count for 0.5×; a float32 copy of the bank would add 1.0× more.
    assert increase < 1.0 * float32_bank_bytes, (increase, float32_bank_bytes)


def test_zero_rows_do_not_produce_nan():
    bank = np.zeros((4, 3), dtype=np.float32)
    bank[1] = [1, 0, 0]
    values, indices = exact_topk(np.array([[1.0, 0, 0]]), bank, 2, device="cpu")
    assert np.isfinite(values).all() and indices[0, 0] == 1 and values[0, 0] == pytest.approx(1.0)
    assert normalise_rows(bank)[0].tolist() == [0.0, 0.0, 0.0]


@pytest.mark.parametrize("k", [0, 501, 2.5])
def test_k_outside_the_bank_is_refused(data, k):
    queries, bank = data
    with pytest.raises(ValueError, match="k must be"):
        exact_topk(queries, bank, k, device="cpu")


def test_dimension_mismatch_and_unknown_backend_are_refused(data):
    queries, bank = data
    with pytest.raises(ValueError, match="dimensions"):
        exact_topk(queries[:, :5], bank, 1, device="cpu")
    with pytest.raises(ValueError, match="backend"):
        exact_topk(queries, bank, 1, device="cpu", backend="annoy")
    with pytest.raises(ValueError, match="different dimensions"):
        exact_topk(queries, [bank, bank[:, :5]], 1, device="cpu")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu(data):
    queries, bank = data
    cpu = exact_topk(queries, bank, 5, device="cpu")
    cuda = exact_topk(queries, bank, 5, device="cuda", block_rows=64, query_block=16)
    np.testing.assert_allclose(cuda[0], cpu[0], atol=1e-5)
    np.testing.assert_array_equal(cuda[1], cpu[1])
