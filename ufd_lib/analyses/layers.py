"""Which CLIP layer carries the real/fake signal (notebook 13): nearest neighbour and the linear
probe on the class (CLS) token of each block of the image tower, beside the final embedding.

The paper compares nearest neighbour at layers L0, L8, L16 and L24 of ViT-L/14 (24 blocks) with
the final embedding. A model of another depth is asked at the same fractions of its depth,
rounded to the nearest block (:func:`paper_layer_map`; ``random-clip:small``, 4 blocks: L0→0,
L8→1, L16→3, L24→4). Tables are long: one row per layer, classifier and generator family (plus
``all test sets``), ``ap`` and ``acc`` in percent.
"""
from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd

from ufd_lib import config
from ufd_lib.analyses.tables import ALL_SETS, family_summary
from ufd_lib.classifiers.linear_probe import LinearProbe
from ufd_lib.classifiers.nearest_neighbour import NearestNeighbourClassifier
from ufd_lib.data.discovery import balanced_subsample
from ufd_lib.evaluation.bootstrap import BootstrapSettings, with_intervals
from ufd_lib.evaluation.scoring import EvaluationResult, evaluate_sets
from ufd_lib.features.feature_sets import FINAL, BenchmarkFeatures, FeatureSet, subset

PAPER_DEPTH = 24  # blocks of ViT-L/14's image tower
PAPER_LAYERS = (0, 8, 16, 24)
LAYER_NOTE = ("layer L: the CLS token of the residual stream after block L (L0: entering block 1, after ln_pre); "
              "final: the model's image embedding (ln_post and projection of the last CLS token), the paper's "
              "feature. ap, acc: percent, the mean over the test sets of each generator family (all test sets: "
              "over every set). NN: nearest neighbour, cosine; LC: the linear probe.")


def layer_label(layer: int | str) -> str:
    """``3`` → ``"L3"``; a name (``"final"``, ``"L0+L8"``) stays."""
    return layer if isinstance(layer, str) else f"L{int(layer)}"


def paper_layer_map(depth: int) -> dict[int, int]:
    """The paper's layers of ViT-L/14 (L0, L8, L16, L24 of 24 blocks) → the layer at the same
    fraction of a ``depth``-block model, rounded to the nearest block (halves up)."""
    return {layer: math.floor(layer * depth / PAPER_DEPTH + 0.5) for layer in PAPER_LAYERS}


def layer_sweep(layer_features: dict[int | str, BenchmarkFeatures], families: dict[str, str],
                classifiers: Sequence[str] = ("NN", "LC"), k: int = 1, probe_lr: float = config.PROBE_LR,
                device: str | None = None, bootstrap: BootstrapSettings | None = None) -> pd.DataFrame:
    """Each classifier fitted on each layer's training features and evaluated on its test sets.

    layer_features: layer (int; or a name such as :data:`FINAL` or ``"L0+L8"`` for features that
    are not one block's) → that layer's features of the benchmark.
    classifiers: ``NN`` (nearest neighbour, pool size ``k``) and/or ``LC`` (the linear probe,
    early stopping on the validation set). Columns: layer, depth (the block number; NaN for
    named features), classifier, family, ap, acc; with ``bootstrap``, also ap_ci_low, ap_ci_high,
    acc_ci_low, acc_ci_high (percent): the stratified bootstrap interval of each family mean over
    the test images (:func:`ufd_lib.evaluation.bootstrap.with_intervals`; training not resampled).
    """
    frames = []
    for layer, features in layer_features.items():
        for name in classifiers:
            classifier = _fit(name, features, k, probe_lr, device)
            with warnings.catch_warnings():
                if layer == 0:  # the class token before any attention: one vector for every image
                    warnings.filterwarnings("ignore", message="all scores are equal")
                result = evaluate_sets(classifier, features.test_sets)
            summary = family_summary(result, families)
            if bootstrap is not None:
                summary = _with_family_intervals(summary, result, families, bootstrap)
            depth = np.nan if isinstance(layer, str) else int(layer)
            frames.append(summary.assign(layer=layer_label(layer), depth=depth, classifier=name))
    table = pd.concat(frames, ignore_index=True)
    intervals = [f"{metric}_ci_{end}" for metric in ("ap", "acc") for end in ("low", "high")] if bootstrap else []
    return table[["layer", "depth", "classifier", "family", "ap", "acc", *intervals]]


def _with_family_intervals(summary: pd.DataFrame, result: EvaluationResult, families: dict[str, str],
                           bootstrap: BootstrapSettings) -> pd.DataFrame:
    """``summary`` (rows: families, then all test sets) with the bootstrap interval of each row's mean."""
    names = result.metrics["test_set"][result.metrics["test_set"] != "mean"].tolist()
    groups: dict[str, list[str]] = {}
    for name in names:
        groups.setdefault(families.get(name, "unknown"), []).append(name)
    table = with_intervals(result.metrics, result.scores, result.threshold, bootstrap,
                           {f"mean[{family}]": members for family, members in groups.items()}).set_index("test_set")
    rows = [f"mean[{family}]" if family != ALL_SETS else "mean" for family in summary["family"]]
    for metric in ("ap", "acc"):
        for end in ("low", "high"):
            summary[f"{metric}_ci_{end}"] = table.loc[rows, f"{metric}_ci_{end}"].to_numpy() * 100
    return summary


def _fit(name: str, features: BenchmarkFeatures, k: int, probe_lr: float, device: str | None):
    train = features.train
    if name == "NN":
        return NearestNeighbourClassifier(k=k, device=device).fit(train.features, train.labels)
    if name == "LC":
        return LinearProbe(lr=probe_lr, device=device).fit(train.features, train.labels,
                                                           features.val.features, features.val.labels)
    raise ValueError(f"unknown classifier {name!r}: expected NN or LC")


def paper_layer_table(sweep: pd.DataFrame, depth: int, classifier: str = "NN") -> pd.DataFrame:
    """The paper's layer ablation from a :func:`layer_sweep` table: rows of ``classifier`` at the
    paper's layers (mapped by :func:`paper_layer_map`) and the final embedding. Columns:
    paper_layer, layer, family, ap, acc, and the sweep's interval columns if it has them."""
    rows = sweep[sweep["classifier"] == classifier]
    picked = []
    for paper, ours in paper_layer_map(depth).items():
        picked.append(rows[rows["layer"] == layer_label(ours)].assign(paper_layer=f"L{paper}"))
    picked.append(rows[rows["layer"] == FINAL].assign(paper_layer=FINAL))
    table = pd.concat(picked, ignore_index=True)
    intervals = [column for column in table.columns if column.endswith(("_ci_low", "_ci_high"))]
    return table[["paper_layer", "layer", "family", "ap", "acc", *intervals]]


def concatenated(parts: Sequence[BenchmarkFeatures]) -> BenchmarkFeatures:
    """The features of several layers side by side: each set's rows are the concatenation of the
    parts' rows for the same image (the widths add up). Raises ValueError when the parts do not
    hold the same images in the same order."""

    def joined(sets: Sequence[FeatureSet]) -> FeatureSet:
        first = sets[0]
        if any(other.paths != first.paths for other in sets[1:]):
            raise ValueError(f"{first.name}: the layers' features are not of the same images in the same order")
        return FeatureSet(first.name, np.hstack([s.features for s in sets]), first.labels, first.paths, first.skipped,
                          first.sampling, first.listed_real)

    return BenchmarkFeatures(
        train=joined([part.train for part in parts]), val=joined([part.val for part in parts]),
        test_sets=[joined(sets) for sets in zip(*(part.test_sets for part in parts))], report=parts[0].report)


def beside_final(sweep: pd.DataFrame, other: pd.DataFrame) -> pd.DataFrame:
    """The :data:`FINAL` rows of a :func:`layer_sweep` table, then the rows of ``other`` (a
    :func:`layer_sweep` table of other features, e.g. concatenated layers), one table."""
    return pd.concat([sweep[sweep["layer"] == FINAL], other], ignore_index=True)


def training_images_within(budget_bytes: float, bytes_per_image: float, other_images: int, train_images: int) -> int:
    """Training images whose per-layer features fit ``budget_bytes`` beside those of
    ``other_images`` (validation and test images, all kept): at most ``train_images``, at least
    0. bytes_per_image: every requested layer of one image on disk."""
    room = budget_bytes - other_images * bytes_per_image
    return int(max(0, min(train_images, room // bytes_per_image)))


def training_subset(train: FeatureSet | Sequence[int], images: int, seed: int = 0) -> np.ndarray:
    """Indices (sorted) of a balanced subset of about ``images`` training images (half real, half
    fake, nested across sizes: :func:`ufd_lib.data.discovery.balanced_subsample` with ``seed``).
    train: a feature set, or its labels."""
    labels = train.labels if isinstance(train, FeatureSet) else np.asarray(train)
    return balanced_subsample(labels, images // 2, seed)


def subset_benchmark(features: BenchmarkFeatures, train_indices: np.ndarray) -> BenchmarkFeatures:
    """``features`` with only the training images ``train_indices``."""
    return BenchmarkFeatures(subset(features.train, train_indices), features.val, features.test_sets, features.report)
