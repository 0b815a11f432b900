"""Per-layer features in the feature cache, and what a request for them takes on disk.

The CLS token of each requested block of a CLIP ViT (:class:`ufd_lib.features.encoders.LayerTokens`)
is kept in a cache of its own: the setting of the final features (encoder, checkpoint,
preprocessing, perturbation, precision) plus ``"layer": L``, of the token's width, float16
like every feature. A setting is a separate folder, so asking for one more layer later needs
only that layer's folder to be filled, and the final features' cache is never rewritten.
"""
from __future__ import annotations

import json
import math
from collections.abc import Iterable

import numpy as np

from ufd_lib import config
from ufd_lib.features.extraction.feature_cache import FeatureCache

LAYER_KEY = "layer"
# Bytes of a chunk beyond its rows: two .npy headers (numpy pads a 2-D array's header to 128
# bytes) and the commit record (about 300 bytes of JSON).
CHUNK_OVERHEAD_BYTES = 128 + 128 + 300
KEY_BYTES = 32  # SHA-256 of the image file, one per row


def layer_setting(setting: dict, layer: int) -> dict:
    """The cache setting of layer ``layer``'s CLS tokens, given the final features' setting."""
    return {**setting, LAYER_KEY: int(layer)}


def layer_caches(cache: FeatureCache, layers: Iterable[int], width: int) -> dict[int, FeatureCache]:
    """The caches of the CLS tokens of ``layers`` (width ``width``), beside ``cache`` (the final
    features' cache, whose root and setting they share but for the layer)."""
    root = cache.directory.parent
    return {int(layer): FeatureCache(root, layer_setting(cache.setting, layer), dim=width) for layer in layers}


def stored_bytes(images: int, dim: int, setting: dict | None = None, chunk_images: int | None = None) -> int:
    """Bytes a cache writes to store ``images`` new feature rows of width ``dim``: float16 values,
    a 32-byte key per row, chunk headers and commit records (chunks of ``chunk_images``, default
    :func:`ufd_lib.config.cache_chunk_images`), and the ``setting.json`` of a new folder when
    ``setting`` is given. An estimate: a run cut into more chunks (resumed, shared) writes a few
    hundred bytes more per extra chunk."""
    if images <= 0:
        return 0
    item = 2 if config.FEATURE_STORE_DTYPE == "float16" else 4
    chunks = math.ceil(images / (chunk_images or config.cache_chunk_images()))
    marker = len(json.dumps(setting, sort_keys=True, indent=2).encode()) if setting is not None else 0
    return images * (dim * item + KEY_BYTES) + chunks * CHUNK_OVERHEAD_BYTES + marker


def human_bytes(count: float) -> str:
    """``2080`` → ``"2.0 KB"`` (powers of 1000, as disks are sold)."""
    if count < 1000:
        return f"{count:.0f} bytes"
    for unit in ("KB", "MB"):
        count /= 1000
        if count < 1000:
            return f"{count:.1f} {unit}"
    return f"{count / 1000:.1f} GB"


class LayeredCache:
    """The final features' cache and its layers' caches, seen by extraction as one: an image is
    cached when every one of them holds it, and a committed group writes to each only the rows it
    lacks (an image encoded again for a new layer never rewrites what is cached). Claims and
    leftovers are those of the final features' cache's folder (``directory``)."""

    def __init__(self, cache: FeatureCache, layers: dict[int, FeatureCache] | None = None):
        self.cache = cache
        self.layers = dict(sorted((layers or {}).items()))

    @property
    def directory(self):
        return self.cache.directory

    @property
    def setting(self) -> dict:
        return self.cache.setting

    def contains(self, digests) -> np.ndarray:
        """bool (n,): which digests every store holds."""
        found = self.cache.contains(digests)
        for store in self.layers.values():
            found &= store.contains(digests)
        return found

    def remove_leftovers(self, tag: str) -> int:
        """:meth:`FeatureCache.remove_leftovers` in every store; the files removed."""
        return sum(store.remove_leftovers(tag) for store in (self.cache, *self.layers.values()))

    def write_chunk(self, digests, features: np.ndarray, tag: str | None = None,
                    tokens: dict[int, np.ndarray] | None = None) -> None:
        """Commit one group: ``features`` (n, d) of the final embedding and ``tokens`` {layer: (n,
        width)} (every layer of this cache), rows following ``digests``; each store gets the rows
        it lacks, as one chunk named with ``tag``. Raises as :meth:`FeatureCache.write_chunk`."""
        tokens = tokens or {}
        if set(tokens) != set(self.layers):
            raise ValueError(f"tokens of layers {sorted(tokens)} for a cache of layers {sorted(self.layers)}")
        for store, rows in ((self.cache, features), *((self.layers[layer], tokens[layer]) for layer in self.layers)):
            lacking = ~store.contains(digests)
            if lacking.all():
                store.write_chunk(digests, rows, tag=tag)
            elif lacking.any():
                store.write_chunk([d for d, keep in zip(digests, lacking) if keep], rows[lacking], tag=tag)
