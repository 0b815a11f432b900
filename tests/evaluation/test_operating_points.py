"""Operating-point and probability metrics against independent computations."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
from scipy.interpolate import interp1d
from scipy.optimize import brentq
from sklearn.calibration import calibration_curve
from sklearn.metrics import brier_score_loss, log_loss

from ufd_lib.evaluation.metrics import (
    METRIC_COLUMNS,
    MetricError,
    balanced_accuracy,
    brier_score,
    equal_error_rate,
    expected_calibration_error,
    negative_log_likelihood,
    roc_auc,
    tpr_at_fpr,
)
from ufd_lib.evaluation.metrics import test_set_metrics as set_metrics


def random_set(seed, n_real=60, n_fake=50, ties=False):
    rng = np.random.default_rng(seed)
    labels = np.r_[np.zeros(n_real, int), np.ones(n_fake, int)]
    scores = np.r_[rng.normal(0, 1, n_real), rng.normal(1, 1, n_fake)]
    return labels, np.round(scores, 1) if ties else scores


def pairwise_auc(labels, scores):
    """Mann-Whitney: the share of (real, fake) pairs ranked right, ties half."""
    real, fake = scores[labels == 0], scores[labels == 1]
    diff = fake[:, None] - real[None, :]
    return ((diff > 0).sum() + 0.5 * (diff == 0).sum()) / diff.size


def brute_tpr_at_fpr(labels, scores, target):
    best = 0.0
    for t in np.r_[np.unique(scores), np.inf]:
        called = scores >= t
        if called[labels == 0].mean() <= target:
            best = max(best, called[labels == 1].mean())
    return best


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("ties", [False, True])
def test_auc_is_the_share_of_pairs_ranked_right(seed, ties):
    labels, scores = random_set(seed, ties=ties)
    assert roc_auc(labels, scores) == pytest.approx(pairwise_auc(labels, scores), abs=1e-12)


@pytest.mark.parametrize("seed", range(5))
def test_eer_matches_the_usual_brentq_computation(seed):
    from sklearn.metrics import roc_curve
    labels, scores = random_set(seed)
    fpr, tpr, _ = roc_curve(labels, scores, drop_intermediate=False)
    expected = brentq(lambda x: 1.0 - x - interp1d(fpr, tpr)(x), 0.0, 1.0)
    assert equal_error_rate(labels, scores) == pytest.approx(expected, abs=1e-9)


def test_eer_of_separable_and_reversed_scores():
    labels = np.array([0, 0, 0, 1, 1, 1])
    scores = np.array([0.1, 0.2, 0.3, 0.7, 0.8, 0.9])
    assert equal_error_rate(labels, scores) == 0.0
    assert equal_error_rate(labels, -scores) == 1.0
    assert equal_error_rate(labels, np.zeros(6)) == pytest.approx(0.5)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("target", [0.0, 0.01, 0.05, 0.2])
def test_tpr_at_fpr_is_the_best_threshold_within_the_budget(seed, ties, target):
    labels, scores = random_set(seed, n_real=200, ties=ties)
    assert tpr_at_fpr(labels, scores, target) == pytest.approx(brute_tpr_at_fpr(labels, scores, target), abs=1e-12)


def test_tpr_at_fpr_does_not_interpolate():
    labels = np.array([0] * 10 + [1] * 10)
    scores = np.r_[np.arange(10), np.arange(10) + 5.5]  # highest real 9, fakes 5.5 .. 14.5
    # FPR 0 needs t > 9: fakes 9.5 .. 14.5 are 6 of 10; FPR 0.1 (t > 8) adds 8.5: 7 of 10
    assert tpr_at_fpr(labels, scores, 0.05) == pytest.approx(0.6)
    assert tpr_at_fpr(labels, scores, 0.1) == pytest.approx(0.7)


def test_balanced_accuracy_is_the_paper_accuracy():
    labels, scores = random_set(3)
    row = set_metrics("x", labels, scores, 0.5)
    assert row["balanced_acc"] == pytest.approx(row["acc"]) == pytest.approx(balanced_accuracy(labels, scores, 0.5))
    assert balanced_accuracy([0, 0, 1, 1], [0.1, 0.9, 0.9, 0.9], 0.5) == pytest.approx(0.75)


@pytest.mark.parametrize("bins", [5, 15])
def test_ece_matches_the_reliability_curve(bins):
    rng = np.random.default_rng(1)
    probabilities = rng.uniform(0, 1, 500)
    labels = (rng.uniform(0, 1, 500) < probabilities ** 2).astype(int)
    true, predicted = calibration_curve(labels, probabilities, n_bins=bins, strategy="uniform")
    which = np.searchsorted(np.linspace(0, 1, bins + 1)[1:-1], probabilities)
    counts = np.bincount(which, minlength=bins)
    expected = np.sum(counts[counts > 0] / 500 * np.abs(true - predicted))
    assert expected > 0.05
    assert expected_calibration_error(labels, probabilities, bins) == pytest.approx(expected, abs=1e-12)


def test_ece_near_zero_when_calibrated_and_clearly_above_when_overconfident():
    rng = np.random.default_rng(0)
    probabilities = rng.uniform(0, 1, 200_000)
    labels = (rng.uniform(0, 1, probabilities.size) < probabilities).astype(int)
    assert expected_calibration_error(labels, probabilities) < 0.01
    overconfident = 1 / (1 + np.exp(-4 * np.log(probabilities / (1 - probabilities))))
    assert expected_calibration_error(labels, overconfident) > 0.1


def test_brier_and_nll_match_scikit_learn():
    rng = np.random.default_rng(2)
    probabilities = rng.uniform(0.01, 0.99, 300)
    labels = rng.integers(0, 2, 300)
    assert brier_score(labels, probabilities) == pytest.approx(brier_score_loss(labels, probabilities))
    assert negative_log_likelihood(labels, probabilities) == pytest.approx(log_loss(labels, probabilities))
    assert np.isfinite(negative_log_likelihood([0, 1], [1.0, 0.0]))


def test_probability_metrics_refuse_values_outside_zero_one():
    with pytest.raises(MetricError, match=r"test set x: probabilities must lie in \[0, 1\]"):
        set_metrics("x", [0, 1], [-0.5, 2.0], 0.0, probabilities=True)


def test_the_row_has_every_column_and_probability_metrics_only_for_probabilities():
    labels, scores = random_set(0)
    margins = set_metrics("x", labels, scores, 0.0)
    assert list(margins) == METRIC_COLUMNS
    assert np.isnan(margins["ece"]) and np.isnan(margins["brier"]) and np.isnan(margins["nll"])
    probabilities = set_metrics("x", labels, 1 / (1 + np.exp(-scores)), 0.5, probabilities=True)
    assert 0 < probabilities["ece"] < 1 and 0 < probabilities["brier"] < 1 and probabilities["nll"] > 0
    assert probabilities["auc"] == pytest.approx(margins["auc"])  # a monotone map keeps the ranking


def test_one_class_set_gives_nan_operating_points():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        row = set_metrics("reals", [0, 0, 0], [0.1, 0.2, 0.3], 0.5, probabilities=True)
    assert all(np.isnan(row[key]) for key in ("auc", "eer", "tpr_at_fpr_1", "balanced_acc"))
    assert row["brier"] == pytest.approx(np.mean([0.01, 0.04, 0.09]))
