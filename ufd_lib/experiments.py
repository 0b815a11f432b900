"""The paper's experiments as functions of cached features, shared by notebooks and CLI.

features of a benchmark → fitted classifiers → per-method metrics → the paper's tables.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from . import config
from .encoders import Encoder
from .evaluation import EvaluationResult, ExtractionOptions, FeatureSet, evaluate_sets, featurize
from .extract import ExtractionReport
from .knn import NearestNeighbourClassifier
from .linear_probe import LinearProbe
from .profiles import Benchmark, Profile
from .reported import PAPER_GROUPS, PAPER_TEST_SETS, paper_numbers


@dataclass
class BenchmarkFeatures:
    """Cached features of every set of a benchmark, and what extracting them cost."""

    train: FeatureSet
    val: FeatureSet
    test_sets: list[FeatureSet]
    report: ExtractionReport


def extraction_options(profile: Profile, cache_dir: Path | str | None, progress: bool = True) -> ExtractionOptions:
    return ExtractionOptions(
        batch_size=profile.batch_size, num_workers=profile.num_workers,
        cache_root=Path(cache_dir) if cache_dir else None, progress=progress,
    )


def featurize_benchmark(encoder: Encoder, benchmark: Benchmark, options: ExtractionOptions) -> BenchmarkFeatures:
    """Features of the training, validation and test sets (encoding only what the cache lacks)."""
    report = ExtractionReport()
    train = featurize(encoder, benchmark.train, options, report)
    val = featurize(encoder, benchmark.val, options, report)
    test_sets = [featurize(encoder, spec, options, report) for spec in benchmark.test_sets]
    return BenchmarkFeatures(train, val, test_sets, report)


def feature_counts(features: BenchmarkFeatures, families: dict[str, str]) -> pd.DataFrame:
    """One row per set: role, name, family, real and fake images with features, skipped files."""
    rows = []
    for role, sets in (("train", [features.train]), ("val", [features.val]), ("test", features.test_sets)):
        for feature_set in sets:
            rows.append({
                "role": role, "set": feature_set.name, "family": families.get(feature_set.name, "training"),
                "n_real": int((feature_set.labels == 0).sum()), "n_fake": int((feature_set.labels == 1).sum()),
                "skipped": len(feature_set.skipped),
            })
    return pd.DataFrame(rows)


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


def family_means(table: pd.DataFrame, families: dict[str, str]) -> pd.DataFrame:
    """Mean of each column over the test sets of each generator family (rows: families)."""
    by_set = table.drop(index="mean", errors="ignore")
    groups = pd.Series({name: families.get(name, "unknown") for name in by_set.index})
    return by_set.groupby(groups, sort=False).mean()


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


def released_probe_path(profile: Profile) -> Path | None:
    return config.weights_dir() / profile.released_probe if profile.released_probe else None
