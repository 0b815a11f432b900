"""How sure a metric is: a stratified percentile bootstrap over the test images, vectorised over
resamples, and paired differences of two methods scored on the same images.

A resample of a test set draws its reals and its fakes separately, each with replacement and
at its own size, so every resample keeps both classes and their counts. It is held as counts
(how often each image was drawn), and every metric of :data:`BOOTSTRAP_METRICS` is computed
for all resamples at once from these counts: no image list is ever materialised. The draws of a
set depend only on the seed, the set's name and its class sizes, so two methods evaluated on the
same images see the same resamples (a paired bootstrap), and a mean over sets is taken per
resample (resample each set, then average) before its interval is read.

Interval: the percentile interval of the resampled values at level ``ci``, widened, where it
misses it, to contain the point estimate on the full set (a statistic that picks its own
threshold, such as ``released_acc``, is biased upwards on resamples). It covers the sampling of
test images only, not the randomness of training.
"""
from __future__ import annotations

import warnings
import zlib
from dataclasses import dataclass

import numpy as np
import pandas as pd

# Cells (resample × image) computed at once: a few float64 arrays of this size are alive together.
BLOCK_CELLS = 1 << 22
# The metrics that get intervals, as named in metrics.csv.
BOOTSTRAP_METRICS = ("ap", "acc_real", "acc_fake", "acc", "auc", "released_acc")


@dataclass(frozen=True)
class BootstrapSettings:
    """resamples: number of resamples (>= 1); ci: interval level in (0, 1); seed: the draws' seed."""

    resamples: int
    ci: float = 0.95
    seed: int = 0

    def __post_init__(self):
        if self.resamples < 1:
            raise ValueError(f"the bootstrap needs at least one resample, got {self.resamples}")
        if not 0 < self.ci < 1:
            raise ValueError(f"the interval level must lie in (0, 1), got {self.ci}")


@dataclass(frozen=True)
class Draws:
    """Resamples of one test set as counts: real (resamples, n_real) and fake (resamples, n_fake),
    float64, each row summing to its class size; images in the order of the set's labels."""

    real: np.ndarray
    fake: np.ndarray


def _counts(n: int, resamples: int, rng: np.random.Generator) -> np.ndarray:
    if n == 0:
        return np.zeros((resamples, 0))
    drawn = rng.integers(0, n, size=(resamples, n)) + n * np.arange(resamples)[:, None]
    return np.bincount(drawn.ravel(), minlength=resamples * n).reshape(resamples, n).astype(np.float64)


def draw(name: str, n_real: int, n_fake: int, settings: BootstrapSettings) -> Draws:
    """The resamples of test set ``name``: a function of (seed, name, n_real, n_fake) only."""
    rng = np.random.default_rng([settings.seed, zlib.crc32(name.encode()), n_real, n_fake])
    return Draws(_counts(n_real, settings.resamples, rng), _counts(n_fake, settings.resamples, rng))


def full_set(n_real: int, n_fake: int) -> Draws:
    """The one "resample" that is the set itself (every image once): the point estimates."""
    return Draws(np.ones((1, n_real)), np.ones((1, n_fake)))


def _per_value(counts: np.ndarray, value_index: np.ndarray, n_values: int) -> np.ndarray:
    """(resamples, n_images) counts → C-contiguous (resamples, n_values) counts per distinct score."""
    order = np.argsort(value_index, kind="stable")
    distinct, starts = np.unique(value_index[order], return_index=True)
    grouped = counts[:, order]
    if len(distinct) < len(order):  # tied scores: add up the counts of each value
        grouped = np.add.reduceat(grouped, starts, axis=1)
    out = np.zeros((len(counts), n_values))
    out[:, distinct] = grouped
    return out


@dataclass
class _Class:
    values_: np.ndarray  # scores of one class, in label order
    index_: np.ndarray  # each score's position among the set's distinct scores

    def __len__(self) -> int:
        return len(self.values_)


def _released_accuracy(real: _Class, fake: _Class, draws: Draws, correct: np.ndarray) -> np.ndarray:
    """``released_best_threshold``'s accuracy on every resample, each read as its reals (in label
    order, each repeated as drawn) followed by its fakes. correct: (resamples, distinct scores),
    images right calling fake when score >= that value, -1 where the value is not drawn."""
    best = correct.max(axis=1)
    thresholds = np.empty(len(best))
    chosen = np.zeros(len(best), dtype=bool)
    for group, counts in ((fake, draws.fake), (real, draws.real)):  # the last of equal candidates wins
        wins = (counts > 0) & (correct[:, group.index_] == best[:, None])
        last = wins.shape[1] - 1 - np.argmax(wins[:, ::-1], axis=1)
        take = wins.any(axis=1) & ~chosen
        thresholds[take] = group.values_[last[take]]
        chosen |= take
    highest_real = np.where(draws.real > 0, real.values_, -np.inf).max(axis=1)
    lowest_fake = np.where(draws.fake > 0, fake.values_, np.inf).min(axis=1)
    separable = highest_real <= lowest_fake
    thresholds[separable] = (highest_real[separable] + lowest_fake[separable]) / 2
    right = ((draws.real * (real.values_[None, :] <= thresholds[:, None])).sum(axis=1)
             + (draws.fake * (fake.values_[None, :] > thresholds[:, None])).sum(axis=1))
    return right / (len(real) + len(fake))


def resampled_metrics(labels, scores, threshold: float, draws: Draws) -> dict[str, np.ndarray]:
    """Every metric of :data:`BOOTSTRAP_METRICS` on every resample: name → (resamples,) float64,
    as :func:`ufd_lib.evaluation.metrics.test_set_metrics` computes it on the resampled set
    (accuracies calling fake when score > threshold; NaN where a class the metric needs is
    absent). labels: (n,) 0 real / 1 fake; scores: (n,) finite. Resamples are taken in blocks of
    about :data:`BLOCK_CELLS` (resample, image) cells, which bounds the memory of a large set."""
    n_images = max(1, draws.real.shape[1] + draws.fake.shape[1])
    step = max(1, BLOCK_CELLS // n_images)
    blocks = [_resampled_block(labels, scores, threshold, Draws(draws.real[start:start + step],
                                                                draws.fake[start:start + step]))
              for start in range(0, len(draws.real), step)]
    return {metric: np.concatenate([block[metric] for block in blocks]) for metric in blocks[0]}


def _resampled_block(labels, scores, threshold: float, draws: Draws) -> dict[str, np.ndarray]:
    labels, scores = np.asarray(labels), np.asarray(scores, dtype=np.float64)
    values, value_index = np.unique(scores, return_inverse=True)
    real = _Class(scores[labels == 0], value_index[labels == 0])
    fake = _Class(scores[labels == 1], value_index[labels == 1])
    n_real, n_fake, n_resamples = len(real), len(fake), len(draws.real)
    nan = np.full(n_resamples, np.nan)
    acc_real = (draws.real @ (real.values_ <= threshold)) / n_real if n_real else nan
    acc_fake = (draws.fake @ (fake.values_ > threshold)) / n_fake if n_fake else nan
    out = {"acc_real": acc_real, "acc_fake": acc_fake}
    with np.errstate(invalid="ignore"):
        out["acc"] = np.nanmean(np.stack([acc_real, acc_fake]), axis=0) if n_real or n_fake else nan
    if not (n_real and n_fake):
        return out | {"ap": nan, "auc": nan, "released_acc": nan}
    # (resamples, distinct scores ascending): cumulative sums along contiguous rows
    reals = _per_value(draws.real, real.index_, len(values))
    fakes = _per_value(draws.fake, fake.index_, len(values))
    real_below = np.cumsum(reals, axis=1) - reals
    fake_below = np.cumsum(fakes, axis=1) - fakes
    out["auc"] = np.einsum("ij,ij->i", fakes, real_below + 0.5 * reals) / (n_real * n_fake)
    # AP as scikit-learn's: precision at each distinct threshold (score >= value), weighted by
    # the recall that value adds.
    true_positives = n_fake - fake_below
    called = true_positives + (n_real - real_below)
    precision = np.divide(true_positives, called, out=np.zeros_like(called), where=called > 0)
    out["ap"] = np.einsum("ij,ij->i", fakes, precision) / n_fake
    drawn = reals + fakes > 0
    correct = np.where(drawn, real_below + true_positives, -1.0)
    # The release's in-place thresholding calls every image real at a candidate above 1
    # (released_best_threshold says why).
    correct = np.where(drawn & (values > 1)[None, :], n_real, correct)
    out["released_acc"] = _released_accuracy(real, fake, draws, correct)
    return out


def interval(resampled: np.ndarray, point: float, ci: float) -> tuple[float, float]:
    """Percentile interval of ``resampled`` at level ``ci``, widened to contain ``point``; NaN
    bounds when the point or every resampled value is NaN."""
    resampled = resampled[~np.isnan(resampled)]
    if np.isnan(point) or not len(resampled):
        return float("nan"), float("nan")
    low, high = np.percentile(resampled, [50 * (1 - ci), 50 * (1 + ci)])
    return float(min(low, point)), float(max(high, point))


def set_distributions(scores: pd.DataFrame, threshold: float, settings: BootstrapSettings,
                      ) -> dict[str, dict[str, np.ndarray]]:
    """test set → metric → (resamples,) values, for a scores table (columns test_set, label,
    score, as ``scores.csv``), sets in their order of appearance."""
    out = {}
    for name, group in scores.groupby("test_set", sort=False):
        labels = group["label"].to_numpy()
        draws = draw(str(name), int((labels == 0).sum()), int((labels == 1).sum()), settings)
        out[str(name)] = resampled_metrics(labels, group["score"].to_numpy(), threshold, draws)
    return out


def mean_distribution(distributions: dict[str, dict[str, np.ndarray]], names) -> dict[str, np.ndarray]:
    """Per resample, the mean over the sets ``names`` of each metric (NaN sets left out, as the
    metrics table's mean row leaves them out)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a metric NaN in every set: its mean is NaN
        return {metric: np.nanmean(np.stack([distributions[name][metric] for name in names]), axis=0)
                for metric in BOOTSTRAP_METRICS}


def with_intervals(metrics: pd.DataFrame, scores: pd.DataFrame, threshold: float, settings: BootstrapSettings,
                   groups: dict[str, list[str]] | None = None) -> pd.DataFrame:
    """``metrics`` (one row per test set and a ``mean`` row, as ``metrics.csv``) with
    ``<metric>_ci_low`` and ``<metric>_ci_high`` appended for each of :data:`BOOTSTRAP_METRICS`;
    ``groups`` (name → test sets) adds rows of group means with their intervals (image counts
    summed, other columns NaN). The ``mean`` row's interval comes from the mean over all sets per resample."""
    distributions = set_distributions(scores, threshold, settings)
    groups = dict(groups or {})
    table = metrics.copy()
    extra = []
    for name, members in groups.items():
        rows = table[table["test_set"].isin(members)]
        extra.append({"test_set": name, "n_real": int(rows["n_real"].sum()), "n_fake": int(rows["n_fake"].sum()),
                      **{metric: float(rows[metric].mean()) for metric in BOOTSTRAP_METRICS}})
    table = pd.concat([table, pd.DataFrame(extra, columns=table.columns)], ignore_index=True) if extra else table
    means = {name: mean_distribution(distributions, members) for name, members in groups.items()}
    means["mean"] = mean_distribution(distributions, list(distributions))
    for metric in BOOTSTRAP_METRICS:
        bounds = []
        for name, point in zip(table["test_set"], table[metric]):
            resampled = distributions.get(name, means.get(name, {})).get(metric)
            bounds.append(interval(resampled, point, settings.ci) if resampled is not None else (np.nan, np.nan))
        table[f"{metric}_ci_low"], table[f"{metric}_ci_high"] = zip(*bounds) if bounds else ([], [])
    return table


def paired_difference(labels, scores_a, scores_b, thresholds: tuple[float, float], name: str,
                      settings: BootstrapSettings) -> pd.DataFrame:
    """Method A minus method B on the same images of test set ``name``: one row per metric of
    :data:`BOOTSTRAP_METRICS` with columns metric, a, b, difference, ci_low, ci_high (fractions),
    the interval from the same resampled images for both. scores_a, scores_b: (n,) in the order
    of ``labels``; thresholds: (A's, B's)."""
    labels = np.asarray(labels)
    n_real, n_fake = int((labels == 0).sum()), int((labels == 1).sum())
    draws = draw(name, n_real, n_fake, settings)
    point_a = resampled_metrics(labels, scores_a, thresholds[0], full_set(n_real, n_fake))
    point_b = resampled_metrics(labels, scores_b, thresholds[1], full_set(n_real, n_fake))
    resampled_a = resampled_metrics(labels, scores_a, thresholds[0], draws)
    resampled_b = resampled_metrics(labels, scores_b, thresholds[1], draws)
    rows = []
    for metric in BOOTSTRAP_METRICS:
        a, b = float(point_a[metric][0]), float(point_b[metric][0])
        low, high = interval(resampled_a[metric] - resampled_b[metric], a - b, settings.ci)
        rows.append({"metric": metric, "a": a, "b": b, "difference": a - b, "ci_low": low, "ci_high": high})
    return pd.DataFrame(rows)
