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
