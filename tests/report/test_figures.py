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
