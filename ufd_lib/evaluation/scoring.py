"""Scores of fitted classifiers on feature sets, and the paper's metrics per test set.

feature sets → scores (larger = more fake) → metrics table (one row per test set + ``mean``).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ufd_lib import config
from ufd_lib.evaluation.metrics import ECE_BINS, MetricError, metrics_table, test_set_metrics
from ufd_lib.features.feature_sets import FeatureSet


def fake_scores(classifier, features: np.ndarray, released_precision: bool = False) -> tuple[np.ndarray, float]:
    """Scores (n,) where larger means more fake, and the classifier's decision threshold.

    Works with any scikit-learn classifier: ``predict_proba`` (probability of class 1,
    threshold 0.5) when it has one, else ``decision_function`` (threshold 0).
    released_precision: a classifier with ``released_probability`` (the linear probe) scores
    in float32 as the released evaluation does (saturated probabilities tie at exactly 1.0);
    the float32 values are returned as float64, unchanged.
    """
    if len(features) == 0:
        return np.zeros(0), getattr(classifier, "threshold", 0.0)
    if released_precision and hasattr(classifier, "released_probability"):
        scores = classifier.released_probability(features).astype(np.float64)
        return scores, getattr(classifier, "threshold", config.PROBE_THRESHOLD)
    if hasattr(classifier, "predict_proba"):
        return classifier.predict_proba(features)[:, 1], getattr(classifier, "threshold", config.PROBE_THRESHOLD)
    return classifier.decision_function(features), getattr(classifier, "threshold", config.KNN_THRESHOLD)


@dataclass
class EvaluationResult:
    """metrics: one row per test set plus ``mean`` (:data:`ufd_lib.evaluation.metrics.METRIC_COLUMNS`);
    scores: test_set, path, label, score; skipped: test_set, path, reason; threshold: the
    classifier's decision threshold (fake when score > threshold)."""

    metrics: pd.DataFrame
    scores: pd.DataFrame
    skipped: pd.DataFrame
    threshold: float = float("nan")


def evaluate_sets(classifier, test_sets: list[FeatureSet], ece_bins: int = ECE_BINS) -> EvaluationResult:
    """Score every test set with a fitted classifier and compute the paper's metrics (the
    probability metrics, over ``ece_bins`` bins, when the classifier has ``predict_proba``).

    Raises :class:`MetricError` naming the test set when a feature or a score is NaN or
    infinite (a nearest-neighbour search would otherwise turn NaN features into finite scores),
    or when a set has no usable image left (every file skipped: no row of metrics to show).
    A test set discovered with ``sampling="official"`` is scored in the release's precision
    (:func:`fake_scores`, ``released_precision``); the release's best threshold splits each set
    at the end of its real list (``FeatureSet.listed_real``).
    """
    rows, score_frames, skipped = [], [], []
    threshold = float("nan")
    for test_set in test_sets:
        if len(test_set.features) == 0:
            reasons = sorted({reason for _, reason in test_set.skipped})
            raise MetricError(f"test set {test_set.name}: no usable image ({len(test_set.skipped)} skipped"
                              + (f", e.g. {reasons[0]}" if reasons else "") + ")")
        broken = int((~np.isfinite(test_set.features)).any(axis=1).sum())
        if broken:
            raise MetricError(f"test set {test_set.name}: {broken} of {len(test_set.features)} feature vectors "
                              "are NaN or infinite: the encoder output is broken")
        scores, threshold = fake_scores(classifier, test_set.features, test_set.sampling == "official")
        rows.append(test_set_metrics(test_set.name, test_set.labels, scores, threshold, test_set.listed_real,
                                     hasattr(classifier, "predict_proba"), ece_bins))
        score_frames.append(pd.DataFrame(
            {"test_set": test_set.name, "path": test_set.paths, "label": test_set.labels, "score": scores}
        ))
        skipped += [(test_set.name, path, reason) for path, reason in test_set.skipped]
    scores = pd.concat(score_frames, ignore_index=True) if score_frames else pd.DataFrame(
        columns=["test_set", "path", "label", "score"])
    return EvaluationResult(
        metrics=metrics_table(rows),
        scores=scores,
        skipped=pd.DataFrame(skipped, columns=["test_set", "path", "reason"]),
        threshold=threshold,
    )
