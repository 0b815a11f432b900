"""The tables of notebook 11 on synthetic scores with known answers."""
from __future__ import annotations

import matplotlib
import numpy as np
import pandas as pd
import pytest

from ufd_lib.analyses.how_sure import (
    family_groups,
    few_shot_table,
    paired_table,
    paper_comparison_with_intervals,
    reliability_curves,
    verdict,
)
from ufd_lib.evaluation.bootstrap import BootstrapSettings
from ufd_lib.evaluation.metrics import metrics_table
from ufd_lib.evaluation.metrics import test_set_metrics as set_metrics
from ufd_lib.evaluation.reported import PAPER_TEST_SETS, paper_numbers
from ufd_lib.evaluation.scoring import EvaluationResult

matplotlib.use("Agg")


def result_for(names, n=200, shift=3.0, seed=0):
    rng = np.random.default_rng(seed)
    frames, rows = [], []
    for name in names:
        labels = np.r_[np.zeros(n, int), np.ones(n, int)]
        scores = 1 / (1 + np.exp(-np.r_[rng.normal(-shift / 2, 1, n), rng.normal(shift / 2, 1, n)]))
        frames.append(pd.DataFrame({"test_set": name, "path": [f"{name}/{i}" for i in range(2 * n)],
                                    "label": labels, "score": scores}))
        rows.append(set_metrics(name, labels, scores, 0.5, probabilities=True))
    return EvaluationResult(metrics_table(rows), pd.concat(frames, ignore_index=True),
                            pd.DataFrame(columns=["test_set", "path", "reason"]), threshold=0.5)


def test_verdict():
    assert verdict(90.0, 85.0, 95.0) == "within CI"
    assert verdict(96.0, 85.0, 95.0) == "above" and verdict(80.0, 85.0, 95.0) == "below"
    assert verdict(np.nan, 85.0, 95.0) == ""


def test_paper_comparison_places_the_paper_against_our_interval():
    result = result_for(PAPER_TEST_SETS, n=100)
    table = paper_comparison_with_intervals(result, "Ours LC", BootstrapSettings(200), compare_with_paper=True)
    ap = table[table["metric"] == "AP"].set_index("test_set")
    guided = ap.loc["Guided"]
    assert guided["paper"] == paper_numbers("Ours LC", "AP").set_index("test_set").loc["Guided", "value"]
    assert guided["ci_low"] <= guided["ours"] <= guided["ci_high"]
    assert guided["paper_vs_ci"] == verdict(guided["paper"], guided["ci_low"], guided["ci_high"])
    assert ap.loc["mean", "ours"] == pytest.approx(result.metrics.set_index("test_set").loc["mean", "ap"] * 100)
    assert ap.loc["mean", "ci_high"] - ap.loc["mean", "ci_low"] < guided["ci_high"] - guided["ci_low"]
    assert set(table["paper_vs_ci"]) <= {"within CI", "above", "below", ""}
    hidden = paper_comparison_with_intervals(result, "Ours LC", BootstrapSettings(50), compare_with_paper=False)
    assert hidden["ours"].isna().all() and (hidden["paper_vs_ci"] == "").all()


def test_paired_table_zero_for_a_method_against_itself_and_refuses_other_images():
    result = result_for(["a", "b"])
    same = paired_table(result, result, BootstrapSettings(100))
    assert (same[["difference", "ci_low", "ci_high"]].to_numpy() == 0).all()
    assert set(same["verdict"]) == {"no clear difference"}
    worse = result_for(["a", "b"], shift=0.5, seed=0)
    table = paired_table(result, worse, BootstrapSettings(200)).set_index(["test_set", "metric"])
    assert table.loc[("a", "auc"), "verdict"] == "A better"
    with pytest.raises(ValueError, match="same images"):
        paired_table(result, result_for(["a", "c"]), BootstrapSettings(10))


def test_few_shot_table_and_reliability_curves():
    result = result_for(["a"], n=60)
    table = few_shot_table(result, [10, 50, 100], draws=5)
    assert table["shots"].tolist() == [10, 50, 100] and table["draws"].tolist() == [5, 5, 0]
    assert table["acc_after"][:2].notna().all() and np.isnan(table["acc_after"][2])
    assert (table["after_low"][:2] <= table["acc_after"][:2]).all()
    curves = reliability_curves(result, bins=10)
    assert len(curves) == 10 and curves["count"].sum() == 120


def test_family_groups():
    assert family_groups({"a": "GAN", "b": "GAN", "c": "diffusion"}, ["a", "c", "b", "d"]) == {
        "mean[GAN]": ["a", "b"], "mean[diffusion]": ["c"], "mean[unknown]": ["d"]}


def test_reliability_diagrams_one_panel_per_set():
    from ufd_lib.report.figures import reliability_diagrams

    figure = reliability_diagrams(reliability_curves(result_for(["a", "b", "c"], n=30)), "title", columns=2)
    assert [axis.get_title() for axis in figure.axes if axis.get_visible()] == ["a", "b", "c"]


def test_operating_points_table_in_percent():
    from ufd_lib.analyses.how_sure import operating_points_table

    result = result_for(["a"])
    table = operating_points_table({"LC": result})
    row = result.metrics.set_index("test_set").loc["a"]
    assert table.loc[("LC", "a"), "auc"] == pytest.approx(row["auc"] * 100)
    assert table.loc[("LC", "a"), "nll"] == pytest.approx(row["nll"])
