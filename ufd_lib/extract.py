"""Feature extraction through the cache: each image is encoded once per setting.

Files are first identified by the SHA-256 of their bytes; only digests the cache lacks are
decoded and encoded, in batches from a DataLoader (decoding in worker processes, pinned
memory on CUDA), and committed to the cache chunk by chunk.
"""
from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from . import config
from .encoders import Encoder
from .feature_cache import FeatureCache
from .preprocess import ImageRejected, Perturbation, evaluation_transform, load_tensor, preprocess_settings


class ExtractionError(RuntimeError):
    """Raised in strict mode for the first image that cannot be used."""


@dataclass
class ExtractionReport:
    """What one extraction did. skipped: (path, reason) for every unusable file."""

    images_encoded: int = 0
    images_from_cache: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)
    encode_seconds: float = 0.0

    @property
    def images_per_second(self) -> float | None:
        return self.images_encoded / self.encode_seconds if self.encode_seconds > 0 else None

    def merge(self, other: "ExtractionReport") -> None:
        self.images_encoded += other.images_encoded
        self.images_from_cache += other.images_from_cache
        self.skipped.extend(other.skipped)
        self.encode_seconds += other.encode_seconds


def cache_setting(encoder: Encoder, perturbation: Perturbation) -> dict:
    """The cache key of an extraction: encoder identity plus everything in preprocessing."""
    return {
        "encoder": encoder.name,
        "checkpoint_sha256": encoder.checkpoint_sha256,
        "preprocess": preprocess_settings(encoder.mean, encoder.std, perturbation),
        "store_dtype": config.FEATURE_STORE_DTYPE,
    }


def open_cache(encoder: Encoder, perturbation: Perturbation, cache_root: Path | None = None) -> FeatureCache:
    return FeatureCache(cache_root or config.cache_dir(), cache_setting(encoder, perturbation))


def file_digest(path: Path) -> bytes | str:
    """SHA-256 (32 bytes) of a file's content, or the reason it cannot be read."""
    try:
        return hashlib.sha256(Path(path).read_bytes()).digest()
    except OSError as error:
        return f"unreadable: {error.strerror or error}"


class _ImageFiles(Dataset):
    """Decodes one file per item → (index, tensor or None, reason or None)."""

    def __init__(self, paths: Sequence[Path], transform, perturbation: Perturbation, max_pixels: int):
        self.paths = paths
        self.transform = transform
        self.perturbation = perturbation
        self.max_pixels = max_pixels

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int):
        try:
            return index, load_tensor(self.paths[index], self.transform, self.perturbation, self.max_pixels), None
        except ImageRejected as error:
            return index, None, str(error)


def _collate(items):
    good = [(i, t) for i, t, _ in items if t is not None]
    bad = [(i, reason) for i, t, reason in items if t is None]
    indices = [i for i, _ in good]
    batch = torch.stack([t for _, t in good]) if good else None
    return indices, batch, bad


def extract_features(
    encoder: Encoder,
    paths: Sequence[Path],
    cache: FeatureCache,
    *,
    perturbation: Perturbation = Perturbation(),
    batch_size: int = 64,
    num_workers: int = 0,
    strict: bool = False,
    max_pixels: int = config.MAX_IMAGE_PIXELS,
    progress: bool = True,
    description: str = "encoding",
) -> tuple[np.ndarray, np.ndarray, ExtractionReport]:
    """Features for ``paths``, encoding only what ``cache`` lacks.

    Returns (features float32 (n_ok, d), kept bool mask (len(paths),), report); rows of
    ``features`` follow the order of the kept paths. Unusable files are skipped and listed in
    ``report.skipped`` with their reason, or raise :class:`ExtractionError` when ``strict``.
    """
    report = ExtractionReport()
    with ThreadPoolExecutor(max_workers=4) as pool:
        digests = list(pool.map(file_digest, paths))
    unreadable = {i: d for i, d in enumerate(digests) if isinstance(d, str)}
    for i, reason in unreadable.items():
        if strict:
            raise ExtractionError(f"{paths[i]}: {reason}")
        report.skipped.append((str(paths[i]), reason))

    readable = [i for i in range(len(paths)) if i not in unreadable]
    cached = cache.contains([digests[i] for i in readable])
    first_of_digest: dict[bytes, int] = {}
    for i, hit in zip(readable, cached):
        if not hit:
            first_of_digest.setdefault(digests[i], i)
    to_encode = sorted(first_of_digest.values())
    report.images_from_cache = int(cached.sum())

    rejected: dict[bytes, str] = {}
    if to_encode:
        rejected = _encode_missing(
            encoder, [paths[i] for i in to_encode], [digests[i] for i in to_encode], cache, report,
            perturbation=perturbation, batch_size=batch_size, num_workers=num_workers, strict=strict,
            max_pixels=max_pixels, progress=progress, description=description,
        )
    kept = np.zeros(len(paths), dtype=bool)
    for i in readable:
        if digests[i] in rejected:
            report.skipped.append((str(paths[i]), rejected[digests[i]]))
        else:
            kept[i] = True
    features = cache.load([digests[i] for i in np.flatnonzero(kept)])
    return features, kept, report


def _encode_missing(encoder, paths, digests, cache, report, *, perturbation, batch_size, num_workers,
                    strict, max_pixels, progress, description) -> dict[bytes, str]:
    """Encode ``paths`` into ``cache``; returns {digest: reason} for files that failed to decode."""
    dataset = _ImageFiles(paths, evaluation_transform(encoder.mean, encoder.std), perturbation, max_pixels)
    loader = DataLoader(
        dataset, batch_size=batch_size, num_workers=num_workers, collate_fn=_collate,
        pin_memory=encoder.device.type == "cuda", persistent_workers=False,
    )
    rejected: dict[bytes, str] = {}
    pending_keys: list[bytes] = []
    pending_features: list[np.ndarray] = []
    started = time.perf_counter()
    with tqdm(total=len(paths), desc=description, unit="img", disable=not progress) as bar:
        for indices, batch, bad in loader:
            for i, reason in bad:
                if strict:
                    raise ExtractionError(f"{paths[i]}: {reason}")
                rejected[digests[i]] = reason
            if batch is not None:
                pending_features.append(encoder.encode(batch).numpy())
                pending_keys.extend(digests[i] for i in indices)
                report.images_encoded += len(indices)
            if len(pending_keys) >= config.CACHE_CHUNK_IMAGES:
                cache.write_chunk(pending_keys, np.concatenate(pending_features))
                pending_keys, pending_features = [], []
            bar.update(len(indices) + len(bad))
    if pending_keys:
        cache.write_chunk(pending_keys, np.concatenate(pending_features))
    report.encode_seconds += time.perf_counter() - started
    return rejected
