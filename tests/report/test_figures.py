"""Figures that cannot be misread: legends beside the data, never on it."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from ufd_lib.report.figures import backbone_bars, real_fake_accuracy_bars  # noqa: E402


def _outside_every_axes(figure: plt.Figure) -> bool:
    figure.canvas.draw()
    renderer = figure.canvas.get_renderer()
    legends = [axes.get_legend() for axes in figure.axes if axes.get_legend()] + list(figure.legends)
    assert len(legends) == 1
    box = legends[0].get_window_extent(renderer)
    return all(not box.overlaps(axes.get_window_extent(renderer)) for axes in figure.axes)


@pytest.fixture(autouse=True)
def _close():
    yield
    plt.close("all")


def test_real_fake_accuracy_legend_is_outside_the_bars():
    accuracy = pd.DataFrame({"real": [99.0, 98.0, 97.0], "fake": [100.0, 20.0, 95.0]}, index=["progan", "ldm", "dalle"])
    assert _outside_every_axes(real_fake_accuracy_bars(accuracy, "accuracy"))


def test_backbone_legend_is_outside_every_panel():
    summary = pd.DataFrame([{"method": method, "family": family, "backbone": backbone, "ap": 95.0}
                            for method in ("NN k=1", "LC") for family in ("GAN", "diffusion")
                            for backbone in ("clip:ViT-L/14", "clip:RN50", "torchvision:resnet50")])
    assert _outside_every_axes(backbone_bars(summary, "backbones"))


def test_layer_curves_mark_every_block_and_the_final_embedding_with_the_legend_outside():
    from ufd_lib.report.figures import layer_curves

    rows = [{"layer": f"L{depth}", "depth": depth, "classifier": classifier, "family": family, "ap": 60.0 + depth}
            for classifier in ("NN", "LC") for family in ("GAN", "diffusion", "all test sets") for depth in range(5)]
    rows += [{"layer": "final", "depth": float("nan"), "classifier": classifier, "family": family, "ap": 90.0}
             for classifier in ("NN", "LC") for family in ("GAN", "diffusion", "all test sets")]
    figure = layer_curves(pd.DataFrame(rows), "layers")
    assert len(figure.axes) == 2
    assert [tick.get_text() for tick in figure.axes[0].get_xticklabels()] == ["0", "1", "2", "3", "4", "final"]
    assert _outside_every_axes(figure)


def test_precision_recall_panels_are_classifiers_by_families():
    from ufd_lib.report.figures import precision_recall_panels

    curves = pd.DataFrame([{"classifier": c, "test_set": s, "recall": r, "precision": 1 - r / 2}
                           for c in ("NN k=1", "LC") for s in ("progan", "ldm_200", "dalle") for r in (1.0, 0.5, 0.0)])
    families = {"progan": "gan", "ldm_200": "diffusion", "dalle": "autoregressive"}
    figure = precision_recall_panels(curves, families, "pr")
    assert len(figure.axes) == 6
    assert [axes.get_title() for axes in figure.axes[:3]] == ["gan", "diffusion", "autoregressive"]
    assert [len(axes.get_lines()) for axes in figure.axes] == [1] * 6


def test_training_data_bars_keep_one_colour_per_training_set_with_the_legend_outside():
    from ufd_lib.report.figures import training_data_bars

    rows = [{"training": t, "classifier": c, "family": f, "ap": 70.0}
            for c, trainings in (("NN k=1", ("progan", "ldm", "progan+ldm")), ("trained detector", ("ldm",)))
            for t in trainings for f in ("GAN", "diffusion")]
    figure = training_data_bars(pd.DataFrame(rows), "training data")
    legend = figure.axes[-1].get_legend()
    assert [text.get_text() for text in legend.get_texts()] == ["progan", "ldm", "progan+ldm"]
    ldm_colour = legend.legend_handles[1].get_facecolor()
    detector_bars = [patch for patch in figure.axes[1].patches if patch.get_height() > 0]
    assert detector_bars and all(patch.get_facecolor() == ldm_colour for patch in detector_bars)
    assert _outside_every_axes(figure)


ODD = "$\\frac$ set"  # invalid math text: drawn as math, it raises


def _texts(figure: plt.Figure) -> list[str]:
    figure.canvas.draw()  # raises on a name read as math text
    return [text.get_text() for text in figure.findobj(matplotlib.text.Text)]


def test_dollar_signs_in_names_are_drawn_literally():
    from ufd_lib.report.figures import literal, metric_bars

    table = pd.DataFrame({"NN $k$": [90.0, 80.0], "clip:/w/$x.pt": [70.0, 60.0]}, index=[ODD, "mean"])
    texts = _texts(metric_bars(table, f"AP on {ODD}", "AP (%)"))
    assert literal(ODD) in texts and f"AP on {literal(ODD)}" in texts and literal("NN $k$") in texts
    accuracy = pd.DataFrame({"real": [99.0], "fake": [50.0]}, index=[ODD])
    assert literal(ODD) in _texts(real_fake_accuracy_bars(accuracy, ODD))
    summary = pd.DataFrame([{"method": ODD, "family": ODD, "backbone": "clip:/w/$a$.pt", "ap": 95.0}])
    assert literal(ODD) in _texts(backbone_bars(summary, ODD))


def test_names_in_the_layer_pr_and_training_figures_are_drawn_literally():
    from ufd_lib.report.figures import layer_curves, literal, precision_recall_panels, training_data_bars

    curves = pd.DataFrame([{"classifier": "LC", "test_set": ODD, "recall": r, "precision": 0.5} for r in (1.0, 0.0)])
    assert literal(ODD) in _texts(precision_recall_panels(curves, {ODD: ODD}, ODD))
    sweep = pd.DataFrame([{"layer": "L0", "depth": 0, "classifier": "NN", "family": ODD, "ap": 50.0}])
    assert literal(ODD) in _texts(layer_curves(sweep, ODD))
    table = pd.DataFrame([{"training": ODD, "classifier": "LC", "family": ODD, "ap": 60.0}])
    assert literal(ODD) in _texts(training_data_bars(table, ODD))
