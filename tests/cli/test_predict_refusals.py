"""``ufd predict`` refuses probes that overflow float32, a released probe that is not the
release, non-finite scores and inputs that are not image files, each in one line."""
from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from conftest import TINY_ENCODER, ufd, write_image

from ufd_lib.classifiers import linear_probe
from ufd_lib.classifiers.linear_probe import LinearProbe


@pytest.fixture
def common(tmp_path):
    return ["--encoder", TINY_ENCODER, "--device", "cpu", "--quiet", "--cache-dir", str(tmp_path / "cache")]


@pytest.fixture
def image(tmp_path):
    return write_image(tmp_path / "images" / "a.png", seed=1)


@pytest.mark.parametrize(("weight", "dtype"), [(3e38, torch.float32), (1e300, torch.float64)],
                         ids=["float32-3e38", "float64-1e300"])
def test_a_probe_that_overflows_float32_is_refused_at_load(capsys, common, image, tmp_path, weight, dtype):
    probe = tmp_path / "huge.pth"
    torch.save({"weight": torch.full((1, 768), weight, dtype=dtype), "bias": torch.zeros(1, dtype=dtype)}, probe)
    code, stdout, stderr = ufd(capsys, "predict", *common, "--probe", probe, image)
    assert code == 2 and stdout == ""
    assert str(probe) in stderr and "overflow float32" in stderr and len(stderr.strip().splitlines()) == 1


def test_a_logit_that_overflows_gives_nan_never_certainty():
    weight = torch.zeros(1, 4)
    weight[0, 0] = 3e38  # finite, and so is the sum of magnitudes: only the logit overflows
    probe = LinearProbe.from_weights(weight, torch.zeros(1), "test")
    proba = probe.predict_proba(np.array([[10.0, 0, 0, 0], [0.5, 0, 0, 0]], dtype=np.float32))
    assert np.isnan(proba[0]).all() and np.isfinite(proba[1]).all()


def test_predict_refuses_non_finite_scores_and_prints_none(capsys, common, image, tmp_path, monkeypatch):
    probe = tmp_path / "probe.pth"
    torch.save({"weight": torch.zeros(1, 768), "bias": torch.zeros(1)}, probe)
    monkeypatch.setattr(LinearProbe, "decision_function", lambda self, X: np.full(len(X), np.inf, np.float32))
    code, stdout, stderr = ufd(capsys, "predict", *common, "--probe", probe, image)
    assert code == 1 and stdout == ""
    assert "1 of 1 scores are NaN or infinite" in stderr


def test_a_released_probe_that_is_not_the_release_is_refused(capsys, common, image, monkeypatch):
    monkeypatch.setattr(linear_probe, "RELEASED_PROBE_SHA256", "0" * 64)
    code, stdout, stderr = ufd(capsys, "predict", *common, image)
    assert code == 2 and stdout == ""
    assert "not the authors' released probe" in stderr and "reinstall" in stderr


def test_the_shipped_released_probe_has_its_pinned_hash():
    import hashlib

    from ufd_lib.classifiers.released import RELEASED_PROBE, RELEASED_PROBE_SHA256

    assert hashlib.sha256(RELEASED_PROBE.read_bytes()).hexdigest() == RELEASED_PROBE_SHA256
    assert LinearProbe.load(RELEASED_PROBE).n_features_in_ == 768


@pytest.mark.timeout(30)
def test_predict_on_a_fifo_says_what_it_is(capsys, common, tmp_path):
    pipe = tmp_path / "pipe.png"
    os.mkfifo(pipe)
    code, stdout, stderr = ufd(capsys, "predict", *common, pipe)
    assert code == 2 and stdout == ""
    assert "pipe.png" in stderr and "a FIFO, not an image file" in stderr
