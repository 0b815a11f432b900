"""Training on other data: combined training sets, one row per training, classifier and family,
and the paper's Sec. 6.4 means beside ours."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ufd_lib.analyses.tables import ALL_SETS
from ufd_lib.analyses.training_data import (
    TrainingData,
    combined,
    evaluate_trainings,
    paper_beside_ours,
    training_table,
)
from ufd_lib.evaluation.reported import PAPER_GROUPS
from ufd_lib.evaluation.scoring import EvaluationResult
from ufd_lib.features.feature_sets import FeatureSet


def feature_set(name: str, axis: int, per_class: int = 20, seed: int = 0) -> FeatureSet:
    """Reals and fakes on either side of the origin along ``axis``: a set whose fakes differ
    from its reals in one direction only."""
    rng = np.random.default_rng(seed)
    labels = np.repeat([0, 1], per_class)
    features = rng.normal(scale=0.3, size=(len(labels), 4)).astype(np.float32)
    features[:, axis] += np.where(labels == 1, 2.0, -2.0)
    return FeatureSet(name, features, labels, [f"{name}/{i}.png" for i in range(len(labels))])


def test_combined_stacks_rows_and_skips_missing_parts():
    a, b = feature_set("a", 0), feature_set("b", 1, per_class=5)
    both = combined("a+b", [a, None, b])
    assert both.features.shape == (50, 4) and both.paths == a.paths + b.paths
    np.testing.assert_array_equal(both.labels, np.concatenate([a.labels, b.labels]))
    assert combined("none", [None, None]) is None


def test_each_training_set_knows_its_own_direction_and_together_both():
    families = {"gan_test": "gan", "ldm_test": "diffusion"}
    tests = [feature_set("gan_test", 0, seed=1), feature_set("ldm_test", 1, seed=2)]
    gan, ldm = feature_set("progan", 0, seed=3), feature_set("ldm", 1, seed=4)
    trainings = [TrainingData("progan", gan), TrainingData("ldm", ldm, feature_set("ldm", 1, seed=5)),
                 TrainingData("progan+ldm", combined("progan+ldm", [gan, ldm]))]
    table = training_table(evaluate_trainings(trainings, tests, k=1, probe_lr=1e-2), families)
    assert list(table.columns) == ["training", "classifier", "family", "ap", "acc"]
    assert set(table["classifier"]) == {"NN k=1", "LC"}
    ap = table.set_index(["training", "classifier", "family"])["ap"]
    for method in ("NN k=1", "LC"):
        assert ap["ldm", method, "diffusion"] > 95 and ap["progan", method, "gan"] > 95
        assert ap["progan+ldm", method, ALL_SETS] > 95
    assert ap["progan", "NN k=1", "diffusion"] < 90  # a direction it never saw


def _result(ap_by_set: dict[str, float]) -> EvaluationResult:
    metrics = pd.DataFrame({"test_set": list(ap_by_set), "ap": [v / 100 for v in ap_by_set.values()]})
    return EvaluationResult(metrics, pd.DataFrame(), pd.DataFrame())


def test_the_papers_sec_6_4_means_sit_beside_ours():
    gans = PAPER_GROUPS["mean[GAN family]"]
    probe = _result({name: 90.0 + i for i, name in enumerate(gans)})
    detector = _result({name: 60.0 for name in gans})
    table = paper_beside_ours({"Ours LC": probe, "Wang2020 trained deep network": detector}, True).set_index("method")
    assert table.loc["Ours LC", "paper"] == 97.32 and table.loc["Wang2020 trained deep network", "paper"] == 60.17
    assert table.loc["Ours LC", "ours"] == pytest.approx(np.mean([90.0 + i for i in range(len(gans))]))
    assert table.loc["Ours LC vs trained deep network", "ours"] == pytest.approx(92.5 - 60.0)
    assert table["source"].str.startswith("https://arxiv.org").all()
    # Not the paper's test sets: no number of ours is set beside the paper's.
    assert paper_beside_ours({"Ours LC": probe}, False)["ours"].isna().all()
    # A group with a missing member gets no mean.
    partial = _result({name: 90.0 for name in gans[:-1]})
    assert np.isnan(paper_beside_ours({"Ours LC": partial}, True).set_index("method").loc["Ours LC", "ours"])
