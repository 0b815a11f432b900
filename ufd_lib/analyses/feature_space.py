"""2-D maps of a feature space (the paper's t-SNE figures) on reproducible subsamples.

Groups: training reals, training fakes, and the reals and fakes of each test family. Each
group is subsampled to at most ``per_group`` points with a fixed seed, so a figure can be
regenerated exactly and t-SNE stays tractable on a 720k bank.
"""
from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from sklearn.manifold import TSNE

from ufd_lib.features.feature_sets import BenchmarkFeatures


def embedding_sample(features: BenchmarkFeatures, families: dict[str, str], per_group: int,
                     seed: int = 0) -> tuple[np.ndarray, pd.DataFrame]:
    """Subsample features for a map → (X float32 (n, d), meta with columns set, family, label, group)."""
    rng = np.random.default_rng(seed)
    sources = [("training", features.train)] + [(families.get(s.name, "unknown"), s) for s in features.test_sets]
    pools: dict[str, list[tuple[np.ndarray, str, str, int]]] = {}
    for family, feature_set in sources:
        for label, word in ((0, "real"), (1, "fake")):
            group = f"{family} {word}"
            rows = np.flatnonzero(feature_set.labels == label)
            pools.setdefault(group, []).extend(
                (feature_set.features[row], feature_set.name, family, label) for row in rows
            )
    chosen_x, meta = [], []
    for group, items in pools.items():
        picks = rng.choice(len(items), size=min(per_group, len(items)), replace=False)
        for pick in sorted(picks):
            vector, set_name, family, label = items[pick]
            chosen_x.append(vector)
            meta.append({"set": set_name, "family": family, "label": label, "group": group})
    return np.asarray(chosen_x, dtype=np.float32), pd.DataFrame(meta)


def _unit_rows(X: np.ndarray) -> np.ndarray:
    return X / np.maximum(np.linalg.norm(X, axis=1, keepdims=True), 1e-12)


def tsne_map(X: np.ndarray, seed: int = 0) -> np.ndarray:
    """t-SNE (cosine geometry: rows L2-normalised, PCA init) → (n, 2)."""
    perplexity = float(min(30.0, max(2.0, (len(X) - 1) / 3)))
    return TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(_unit_rows(X))


def umap_map(X: np.ndarray, seed: int = 0) -> np.ndarray:
    """UMAP with cosine metric → (n, 2).

    A fixed ``random_state`` makes the map reproducible and, as UMAP warns each time, single-
    threaded; its import warns that the optional TensorFlow (ParametricUMAP, unused here) is
    missing. Neither is something the reader can act on, so both are silenced here, and only them.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Tensorflow not installed", category=ImportWarning)
        warnings.filterwarnings("ignore", message="n_jobs value .* overridden", category=UserWarning)
        import umap

        n_neighbors = int(min(15, max(2, len(X) - 1)))
        return umap.UMAP(n_neighbors=n_neighbors, metric="cosine", random_state=seed).fit_transform(X)


def class_maps(samples: dict[str, tuple[np.ndarray, np.ndarray]],
               seed: int = 0) -> list[tuple[np.ndarray, pd.DataFrame, str]]:
    """One t-SNE map per named sample of real and fake features (notebook 08: one per backbone).

    samples: name → (features (n, d), labels (n,), 0 real / 1 fake). Returns, in order, panels
    (coords (n, 2), meta with column ``class`` = "real"/"fake", title "name (d-d)") as
    :func:`ufd_lib.report.figures.map_panels` takes them with ``hue="class"``.
    """
    return [
        (tsne_map(X, seed), pd.DataFrame({"class": np.where(np.asarray(labels) == 1, "fake", "real")}),
         f"{name} ({X.shape[1]}-d)")
        for name, (X, labels) in samples.items()
    ]
