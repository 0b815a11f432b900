"""The vectorised stratified bootstrap against a plain loop over materialised resamples."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.stats import norm

from ufd_lib.evaluation.bootstrap import (
    BOOTSTRAP_METRICS,
    BootstrapSettings,
    draw,
    full_set,
    interval,
    paired_difference,
    resampled_metrics,
    with_intervals,
)
from ufd_lib.evaluation.metrics import metrics_table
from ufd_lib.evaluation.metrics import test_set_metrics as set_metrics


def scored_set(seed, n_real=40, n_fake=30, ties=False, shift=1.0):
    rng = np.random.default_rng(seed)
    labels = np.r_[np.zeros(n_real, int), np.ones(n_fake, int)]
    scores = np.r_[rng.normal(0, 1, n_real), rng.normal(shift, 1, n_fake)]
    return labels, (np.round(scores, 1) if ties else scores)


def materialise(labels, scores, draws, b):
    real, fake = scores[labels == 0], scores[labels == 1]
    resampled = np.r_[np.repeat(real, draws.real[b].astype(int)), np.repeat(fake, draws.fake[b].astype(int))]
    return np.r_[np.zeros(len(real), int), np.ones(len(fake), int)], resampled


@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("seed", [0, 1])
def test_every_resample_equals_the_metrics_of_the_materialised_resample(seed, ties):
    labels, scores = scored_set(seed, ties=ties)
    draws = draw("set", 40, 30, BootstrapSettings(resamples=25, seed=seed))
    vectorised = resampled_metrics(labels, scores, 0.5, draws)
    for b in range(25):
        resampled_labels, resampled_scores = materialise(labels, scores, draws, b)
        row = set_metrics("set", resampled_labels, resampled_scores, 0.5)
        for metric in BOOTSTRAP_METRICS:
            assert vectorised[metric][b] == pytest.approx(row[metric], abs=1e-12), (metric, b)


def test_the_full_set_gives_the_point_estimates_even_with_separable_scores():
    for labels, scores in (scored_set(3, ties=True), scored_set(4, shift=10.0)):
        point = resampled_metrics(labels, scores, 0.2, full_set(40, 30))
        row = set_metrics("set", labels, scores, 0.2)
        for metric in BOOTSTRAP_METRICS:
            assert point[metric][0] == pytest.approx(row[metric], abs=1e-12), metric


def test_resamples_are_stratified_seeded_and_depend_on_the_set_not_its_position():
    settings = BootstrapSettings(resamples=50, seed=7)
    a, b = draw("ldm", 20, 10, settings), draw("ldm", 20, 10, settings)
    np.testing.assert_array_equal(a.real, b.real)
    assert (a.real.sum(axis=1) == 20).all() and (a.fake.sum(axis=1) == 10).all()
    assert not np.array_equal(a.real, draw("glide", 20, 10, settings).real)
    assert not np.array_equal(a.real, draw("ldm", 20, 10, BootstrapSettings(resamples=50, seed=8)).real)


def test_interval_contains_the_point_estimate():
    assert interval(np.array([0.8, 0.85, 0.9]), 0.95, 0.95) == (pytest.approx(0.8025), 0.95)
    assert interval(np.array([0.8, 0.85, 0.9]), 0.5, 0.95) == (0.5, pytest.approx(0.8975))
    assert np.isnan(interval(np.array([np.nan]), 0.5, 0.95)[0])


def test_interval_covers_a_known_auc_about_as_often_as_promised():
    # binormal scores: the true AUC is Φ(shift / √2)
    truth, covered, repeats = norm.cdf(0.8 / np.sqrt(2)), 0, 200
    for repeat in range(repeats):
        labels, scores = scored_set(100 + repeat, n_real=150, n_fake=150, shift=0.8)
        settings = BootstrapSettings(resamples=400, seed=repeat)
        point = resampled_metrics(labels, scores, 0.0, full_set(150, 150))["auc"][0]
        low, high = interval(resampled_metrics(labels, scores, 0.0, draw("s", 150, 150, settings))["auc"], point, 0.95)
        covered += low <= truth <= high
    assert 0.89 <= covered / repeats <= 0.99


def test_with_intervals_adds_columns_and_the_mean_comes_from_per_resample_means():
    sets = {"a": scored_set(0), "b": scored_set(1, shift=2.0), "c": scored_set(2, ties=True)}
    scores = pd.concat([pd.DataFrame({"test_set": name, "label": labels, "score": values})
                        for name, (labels, values) in sets.items()], ignore_index=True)
    metrics = metrics_table([set_metrics(name, labels, values, 0.5) for name, (labels, values) in sets.items()])
    settings = BootstrapSettings(resamples=200, seed=0)
    table = with_intervals(metrics, scores, 0.5, settings, groups={"a+b": ["a", "b"]})
    assert table["test_set"].tolist() == ["a", "b", "c", "mean", "a+b"]
    pd.testing.assert_frame_equal(table[metrics.columns].iloc[:4], metrics)
    for metric in BOOTSTRAP_METRICS:
        assert (table[f"{metric}_ci_low"] <= table[metric]).all()
        assert (table[metric] <= table[f"{metric}_ci_high"]).all()
    assert table.loc[4, "ap"] == pytest.approx(metrics["ap"][:2].mean())
    # the mean's interval is narrower than the average of the sets' bounds (independent errors average out)
    width = table["ap_ci_high"] - table["ap_ci_low"]
    assert width[3] < width[:3].mean()
    again = with_intervals(metrics, scores, 0.5, settings)
    pd.testing.assert_frame_equal(again, table.iloc[:4])


def test_paired_difference_of_identical_methods_is_exactly_zero():
    labels, scores = scored_set(5)
    same = paired_difference(labels, scores, scores.copy(), (0.5, 0.5), "x", BootstrapSettings(resamples=100))
    assert (same[["difference", "ci_low", "ci_high"]].to_numpy() == 0).all()


def test_paired_interval_is_narrower_than_unpaired_for_correlated_methods():
    labels, scores = scored_set(6, n_real=200, n_fake=200)
    noisy = scores + np.random.default_rng(0).normal(0, 0.1, len(scores)) + 0.2 * labels
    settings = BootstrapSettings(resamples=300)
    paired = paired_difference(labels, noisy, scores, (0.5, 0.5), "x", settings).set_index("metric")
    assert paired.loc["auc", "difference"] > 0 and paired.loc["auc", "ci_low"] > 0
    independent = BootstrapSettings(resamples=300, seed=1)
    a = resampled_metrics(labels, noisy, 0.5, draw("x", 200, 200, settings))["auc"]
    b = resampled_metrics(labels, scores, 0.5, draw("x", 200, 200, independent))["auc"]
    unpaired_width = np.subtract(*np.percentile(a - b, [97.5, 2.5]))
    assert paired.loc["auc", "ci_high"] - paired.loc["auc", "ci_low"] < unpaired_width / 2


@pytest.mark.parametrize("kwargs", [{"resamples": 0}, {"resamples": 10, "ci": 1.0}, {"resamples": 10, "ci": 0}])
def test_bad_settings_are_refused(kwargs):
    with pytest.raises(ValueError):
        BootstrapSettings(**kwargs)


def test_blocks_of_resamples_give_the_same_values(monkeypatch):
    import ufd_lib.evaluation.bootstrap as bootstrap

    labels, scores = scored_set(8, ties=True)
    draws = draw("set", 40, 30, BootstrapSettings(resamples=50))
    whole = resampled_metrics(labels, scores, 0.5, draws)
    monkeypatch.setattr(bootstrap, "BLOCK_CELLS", 70 * 7)  # blocks of 7 resamples, the last of 1
    blocked = resampled_metrics(labels, scores, 0.5, draws)
    for metric in BOOTSTRAP_METRICS:
        np.testing.assert_array_equal(blocked[metric], whole[metric])
