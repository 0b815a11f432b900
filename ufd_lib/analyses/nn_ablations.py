"""Nearest-neighbour ablations (notebook 06): pool size k, feature-bank size and the number of
training categories.

Every table is long: one row per setting and generator family (plus ``all test sets``), with
``ap`` and ``acc`` in percent and the feature bank's size as ``bank_real`` and ``bank_fake``
(training features searched, not test images). Subsets are drawn reproducibly: a fixed seed, and nested (a
smaller subset is part of every larger one).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ufd_lib import config
from ufd_lib.analyses.tables import family_summary, ordered_columns
from ufd_lib.classifiers.nearest_neighbour import NearestNeighbourClassifier
from ufd_lib.data.discovery import balanced_subsample
from ufd_lib.evaluation.scoring import evaluate_sets
from ufd_lib.features.feature_sets import BenchmarkFeatures, FeatureSet, subset

ABLATION_NOTE = ("bank_real / bank_fake: training features in the nearest-neighbour bank, not test images. ap, acc: "
                 "percent, the mean over the test sets of each generator family (all test sets: over every set).")


def image_categories(paths: list[str], root: Path | str) -> np.ndarray:
    """Category of each training image: the first folder below the training set's root
    (``train/progan/<category>/{0_real,1_fake}/...``); ``""`` for images directly in a class folder."""
    root = Path(root)
    categories = []
    for path in paths:
        try:
            relative = Path(path).relative_to(root).parts
        except ValueError:  # the root was given through a symlink or a relative path
            relative = Path(path).resolve().relative_to(root.resolve()).parts
        categories.append("" if relative[0] in (config.REAL_DIR, config.FAKE_DIR) else relative[0])
    return np.asarray(categories)


def category_order(categories: np.ndarray, seed: int = 0) -> list[str]:
    """The distinct categories (sorted, then shuffled once with ``seed``): the first n are the
    categories of the n-category ablation, so smaller category sets are nested in larger ones."""
    distinct = sorted(set(categories.tolist()))
    return [distinct[i] for i in np.random.default_rng(seed).permutation(len(distinct))]


def _evaluate_nn(train: FeatureSet, test_sets: list[FeatureSet], k: int, families: dict[str, str],
                 device: str | None) -> pd.DataFrame:
    classifier = NearestNeighbourClassifier(k=k, device=device).fit(train.features, train.labels)
    summary = family_summary(evaluate_sets(classifier, test_sets), families)
    return summary.assign(bank_real=int((train.labels == 0).sum()), bank_fake=int((train.labels == 1).sum()))


def k_ablation(features: BenchmarkFeatures, k_values, families: dict[str, str],
               device: str | None = None) -> pd.DataFrame:
    """Nearest neighbour with the whole training set as bank, for each pool size k.
    Rows: k × family; columns k, family, ap, acc, bank_real, bank_fake."""
    frames = [_evaluate_nn(features.train, features.test_sets, int(k), families, device).assign(k=int(k))
              for k in k_values]
    return ordered_columns(pd.concat(frames, ignore_index=True), ["k"])


def bank_size_ablation(features: BenchmarkFeatures, fractions, families: dict[str, str], k: int = 1,
                       seed: int = 0, device: str | None = None) -> pd.DataFrame:
    """Nearest neighbour on a balanced random share of the training bank (nested subsets).

    A fraction f keeps round(f · n / 2) real and as many fake features (n: training images),
    at least k of each. Rows: fraction × family; columns fraction, bank_size, family, ap, acc,
    bank_real, bank_fake."""
    train = features.train
    frames = []
    for fraction in fractions:
        per_class = max(k, int(round(fraction * len(train.labels) / 2)))
        bank = subset(train, balanced_subsample(train.labels, per_class, seed))
        frame = _evaluate_nn(bank, features.test_sets, k, families, device)
        frames.append(frame.assign(fraction=float(fraction), bank_size=len(bank.labels)))
    return ordered_columns(pd.concat(frames, ignore_index=True), ["fraction", "bank_size"])


def category_ablation(features: BenchmarkFeatures, train_root: Path | str, counts, families: dict[str, str],
                      k: int = 1, seed: int = 0, device: str | None = None) -> pd.DataFrame:
    """Nearest neighbour with the bank restricted to the first n training categories of
    :func:`category_order`, for each n in ``counts`` (capped at the categories present; every
    image of the chosen categories is kept, so the bank grows with n, as in the paper).
    Rows: n × family; columns n_categories, categories, family, ap, acc, bank_real,
    bank_fake."""
    train = features.train
    categories = image_categories(train.paths, train_root)
    order = category_order(categories, seed)
    wanted = sorted({min(int(n), len(order)) for n in counts})
    frames = []
    for n in wanted:
        chosen = order[:n]
        bank = subset(train, np.flatnonzero(np.isin(categories, chosen)))
        frame = _evaluate_nn(bank, features.test_sets, k, families, device)
        frames.append(frame.assign(n_categories=n, categories=", ".join(sorted(chosen))))
    return ordered_columns(pd.concat(frames, ignore_index=True), ["n_categories", "categories"])
