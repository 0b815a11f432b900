"""Temperature scaling, isotonic regression, the calibrator file and the few-shot threshold."""
from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.special import expit
from sklearn.isotonic import IsotonicRegression

from ufd_lib.evaluation.calibration import (
    CalibratedClassifier,
    Calibrator,
    CalibratorFileError,
    FewShotSettings,
    few_shot_threshold,
    fit_calibrator,
    reliability_curve,
)
from ufd_lib.evaluation.metrics import accuracies, expected_calibration_error


def overconfident(seed, n=20_000, temperature=3.0):
    """Labels drawn from sigmoid(z), reported as sigmoid(z · temperature)."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 2, n)
    labels = (rng.uniform(size=n) < expit(logits)).astype(int)
    return labels, expit(logits * temperature)


def test_temperature_scaling_recovers_the_temperature_and_keeps_decisions():
    labels, probabilities = overconfident(0)
    calibrator = fit_calibrator("temperature", labels, probabilities)
    assert calibrator.temperature == pytest.approx(3.0, rel=0.05)
    after = calibrator.apply(probabilities)
    assert expected_calibration_error(labels, after) < 0.02 < expected_calibration_error(labels, probabilities)
    assert ((after > 0.5) == (probabilities > 0.5)).all()


def test_isotonic_is_scikit_learns_and_calibrates():
    labels, probabilities = overconfident(1, n=3000)
    calibrator = fit_calibrator("isotonic", labels, probabilities, fitted_on="val")
    reference = IsotonicRegression(y_min=0, y_max=1, out_of_bounds="clip").fit(probabilities, labels)
    grid = np.r_[np.linspace(0, 1, 101), probabilities[:50]]
    np.testing.assert_allclose(calibrator.apply(grid), reference.predict(grid), atol=1e-12)
    assert expected_calibration_error(labels, calibrator.apply(probabilities)) < 1e-9  # on its own fit set
    assert (calibrator.n_real, calibrator.n_fake) == ((labels == 0).sum(), (labels == 1).sum())


@pytest.mark.parametrize("method", ["temperature", "isotonic"])
def test_the_file_is_json_and_round_trips(tmp_path, method):
    labels, probabilities = overconfident(2, n=500)
    calibrator = fit_calibrator(method, labels, probabilities, fitted_on="val", probe_sha256="ab" * 32)
    calibrator.save(tmp_path / "c.json")
    data = json.loads((tmp_path / "c.json").read_text())
    assert data["format"] == "ufd-calibrator/1" and data["method"] == method
    loaded = Calibrator.load(tmp_path / "c.json")
    assert loaded == calibrator
    np.testing.assert_array_equal(loaded.apply(probabilities), calibrator.apply(probabilities))


@pytest.mark.parametrize("content", [
    b"\x80\x04\x95pickle", b"[]", b'{"format": "ufd-calibrator/1", "method": "platt"}',
    b'{"format": "ufd-calibrator/1", "method": "temperature", "temperature": 0}',
    b'{"format": "ufd-calibrator/1", "method": "isotonic", "knots_x": [0.5, 0.2], "knots_y": [0, 1]}',
    b'{"format": "ufd-calibrator/1", "method": "isotonic", "knots_x": [0.2], "knots_y": [2]}',
    b'{"format": "ufd-calibrator/1", "method": "temperature", "code": "os.system"}',
])
def test_a_bad_file_is_refused_naming_it(tmp_path, content):
    path = tmp_path / "bad.json"
    path.write_bytes(content)
    with pytest.raises(CalibratorFileError, match="bad.json"):
        Calibrator.load(path)


def test_fit_needs_both_classes_and_a_known_method():
    with pytest.raises(ValueError, match="needs real and fake"):
        fit_calibrator("temperature", [0, 0], [0.2, 0.3])
    with pytest.raises(ValueError, match="unknown calibration method"):
        fit_calibrator("platt", [0, 1], [0.2, 0.3])


def test_calibrated_classifier_passes_probabilities_through_the_calibrator():
    class Fixed:
        def predict_proba(self, features):
            return np.stack([1 - features[:, 0], features[:, 0]], axis=1)

    wrapped = CalibratedClassifier(Fixed(), Calibrator("temperature", temperature=2.0))
    out = wrapped.predict_proba(np.array([[0.9], [0.5], [0.1]]))
    np.testing.assert_allclose(out[:, 1], expit(np.log(9) / 2 * np.array([1, 0, -1])))
    np.testing.assert_allclose(out.sum(axis=1), 1)
    assert wrapped.threshold == 0.5


def test_reliability_curve_weights_give_the_ece():
    labels, probabilities = overconfident(3, n=2000)
    curve = reliability_curve(labels, probabilities)
    assert curve["count"].sum() == 2000 and len(curve) == 15
    filled = curve[curve["count"] > 0]
    ece = (filled["count"] * (filled["fake_share"] - filled["mean_probability"]).abs()).sum() / 2000
    assert ece == pytest.approx(expected_calibration_error(labels, probabilities))


def test_few_shot_threshold_uses_drawn_reals_only_and_evaluates_the_rest():
    rng = np.random.default_rng(0)
    labels = np.r_[np.zeros(300, int), np.ones(300, int)]
    scores = np.r_[rng.normal(0.6, 0.05, 300), rng.normal(0.8, 0.05, 300)]  # drifted: reals above 0.5
    assert accuracies(labels, scores, 0.5)[0] < 0.05
    table = few_shot_threshold(labels, scores, FewShotSettings(shots=50, draws=10, seed=1))
    assert len(table) == 10 and table["threshold"].nunique() > 5
    assert table["acc"].mean() > 0.9 and (table["acc_real"] > 0.8).all()
    again = few_shot_threshold(labels, scores, FewShotSettings(shots=50, draws=10, seed=1))
    assert table.equals(again)
    # the accuracies exclude the drawn reals: recompute one draw by hand
    generator = np.random.default_rng([1, 50])
    drawn = generator.choice(np.flatnonzero(labels == 0), 50, replace=False)
    keep = np.setdiff1d(np.arange(600), drawn)
    threshold = np.quantile(scores[drawn], 0.95)
    assert table["threshold"][0] == threshold
    assert table["acc_real"][0] == accuracies(labels[keep], scores[keep], threshold)[0]
    assert few_shot_threshold(labels[:340], scores[:340], FewShotSettings(shots=300)).empty
