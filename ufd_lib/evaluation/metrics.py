"""The paper's metrics, per test set. Labels: 0 = real, 1 = fake (the positive class).

- Average precision: sklearn ``average_precision_score`` with fake as positive.
- Accuracy at the classifier's threshold: an image is called fake when its score is strictly
  above the threshold (as ``y_pred > 0.5`` in the released code); ``acc`` is the mean of the
  real-class and fake-class accuracies, the paper's "accuracy".
- Oracle threshold (``oracle_*``, ours): chosen on the test set itself. Every score is a
  candidate ``t`` and an image is called fake when ``score >= t``; the candidate with the
  highest ``acc`` wins, the lowest such candidate on ties.
- Released best threshold (``released_*``): the official ``validate.py``
  (``find_best_threshold``, then ``calculate_acc``), reproduced exactly. When every real
  score is <= every fake score the threshold is the midpoint of the largest real and the
  smallest fake score. Otherwise every score is a candidate in the release's file order (all
  real images, then all fake images), an image is called fake when ``score >= t``, plain
  accuracy (correct / all images) is maximised and the last of equal candidates wins. The
  accuracies are then reported calling an image fake when ``score > t``, and
  ``released_acc`` is plain accuracy, not the mean of the class accuracies (the two agree
  when the classes have equal size, as in the release's capped test sets).

Scores must be finite: a NaN or infinite score is a broken model, refused with
:class:`MetricError` naming the test set.
"""
from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score

METRIC_COLUMNS = [
    "test_set", "n_real", "n_fake", "ap", "acc_real", "acc_fake", "acc",
    "oracle_threshold", "oracle_acc_real", "oracle_acc_fake", "oracle_acc",
    "released_threshold", "released_acc_real", "released_acc_fake", "released_acc",
]


class MetricError(ValueError):
    """Scores or labels from which no honest metric can be computed."""


def _validate(labels, scores, test_set: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    where = f"test set {test_set}: " if test_set is not None else ""
    labels = np.asarray(labels)
    scores = np.asarray(scores, dtype=np.float64)
    if labels.shape != scores.shape or labels.ndim != 1:
        raise MetricError(f"{where}labels {labels.shape} and scores {scores.shape} must be equal-length vectors")
    if not np.isin(labels, (0, 1)).all():
        raise MetricError(f"{where}labels must be 0 (real) or 1 (fake)")
    if not np.isfinite(scores).all():
        bad = int((~np.isfinite(scores)).sum())
        raise MetricError(f"{where}{bad} of {len(scores)} scores are NaN or infinite: the model output is broken")
    return labels, scores


def average_precision(labels, scores) -> float:
    """AP with fake as positive; NaN (with a warning) when the set lacks a class."""
    labels, scores = _validate(labels, scores)
    if len(np.unique(labels)) < 2:
        warnings.warn("average precision is undefined for a test set with one class only; reporting NaN")
        return float("nan")
    if np.ptp(scores) == 0:
        warnings.warn("all scores are equal: average precision equals the share of fakes and means nothing")
    return float(average_precision_score(labels, scores))


def _class_accuracies(labels: np.ndarray, called_fake: np.ndarray) -> tuple[float, float, float]:
    real, fake = labels == 0, labels == 1
    acc_real = float((~called_fake[real]).mean()) if real.any() else float("nan")
    acc_fake = float(called_fake[fake].mean()) if fake.any() else float("nan")
    present = [a for a in (acc_real, acc_fake) if not np.isnan(a)]
    return acc_real, acc_fake, float(np.mean(present)) if present else float("nan")


def accuracies(labels, scores, threshold: float) -> tuple[float, float, float]:
    """(acc_real, acc_fake, acc) calling an image fake when score > threshold."""
    labels, scores = _validate(labels, scores)
    return _class_accuracies(labels, scores > threshold)


def oracle_threshold(labels, scores) -> tuple[float, float, float, float]:
    """Best threshold on the test set itself → (threshold, acc_real, acc_fake, acc); fake iff score >= t."""
    labels, scores = _validate(labels, scores)
    if not len(scores):
        return (float("nan"),) * 4
    candidates = np.unique(scores)
    real_sorted = np.sort(scores[labels == 0])
    fake_sorted = np.sort(scores[labels == 1])
    real_below = np.searchsorted(real_sorted, candidates, side="left")
    fake_at_or_above = len(fake_sorted) - np.searchsorted(fake_sorted, candidates, side="left")
    acc_real = real_below / len(real_sorted) if len(real_sorted) else np.full(len(candidates), np.nan)
    acc_fake = fake_at_or_above / len(fake_sorted) if len(fake_sorted) else np.full(len(candidates), np.nan)
    acc = np.nanmean(np.stack([acc_real, acc_fake]), axis=0)
    # Pick the best candidate on exact integer counts (acc × 2·n_real·n_fake): float sums of
    # equal accuracies can differ in the last bit (1/3 + 1 vs 5/6 + 1/2), which would break the
    # documented tie rule. argmax takes the first, i.e. lowest, of equal candidates.
    if len(real_sorted) and len(fake_sorted):
        objective = real_below * len(fake_sorted) + fake_at_or_above * len(real_sorted)
    else:
        objective = real_below if len(real_sorted) else fake_at_or_above
    best = int(np.argmax(objective))
    return float(candidates[best]), float(acc_real[best]), float(acc_fake[best]), float(acc[best])


def released_best_threshold(labels, scores) -> tuple[float, float, float, float]:
    """The release's best threshold → (threshold, acc_real, acc_fake, acc), as ``validate.py``
    computes it (module docstring): search with ``score >= t`` over the scores in real-then-fake
    order, last of equal plain accuracies; report with ``score > t``; acc = plain accuracy."""
    labels, scores = _validate(labels, scores)
    if not len(scores):
        return (float("nan"),) * 4
    real, fake = scores[labels == 0], scores[labels == 1]
    if len(real) and len(fake) and real.max() <= fake.min():  # the release's separable case
        threshold = float((real.max() + fake.min()) / 2)
    else:
        candidates = np.concatenate([real, fake])
        real_below = np.searchsorted(np.sort(real), candidates, side="left")
        fake_at_or_above = len(fake) - np.searchsorted(np.sort(fake), candidates, side="left")
        correct = real_below + fake_at_or_above  # exact integers: ties are ties
        last_best = len(candidates) - 1 - int(np.argmax(correct[::-1]))
        threshold = float(candidates[last_best])
    called_fake = scores > threshold
    acc_real = float((~called_fake[labels == 0]).mean()) if len(real) else float("nan")
    acc_fake = float(called_fake[labels == 1].mean()) if len(fake) else float("nan")
    return threshold, acc_real, acc_fake, float((called_fake == (labels == 1)).mean())


def test_set_metrics(name: str, labels, scores, threshold: float) -> dict:
    """One row of the metrics table (columns :data:`METRIC_COLUMNS`, fractions in [0, 1]).
    Raises :class:`MetricError` naming the test set when a score is not finite."""
    labels, scores = _validate(labels, scores, name)
    acc_real, acc_fake, acc = accuracies(labels, scores, threshold)
    oracle = oracle_threshold(labels, scores)
    released = released_best_threshold(labels, scores)
    return {
        "test_set": name,
        "n_real": int((labels == 0).sum()),
        "n_fake": int((labels == 1).sum()),
        "ap": average_precision(labels, scores),
        "acc_real": acc_real,
        "acc_fake": acc_fake,
        "acc": acc,
        "oracle_threshold": oracle[0],
        "oracle_acc_real": oracle[1],
        "oracle_acc_fake": oracle[2],
        "oracle_acc": oracle[3],
        "released_threshold": released[0],
        "released_acc_real": released[1],
        "released_acc_fake": released[2],
        "released_acc": released[3],
    }


def mean_coverage(table: pd.DataFrame) -> str:
    """Which test sets the ``mean`` row of a :func:`metrics_table` averages, in words: "all N
    test sets", or, for the metrics a set leaves undefined (one class only), the sets left out
    ("ap, acc_real over 2 of 3 test sets (without laion)")."""
    by_set = table[table["test_set"] != "mean"]
    columns = [column for column in METRIC_COLUMNS[3:] if not column.endswith("threshold") and column in table]
    left_out: dict[tuple[str, ...], list[str]] = {}
    for column in columns:
        missing = tuple(by_set.loc[by_set[column].isna(), "test_set"].astype(str))
        if missing:
            left_out.setdefault(missing, []).append(column)
    if not left_out:
        return f"all {len(by_set)} test sets"
    return "; ".join(f"{', '.join(metrics)} over {len(by_set) - len(sets)} of {len(by_set)} test sets "
                     f"(without {', '.join(sets)})" for sets, metrics in left_out.items())


def metrics_table(rows: list[dict]) -> pd.DataFrame:
    """Per-test-set rows plus a ``mean`` row: metric columns averaged over the test sets where
    they are defined (a set of one class has no AP), image counts summed, no oracle or released
    threshold (thresholds of different sets are not comparable). Warns, naming them, when a
    metric's mean leaves sets out (:func:`mean_coverage`)."""
    table = pd.DataFrame(rows, columns=METRIC_COLUMNS)
    if not rows:
        return table
    coverage = mean_coverage(table)
    if not coverage.startswith("all "):
        warnings.warn(f"the mean row averages {coverage}", stacklevel=2)
    mean = {column: table[column].mean() for column in METRIC_COLUMNS[3:]}
    mean.update(test_set="mean", n_real=int(table["n_real"].sum()), n_fake=int(table["n_fake"].sum()),
                oracle_threshold=float("nan"), released_threshold=float("nan"))
    return pd.concat([table, pd.DataFrame([mean], columns=METRIC_COLUMNS)], ignore_index=True)
