"""The paper's metrics against their definitions."""
from __future__ import annotations

import math
import warnings
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ufd_lib.evaluation.metrics import (
    METRIC_COLUMNS,
    MetricError,
    accuracies,
    average_precision,
    metrics_table,
    oracle_threshold,
    released_best_threshold,
)
from ufd_lib.evaluation.metrics import test_set_metrics as set_metrics  # renamed: pytest would collect test_*


def brute_force_oracle(labels, scores):
    """Every score is a candidate t; fake iff score >= t; maximise the mean of the class
    accuracies (exact fractions, so ties are ties); the lowest t wins a tie."""
    labels = list(labels)
    n_real = labels.count(0)
    n_fake = labels.count(1)
    best = None
    for t in sorted(set(scores)):
        correct_real = sum(1 for label, s in zip(labels, scores) if label == 0 and s < t)
        correct_fake = sum(1 for label, s in zip(labels, scores) if label == 1 and s >= t)
        parts = (([Fraction(correct_real, n_real)] if n_real else [])
                 + ([Fraction(correct_fake, n_fake)] if n_fake else []))
        acc = sum(parts) / len(parts)
        if best is None or acc > best[3]:
            real = Fraction(correct_real, n_real) if n_real else math.nan
            fake = Fraction(correct_fake, n_fake) if n_fake else math.nan
            best = (t, real, fake, acc)
    return best


def assert_oracle_matches(labels, scores):
    threshold, acc_real, acc_fake, acc = oracle_threshold(labels, scores)
    expected = brute_force_oracle(labels, scores)
    assert threshold == expected[0]
    for got, want in zip((acc_real, acc_fake, acc), expected[1:]):
        if isinstance(want, float) and math.isnan(want):
            assert math.isnan(got)
        else:
            assert got == pytest.approx(float(want), abs=1e-12)


def test_average_precision_by_hand():
    labels = [0, 0, 1, 1]
    scores = [0.1, 0.4, 0.35, 0.8]
    # Ranked by score: 0.8 fake (precision 1/1), 0.4 real, 0.35 fake (precision 2/3), 0.1 real.
    # AP = sum over fakes of (recall step 1/2) × precision at that fake.
    assert average_precision(labels, scores) == pytest.approx(0.5 * 1 + 0.5 * 2 / 3)


def test_average_precision_fake_is_the_positive_class():
    labels = [0, 0, 0, 1]
    scores = [0.9, 0.2, 0.1, 0.3]  # ranks: real, fake, real, real
    assert average_precision(labels, scores) == pytest.approx(0.5)
    assert average_precision(labels, -np.array(scores)) == pytest.approx(1 / 3)


def test_perfect_ranking_has_ap_one():
    assert average_precision([0, 1, 0, 1], [0.1, 0.9, 0.2, 0.8]) == pytest.approx(1.0)


def test_accuracies_at_threshold_are_strict():
    labels = [0, 0, 0, 1, 1, 1, 1]
    scores = [0.1, 0.5, 0.7, 0.5, 0.6, 0.9, 0.2]
    acc_real, acc_fake, acc = accuracies(labels, scores, 0.5)
    # exactly 0.5 is called real: reals 0.1 and 0.5 right; fakes 0.6 and 0.9 right
    assert acc_real == pytest.approx(2 / 3)
    assert acc_fake == pytest.approx(2 / 4)
    assert acc == pytest.approx((2 / 3 + 2 / 4) / 2)


def test_accuracy_is_the_mean_of_class_accuracies_not_plain_accuracy():
    labels = [0] * 9 + [1]
    scores = [0.0] * 10  # everything called real: plain accuracy 0.9, paper's accuracy 0.5
    assert accuracies(labels, scores, 0.5) == (1.0, 0.0, 0.5)


def test_oracle_on_a_perfectly_separable_set():
    labels = [0, 0, 0, 1, 1]
    scores = [0.1, 0.2, 0.3, 0.7, 0.8]
    assert oracle_threshold(labels, scores) == (0.7, 1.0, 1.0, 1.0)


def test_oracle_with_ties_in_scores():
    labels = [0, 1, 0, 1, 1, 0]
    scores = [0.5, 0.5, 0.2, 0.9, 0.5, 0.5]
    assert_oracle_matches(labels, scores)


def test_oracle_prefers_the_lowest_threshold_among_equal_accuracies():
    # t=2: reals right 2/6, fakes right 4/4 → 2/3; t=8: reals 5/6, fakes 2/4 → 2/3 as well.
    # In floating point 1/3 + 1 and 5/6 + 1/2 differ in the last bit: the tie must still be a tie.
    labels = [1, 0, 0, 0, 0, 1, 0, 0, 1, 1]
    scores = [8, 2, 1, 8, 7, 8, 1, 6, 5, 2]
    threshold, acc_real, acc_fake, acc = oracle_threshold(labels, scores)
    assert threshold == 2
    assert (acc_real, acc_fake) == pytest.approx((2 / 6, 1.0))
    assert acc == pytest.approx(2 / 3)


def test_oracle_on_one_class_set():
    assert_oracle_matches([1, 1, 1], [0.3, 0.1, 0.2])
    assert_oracle_matches([0, 0], [0.3, 0.1])


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 1), st.one_of(st.integers(-4, 4).map(float), st.floats(-1e3, 1e3))),
        min_size=1,
        max_size=40,
    )
)
def test_oracle_equals_brute_force(pairs):
    labels = [label for label, _ in pairs]
    scores = [score for _, score in pairs]
    assert_oracle_matches(labels, scores)


def test_one_class_set_gives_nan_ap_with_a_warning():
    with pytest.warns(UserWarning, match="one class"):
        assert math.isnan(average_precision([1, 1, 1], [0.2, 0.5, 0.9]))


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_scores_raise(bad):
    with pytest.raises(MetricError, match="NaN or infinite"):
        average_precision([0, 1, 1], [0.1, bad, 0.3])
    with pytest.raises(MetricError):
        oracle_threshold([0, 1, 1], [0.1, bad, 0.3])
    with pytest.raises(MetricError, match="^test set ldm_200: 2 of 4 scores are NaN or infinite"):
        set_metrics("ldm_200", [0, 1, 1, 0], [0.1, bad, 0.3, bad], 0.5)


def test_bad_labels_and_shapes_raise():
    with pytest.raises(MetricError):
        accuracies([0, 2], [0.1, 0.2], 0.5)
    with pytest.raises(MetricError):
        accuracies([0, 1, 1], [0.1, 0.2], 0.5)


def test_released_threshold_separable_is_the_midpoint():
    assert released_best_threshold([0, 0, 1, 1], [0.1, 0.3, 0.6, 0.9]) == (pytest.approx(0.45), 1.0, 1.0, 1.0)


def test_released_threshold_reports_with_strictly_greater():
    # Touching classes count as separable: t = (0.5 + 0.5) / 2 = 0.5; then "score > t" calls the
    # fake scored 0.5 real: real 2/2, fake 1/2, plain accuracy 3/4.
    assert released_best_threshold([0, 0, 1, 1], [0.2, 0.5, 0.5, 0.8]) == (0.5, 1.0, 0.5, 0.75)


def test_released_threshold_with_tied_scores():
    # reals 0.5, 0.2, 0.5; fakes 0.5, 0.9, 0.5: max real 0.5 <= min fake 0.5, so t = 0.5 and
    # only the fake at 0.9 is above it: real 3/3, fake 1/3, plain accuracy 4/6.
    assert released_best_threshold([0, 1, 0, 1, 1, 0], [0.5, 0.5, 0.2, 0.9, 0.5, 0.5]) == (
        0.5, 1.0, pytest.approx(1 / 3), pytest.approx(4 / 6))


def test_released_threshold_inseparable_keeps_the_last_best_in_real_then_fake_order():
    # Candidates in the release's order (reals 0.2, 0.6, then fakes 0.4, 0.8), correct with
    # "score >= t": 2, 2, 3, 3 → the last of the two best, t = 0.8. Reported with "> 0.8":
    # both reals right, no fake right.
    labels, scores = [0, 1, 0, 1], [0.2, 0.4, 0.6, 0.8]
    assert released_best_threshold(labels, scores) == (0.8, 1.0, 0.0, 0.5)
    # Ours on the same scores: 0.4 and 0.8 tie at mean class accuracy 3/4; the lowest wins.
    assert oracle_threshold(labels, scores) == (0.4, 0.5, 1.0, 0.75)
    # Reversed file order within each class: reals 0.6, 0.2, fakes 0.8, 0.4 → correct 2, 2, 3, 3
    # → t = 0.4; "> 0.4": real 0.2 right, fake 0.8 right.
    assert released_best_threshold([1, 0, 1, 0], [0.8, 0.6, 0.4, 0.2]) == (0.4, 0.5, 0.5, 0.5)


def release_loop(labels, scores, first_half=None):
    """validate.py's find_best_threshold and calculate_acc, transcribed: scores in real-then-fake
    order; separable → midpoint; else every score, ">=" fake, plain accuracy, ">=" keeps the last;
    each candidate thresholds a copy in place, as the release does (a candidate above 1 turns
    the ones it just wrote into zeros). first_half: the release's first half (N//2 of its equal
    lists) in the given order; None: the scores reordered by label, the reals first."""
    if first_half is None:
        real = [s for label, s in zip(labels, scores) if label == 0]
        fake = [s for label, s in zip(labels, scores) if label == 1]
        y_true, y_pred, first_half = [0] * len(real) + [1] * len(fake), real + fake, len(real)
    else:
        y_true, y_pred = list(labels), list(scores)
    first, second = y_pred[:first_half], y_pred[first_half:]
    if first and second and max(first) <= min(second):
        best = (max(first) + min(second)) / 2
    else:
        best, best_acc = 0, 0
        for t in y_pred:
            temp = np.array(y_pred, dtype=np.float64)
            temp[temp >= t] = 1
            temp[temp < t] = 0
            acc = Fraction(int((temp == np.array(y_true)).sum()), len(y_pred))
            if acc >= best_acc:
                best, best_acc = t, acc
    right = [(p > best) == bool(y) for p, y in zip(y_pred, y_true)]
    return (best, [r for r, y in zip(right, y_true) if y == 0], [r for r, y in zip(right, y_true) if y == 1], right)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 1), st.integers(-4, 4).map(float)), min_size=1, max_size=30))
def test_released_threshold_equals_the_release_loop(pairs):
    labels, scores = [label for label, _ in pairs], [score for _, score in pairs]
    threshold, acc_real, acc_fake, acc = released_best_threshold(labels, scores)
    best, real, fake, everything = release_loop(labels, scores)
    assert threshold == best and acc == pytest.approx(sum(everything) / len(everything))
    assert (acc_real == pytest.approx(sum(real) / len(real))) if real else math.isnan(acc_real)
    assert (acc_fake == pytest.approx(sum(fake) / len(fake))) if fake else math.isnan(acc_fake)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 1), st.integers(-4, 4).map(float)), min_size=1, max_size=30), st.data())
def test_released_threshold_with_the_releases_halves_equals_the_release_loop(pairs, data):
    labels, scores = [label for label, _ in pairs], [score for _, score in pairs]
    first_half = data.draw(st.integers(0, len(pairs)))
    threshold, acc_real, acc_fake, acc = released_best_threshold(labels, scores, first_half)
    best, real, fake, everything = release_loop(labels, scores, first_half)
    assert threshold == best and acc == pytest.approx(sum(everything) / len(everything))
    assert (acc_real == pytest.approx(sum(real) / len(real))) if real else math.isnan(acc_real)
    assert (acc_fake == pytest.approx(sum(fake) / len(fake))) if fake else math.isnan(acc_fake)


def test_released_threshold_splits_at_the_real_list_not_at_the_labels():
    # The real list holds a path relabelled fake (position 1): the release's first half is
    # [0.2, 0.9], not separable from [0.5, 0.6], so it searches (t = 0.5); by the labels alone
    # the set would be separable (midpoint 0.35).
    labels, scores = [0, 1, 1, 1], [0.2, 0.9, 0.5, 0.6]
    assert released_best_threshold(labels, scores, first_half=2) == (0.5, 1.0, pytest.approx(2 / 3), 0.75)
    assert released_best_threshold(labels, scores) == (pytest.approx(0.35), 1.0, 1.0, 1.0)


def test_released_threshold_above_one_calls_every_image_real_as_the_release_does():
    # margins: reals 1.5, 3; fakes 2, 2.5 (not separable). With ">= t" alone t = 2 would win
    # (3 of 4 right); in the release every candidate above 1 scores as "all real" (2 of 4), so
    # the last candidate, 2.5, wins; reported with "> 2.5".
    assert released_best_threshold([0, 0, 1, 1], [1.5, 3.0, 2.0, 2.5]) == (2.5, 0.5, 0.0, 0.25)


def test_released_accuracy_is_plain_accuracy():
    # reals 0.1, 0.2, 0.9; fake 0.5. Correct with ">= t" for t = 0.1, 0.2, 0.9, 0.5: 1, 2, 3, 3
    # → t = 0.5. "> 0.5": reals 2/3 right, the fake wrong; plain accuracy 2/4 (class mean: 1/3).
    assert released_best_threshold([0, 0, 0, 1], [0.1, 0.2, 0.9, 0.5]) == (0.5, pytest.approx(2 / 3), 0.0, 0.5)


def test_metrics_table_mean_row():
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # two-class sets must not warn
        first = set_metrics("progan", [0, 0, 1, 1], [0.1, 0.6, 0.4, 0.9], 0.5)
        second = set_metrics("ldm_200", [0, 0, 0, 1, 1], [0.2, 0.3, 0.7, 0.8, 0.9], 0.5)
    assert first["n_real"] == 2 and first["n_fake"] == 2
    assert (first["acc_real"], first["acc_fake"], first["acc"]) == (0.5, 0.5, 0.5)
    table = metrics_table([first, second])
    assert list(table.columns) == METRIC_COLUMNS
    assert table["test_set"].tolist() == ["progan", "ldm_200", "mean"]
    mean = table.iloc[-1]
    assert mean["n_real"] == 5 and mean["n_fake"] == 4
    for column in ("ap", "acc_real", "acc_fake", "acc", "oracle_acc_real", "oracle_acc_fake", "oracle_acc"):
        assert mean[column] == pytest.approx((first[column] + second[column]) / 2)
    assert math.isnan(mean["oracle_threshold"]) and math.isnan(mean["released_threshold"])
    # release on the first set: reals 0.1, 0.6, fakes 0.4, 0.9 → correct 2, 2, 3, 3 → t = 0.9
    assert (first["released_threshold"], first["released_acc_real"], first["released_acc_fake"]) == (0.9, 1.0, 0.0)
    assert not math.isnan(table.iloc[0]["oracle_threshold"])


def test_metrics_table_of_nothing_is_empty():
    table = metrics_table([])
    assert list(table.columns) == METRIC_COLUMNS and len(table) == 0


def test_evaluation_refuses_nan_features_naming_the_test_set():
    # A nearest-neighbour search turns NaN features into finite scores: refused before scoring.
    from ufd_lib.classifiers.nearest_neighbour import NearestNeighbourClassifier
    from ufd_lib.evaluation.scoring import evaluate_sets
    from ufd_lib.features.feature_sets import FeatureSet

    features = np.eye(4, 8, dtype=np.float32)
    labels = np.array([0, 0, 1, 1])
    classifier = NearestNeighbourClassifier(k=1).fit(features, labels)
    broken = features.copy()
    broken[[0, 2], 5] = np.nan
    with pytest.raises(MetricError, match="^test set guided: 2 of 4 feature vectors are NaN or infinite"):
        evaluate_sets(classifier, [FeatureSet("guided", broken, labels, list("abcd"))])
