"""Figures. Each function returns a matplotlib Figure with title, axis labels and legend."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from PIL import Image

from .preprocess import decode_image


def metric_bars(table: pd.DataFrame, title: str, ylabel: str) -> plt.Figure:
    """Grouped bars: test sets (x) × methods (hue) of a percent table (``mean`` row included)."""
    long = table.reset_index(names="test set").melt(id_vars="test set", var_name="method", value_name=ylabel)
    figure, axes = plt.subplots(figsize=(max(8, 0.7 * len(table)), 4.5))
    sns.barplot(data=long, x="test set", y=ylabel, hue="method", ax=axes)
    axes.set_title(title)
    axes.set_ylim(0, 100)
    axes.axhline(50, color="grey", lw=0.8, ls="--", label="chance")
    axes.tick_params(axis="x", rotation=45)
    axes.legend(title="method", fontsize=8, ncol=2)
    figure.tight_layout()
    return figure


def embedding_scatter(coords: np.ndarray, meta: pd.DataFrame, title: str, method: str) -> plt.Figure:
    """2-D map: colour = generator family, marker = real (o) / fake (x)."""
    frame = meta.assign(x=coords[:, 0], y=coords[:, 1], **{"class": np.where(meta["label"] == 1, "fake", "real")})
    figure, axes = plt.subplots(figsize=(7.5, 6))
    sns.scatterplot(data=frame, x="x", y="y", hue="family", style="class", markers={"real": "o", "fake": "X"},
                    s=22, alpha=0.75, ax=axes)
    axes.set_title(title)
    axes.set_xlabel(f"{method} 1")
    axes.set_ylabel(f"{method} 2")
    axes.legend(fontsize=8, bbox_to_anchor=(1.02, 1), loc="upper left")
    figure.tight_layout()
    return figure


def example_grid(examples: dict[str, tuple[list, list]], title: str, thumbnail: int = 96) -> plt.Figure:
    """One row per set: up to 3 real then 3 fake images (paths), labelled."""
    columns = 6
    figure, grid = plt.subplots(len(examples), columns, figsize=(columns * 1.4, 1.5 * len(examples) + 0.6),
                                squeeze=False)
    for row, (name, (reals, fakes)) in enumerate(examples.items()):
        cells = [(p, "real") for p in reals[:3]] + [(None, "")] * (3 - len(reals[:3]))
        cells += [(p, "fake") for p in fakes[:3]] + [(None, "")] * (3 - len(fakes[:3]))
        for column, (path, word) in enumerate(cells):
            axes = grid[row, column]
            axes.axis("off")
            if path is not None:
                image = decode_image(open(path, "rb").read())
                image.thumbnail((thumbnail, thumbnail), Image.Resampling.BILINEAR)
                axes.imshow(image)
                axes.set_title(word, fontsize=7)
        grid[row, 0].text(-0.1, 0.5, name, transform=grid[row, 0].transAxes, ha="right", va="center", fontsize=8)
    figure.suptitle(title)
    figure.tight_layout()
    return figure
