"""Linear-probe training augmentation (notebook 10): the probe trained on unaugmented features
against the probe trained on cached augmented views."""
from __future__ import annotations

import numpy as np
import pandas as pd

from ufd_lib import config
from ufd_lib.analyses.tables import family_summary, ordered_columns
from ufd_lib.classifiers.linear_probe import LinearProbe
from ufd_lib.evaluation.scoring import evaluate_sets
from ufd_lib.features.feature_sets import BenchmarkFeatures


def augmentation_ablation(features: BenchmarkFeatures, views: np.ndarray, view_counts, families: dict[str, str],
                          probe_lr: float = config.PROBE_LR, device: str | None = None) -> pd.DataFrame:
    """The linear probe trained on the unaugmented training features (0 views) or on the first
    V cached augmented views of each training image, one sampled per image and epoch
    (:meth:`LinearProbe.fit`), for each V in ``view_counts``; early stopping on the unaugmented
    validation features. The 0-view probe is notebook 03's ``LC``.

    views: float16/float32 (V_max, n, d) views of ``features.train``
    (:func:`ufd_lib.features.augmentation.featurize_views`), V_max >= every count. Rows: views × family;
    columns views, train_encodings (backbone passes over training images the probe's features
    take: n unaugmented, V·n augmented), epochs (trained), family, ap, acc."""
    train, val = features.train, features.val
    n = len(train.labels)
    frames = []
    for count in view_counts:
        count = int(count)
        if count > len(views):
            raise ValueError(f"{count} views asked for, {len(views)} given")
        probe = LinearProbe(lr=probe_lr, device=device).fit(train.features, train.labels, val.features, val.labels,
                                                            views=views[:count] if count else None)
        summary = family_summary(evaluate_sets(probe, features.test_sets), families)
        frames.append(summary.assign(views=count, train_encodings=n * max(count, 1), epochs=len(probe.history_)))
    return ordered_columns(pd.concat(frames, ignore_index=True), ["views", "train_encodings", "epochs"])
