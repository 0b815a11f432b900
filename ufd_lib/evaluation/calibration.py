"""Post-hoc calibration of probabilities of fake, and a threshold learned from a few real images
of the target domain.

- Temperature scaling: p' = sigmoid(logit(p) / T), T fitted by minimising the NLL on a
  calibration set (probabilities clipped to [1e-15, 1 − 1e-15] before the logit). It changes
  confidence, not decisions: p' > 0.5 exactly when p > 0.5.
- Isotonic regression (scikit-learn's ``IsotonicRegression``, clipped outside the fitted range):
  a non-decreasing map of p, stored as its knots and applied by linear interpolation between
  them, as scikit-learn predicts; it can move the point where decisions flip.
- Few-shot threshold shift: the threshold becomes the ``quantile`` (default 0.95) of the scores
  of ``n`` reals drawn from the target test set, so about 5% of that domain's reals are called
  fake, whichever way the scores drifted; the drawn reals are left out of the evaluation.

A calibrator is saved as JSON (:meth:`Calibrator.save`): numbers and strings only, nothing that
runs code when read.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.optimize import minimize_scalar
from scipy.special import expit, logit
from sklearn.isotonic import IsotonicRegression

from ufd_lib.atomic_files import atomic_write_text
from ufd_lib.evaluation.metrics import ECE_BINS, NLL_CLIP, accuracies, negative_log_likelihood

CALIBRATION_METHODS = ("temperature", "isotonic")
FORMAT = "ufd-calibrator/1"
FEW_SHOT_QUANTILE = 0.95


class CalibratorFileError(ValueError):
    """A calibrator file that is missing, unreadable or not in :data:`FORMAT`."""


@dataclass(frozen=True)
class Calibrator:
    """A fitted map from probabilities of fake to calibrated probabilities.

    method: one of :data:`CALIBRATION_METHODS`; temperature: T (temperature); knots_x, knots_y:
    the isotonic map's knots, x increasing (isotonic); fitted_on: the calibration set's name;
    probe_sha256: SHA-256 of the probe whose probabilities it was fitted on ('' when unknown);
    n_real, n_fake: images it was fitted on.
    """

    method: str
    fitted_on: str = ""
    probe_sha256: str = ""
    n_real: int = 0
    n_fake: int = 0
    temperature: float = 1.0
    knots_x: tuple[float, ...] = field(default_factory=tuple)
    knots_y: tuple[float, ...] = field(default_factory=tuple)

    def apply(self, probabilities) -> np.ndarray:
        """(n,) probabilities of fake in [0, 1] → (n,) calibrated probabilities, float64."""
        probabilities = np.asarray(probabilities, dtype=np.float64)
        if self.method == "temperature":
            return expit(logit(np.clip(probabilities, NLL_CLIP, 1 - NLL_CLIP)) / self.temperature)
        return np.interp(probabilities, self.knots_x, self.knots_y)

    def save(self, path: Path | str) -> None:
        """Write the calibrator as JSON (``format`` :data:`FORMAT` plus the fields), atomically."""
        atomic_write_text(path, json.dumps({"format": FORMAT, **asdict(self)}, indent=2) + "\n")

    @classmethod
    def load(cls, path: Path | str) -> "Calibrator":
        """Read a file written by :meth:`save`; raises :class:`CalibratorFileError` naming the
        file when it is unreadable, not JSON, of another format or has impossible values."""
        try:
            data = json.loads(Path(path).read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            raise CalibratorFileError(f"{path}: not a calibrator file ({error})") from None
        if not isinstance(data, dict) or data.pop("format", None) != FORMAT:
            raise CalibratorFileError(f"{path}: not a calibrator file (expected format {FORMAT!r})")
        try:
            calibrator = cls(**{**data, "knots_x": tuple(data.get("knots_x", ())),
                                "knots_y": tuple(data.get("knots_y", ()))})
        except TypeError as error:
            raise CalibratorFileError(f"{path}: unexpected fields ({error})") from None
        problem = calibrator.problem()
        if problem:
            raise CalibratorFileError(f"{path}: {problem}")
        return calibrator

    def problem(self) -> str | None:
        """Why this calibrator cannot be applied, or None."""
        if self.method not in CALIBRATION_METHODS:
            return f"unknown method {self.method!r} (expected one of {', '.join(CALIBRATION_METHODS)})"
        if self.method == "temperature":
            ok = isinstance(self.temperature, (int, float)) and math.isfinite(self.temperature) and self.temperature > 0
            return None if ok else f"temperature must be a finite number > 0, got {self.temperature!r}"
        x, y = np.asarray(self.knots_x, dtype=object), np.asarray(self.knots_y, dtype=object)
        if len(x) < 1 or len(x) != len(y) or not all(isinstance(v, (int, float)) for v in (*x, *y)):
            return "isotonic knots must be two equal, non-empty lists of numbers"
        x, y = x.astype(float), y.astype(float)
        if not (np.isfinite(x).all() and (np.diff(x) > 0).all() and (np.diff(y) >= 0).all()
                and y.min() >= 0 and y.max() <= 1):
            return "isotonic knots must have increasing x and non-decreasing y in [0, 1]"
        return None


def fit_temperature(labels, probabilities) -> float:
    """The temperature T > 0 minimising the NLL of sigmoid(logit(p) / T) on (labels, probabilities)."""
    labels = np.asarray(labels)
    logits = logit(np.clip(np.asarray(probabilities, dtype=np.float64), NLL_CLIP, 1 - NLL_CLIP))
    found = minimize_scalar(lambda log_t: negative_log_likelihood(labels, expit(logits / np.exp(log_t))),
                            bounds=(-7.0, 7.0), method="bounded", options={"xatol": 1e-6})
    return float(np.exp(found.x))


def fit_calibrator(method: str, labels, probabilities, fitted_on: str = "", probe_sha256: str = "") -> Calibrator:
    """Fit ``method`` (temperature or isotonic) on a calibration set with both classes.
    Raises ValueError for an unknown method or a set lacking a class."""
    labels = np.asarray(labels)
    probabilities = np.asarray(probabilities, dtype=np.float64)
    if method not in CALIBRATION_METHODS:
        raise ValueError(f"unknown calibration method {method!r} (expected one of {', '.join(CALIBRATION_METHODS)})")
    n_real, n_fake = int((labels == 0).sum()), int((labels == 1).sum())
    if not (n_real and n_fake):
        raise ValueError(f"calibration set {fitted_on or ''}: needs real and fake images, "
                         f"found {n_real} real and {n_fake} fake")
    common = {"method": method, "fitted_on": fitted_on, "probe_sha256": probe_sha256,
              "n_real": n_real, "n_fake": n_fake}
    if method == "temperature":
        return Calibrator(**common, temperature=fit_temperature(labels, probabilities))
    isotonic = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(probabilities, labels)
    return Calibrator(**common, knots_x=tuple(map(float, isotonic.X_thresholds_)),
                      knots_y=tuple(map(float, isotonic.y_thresholds_)))


class CalibratedClassifier:
    """A fitted classifier with ``predict_proba`` whose probabilities pass through a calibrator;
    decision threshold 0.5."""

    threshold = 0.5

    def __init__(self, classifier, calibrator: Calibrator):
        self.classifier = classifier
        self.calibrator = calibrator

    def predict_proba(self, features: np.ndarray) -> np.ndarray:
        """(n, d) features → (n, 2) calibrated probabilities of real and fake."""
        fake = self.calibrator.apply(self.classifier.predict_proba(features)[:, 1])
        return np.stack([1 - fake, fake], axis=1)


def reliability_curve(labels, probabilities, bins: int = ECE_BINS) -> pd.DataFrame:
    """The reliability diagram's data over ``bins`` equal-width bins of the probability of fake
    (the bins of :func:`ufd_lib.evaluation.metrics.expected_calibration_error`): columns
    bin_low, bin_high, count, mean_probability, fake_share (NaN for an empty bin)."""
    labels = np.asarray(labels, dtype=np.float64)
    probabilities = np.asarray(probabilities, dtype=np.float64)
    edges = np.linspace(0, 1, bins + 1)
    which = np.clip(np.searchsorted(edges[1:-1], probabilities, side="left"), 0, bins - 1)
    count = np.bincount(which, minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.bincount(which, weights=probabilities, minlength=bins) / count
        share = np.bincount(which, weights=labels, minlength=bins) / count
    return pd.DataFrame({"bin_low": edges[:-1], "bin_high": edges[1:], "count": count,
                         "mean_probability": mean, "fake_share": share})


@dataclass(frozen=True)
class FewShotSettings:
    """shots: reals drawn from the target set per draw; draws: repetitions; quantile: of the drawn
    reals' scores, the new threshold; seed: of the draws."""

    shots: int
    draws: int = 20
    quantile: float = FEW_SHOT_QUANTILE
    seed: int = 0


def few_shot_threshold(labels, scores, settings: FewShotSettings) -> pd.DataFrame:
    """Per draw, the threshold from ``shots`` reals of this set and the accuracies on the rest:
    columns draw, threshold, acc_real, acc_fake, acc (fractions; fake when score > threshold).
    Empty when the set has no more reals than ``shots`` or no fakes."""
    labels, scores = np.asarray(labels), np.asarray(scores, dtype=np.float64)
    reals = np.flatnonzero(labels == 0)
    rows = []
    if len(reals) > settings.shots and (labels == 1).any():
        rng = np.random.default_rng([settings.seed, settings.shots])
        for index in range(settings.draws):
            drawn = rng.choice(reals, settings.shots, replace=False)
            threshold = float(np.quantile(scores[drawn], settings.quantile))
            keep = np.ones(len(labels), dtype=bool)
            keep[drawn] = False
            rows.append((index, threshold, *accuracies(labels[keep], scores[keep], threshold)))
    return pd.DataFrame(rows, columns=["draw", "threshold", "acc_real", "acc_fake", "acc"])
