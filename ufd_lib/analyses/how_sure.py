"""How sure the results are (notebook 11): metrics with bootstrap intervals, paired differences
of two methods, the paper's numbers against our intervals, the spread over probe seeds, and
calibration (temperature, isotonic, few-shot threshold) of the linear probe.

Every table is in percent, the paper's units; the intervals cover the sampling of test images
only (:mod:`ufd_lib.evaluation.bootstrap`), the seed spread the randomness of training.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from ufd_lib import config
from ufd_lib.classifiers.linear_probe import LinearProbe
from ufd_lib.evaluation.bootstrap import (
    BootstrapSettings,
    draw,
    interval,
    paired_difference,
    resampled_metrics,
    with_intervals,
)
from ufd_lib.evaluation.calibration import (
    CALIBRATION_METHODS,
    FewShotSettings,
    few_shot_threshold,
    fit_calibrator,
    reliability_curve,
)
from ufd_lib.evaluation.metrics import ECE_BINS, accuracies, expected_calibration_error, negative_log_likelihood
from ufd_lib.evaluation.reported import PAPER_GROUPS, PAPER_TEST_SETS, paper_numbers
from ufd_lib.evaluation.scoring import EvaluationResult, evaluate_sets, fake_scores
from ufd_lib.features.feature_sets import BenchmarkFeatures

INTERVAL_NOTE = ("The interval covers the sampling of test images only (a stratified bootstrap: reals and fakes "
                 "resampled separately); it does not cover the randomness of training (see the seed spread).")
ALL_19 = "mean[the paper's 19 sets]"
SHOWN_METRICS = ("ap", "acc_real", "acc_fake", "acc", "auc", "released_acc")


def family_groups(families: dict[str, str], test_sets) -> dict[str, list[str]]:
    """``mean[<family>]`` → the test sets of that family, in their order."""
    groups: dict[str, list[str]] = {}
    for name in test_sets:
        groups.setdefault(f"mean[{families.get(name, 'unknown')}]", []).append(name)
    return groups


def interval_table(results: dict[str, EvaluationResult], settings: BootstrapSettings,
                   groups: dict[str, list[str]]) -> pd.DataFrame:
    """Long table, percent: method, test_set (sets, ``mean``, then the ``groups`` means),
    metric, value, ci_low, ci_high."""
    rows = []
    for method, result in results.items():
        table = with_intervals(result.metrics, result.scores, result.threshold, settings, groups)
        for record in table.to_dict("records"):
            for metric in SHOWN_METRICS:
                rows.append({"method": method, "test_set": record["test_set"], "metric": metric,
                             "value": record[metric] * 100, "ci_low": record[f"{metric}_ci_low"] * 100,
                             "ci_high": record[f"{metric}_ci_high"] * 100})
    return pd.DataFrame(rows, columns=["method", "test_set", "metric", "value", "ci_low", "ci_high"])


def paired_table(a: EvaluationResult, b: EvaluationResult, settings: BootstrapSettings) -> pd.DataFrame:
    """Method A − method B per test set and metric, percent, with the paired interval (the same
    resampled images for both): columns test_set, metric, a, b, difference, ci_low, ci_high,
    verdict ('A better', 'B better' or 'no clear difference': whether the interval excludes 0).
    Raises ValueError when the two were not scored on the same images in the same order."""
    if not a.scores[["test_set", "path", "label"]].equals(b.scores[["test_set", "path", "label"]]):
        raise ValueError("a paired comparison needs both methods scored on the same images in the same order")
    frames = []
    for name, group in a.scores.groupby("test_set", sort=False):
        other = b.scores.loc[group.index, "score"].to_numpy()
        frame = paired_difference(group["label"].to_numpy(), group["score"].to_numpy(), other,
                                  (a.threshold, b.threshold), str(name), settings)
        frames.append(frame.assign(test_set=name))
    table = pd.concat(frames, ignore_index=True)
    table[["a", "b", "difference", "ci_low", "ci_high"]] *= 100
    table["verdict"] = np.select([table["ci_low"] > 0, table["ci_high"] < 0], ["A better", "B better"],
                                 "no clear difference")
    table.loc[table["difference"].isna(), "verdict"] = ""
    return table[["test_set", "metric", "a", "b", "difference", "ci_low", "ci_high", "verdict"]]


def verdict(paper: float, low: float, high: float) -> str:
    """Where the paper's value lies against our interval: 'within CI', 'above', 'below' ('' when
    either is missing)."""
    if np.isnan(paper) or np.isnan(low) or np.isnan(high):
        return ""
    return "above" if paper > high else "below" if paper < low else "within CI"


def paper_comparison_with_intervals(result: EvaluationResult, paper_method: str, settings: BootstrapSettings,
                                    compare_with_paper: bool) -> pd.DataFrame:
    """The paper's AP and accuracy beside ours with its interval, percent. Rows: metric × the
    paper's 19 test sets, its two family means and the mean of all 19 (a group only when this
    run has every member; its interval from per-resample means). Columns: metric, test_set,
    paper, ours, ci_low, ci_high, paper_vs_ci ('within CI', 'above', 'below'). Ours is empty
    when ``compare_with_paper`` is false (test sets that are not the paper's)."""
    present = set(result.metrics["test_set"])
    groups = {name: list(members) for name, members in {**PAPER_GROUPS, ALL_19: PAPER_TEST_SETS}.items()
              if set(members) <= present}
    ours = pd.DataFrame(columns=["test_set"])
    if compare_with_paper:
        ours = with_intervals(result.metrics, result.scores, result.threshold, settings, groups)
        ours = ours[ours["test_set"] != "mean"].replace({"test_set": {ALL_19: "mean"}})
    ours = ours.set_index("test_set")
    rows = []
    for paper_metric, column in (("AP", "ap"), ("acc", "acc")):
        paper = paper_numbers(paper_method, paper_metric).set_index("test_set")["value"]
        for test_set in (*PAPER_TEST_SETS, *PAPER_GROUPS, "mean"):
            value = float(paper.get(test_set, np.nan))
            mine, low, high = ((ours.loc[test_set, column] * 100, ours.loc[test_set, f"{column}_ci_low"] * 100,
                                ours.loc[test_set, f"{column}_ci_high"] * 100) if test_set in ours.index
                               else (np.nan, np.nan, np.nan))
            rows.append({"metric": paper_metric, "test_set": test_set, "paper": value, "ours": mine,
                         "ci_low": low, "ci_high": high, "paper_vs_ci": verdict(value, low, high)})
    return pd.DataFrame(rows)


def seed_spread(features: BenchmarkFeatures, seeds, probe_lr: float = config.PROBE_LR,
                device: str | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The linear probe trained once per seed and evaluated on every test set.

    Returns (per_seed, spread), percent: per_seed has columns seed, test_set, ap, acc, auc;
    spread has test_set, metric, mean, std (across seeds, ddof 1; NaN for one seed), min, max.
    """
    frames = []
    for seed in seeds:
        probe = LinearProbe(lr=probe_lr, seed=seed, device=device).fit(
            features.train.features, features.train.labels, features.val.features, features.val.labels)
        metrics = evaluate_sets(probe, features.test_sets).metrics[["test_set", "ap", "acc", "auc"]]
        frames.append(metrics.assign(seed=seed))
    per_seed = pd.concat(frames, ignore_index=True)
    per_seed[["ap", "acc", "auc"]] *= 100
    long = per_seed.melt(id_vars=["seed", "test_set"], var_name="metric")
    spread = long.groupby(["test_set", "metric"], sort=False)["value"].agg(["mean", "std", "min", "max"])
    return per_seed[["seed", "test_set", "ap", "acc", "auc"]], spread.reset_index()


def _accuracy_interval(labels, probabilities, name: str, settings: BootstrapSettings) -> tuple[float, float, float]:
    labels = np.asarray(labels)
    n_real, n_fake = int((labels == 0).sum()), int((labels == 1).sum())
    point = accuracies(labels, probabilities, 0.5)[2]
    resampled = resampled_metrics(labels, probabilities, 0.5, draw(name, n_real, n_fake, settings))["acc"]
    return (point * 100, *(bound * 100 for bound in interval(resampled, point, settings.ci)))


def calibration_table(probe, features: BenchmarkFeatures, settings: BootstrapSettings,
                      bins: int = ECE_BINS) -> pd.DataFrame:
    """Each calibrator of :data:`CALIBRATION_METHODS`, fitted on the validation set, applied to
    every test set. Rows: test_set × calibrator ('none' first). Columns, percent except nll:
    test_set, calibrator, acc (at 0.5), acc_ci_low, acc_ci_high, ece, nll."""
    val_probabilities, _ = fake_scores(probe, features.val.features)
    calibrators = {"none": None, **{method: fit_calibrator(method, features.val.labels, val_probabilities,
                                                           features.val.name) for method in CALIBRATION_METHODS}}
    rows = []
    for test_set in features.test_sets:
        raw, _ = fake_scores(probe, test_set.features)
        for label, calibrator in calibrators.items():
            probabilities = raw if calibrator is None else calibrator.apply(raw)
            acc, low, high = _accuracy_interval(test_set.labels, probabilities, test_set.name, settings)
            rows.append({"test_set": test_set.name, "calibrator": label, "acc": acc, "acc_ci_low": low,
                         "acc_ci_high": high,
                         "ece": expected_calibration_error(test_set.labels, probabilities, bins) * 100,
                         "nll": negative_log_likelihood(test_set.labels, probabilities)})
    return pd.DataFrame(rows)


def few_shot_table(result: EvaluationResult, shots, draws: int, seed: int = 0) -> pd.DataFrame:
    """The few-shot threshold (:func:`ufd_lib.evaluation.calibration.few_shot_threshold`) per
    test set and number of reals, percent. Columns: test_set, shots, draws, acc_before (at the
    classifier's threshold, on the whole set), acc_after (mean over draws), after_low,
    after_high (2.5 and 97.5 percentiles over draws), acc_real_after, acc_fake_after (means).
    NaN where the set has no more reals than ``shots``."""
    rows = []
    for name, group in result.scores.groupby("test_set", sort=False):
        labels, scores = group["label"].to_numpy(), group["score"].to_numpy()
        before = accuracies(labels, scores, result.threshold)[2] * 100
        for n in shots:
            table = few_shot_threshold(labels, scores, FewShotSettings(shots=n, draws=draws, seed=seed))
            done = not table.empty
            acc = table["acc"].to_numpy() * 100
            rows.append({"test_set": name, "shots": n, "draws": len(table), "acc_before": before,
                         "acc_after": acc.mean() if done else np.nan,
                         "after_low": np.percentile(acc, 2.5) if done else np.nan,
                         "after_high": np.percentile(acc, 97.5) if done else np.nan,
                         "acc_real_after": table["acc_real"].mean() * 100 if done else np.nan,
                         "acc_fake_after": table["acc_fake"].mean() * 100 if done else np.nan})
    return pd.DataFrame(rows)


def reliability_curves(result: EvaluationResult, bins: int = ECE_BINS) -> pd.DataFrame:
    """The reliability curve of every test set of a probability-scoring result: test_set plus
    the columns of :func:`ufd_lib.evaluation.calibration.reliability_curve`."""
    return pd.concat([reliability_curve(group["label"], group["score"], bins).assign(test_set=name)
                      for name, group in result.scores.groupby("test_set", sort=False)], ignore_index=True)



OPERATING_COLUMNS = ("auc", "eer", "tpr_at_fpr_1", "tpr_at_fpr_5", "ece", "brier", "nll")


def operating_points_table(results: dict[str, EvaluationResult]) -> pd.DataFrame:
    """Rows (method, test_set); columns auc, eer, tpr_at_fpr_1, tpr_at_fpr_5, ece in percent,
    brier and nll as they are (NaN for methods without probabilities)."""
    table = pd.concat({name: result.metrics.set_index("test_set")[list(OPERATING_COLUMNS)]
                       for name, result in results.items()}, names=["method"])
    table[["auc", "eer", "tpr_at_fpr_1", "tpr_at_fpr_5", "ece"]] *= 100
    return table
