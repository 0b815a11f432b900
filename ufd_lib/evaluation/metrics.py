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
  accuracy (correct / all images) is maximised and the last of equal candidates wins; a
  candidate above 1 (a nearest-neighbour margin) calls every image real, as the release's
  in-place thresholding of its copy does. The
  accuracies are then reported calling an image fake when ``score > t``, and
  ``released_acc`` is plain accuracy, not the mean of the class accuracies (the two agree
  when the classes have equal size, as in the release's capped test sets).
- Operating points (ours, as detection papers after UnivFD report them): ``auc`` (ROC AUC,
  ties counted half); ``eer``, the equal error rate where the ROC curve, drawn as straight
  lines between its points, crosses FPR = FNR; ``tpr_at_fpr_1`` and ``tpr_at_fpr_5``, the
  share of fakes flagged at 1% and 5% of reals flagged, with no interpolation: the highest TPR
  of any threshold whose FPR does not exceed the target, so a real threshold achieves it;
  ``balanced_acc``, scikit-learn's balanced accuracy at the classifier's threshold (by
  definition the paper's ``acc``, under the name the field uses).
- Probability metrics, only for scores that are probabilities of fake (NaN otherwise):
  ``ece`` (expected calibration error over equal-width bins of the fake probability, 15 by
  default: the bins' |share of fakes − mean probability| weighted by their image counts),
  ``brier`` (mean squared error of the probability) and ``nll`` (mean negative log-likelihood
  in nats, probabilities clipped to [1e-15, 1 − 1e-15]).

Scores must be finite: a NaN or infinite score is a broken model, refused with
:class:`MetricError` naming the test set.
"""
from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, balanced_accuracy_score, roc_auc_score, roc_curve

METRIC_COLUMNS = [
    "test_set", "n_real", "n_fake", "ap", "acc_real", "acc_fake", "acc",
    "oracle_threshold", "oracle_acc_real", "oracle_acc_fake", "oracle_acc",
    "released_threshold", "released_acc_real", "released_acc_fake", "released_acc",
    "auc", "eer", "tpr_at_fpr_1", "tpr_at_fpr_5", "balanced_acc", "ece", "brier", "nll",
]
ECE_BINS = 15
NLL_CLIP = 1e-15


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


def released_best_threshold(labels, scores, first_half: int | None = None) -> tuple[float, float, float, float]:
    """The release's best threshold → (threshold, acc_real, acc_fake, acc), as ``validate.py``
    computes it (module docstring): search with ``score >= t`` over the scores in real-then-fake
    order, last of equal plain accuracies; report with ``score > t``; acc = plain accuracy.

    first_half: how many leading scores are the release's first half (its real list) for the
    separable test, the rest its second; the scores are then candidates in the given order.
    None: the images labelled real, then those labelled fake. The two differ only where a path
    of the real list is labelled fake (:mod:`ufd_lib.data.discovery`, official sampling)."""
    labels, scores = _validate(labels, scores)
    if not len(scores):
        return (float("nan"),) * 4
    real, fake = scores[labels == 0], scores[labels == 1]
    first, second = (real, fake) if first_half is None else (scores[:first_half], scores[first_half:])
    if len(first) and len(second) and first.max() <= second.min():  # the release's separable case
        threshold = float((first.max() + second.min()) / 2)
    else:
        candidates = np.concatenate([first, second])
        real_below = np.searchsorted(np.sort(real), candidates, side="left")
        fake_at_or_above = len(fake) - np.searchsorted(np.sort(fake), candidates, side="left")
        correct = real_below + fake_at_or_above  # exact integers: ties are ties
        # The release thresholds a copy in place (temp[temp >= t] = 1, then temp[temp < t] = 0):
        # for a candidate above 1 the ones just written fall below it, so every image is called real.
        correct = np.where(candidates > 1, len(real), correct)
        last_best = len(candidates) - 1 - int(np.argmax(correct[::-1]))
        threshold = float(candidates[last_best])
    called_fake = scores > threshold
    acc_real = float((~called_fake[labels == 0]).mean()) if len(real) else float("nan")
    acc_fake = float(called_fake[labels == 1].mean()) if len(fake) else float("nan")
    return threshold, acc_real, acc_fake, float((called_fake == (labels == 1)).mean())


def _both_classes(labels: np.ndarray, what: str) -> bool:
    if len(np.unique(labels)) < 2:
        warnings.warn(f"{what} is undefined for a test set with one class only; reporting NaN")
        return False
    return True


def roc_auc(labels, scores) -> float:
    """ROC AUC with fake as positive (a tie between a real and a fake counts half); NaN (with a
    warning) when the set lacks a class."""
    labels, scores = _validate(labels, scores)
    return float(roc_auc_score(labels, scores)) if _both_classes(labels, "AUC") else float("nan")


def equal_error_rate(labels, scores) -> float:
    """EER: the rate where FPR = FNR on the ROC curve drawn as straight lines between its
    points (module docstring); NaN (with a warning) when the set lacks a class."""
    labels, scores = _validate(labels, scores)
    if not _both_classes(labels, "the equal error rate"):
        return float("nan")
    fpr, tpr, _ = roc_curve(labels, scores, drop_intermediate=False)
    gap = (1 - tpr) - fpr  # FNR − FPR: 1 at the curve's start, −1 at its end, never increasing
    i = int(np.argmax(gap <= 0))
    step = gap[i - 1] / (gap[i - 1] - gap[i])
    return float(fpr[i - 1] + step * (fpr[i] - fpr[i - 1]))


def tpr_at_fpr(labels, scores, fpr_target: float) -> float:
    """Share of fakes called fake at the threshold flagging at most ``fpr_target`` (a fraction)
    of the reals, without interpolation (module docstring); NaN when the set lacks a class."""
    labels, scores = _validate(labels, scores)
    if not _both_classes(labels, "TPR at a fixed FPR"):
        return float("nan")
    fpr, tpr, _ = roc_curve(labels, scores, drop_intermediate=False)
    return float(tpr[fpr <= fpr_target + 1e-12].max())


def balanced_accuracy(labels, scores, threshold: float) -> float:
    """Mean of the class accuracies calling an image fake when score > threshold (scikit-learn's
    ``balanced_accuracy_score``); NaN when the set lacks a class."""
    labels, scores = _validate(labels, scores)
    if len(np.unique(labels)) < 2:
        return float("nan")
    return float(balanced_accuracy_score(labels, (scores > threshold).astype(int)))


def _probabilities(scores: np.ndarray) -> np.ndarray:
    if len(scores) and (scores.min() < 0 or scores.max() > 1):
        raise MetricError(f"probabilities must lie in [0, 1]; got scores from {scores.min():g} to {scores.max():g}")
    return scores


def expected_calibration_error(labels, probabilities, bins: int = ECE_BINS) -> float:
    """ECE of probabilities of fake over ``bins`` equal-width bins of [0, 1] (module docstring;
    a bin holds (edge_i, edge_i+1], the first also 0); NaN for an empty set. Raises
    :class:`MetricError` for a value outside [0, 1]."""
    labels, probabilities = _validate(labels, probabilities)
    probabilities = _probabilities(probabilities)
    if not len(labels):
        return float("nan")
    which = np.clip(np.searchsorted(np.linspace(0, 1, bins + 1)[1:-1], probabilities, side="left"), 0, bins - 1)
    count = np.bincount(which, minlength=bins)
    fakes = np.bincount(which, weights=labels.astype(np.float64), minlength=bins)
    total = np.bincount(which, weights=probabilities, minlength=bins)
    return float(np.abs(fakes - total).sum() / count.sum())


def brier_score(labels, probabilities) -> float:
    """Mean of (probability of fake − label)²; NaN for an empty set."""
    labels, probabilities = _validate(labels, probabilities)
    probabilities = _probabilities(probabilities)
    return float(np.mean((probabilities - labels) ** 2)) if len(labels) else float("nan")


def negative_log_likelihood(labels, probabilities) -> float:
    """Mean −log p(true class) in nats, p clipped to [1e-15, 1 − 1e-15]; NaN for an empty set."""
    labels, probabilities = _validate(labels, probabilities)
    probabilities = np.clip(_probabilities(probabilities), NLL_CLIP, 1 - NLL_CLIP)
    if not len(labels):
        return float("nan")
    return float(-np.mean(np.where(labels == 1, np.log(probabilities), np.log1p(-probabilities))))


def operating_points(labels, scores, threshold: float, probabilities: bool = False,
                     ece_bins: int = ECE_BINS) -> dict:
    """The operating-point columns (auc, eer, tpr_at_fpr_1, tpr_at_fpr_5, balanced_acc) and, when
    ``probabilities`` (scores are probabilities of fake), ece, brier, nll; NaN otherwise."""
    labels, scores = _validate(labels, scores)
    nan = float("nan")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a one-class set already warned through average_precision
        row = {
            "auc": roc_auc(labels, scores),
            "eer": equal_error_rate(labels, scores),
            "tpr_at_fpr_1": tpr_at_fpr(labels, scores, 0.01),
            "tpr_at_fpr_5": tpr_at_fpr(labels, scores, 0.05),
            "balanced_acc": balanced_accuracy(labels, scores, threshold),
        }
    row.update(
        ece=expected_calibration_error(labels, scores, ece_bins) if probabilities else nan,
        brier=brier_score(labels, scores) if probabilities else nan,
        nll=negative_log_likelihood(labels, scores) if probabilities else nan,
    )
    return row


def test_set_metrics(name: str, labels, scores, threshold: float, first_half: int | None = None,
                     probabilities: bool = False, ece_bins: int = ECE_BINS) -> dict:
    """One row of the metrics table (columns :data:`METRIC_COLUMNS`, fractions in [0, 1]);
    ``first_half`` as in :func:`released_best_threshold`; ``probabilities``: the scores are
    probabilities of fake (ece, brier, nll are NaN otherwise).
    Raises :class:`MetricError` naming the test set when a score is not finite."""
    labels, scores = _validate(labels, scores, name)
    acc_real, acc_fake, acc = accuracies(labels, scores, threshold)
    oracle = oracle_threshold(labels, scores)
    released = released_best_threshold(labels, scores, first_half)
    row = {
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
    try:
        row.update(operating_points(labels, scores, threshold, probabilities, ece_bins))
    except MetricError as error:
        raise MetricError(f"test set {name}: {error}") from None
    return row


def mean_coverage(table: pd.DataFrame) -> str:
    """Which test sets the ``mean`` row of a :func:`metrics_table` averages, in words: "all N
    test sets", or, for the metrics a set leaves undefined (one class only), the sets left out
    ("ap, acc_real over 2 of 3 test sets (without laion)")."""
    by_set = table[table["test_set"] != "mean"]
    columns = [column for column in METRIC_COLUMNS[3:] if not column.endswith("threshold") and column in table]
    left_out: dict[tuple[str, ...], list[str]] = {}
    for column in columns:
        missing = tuple(by_set.loc[by_set[column].isna(), "test_set"].astype(str))
        if missing and len(missing) < len(by_set):  # a metric no set defines (ece of a margin) is no mean
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
