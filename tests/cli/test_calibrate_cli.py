"""``ufd calibrate``, ``--calibration`` on evaluate and predict, and ``evaluate --bootstrap``."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import TINY_ENCODER, make_image_set, ufd

from ufd_lib.evaluation.bootstrap import BOOTSTRAP_METRICS
from ufd_lib.evaluation.calibration import Calibrator
from ufd_lib.evaluation.metrics import METRIC_COLUMNS


@pytest.fixture
def setup(tmp_path):
    root = tmp_path / "data"
    make_image_set(root / "calib", 6, 6)
    make_image_set(root / "target", 5, 5)
    probe = tmp_path / "probe.pth"
    rng = np.random.default_rng(0)
    torch.save({"weight": torch.tensor(rng.normal(size=(1, 768)) * 0.3, dtype=torch.float32),
                "bias": torch.tensor([0.2], dtype=torch.float32)}, probe)
    common = ["--encoder", TINY_ENCODER, "--device", "cpu", "--quiet", "--cache-dir", str(tmp_path / "cache")]
    return {"root": root, "probe": probe, "common": common, "calib": f"calib={root / 'calib'}",
            "target": f"target={root / 'target'}"}


def evaluate(capsys, setup, out, *extra):
    return ufd(capsys, "evaluate", *setup["common"], "--classifier", "linear", "--probe", setup["probe"],
               "--test", setup["target"], "--out", out, *extra)


@pytest.mark.parametrize("method", ["temperature", "isotonic"])
def test_a_calibrator_fitted_on_one_set_is_applied_to_another(capsys, setup, tmp_path, method):
    calibrator_path = tmp_path / "c.json"
    code, stdout, stderr = ufd(capsys, "calibrate", *setup["common"], "--probe", setup["probe"], "--calib",
                               setup["calib"], "--method", method, "--out", calibrator_path)
    assert code == 0, stderr
    assert f"{method} calibrator fitted on calib (6 real, 6 fake)" in stdout
    calibrator = Calibrator.load(calibrator_path)
    assert calibrator.method == method and calibrator.fitted_on == "calib" and len(calibrator.probe_sha256) == 64

    assert evaluate(capsys, setup, tmp_path / "plain")[0] == 0
    code, _, stderr = evaluate(capsys, setup, tmp_path / "calibrated", "--calibration", calibrator_path)
    assert code == 0, stderr
    plain = pd.read_csv(tmp_path / "plain" / "scores.csv")
    calibrated = pd.read_csv(tmp_path / "calibrated" / "scores.csv")
    np.testing.assert_allclose(calibrated["score"], calibrator.apply(plain["score"]), rtol=1e-6, atol=1e-8)
    if method == "temperature":
        assert calibrator.temperature != pytest.approx(1.0)
        assert not np.allclose(calibrated["score"], plain["score"])
        assert ((calibrated["score"] > 0.5) == (plain["score"] > 0.5)).all()

    code, stdout, stderr = ufd(capsys, "predict", *setup["common"], "--probe", str(setup["probe"]), "--json",
                               "--calibration", str(calibrator_path), str(setup["root"] / "target"))
    assert code == 0, stderr
    predicted = pd.DataFrame([json.loads(line) for line in stdout.splitlines()]).set_index("path")
    expected = calibrated.set_index("path")["score"]
    np.testing.assert_allclose(predicted.loc[expected.index, "probability_fake"], expected, rtol=1e-6, atol=1e-8)
    assert (predicted["label"] == np.where(predicted["probability_fake"] > 0.5, "fake", "real")).all()


def test_calibration_refused_for_nearest_neighbour_another_probe_or_a_broken_file(capsys, setup, tmp_path):
    calibrator_path = tmp_path / "c.json"
    Calibrator("temperature", temperature=2.0).save(calibrator_path)
    code, _, stderr = ufd(capsys, "evaluate", *setup["common"], "--classifier", "knn", "--train", setup["calib"],
                          "--test", setup["target"], "--out", tmp_path / "knn", "--calibration", calibrator_path)
    assert code == 2 and "nearest neighbour gives cosine margins" in stderr

    Calibrator("temperature", temperature=2.0, probe_sha256="0" * 64).save(calibrator_path)
    code, _, stderr = evaluate(capsys, setup, tmp_path / "other", "--calibration", calibrator_path)
    assert code == 2 and "fitted on another probe" in stderr

    broken = tmp_path / "broken.json"
    for text in ("not json", json.dumps({"format": "ufd-calibrator/1", "method": "temperature", "temperature": -1}),
                 json.dumps({"format": "pickle"})):
        broken.write_text(text)
        code, _, stderr = evaluate(capsys, setup, tmp_path / "broken", "--calibration", broken)
        assert code == 2 and str(broken) in stderr and "\n" not in stderr.strip()
    assert not (tmp_path / "broken").exists()


def test_calibrate_needs_both_classes(capsys, setup, tmp_path):
    make_image_set(setup["root"] / "reals", 4, 0)
    code, _, stderr = ufd(capsys, "calibrate", *setup["common"], "--probe", setup["probe"], "--calib",
                          f"reals={setup['root'] / 'reals'}", "--method", "isotonic", "--out", tmp_path / "c.json")
    assert code == 2 and "needs real (0_real) and fake (1_fake) images" in stderr
    assert not (tmp_path / "c.json").exists()


def test_evaluate_bootstrap_adds_reproducible_intervals_around_the_point(capsys, setup, tmp_path):
    code, stdout, stderr = evaluate(capsys, setup, tmp_path / "a", "--bootstrap", "200", "--seed", "3")
    assert code == 0, stderr
    assert "AP% CI" in stdout
    metrics = pd.read_csv(tmp_path / "a" / "metrics.csv")
    expected = METRIC_COLUMNS + [f"{m}_ci_{side}" for m in BOOTSTRAP_METRICS for side in ("low", "high")]
    assert list(metrics.columns) == expected
    for metric in BOOTSTRAP_METRICS:
        assert (metrics[f"{metric}_ci_low"] <= metrics[metric] + 1e-6).all()
        assert (metrics[metric] <= metrics[f"{metric}_ci_high"] + 1e-6).all()
    assert (metrics["ap_ci_high"] > metrics["ap_ci_low"]).all()
    assert evaluate(capsys, setup, tmp_path / "b", "--bootstrap", "200", "--seed", "3")[0] == 0
    assert (tmp_path / "a" / "metrics.csv").read_bytes() == (tmp_path / "b" / "metrics.csv").read_bytes()
    assert evaluate(capsys, setup, tmp_path / "c", "--bootstrap", "200", "--seed", "4")[0] == 0
    assert (tmp_path / "a" / "metrics.csv").read_bytes() != (tmp_path / "c" / "metrics.csv").read_bytes()


@pytest.mark.parametrize("flag,value", [("--ci", "1.5"), ("--ci", "0"), ("--bootstrap", "-1"), ("--ece-bins", "0")])
def test_evaluate_bad_interval_flags_exit_2(capsys, setup, tmp_path, flag, value):
    code, _, stderr = evaluate(capsys, setup, tmp_path / "x", flag, value)
    assert code == 2 and flag in stderr
