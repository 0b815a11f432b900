"""Training on other data than ProGAN (notebook 14; the paper's Sec. 6.4 and Fig. 7): nearest
neighbour and the linear probe fitted on another training set (the paper: LAION reals and LDM
fakes), and on ProGAN together with it, evaluated on every test set, beside the paper's means.

training sets → fitted classifiers → per-family means (long table: one row per training set,
classifier and family, ``ap`` and ``acc`` in percent).
"""
from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ufd_lib import config
from ufd_lib.analyses.tables import family_summary
from ufd_lib.classifiers.linear_probe import LinearProbe
from ufd_lib.classifiers.nearest_neighbour import NearestNeighbourClassifier
from ufd_lib.classifiers.trained_detector import DetectorRequest, TrainedDetector, detector_or_notice
from ufd_lib.data.image_sets import Benchmark, ImageSetSpec
from ufd_lib.evaluation.reported import PAPER_GROUPS, reported_results
from ufd_lib.evaluation.scoring import EvaluationResult, evaluate_sets
from ufd_lib.features.encoders import Encoder
from ufd_lib.features.feature_sets import ExtractionOptions, FeatureSet, featurize

# The reported numbers of this experiment: the text of Sec. 6.4.
PAPER_TABLE = "Text_Sec6.4"
TRAINING_NOTE = ("training: the images the classifiers were fitted on (ProGAN: the paper's training set; '+': both "
                 "sets together). NN k=1: nearest neighbour, cosine; LC: the linear probe, early stopping on the "
                 "training data's own validation set. ap, acc: percent, the mean over the test sets of each "
                 "generator family (all test sets: over every set).")


@dataclass
class TrainingData:
    """Features of one training choice. train: the training images; val: the validation images
    of early stopping (None: the probe holds out part of ``train``)."""

    name: str
    train: FeatureSet
    val: FeatureSet | None = None


def combined(name: str, parts: Sequence[FeatureSet | None]) -> FeatureSet | None:
    """The images of several feature sets as one (rows in the given order); None parts are left
    out, and None is returned when every part is None."""
    present = [part for part in parts if part is not None]
    if not present:
        return None
    return FeatureSet(name, np.vstack([part.features for part in present]),
                      np.concatenate([part.labels for part in present]),
                      [path for part in present for path in part.paths])


def training_features(encoder: Encoder, spec: ImageSetSpec, options: ExtractionOptions) -> FeatureSet:
    """Every image of a training or validation set, through the feature cache, whatever
    ``options.sampling`` says (the release samples only its evaluation)."""
    return featurize(encoder, spec, dataclasses.replace(options, sampling="all"))


def fit_on(training: TrainingData, k: int = 1, probe_lr: float = config.PROBE_LR,
           device: str | None = None) -> dict[str, object]:
    """``NN k=<k>`` and ``LC`` fitted on ``training``, by name."""
    train, val = training.train, training.val
    probe = LinearProbe(lr=probe_lr, device=device)
    probe = probe.fit(train.features, train.labels) if val is None else \
        probe.fit(train.features, train.labels, val.features, val.labels)
    return {f"NN k={k}": NearestNeighbourClassifier(k=k, device=device).fit(train.features, train.labels),
            "LC": probe}


def evaluate_trainings(trainings: Sequence[TrainingData], test_sets: list[FeatureSet], k: int = 1,
                       probe_lr: float = config.PROBE_LR,
                       device: str | None = None) -> dict[tuple[str, str], EvaluationResult]:
    """(training name, classifier name) → the classifier fitted on that training data, evaluated
    on ``test_sets``."""
    results = {}
    for training in trainings:
        for method, classifier in fit_on(training, k, probe_lr, device).items():
            results[(training.name, method)] = evaluate_sets(classifier, test_sets)
    return results


def training_table(results: dict[tuple[str, str], EvaluationResult], families: dict[str, str]) -> pd.DataFrame:
    """Long table of :func:`evaluate_trainings`'s results: columns training, classifier, family, ap, acc."""
    frames = [family_summary(result, families).assign(training=training, classifier=method)
              for (training, method), result in results.items()]
    return pd.concat(frames, ignore_index=True)[["training", "classifier", "family", "ap", "acc"]]


def paper_beside_ours(ours: dict[str, EvaluationResult], compare_with_paper: bool) -> pd.DataFrame:
    """The numbers the paper reports for this experiment (Sec. 6.4), each beside ours where the
    test sets are the paper's. ours: paper method name (``Ours LC``, ``Wang2020 trained deep
    network``) → our result for it trained on the paper's other data. Columns: method, variant,
    test_set, metric, paper, ours, source. ``ours`` is the mean AP (percent) over the group's
    test sets when every one is present (an ``AP_gain`` row: the first AP row's minus the
    second's), else empty."""
    reported = reported_results()
    rows = []
    for _, row in reported[reported["table"] == PAPER_TABLE].iterrows():
        mine = np.nan
        result = ours.get(row["method"])
        members = PAPER_GROUPS.get(row["test_set"])
        if compare_with_paper and result is not None and members is not None and row["metric"] == "AP":
            by_set = result.metrics.set_index("test_set")["ap"] * 100
            if set(members) <= set(by_set.index):
                mine = float(by_set[list(members)].mean())
        rows.append({"method": row["method"], "variant": row["variant"], "test_set": row["test_set"],
                     "metric": row["metric"], "paper": row["value"], "ours": mine, "source": row["source"]})
    table = pd.DataFrame(rows, columns=["method", "variant", "test_set", "metric", "paper", "ours", "source"])
    aps = table[table["metric"] == "AP"]["ours"].to_numpy()
    if len(aps) >= 2:
        table.loc[table["metric"] == "AP_gain", "ours"] = aps[0] - aps[1]
    return table


def detector_trained_on(request: DetectorRequest, benchmark: Benchmark, train: ImageSetSpec, val: ImageSetSpec | None,
                        output_dir: Path | str, **options) -> tuple[TrainedDetector | None, str]:
    """Notebook 05's end-to-end detector (``request``'s recipe) trained on ``train``, early
    stopping on ``val`` (None: the benchmark's ProGAN validation set), saved under
    ``<output_dir>/models/``; never the released CNNDetection weights, which are ProGAN-trained.
    Returns (detector, notice) or (None, the notice of why it was skipped), as
    :func:`ufd_lib.classifiers.trained_detector.detector_or_notice`."""
    other = dataclasses.replace(benchmark, train=train, val=val or benchmark.val)
    return detector_or_notice(dataclasses.replace(request, released_file=None), other, output_dir, **options)
