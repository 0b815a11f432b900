"""Scores in the release's precision under ``sampling="official"``: a steep probe's float32
sigmoid saturates and ties exactly, as ``model(x).sigmoid()`` does in ``validate.py``."""
from __future__ import annotations

import numpy as np
import torch
from sklearn.metrics import average_precision_score

from ufd_lib.classifiers.linear_probe import LinearProbe
from ufd_lib.evaluation.scoring import evaluate_sets
from ufd_lib.features.feature_sets import FeatureSet


def steep_probe() -> LinearProbe:
    """logit = 40 · x₀ − 1 on 4-d features."""
    return LinearProbe.from_weights(torch.tensor([[40.0, 0.0, 0.0, 0.0]]), torch.tensor([-1.0]), "test")


def steep_set(sampling: str) -> FeatureSet:
    """One real at logit 3, then reals and fakes whose logits interleave between 17 and 33:
    distinct in float64, all exactly 1.0 in float32."""
    reals = np.array([0.1, 0.46, 0.55, 0.65, 0.75])
    fakes = np.array([0.50, 0.60, 0.70, 0.80, 0.85])
    first = np.concatenate([reals, fakes]).astype(np.float32)
    features = np.zeros((len(first), 4), dtype=np.float32)
    features[:, 0] = first
    labels = np.array([0] * len(reals) + [1] * len(fakes))
    return FeatureSet("steep", features, labels, [f"{i}.png" for i in range(len(first))], sampling=sampling)


def test_released_probability_is_torchs_float32_sigmoid_and_saturates():
    probe = steep_probe()
    features = steep_set("official").features
    logits = probe.decision_function(features)
    assert logits.dtype == np.float32 and np.sort(logits)[1] > 17
    released = probe.released_probability(features)
    assert released.dtype == np.float32
    np.testing.assert_array_equal(released, torch.sigmoid(torch.from_numpy(logits)).numpy())
    assert (released[1:] == 1.0).all() and released[0] < 1
    assert len(np.unique(probe.predict_proba(features)[:, 1])) == len(features)  # float64: no ties


def test_official_sets_are_scored_in_float32_and_all_keeps_float64():
    probe = steep_probe()
    official = evaluate_sets(probe, [steep_set("official")])
    everything = evaluate_sets(probe, [steep_set("all")])
    labels = official.scores["label"].to_numpy()
    released = probe.released_probability(steep_set("official").features)
    np.testing.assert_array_equal(official.scores["score"].to_numpy(), released)
    assert (official.scores["score"][1:] == 1.0).all()  # saturated images tie, as in the release
    assert official.metrics["ap"].iloc[0] == average_precision_score(labels, released)
    float64 = probe.predict_proba(steep_set("all").features)[:, 1]
    np.testing.assert_array_equal(everything.scores["score"].to_numpy(), float64)
    assert everything.metrics["ap"].iloc[0] == average_precision_score(labels, float64)
    assert everything.metrics["ap"].iloc[0] != official.metrics["ap"].iloc[0]
