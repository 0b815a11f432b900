"""Reliability checks of results: metrics on degenerate sets, a full disk under
``ufd evaluate --out``, non-finite scores."""
from __future__ import annotations

import errno
import io
import os
import warnings
from collections.abc import Callable
from contextlib import contextmanager, redirect_stderr, redirect_stdout
from pathlib import Path
from unittest import mock

import numpy as np

from ufd_lib.reliability import fault_injection as faults
from ufd_lib.reliability.check import Check


def check_metric_edge_cases() -> Check:
    from ufd_lib.evaluation.metrics import MetricError, average_precision

    fine = 0
    for labels, scores, expect in (([1, 1, 1], [0.1, 0.5, 0.9], "warning"), ([0, 1, 0, 1], [0.5] * 4, "warning"),
                                   ([0, 1], [0.2, float("nan")], "error")):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                value = average_precision(np.array(labels), np.array(scores))
                fine += expect == "warning" and len(caught) > 0 and (np.isnan(value) or 0 <= value <= 1)
            except MetricError:
                fine += expect == "error"
    return Check("metrics on one-class sets, all-equal scores, NaN scores", 3, fine, None,
                 "NaN or a warned value for the first two, an error naming the NaN scores for the last")


class _FillingFile:
    """A file on a disk that fills up: the first write stores half its bytes, then ENOSPC."""

    def __init__(self, handle):
        self._handle = handle

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self._handle.close()

    def write(self, data):
        self._handle.write(data[: len(data) // 2])
        self._handle.flush()
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def __getattr__(self, name):
        return getattr(self._handle, name)


@contextmanager
def disk_full_while_writing(name: str):
    """Within the block, :mod:`ufd_lib.atomic_files` runs out of disk space halfway through
    writing any file whose name contains ``name``."""
    from ufd_lib import atomic_files

    def full_open(path, mode="r", *args, **kwargs):
        handle = open(path, mode, *args, **kwargs)
        return _FillingFile(handle) if name in Path(path).name and "w" in mode else handle

    with mock.patch.object(atomic_files, "open", full_open, create=True):
        yield


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(folder.iterdir())}


def check_full_disk_evaluate(main: Callable[[list[str]], int], work: Path) -> Check:
    """``ufd evaluate --out`` over older results with the disk filling up in each of its files:
    exit 1 naming the file, the older results byte for byte as they were, no temporary left."""
    for folder in ("0_real", "1_fake"):
        faults.make_workload(work / "images" / folder, decodable=4, broken=0, seed=len(folder))
    common = ["evaluate", "--encoder", faults.ENCODER, "--device", "cpu", "--quiet", "--cache-dir", str(work / "cache"),
              "--classifier", "knn", "--train", f"train={work / 'images'}", "--test", f"test={work / 'images'}",
              "--out", str(work / "out")]
    with redirect_stdout(io.StringIO()), redirect_stderr(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        main(common + ["--k", "1"])
    before = _snapshot(work / "out")
    names = ["metrics.csv", "scores.csv", "skipped.csv", "run.json"]
    fine, messages = 0, []
    for name in names:
        stderr = io.StringIO()
        with disk_full_while_writing(name), redirect_stdout(io.StringIO()), redirect_stderr(stderr), \
                warnings.catch_warnings():
            warnings.simplefilter("ignore")
            status = main(common + ["--k", "3"])
        message = (stderr.getvalue().strip().splitlines() or [""])[-1]
        messages.append(message)
        fine += status == 1 and str(work / "out" / name) in message and _snapshot(work / "out") == before
    return Check("disk full during `ufd evaluate --out` over older results", len(names), fine, None,
                 f"exit 1 naming the file, older results intact; e.g. {messages[1].split('] ', 1)[-1]}")


class _NaNScores:
    """A scikit-learn-style classifier whose scores are NaN (a broken third-party model)."""

    def decision_function(self, features: np.ndarray) -> np.ndarray:
        return np.full(len(features), np.nan)


def check_non_finite_scores(work: Path) -> Check:
    """NaN scores (a broken classifier) and NaN features (which a nearest-neighbour search turns
    into finite scores) are refused with a MetricError naming the test set. (A probe file with NaN
    weights never gets this far: it is refused at load, see :func:`check_non_finite_weights`.)"""
    from ufd_lib.classifiers.nearest_neighbour import NearestNeighbourClassifier
    from ufd_lib.evaluation.metrics import MetricError
    from ufd_lib.evaluation.scoring import evaluate_sets
    from ufd_lib.features.feature_sets import FeatureSet

    rng = np.random.default_rng(0)
    features = rng.normal(size=(6, 8)).astype(np.float32)
    labels = np.array([0, 0, 0, 1, 1, 1])
    broken = features.copy()
    broken[1, 3] = np.nan
    cases = [(_NaNScores(), features, "6 of 6 scores"),
             (NearestNeighbourClassifier(k=1).fit(features, labels), broken, "1 of 6 feature vectors")]
    fine, details = 0, []
    for classifier, test_features, expected in cases:
        test_set = FeatureSet("ldm_200", test_features, labels, [f"{i}.png" for i in range(6)], [])
        try:
            evaluate_sets(classifier, [test_set])
            details.append("no error")
        except MetricError as error:
            fine += str(error).startswith(f"test set ldm_200: {expected}")
            details.append(str(error).split(":")[1].strip())
    return Check("NaN scores and NaN features at evaluation", len(cases), fine, None,
                 "refused naming the test set: " + "; ".join(details))
