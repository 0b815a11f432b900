"""Precision–recall curves of scored test sets (the paper's precision–recall figure).

scores (test_set, label, score; larger = more fake) → one curve per test set, fake = positive,
as :func:`sklearn.metrics.precision_recall_curve` draws it.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.metrics import precision_recall_curve


def precision_recall_curves(scores: pd.DataFrame, max_points: int = 200) -> pd.DataFrame:
    """Long table of curve points: test_set, recall, precision (fractions 0..1), in the order
    sklearn gives them (recall decreasing). scores: columns test_set, label (0 real, 1 fake),
    score, e.g. :attr:`ufd_lib.evaluation.scoring.EvaluationResult.scores`. A test set without
    both classes has no curve. max_points: at most this many points per curve (evenly spaced
    along it, the ends kept), so a plot of thousands of images stays small."""
    frames = []
    for test_set, rows in scores.groupby("test_set", sort=False):
        labels = rows["label"].to_numpy()
        if labels.min() == labels.max():
            continue
        precision, recall, _ = precision_recall_curve(labels, rows["score"].to_numpy(), pos_label=1)
        keep = np.unique(np.linspace(0, len(recall) - 1, min(len(recall), max_points)).round().astype(int))
        frames.append(pd.DataFrame({"test_set": test_set, "recall": recall[keep], "precision": precision[keep]}))
    if not frames:
        return pd.DataFrame(columns=["test_set", "recall", "precision"])
    return pd.concat(frames, ignore_index=True)


def precision_recall_by_classifier(results: dict) -> pd.DataFrame:
    """:func:`precision_recall_curves` of several classifiers' results (name →
    :class:`~ufd_lib.evaluation.scoring.EvaluationResult`), with a ``classifier`` column first."""
    frames = [precision_recall_curves(result.scores).assign(classifier=name) for name, result in results.items()]
    return pd.concat(frames, ignore_index=True)[["classifier", "test_set", "recall", "precision"]]
