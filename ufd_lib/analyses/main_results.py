"""The paper's main experiment (Tables 2 and 3, notebook 03): nearest neighbour and the linear
probe fitted on the training features, evaluated on every test set, set beside the paper.

benchmark features → fitted classifiers → per-method metrics → the paper's tables.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ufd_lib import config
from ufd_lib.classifiers.linear_probe import LinearProbe
from ufd_lib.classifiers.nearest_neighbour import NearestNeighbourClassifier
from ufd_lib.evaluation.reported import PAPER_GROUPS, PAPER_TEST_SETS, paper_numbers
from ufd_lib.evaluation.scoring import EvaluationResult, evaluate_sets
from ufd_lib.features.feature_sets import BenchmarkFeatures


def fit_methods(features: BenchmarkFeatures, k_values: tuple[int, ...], released_probe: Path | None,
                probe_lr: float = config.PROBE_LR, device: str | None = None) -> dict[str, object]:
    """The paper's detectors fitted on the training features, by method name.

    ``NN k=K``: nearest neighbour with the whole training set as real and fake banks.
    ``LC``: the linear probe trained here (early stopping on the validation set).
    ``LC released``: the official probe weights, when the file exists.
    """
    train = features.train
    methods: dict[str, object] = {
        f"NN k={k}": NearestNeighbourClassifier(k=k, device=device).fit(train.features, train.labels)
        for k in k_values
    }
    methods["LC"] = LinearProbe(lr=probe_lr, device=device).fit(
        train.features, train.labels, features.val.features, features.val.labels
    )
    if released_probe is not None and Path(released_probe).is_file():
        methods["LC released"] = LinearProbe.load(released_probe)
    return methods


def evaluate_methods(methods: dict[str, object], features: BenchmarkFeatures) -> dict[str, EvaluationResult]:
    return {name: evaluate_sets(classifier, features.test_sets) for name, classifier in methods.items()}


def metric_table(results: dict[str, EvaluationResult], metric: str) -> pd.DataFrame:
    """Test sets (rows, ``mean`` last) × methods (columns) of one metric column, in percent."""
    return pd.DataFrame(
        {name: result.metrics.set_index("test_set")[metric] * 100 for name, result in results.items()}
    )


def accuracy_table(results: dict[str, EvaluationResult], prefix: str = "") -> pd.DataFrame:
    """The paper's accuracy table: test sets × (method, real / fake / mean), in percent.

    prefix: ``""`` for the classifier's own threshold, ``"oracle_"`` for the oracle threshold.
    """
    parts = {
        (name, label): result.metrics.set_index("test_set")[f"{prefix}{column}"] * 100
        for name, result in results.items()
        for label, column in (("real", "acc_real"), ("fake", "acc_fake"), ("mean", "acc"))
    }
    return pd.DataFrame(parts)


def paper_comparison(ap: pd.DataFrame, acc: pd.DataFrame, method: str = "LC") -> pd.DataFrame:
    """Our ``method`` next to the paper's linear probe ("Ours LC"): one row per metric and per
    test set or group mean the paper reports, with the difference (ours − paper) in percentage
    points and the kind of source. Our value is NaN where we have no set of that name."""
    ours = pd.concat({"AP": ap[method], "acc": acc[(method, "mean")]}, axis=1).drop(index="mean", errors="ignore")
    for group, members in {**PAPER_GROUPS, "mean": PAPER_TEST_SETS}.items():
        if all(member in ours.index for member in members):
            ours.loc[group] = ours.loc[list(members)].mean()
    rows = []
    for metric in ("AP", "acc"):
        for _, paper in paper_numbers("Ours LC", metric).iterrows():
            value = ours[metric].get(paper["test_set"], np.nan)
            rows.append({"test_set": paper["test_set"], "metric": metric, "ours": value, "paper": paper["value"],
                         "difference": value - paper["value"], "paper_source": paper["kind"]})
    return pd.DataFrame(rows)


def probe_history(methods: dict[str, object]) -> pd.DataFrame:
    """Per-epoch loss, validation accuracy and learning rate of the probe trained here."""
    return pd.DataFrame(methods["LC"].history_)
