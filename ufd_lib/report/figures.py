"""Figures of the notebooks, one function per kind of picture; each returns a matplotlib Figure
with a title, labelled axes (units in the label) and a legend where there is more than one series.

Names from the data (set, generator, encoder and method names, captions) are drawn as they are
written: a ``$`` is escaped (:func:`literal`), so matplotlib never reads ``$…$`` in a name as
math text."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from PIL import Image

from ufd_lib.analyses.spectra import Spectrum, frequencies
from ufd_lib.analyses.tables import ALL_SETS
from ufd_lib.features.preprocess import decode_image
from ufd_lib.report.csv_cells import map_text, printable


def literal(text) -> str:
    """``text`` as matplotlib draws it literally: each ``$`` escaped (no math text), the
    undecodable bytes of a file name as ``\\xNN`` (:func:`ufd_lib.report.csv_cells.printable`)."""
    return printable(str(text)).replace("$", r"\$")


def _literal_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy of ``frame`` whose string index entries, column names and string cells are :func:`literal`."""
    return map_text(frame, literal)


def metric_bars(table: pd.DataFrame, title: str, ylabel: str) -> plt.Figure:
    """Grouped bars: test sets (x) × methods (hue) of a percent table (``mean`` row included)."""
    table, title, ylabel = _literal_frame(table), literal(title), literal(ylabel)
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
    meta, title, method = _literal_frame(meta), literal(title), literal(method)
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
        grid[row, 0].text(-0.1, 0.5, literal(name), transform=grid[row, 0].transAxes, ha="right", va="center",
                          fontsize=8)
    figure.suptitle(literal(title))
    figure.tight_layout()
    return figure


def real_fake_accuracy_bars(accuracy: pd.DataFrame, title: str) -> plt.Figure:
    """Bars of real-class and fake-class accuracy (percent) per test set.
    accuracy: rows = test sets, columns ``real`` and ``fake``."""
    accuracy, title = _literal_frame(accuracy), literal(title)
    long = accuracy[["real", "fake"]].reset_index(names="test set").melt(
        id_vars="test set", var_name="class", value_name="accuracy (%)")
    figure, axes = plt.subplots(figsize=(max(7, 0.65 * len(accuracy)), 4.2))
    sns.barplot(data=long, x="test set", y="accuracy (%)", hue="class", palette={"real": "tab:blue", "fake": "tab:red"},
                ax=axes)
    axes.axhline(50, color="grey", lw=0.8, ls="--", label="chance (balanced accuracy)")
    axes.set_ylim(0, 105)
    axes.set_title(title)
    axes.tick_params(axis="x", rotation=45)
    # outside the axes, on the right: inside it would cover bars
    axes.legend(title="images of class", fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1), borderaxespad=0)
    figure.tight_layout()
    return figure


def map_panels(panels: list[tuple[np.ndarray, pd.DataFrame, str]], title: str, hue: str = "group",
               method: str = "t-SNE", columns: int = 3) -> plt.Figure:
    """Side-by-side 2-D maps; panels: (coords (n, 2), meta with ``hue`` and ``class``, panel title).
    Colour = ``hue``; marker o = real, X = fake."""
    columns = min(columns, len(panels))
    rows = int(np.ceil(len(panels) / columns))
    figure, grid = plt.subplots(rows, columns, figsize=(5.2 * columns, 4.6 * rows), squeeze=False)
    title, method = literal(title), literal(method)
    for axes, (coords, meta, panel_title) in zip(grid.flat, panels):
        frame = _literal_frame(meta).assign(x=coords[:, 0], y=coords[:, 1])
        sns.scatterplot(data=frame, x="x", y="y", hue=hue, style="class", markers={"real": "o", "fake": "X"},
                        s=20, alpha=0.75, ax=axes)
        axes.set_title(literal(panel_title), fontsize=10)
        axes.set_xlabel(f"{method} 1 (arbitrary units)")
        axes.set_ylabel(f"{method} 2 (arbitrary units)")
        axes.legend(fontsize=7, loc="best")
    for axes in list(grid.flat)[len(panels):]:
        axes.axis("off")
    figure.suptitle(title)
    figure.tight_layout()
    return figure


def ablation_curves(table: pd.DataFrame, x: str, xlabel: str, title: str, log_x: bool = False) -> plt.Figure:
    """Mean AP and accuracy (percent) against an ablation setting, one line per generator family
    (the mean over all test sets in black). table: long, columns ``x``, family, ap, acc."""
    figure, panels = plt.subplots(1, 2, figsize=(11, 4.2))
    families = [f for f in table["family"].unique() if f != ALL_SETS]
    for axes, (metric, label) in zip(panels, (("ap", "mean average precision (%)"), ("acc", "mean accuracy (%)"))):
        for family in families + [ALL_SETS]:
            rows = table[table["family"] == family].sort_values(x)
            style = dict(color="black", lw=2.2) if family == ALL_SETS else dict(lw=1.4)
            axes.plot(rows[x], rows[metric], marker="o", label=literal(family), **style)
        axes.axhline(50, color="grey", lw=0.8, ls="--", label="chance")
        axes.set_xlabel(literal(xlabel))
        axes.set_ylabel(label)
        axes.set_ylim(0, 102)
        if log_x:
            axes.set_xscale("log")
            axes.minorticks_off()
        ticks = sorted(table[x].unique())
        axes.set_xticks(ticks, [f"{tick:g}" for tick in ticks])
        axes.grid(alpha=0.3)
    panels[1].legend(title="generator family", fontsize=8, loc="lower right")
    figure.suptitle(literal(title))
    figure.tight_layout()
    return figure


def robustness_curves(table: pd.DataFrame, title: str, metric: str = "ap") -> plt.Figure:
    """AP (percent) against degradation strength: rows = degradation kind, columns = generator
    family (and all test sets), one line per method. JPEG axes run from quality 100 down."""
    kinds = list(table["kind"].unique())
    families = [f for f in table["family"].unique() if f != ALL_SETS] + [ALL_SETS]
    figure, grid = plt.subplots(len(kinds), len(families), figsize=(3.6 * len(families), 3.2 * len(kinds)),
                                squeeze=False, sharey=True)
    units = {"JPEG quality": "JPEG quality (PIL, 100 = best)", "blur sigma": "Gaussian blur σ (pixels)"}
    for row, kind in enumerate(kinds):
        for column, family in enumerate(families):
            axes = grid[row, column]
            for method in table["method"].unique():
                rows = table[(table["kind"] == kind) & (table["family"] == family) & (table["method"] == method)]
                axes.plot(rows["level"], rows[metric], marker="o", label=literal(method))
            axes.axhline(50, color="grey", lw=0.8, ls="--", label="chance")
            axes.set_ylim(0, 102)
            axes.grid(alpha=0.3)
            if kind == "JPEG quality":
                axes.invert_xaxis()
            axes.set_xlabel(units.get(kind, literal(kind)))
            if column == 0:
                axes.set_ylabel("average precision (%)" if metric == "ap" else "accuracy (%)")
            axes.set_title(literal(family), fontsize=10)
    grid[0, -1].legend(title="method", fontsize=8, loc="lower left")
    figure.suptitle(literal(title))
    figure.tight_layout()
    return figure


def backbone_bars(summary: pd.DataFrame, title: str, metric: str = "ap") -> plt.Figure:
    """Grouped bars per method panel: generator family (x) × backbone (colour), percent."""
    summary, title = _literal_frame(summary), literal(title)
    methods = list(summary["method"].unique())
    label = "mean average precision (%)" if metric == "ap" else "mean accuracy (%)"
    figure, panels = plt.subplots(1, len(methods), figsize=(6.5 * len(methods), 4.3), squeeze=False)
    for axes, method in zip(panels[0], methods):
        rows = summary[summary["method"] == method].rename(columns={metric: label})
        sns.barplot(data=rows, x="family", y=label, hue="backbone", ax=axes)
        axes.axhline(50, color="grey", lw=0.8, ls="--")
        axes.set_ylim(0, 105)
        axes.set_title(method)
        axes.set_xlabel("generator family")
        axes.tick_params(axis="x", rotation=20)
        axes.get_legend().remove()
    # one legend for every panel, right of the last one: inside a panel it would cover bars
    panels[0, -1].legend(*panels[0, -1].get_legend_handles_labels(), title="backbone", fontsize=7,
                         loc="upper left", bbox_to_anchor=(1.01, 1), borderaxespad=0)
    figure.suptitle(title)
    figure.tight_layout()
    return figure


def image_grid(paths: list, captions: list[str], title: str, columns: int = 6, thumbnail: int = 128) -> plt.Figure:
    """Thumbnails of image files with a caption each."""
    rows = max(1, int(np.ceil(len(paths) / columns)))
    figure, grid = plt.subplots(rows, columns, figsize=(1.9 * columns, 2.1 * rows + 0.5), squeeze=False)
    for axes in grid.flat:
        axes.axis("off")
    for axes, path, caption in zip(grid.flat, paths, captions):
        image = decode_image(open(path, "rb").read())
        image.thumbnail((thumbnail, thumbnail), Image.Resampling.BILINEAR)
        axes.imshow(image)
        axes.set_title(literal(caption), fontsize=7)
    figure.suptitle(literal(title), fontsize=10)
    figure.tight_layout()
    return figure


def spectra_grid(spectra: list[Spectrum], title: str, columns: int = 5) -> plt.Figure:
    """Mean residual spectra on one colour scale (log-magnitude), zero frequency at the centre,
    axes in cycles per pixel (vertical frequency increasing upwards)."""
    columns = max(1, min(columns, len(spectra)))
    rows = int(np.ceil(len(spectra) / columns))
    figure, grid = plt.subplots(rows, columns, figsize=(2.6 * columns + 1.2, 2.6 * rows + 0.6), squeeze=False,
                                layout="constrained")
    values = np.concatenate([s.spectrum.ravel() for s in spectra if s.n_images] or [np.zeros(1)])
    low, high = np.percentile(values, [1, 99.9])
    image = None
    for index, (axes, item) in enumerate(zip(grid.flat, spectra)):
        f = frequencies(item.spectrum.shape[0])
        half = (f[1] - f[0]) / 2
        extent = (f[0] - half, f[-1] + half, f[0] - half, f[-1] + half)
        image = axes.imshow(item.spectrum, cmap="viridis", vmin=low, vmax=high, extent=extent, origin="lower")
        axes.set_title(f"{literal(item.name)} (n={item.n_images})", fontsize=8)
        axes.tick_params(labelsize=6)
        if index % columns == 0:
            axes.set_ylabel("vertical frequency\n(cycles/pixel)", fontsize=7)
        if index + columns >= len(spectra):
            axes.set_xlabel("horizontal frequency\n(cycles/pixel)", fontsize=7)
    for axes in list(grid.flat)[len(spectra):]:
        axes.axis("off")
    if image is not None:
        bar = figure.colorbar(image, ax=grid.ravel().tolist(), shrink=0.7)
        bar.set_label("mean log |FFT| of the high-pass residual")
    figure.suptitle(literal(title))
    return figure


def probe_training_curve(history: pd.DataFrame, title: str) -> plt.Figure:
    """Validation accuracy per epoch of a linear probe; history: columns ``epoch`` and
    ``val_acc`` (a fraction), as ``LinearProbe.history_``. Plotted in percent, chance dashed."""
    figure, axes = plt.subplots(figsize=(6, 3.5))
    axes.plot(history["epoch"], history["val_acc"] * 100, marker="o", label="validation accuracy")
    axes.axhline(50, color="grey", lw=0.8, ls="--", label="chance (balanced)")
    axes.set_xlabel("epoch")
    axes.set_ylabel("validation accuracy (%)")
    axes.set_title(literal(title))
    axes.legend()
    figure.tight_layout()
    return figure


def precision_recall_panels(curves: pd.DataFrame, families: dict[str, str], title: str) -> plt.Figure:
    """Precision against recall: rows = classifiers, columns = generator families, one line per
    test set. curves: long, columns classifier, test_set, recall, precision (fractions)."""
    curves, title = _literal_frame(curves), literal(title)
    families = {literal(name): literal(family) for name, family in families.items()}
    classifiers = list(curves["classifier"].unique())
    family_names = list(dict.fromkeys(families.get(name, "unknown") for name in curves["test_set"].unique()))
    figure, panels = plt.subplots(len(classifiers), len(family_names), squeeze=False,
                                  figsize=(3.6 * len(family_names), 4.4 * len(classifiers)))
    for row, classifier in enumerate(classifiers):
        for column, family in enumerate(family_names):
            axes = panels[row][column]
            mine = curves[(curves["classifier"] == classifier)
                          & curves["test_set"].map(lambda name: families.get(name, "unknown") == family)]
            for test_set, points in mine.groupby("test_set", sort=False):
                axes.plot(points["recall"], points["precision"], lw=1.3, label=test_set)
            axes.set_xlim(0, 1.01)
            axes.set_ylim(0, 1.02)
            axes.set_xlabel("recall (fakes found)")
            axes.set_ylabel(f"{classifier}: precision")
            axes.set_title(family, fontsize=10)
            axes.grid(alpha=0.3)
            if len(mine):  # below the panel, never on the curves
                axes.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.22), ncol=2, borderaxespad=0)
    figure.suptitle(title)
    figure.tight_layout()
    return figure


def layer_curves(sweep: pd.DataFrame, title: str, metric: str = "ap") -> plt.Figure:
    """A metric (percent) against the block whose CLS token is used, one panel per classifier,
    one line per generator family (all test sets in black); the final embedding drawn as a
    marker one step past the last block. sweep: long, columns layer, depth (NaN: final),
    classifier, family and ``metric``."""
    sweep, title = _literal_frame(sweep), literal(title)
    classifiers = list(sweep["classifier"].unique())
    figure, panels = plt.subplots(1, len(classifiers), squeeze=False, figsize=(5.6 * len(classifiers), 4.2))
    last = int(sweep["depth"].max())
    families = [f for f in sweep["family"].unique() if f != ALL_SETS]
    for axes, classifier in zip(panels[0], classifiers):
        rows = sweep[sweep["classifier"] == classifier]
        for family in families + [ALL_SETS]:
            mine = rows[rows["family"] == family]
            blocks = mine[mine["depth"].notna()].sort_values("depth")
            style = dict(color="black", lw=2.2) if family == ALL_SETS else dict(lw=1.4)
            line, = axes.plot(blocks["depth"], blocks[metric], marker="o", label=family, **style)
            final = mine[mine["depth"].isna()]
            if len(final):
                axes.plot([last + 1], final[metric], marker="*", ms=12, ls="none", color=line.get_color())
        axes.axhline(50, color="grey", lw=0.8, ls="--", label="chance")
        axes.set_xticks(list(range(last + 2)), [str(depth) for depth in range(last + 1)] + ["final"])
        axes.set_xlabel("layer (CLS token after block L; ★ final embedding)")
        axes.set_ylabel(f"{classifier}: mean {'average precision' if metric == 'ap' else 'accuracy'} (%)")
        axes.set_ylim(0, 102)
        axes.grid(alpha=0.3)
    # right of the last panel: inside it would cover points
    panels[0][-1].legend(title="generator family", fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1),
                         borderaxespad=0)
    figure.suptitle(title)
    figure.tight_layout()
    return figure


def training_data_bars(table: pd.DataFrame, title: str, metric: str = "ap") -> plt.Figure:
    """Grouped bars per classifier panel: generator family (x) × training data (colour, the same
    colour for the same training data in every panel), percent. table: long, columns training,
    classifier, family and ``metric``."""
    table, title = _literal_frame(table), literal(title)
    classifiers = list(table["classifier"].unique())
    trainings = list(table["training"].unique())
    palette = dict(zip(trainings, sns.color_palette(n_colors=len(trainings))))
    label = "mean average precision (%)" if metric == "ap" else "mean accuracy (%)"
    figure, panels = plt.subplots(1, len(classifiers), figsize=(6.0 * len(classifiers), 4.3), squeeze=False)
    for axes, classifier in zip(panels[0], classifiers):
        rows = table[table["classifier"] == classifier].rename(columns={metric: label})
        sns.barplot(data=rows, x="family", y=label, hue="training", palette=palette, saturation=1,
                    hue_order=[t for t in trainings if t in set(rows["training"])], ax=axes)
        axes.axhline(50, color="grey", lw=0.8, ls="--")
        axes.set_ylim(0, 105)
        axes.set_title(classifier)
        axes.set_xlabel("generator family")
        axes.tick_params(axis="x", rotation=20)
        if axes.get_legend() is not None:  # seaborn draws none for a single training set
            axes.get_legend().remove()
    handles = [plt.Rectangle((0, 0), 1, 1, color=palette[t]) for t in trainings]
    # one legend for every panel, right of the last one: inside a panel it would cover bars
    panels[0, -1].legend(handles, trainings, title="training data", fontsize=8, loc="upper left",
                         bbox_to_anchor=(1.01, 1), borderaxespad=0)
    figure.suptitle(title)
    figure.tight_layout()
    return figure


def decay_over_time(table: pd.DataFrame, title: str) -> plt.Figure:
    """AP, AUC and accuracy (percent, columns) against each generator's release date, one colour
    per method; curated sets filled, in-the-wild sets hollow; a set flagged by its bias card
    ringed in red. Sets without a release date are not drawn (the table lists them)."""
    dated = table.assign(release=pd.to_datetime(table["release_date"], format="mixed", errors="coerce"))
    dated = dated.dropna(subset=["release"])
    figure, grid = plt.subplots(1, 3, figsize=(15, 4.2), sharey=True, squeeze=False)
    colours = dict(zip(table["method"].unique(), sns.color_palette(n_colors=table["method"].nunique())))
    for axes, (metric, label) in zip(grid[0], (("ap", "average precision (%)"), ("auc", "ROC AUC (%)"),
                                               ("acc", "accuracy (%)"))):
        for method, colour in colours.items():
            rows = dated[dated["method"] == method].sort_values("release")
            curated = rows[~rows["in_the_wild"]]
            axes.plot(curated["release"], curated[metric], marker="o", color=colour, label=method)
            wild = rows[rows["in_the_wild"]]
            axes.scatter(wild["release"], wild[metric], facecolors="none", edgecolors=colour, s=60)
            flagged = rows[rows["flagged"]]
            axes.scatter(flagged["release"], flagged[metric], facecolors="none", edgecolors="red", s=160, lw=1.2)
        axes.axhline(50, color="grey", lw=0.8, ls="--")
        axes.set_ylim(0, 102)
        axes.set_xlabel("generator release date")
        axes.set_ylabel(label)
        axes.grid(alpha=0.3)
        axes.tick_params(axis="x", rotation=30)
    grid[0, 0].legend(title="method (hollow: in the wild; red ring: bias card flagged)", fontsize=8)
    figure.suptitle(title)
    figure.tight_layout()
    return figure


def reliability_diagrams(curves: pd.DataFrame, title: str, columns: int = 5) -> plt.Figure:
    """One reliability diagram per test set: share of fakes against mean probability of fake per
    bin (marker area ∝ images), the diagonal of perfect calibration dashed. curves: columns
    test_set, count, mean_probability, fake_share (fractions), as
    :func:`ufd_lib.analyses.how_sure.reliability_curves`."""
    names = list(dict.fromkeys(curves["test_set"]))
    rows = max(1, -(-len(names) // columns))
    figure, axes = plt.subplots(rows, columns, figsize=(2.6 * columns, 2.6 * rows), squeeze=False,
                                sharex=True, sharey=True)
    for axis, name in zip(axes.flat, names):
        curve = curves[(curves["test_set"] == name) & (curves["count"] > 0)]
        axis.plot([0, 1], [0, 1], color="grey", lw=0.8, ls="--")
        axis.plot(curve["mean_probability"], curve["fake_share"], color="C0", lw=1)
        axis.scatter(curve["mean_probability"], curve["fake_share"], s=8 + 120 * curve["count"] / curve["count"].max(),
                     color="C0", alpha=0.7)
        axis.set_title(name, fontsize=9)
    for axis in list(axes.flat)[len(names):]:
        axis.set_visible(False)
    for axis in axes[-1]:
        axis.set_xlabel("mean probability of fake")
    for axis in axes[:, 0]:
        axis.set_ylabel("share of fakes")
    figure.suptitle(title)
    figure.tight_layout()
    return figure
