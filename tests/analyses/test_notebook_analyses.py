"""What notebooks 03 and 05 show, now functions of ufd_lib: Table 1's real/fake view and the
probe's training curve."""
from __future__ import annotations

import matplotlib
import numpy as np
import pandas as pd
import pytest

from ufd_lib.analyses.trained_detector import real_fake_table
from ufd_lib.evaluation.scoring import evaluate_sets
from ufd_lib.features.feature_sets import FeatureSet
from ufd_lib.report.figures import probe_training_curve

matplotlib.use("Agg")


class FirstFeature:
    """A classifier whose score is the first feature, fake above 0."""

    threshold = 0.0

    def decision_function(self, X):
        return np.asarray(X)[:, 0]


def _set(name, scores, labels):
    return FeatureSet(name, np.asarray(scores, dtype=np.float32)[:, None], np.asarray(labels),
                      [f"{i}.png" for i in labels])


def test_real_fake_table_is_percent_per_set_with_the_mean_last():
    result = evaluate_sets(FirstFeature(), [
        _set("gan", [-1, 1, 2, 3], [0, 0, 1, 1]),        # reals 1/2 right, fakes 2/2, ranking perfect
        _set("ldm", [-2, -1, -3, 1], [0, 0, 1, 1]),      # reals 2/2, fakes 1/2, one fake ranked last
    ])
    table = real_fake_table(result)
    assert list(table.columns) == ["real", "fake", "mean", "AP"] and list(table.index) == ["gan", "ldm", "mean"]
    assert table.loc["gan"].tolist() == pytest.approx([50, 100, 75, 100])
    # ldm: fakes score 1 and -3 among reals -2, -1: precision 1 at the first fake, 2/4 at the second
    assert table.loc["ldm"].tolist() == pytest.approx([100, 50, 75, 100 * (1 + 0.5) / 2])
    assert table.loc["mean"].tolist() == pytest.approx(table.loc[["gan", "ldm"]].mean().tolist())


def test_probe_training_curve_plots_percent_per_epoch():
    history = pd.DataFrame({"epoch": [0, 1, 2], "val_acc": [0.5, 0.75, 0.9]})
    figure = probe_training_curve(history, "curve")
    axes = figure.axes[0]
    x, y = axes.lines[0].get_data()
    assert list(x) == [0, 1, 2] and list(y) == pytest.approx([50, 75, 90])
    assert axes.get_ylabel() == "validation accuracy (%)" and axes.get_title() == "curve"


def test_class_maps_one_panel_per_sample_with_real_and_fake_rows():
    from ufd_lib.analyses.feature_space import class_maps

    rng = np.random.default_rng(0)
    samples = {"a": (rng.normal(size=(12, 5)).astype(np.float32), np.array([0, 1] * 6)),
               "b": (rng.normal(size=(8, 3)).astype(np.float32), np.array([1] * 4 + [0] * 4))}
    panels = class_maps(samples)
    assert [title for _, _, title in panels] == ["a (5-d)", "b (3-d)"]
    assert [coords.shape for coords, _, _ in panels] == [(12, 2), (8, 2)]
    assert panels[1][1]["class"].tolist() == ["fake"] * 4 + ["real"] * 4
