"""The ``mean`` row says which test sets it covers, and a set with no usable image is refused."""
from __future__ import annotations

import contextlib

import numpy as np
import pytest
from conftest import TINY_ENCODER, make_image_set, ufd

from ufd_lib.evaluation import metrics
from ufd_lib.evaluation.metrics import mean_coverage, metrics_table


def _rows(one_class: bool):
    labels = np.array([0, 0, 1, 1])
    rows = [metrics.test_set_metrics("a", labels, np.array([0.1, 0.2, 0.8, 0.9]), 0.5)]
    second = np.array([1, 1, 1, 1]) if one_class else labels
    with pytest.warns(UserWarning) if one_class else contextlib.nullcontext():
        rows.append(metrics.test_set_metrics("b", second, np.array([0.3, 0.6, 0.7, 0.9]), 0.5))
    return rows


def test_a_mean_over_every_set_says_so():
    assert mean_coverage(metrics_table(_rows(one_class=False))) == "all 2 test sets"


def test_a_mean_that_leaves_a_set_out_names_it():
    rows = _rows(one_class=True)
    with pytest.warns(UserWarning, match=r"the mean row averages ap, acc_real.* over 1 of 2 test sets \(without b\)"):
        table = metrics_table(rows)
    assert table.set_index("test_set").loc["mean", "ap"] == table.set_index("test_set").loc["a", "ap"]


def test_a_set_whose_files_are_all_unusable_is_refused(capsys, tmp_path):
    good = tmp_path / "good"
    make_image_set(good, 2, 2)
    broken = tmp_path / "broken"
    for folder in ("0_real", "1_fake"):
        (broken / folder).mkdir(parents=True)
        (broken / folder / "x.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    code, stdout, stderr = ufd(capsys, "evaluate", "--encoder", TINY_ENCODER, "--device", "cpu", "--quiet",
                               "--cache-dir", tmp_path / "cache", "--classifier", "knn", "--train", f"train={good}",
                               "--test", f"broken={broken}", "--out", tmp_path / "out")
    assert code == 1 and "test set broken: no usable image (2 skipped" in stderr
    assert not (tmp_path / "out" / "metrics.csv").exists()
