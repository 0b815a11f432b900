"""Exact cosine nearest-neighbour search against a large feature bank, in bounded memory.

The paper's nearest-neighbour classifier compares every test feature with the features of
the whole ProGAN training set: 720k × 768, which the cache stores as float16 (1.1 GB; 2.2 GB
as float32). The bank may be a memory-mapped float16 array, or the list of the cache's chunk
arrays; it is read in blocks of ``block_rows`` rows, each block converted to float32 and
L2-normalised on its own, searched, and the per-block top-k merged. No float32 copy of the
whole bank is ever made: extra memory is O(block_rows · d + q · k) (plus the pages of a
memory-mapped bank that the OS keeps resident).

Backends (``backend="auto"`` picks): on CPU, faiss's exhaustive inner-product search (the
kernel of ``IndexFlatIP.search``, called through ``faiss.knn``) on each block; on CUDA, torch
matmul and ``topk`` on the GPU, one block and at most ``query_block`` queries at a time.
``backend="torch"`` also runs on CPU. Both are exact; they differ from a float64 brute force
by float32 rounding (~1e-6).
"""
from __future__ import annotations

import warnings
from collections.abc import Iterator, Sequence

import numpy as np
import torch

from ufd_lib.devices import resolve_device

BLOCK_ROWS = 65536
QUERY_BLOCK = 4096
BACKENDS = ("auto", "faiss", "torch")


def _cpu_tensor(rows) -> torch.Tensor:
    """A CPU tensor sharing memory with ``rows`` where possible (read-only memmaps included)."""
    if isinstance(rows, torch.Tensor):
        return rows.detach().cpu()
    rows = np.asarray(rows)
    if not rows.flags.c_contiguous or rows.dtype.byteorder == ">" or not np.issubdtype(rows.dtype, np.floating):
        rows = np.ascontiguousarray(rows, dtype=np.float32)
    with warnings.catch_warnings():  # only read here: a read-only memmap is safe to wrap
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        return torch.from_numpy(rows)


def normalise_rows(rows) -> np.ndarray:
    """(n, d) array or tensor, any float dtype → new float32 array (n, d) with unit rows
    (zero rows stay zero). Converted and normalised by torch: several times faster than numpy
    for float16 input."""
    out = _cpu_tensor(rows).to(torch.float32, copy=True)
    out /= torch.linalg.vector_norm(out, dim=-1, keepdim=True).clamp_min_(1e-12)  # F.normalize's eps
    return out.numpy()


def _blocks(bank: np.ndarray | Sequence[np.ndarray], block_rows: int) -> Iterator[tuple[int, np.ndarray]]:
    """(offset of the first row, rows) of at most ``block_rows`` rows, over one array or a list of arrays."""
    parts = [bank] if isinstance(bank, np.ndarray | torch.Tensor) else list(bank)
    offset = 0
    for part in parts:
        for start in range(0, len(part), block_rows):
            rows = part[start : start + block_rows]
            yield offset + start, rows.cpu().numpy() if isinstance(rows, torch.Tensor) else rows
        offset += len(part)


def _bank_shape(bank) -> tuple[int, int]:
    parts = [bank] if isinstance(bank, np.ndarray | torch.Tensor) else list(bank)
    dims = {part.shape[1] for part in parts}
    if len(dims) > 1:
        raise ValueError(f"bank parts have different dimensions: {sorted(dims)}")
    return sum(len(part) for part in parts), dims.pop() if dims else 0


def _merge(best: np.ndarray, best_index: np.ndarray, values: np.ndarray, indices: np.ndarray, k: int):
    """Keep the k largest of two (q, ·) candidate lists, in descending order."""
    values = np.concatenate([best, values], axis=1)
    indices = np.concatenate([best_index, indices], axis=1)
    order = np.argsort(-values, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(values, order, axis=1), np.take_along_axis(indices, order, axis=1)


def _search_faiss(queries: np.ndarray, bank, k: int, block_rows: int):
    import faiss

    best = np.full((len(queries), k), -np.inf, dtype=np.float32)
    best_index = np.full((len(queries), k), -1, dtype=np.int64)
    for offset, rows in _blocks(bank, block_rows):
        # faiss.knn runs knn_inner_product, the exhaustive search of IndexFlatIP.search,
        # without first copying the block into an index.
        values, indices = faiss.knn(queries, normalise_rows(rows), min(k, len(rows)),
                                    metric=faiss.METRIC_INNER_PRODUCT)
        best, best_index = _merge(best, best_index, values, indices + offset, k)
    return best, best_index


def _search_torch(queries: np.ndarray, bank, k: int, block_rows: int, device: torch.device, query_block: int):
    queries_t = torch.from_numpy(queries)
    out_values, out_indices = [], []
    for start in range(0, len(queries), query_block):
        chunk = queries_t[start : start + query_block].to(device)
        best = torch.full((len(chunk), k), -torch.inf, device=device)
        best_index = torch.full((len(chunk), k), -1, dtype=torch.int64, device=device)
        for offset, rows in _blocks(bank, block_rows):
            # Copied in the bank's own dtype (half the bytes of float32 for a float16 bank).
            block = torch.from_numpy(np.array(rows, copy=True, order="C")).to(device).float()
            block = torch.nn.functional.normalize(block, dim=1)
            values, indices = torch.topk(chunk @ block.T, min(k, len(block)), dim=1)
            values = torch.cat([best, values], dim=1)
            indices = torch.cat([best_index, indices + offset], dim=1)
            best, order = torch.topk(values, k, dim=1)
            best_index = torch.gather(indices, 1, order)
        out_values.append(best.cpu().numpy())
        out_indices.append(best_index.cpu().numpy())
    return np.concatenate(out_values), np.concatenate(out_indices)


def exact_topk(
    queries,
    bank: np.ndarray | Sequence[np.ndarray],
    k: int,
    *,
    block_rows: int = BLOCK_ROWS,
    device: str | torch.device | None = None,
    backend: str = "auto",
    query_block: int = QUERY_BLOCK,
) -> tuple[np.ndarray, np.ndarray]:
    """The k most cosine-similar bank rows of each query.

    queries: (q, d) array or tensor, any float dtype, any norm. bank: (n, d) array (a float16
    ``np.memmap`` is read block by block), or a sequence of (n_i, d) arrays taken as their
    concatenation; rows of any norm (normalised here, block by block). k: 1..n.
    Returns (similarities float32 (q, k), descending; indices int64 (q, k) into the bank).
    """
    n, d = _bank_shape(bank)
    if not (isinstance(k, int | np.integer) and 1 <= k <= n):
        raise ValueError(f"k must be an integer in 1..{n} (the bank's rows), got {k!r}")
    if block_rows < 1:
        raise ValueError(f"block_rows must be >= 1, got {block_rows}")
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    queries = normalise_rows(queries)
    if queries.ndim != 2 or queries.shape[1] != d:
        raise ValueError(f"queries of shape {queries.shape}; the bank has {d} dimensions")
    device = resolve_device(device)
    if backend == "auto":
        backend = "faiss" if device.type == "cpu" else "torch"
    if backend == "faiss":
        if device.type != "cpu":
            raise ValueError("the faiss backend runs on CPU; use backend='torch' on CUDA")
        return _search_faiss(queries, bank, int(k), block_rows)
    return _search_torch(queries, bank, int(k), block_rows, device, query_block)


def topk_mean_similarity(queries, bank, k: int, **options) -> np.ndarray:
    """Mean cosine similarity (q,) float32 of each query to its k nearest bank rows.

    Arguments as in :func:`exact_topk`.
    """
    values, _ = exact_topk(queries, bank, k, **options)
    return values.mean(axis=1, dtype=np.float64).astype(np.float32)
