"""Precision–recall curves against their definition."""
from __future__ import annotations

import numpy as np
import pandas as pd

from ufd_lib.evaluation.pr_curves import precision_recall_curves


def test_curve_points_are_precision_and_recall_at_each_threshold():
    scores = pd.DataFrame({"test_set": ["a"] * 6 + ["one_class"] * 2,
                           "label": [0, 1, 0, 1, 1, 0, 1, 1], "score": [0.1, 0.9, 0.4, 0.35, 0.8, 0.2, 0.5, 0.6]})
    curves = precision_recall_curves(scores)
    assert set(curves["test_set"]) == {"a"}  # no curve without both classes
    labels, values = np.array([0, 1, 0, 1, 1, 0]), np.array([0.1, 0.9, 0.4, 0.35, 0.8, 0.2])
    for threshold in values:  # brute force: fake if score >= threshold
        called = values >= threshold
        precision = (called & (labels == 1)).sum() / called.sum()
        recall = (called & (labels == 1)).sum() / (labels == 1).sum()
        match = curves[np.isclose(curves["recall"], recall) & np.isclose(curves["precision"], precision)]
        assert len(match) >= 1, (threshold, precision, recall)


def test_long_curves_are_thinned_keeping_the_ends():
    rng = np.random.default_rng(0)
    scores = pd.DataFrame({"test_set": "big", "label": rng.integers(0, 2, 5000), "score": rng.normal(size=5000)})
    curves = precision_recall_curves(scores, max_points=50)
    assert len(curves) <= 50
    assert curves["recall"].iloc[0] == 1.0 and curves["recall"].iloc[-1] == 0.0


def test_curves_of_several_classifiers_carry_their_name():
    from ufd_lib.evaluation.pr_curves import precision_recall_by_classifier
    from ufd_lib.evaluation.scoring import EvaluationResult

    scores = pd.DataFrame({"test_set": "a", "label": [0, 1, 0, 1], "score": [0.1, 0.9, 0.2, 0.8]})
    curves = precision_recall_by_classifier({"NN k=1": EvaluationResult(None, scores, None),
                                             "LC": EvaluationResult(None, scores, None)})
    assert list(curves.columns) == ["classifier", "test_set", "recall", "precision"]
    one = len(precision_recall_curves(scores))
    assert curves.groupby("classifier").size().to_dict() == {"LC": one, "NN k=1": one}
