"""Where unseen fakes fall (notebook 09): the paper's "sink" map of training and unseen-family
features, and the unseen fakes nearest to / farthest from the fake bank."""
from __future__ import annotations

import numpy as np
import pandas as pd

from ufd_lib.classifiers.nearest_neighbour import NearestNeighbourClassifier
from ufd_lib.data.discovery import balanced_subsample, sample_images
from ufd_lib.data.image_sets import ImageSetSpec
from ufd_lib.features.encoders import Encoder
from ufd_lib.features.feature_sets import ExtractionOptions, FeatureSet, featurize_images


def group_sample(groups: dict[str, FeatureSet], per_class: int, seed: int = 0) -> tuple[np.ndarray, pd.DataFrame]:
    """Balanced subsample of several labelled feature sets for a 2-D map → (X float32 (n, d),
    meta with columns source, label, class, group = "<source> <real|fake>", path)."""
    chosen, meta = [], []
    for source, feature_set in groups.items():
        for i in balanced_subsample(feature_set.labels, per_class, seed):
            word = "fake" if feature_set.labels[i] == 1 else "real"
            chosen.append(feature_set.features[i])
            meta.append({"source": source, "label": int(feature_set.labels[i]), "class": word,
                         "group": f"{source} {word}", "path": feature_set.paths[i]})
    return np.asarray(chosen, dtype=np.float32), pd.DataFrame(meta)


def sink_sample(encoder: Encoder, train: ImageSetSpec, unseen: ImageSetSpec, options: ExtractionOptions,
                per_class: int, seed: int = 0) -> tuple[np.ndarray, pd.DataFrame]:
    """Features of the paper's "sink" picture: ``per_class`` training reals and fakes and as many
    reals and fakes of an unseen-family test set, encoded (through the cache) by ``encoder``
    → (X (n, d), meta as :func:`group_sample`, sources ``training (<name>)`` and ``unseen (<name>)``)."""
    groups = {
        f"{role} ({spec.name})": featurize_images(encoder, spec.name,
                                                  sample_images(spec, per_class, seed, options.sampling), options)
        for role, spec in (("training", train), ("unseen", unseen))
    }
    return group_sample(groups, per_class, seed)


def fake_bank_similarity(bank: FeatureSet, queries: FeatureSet, device: str | None = None) -> pd.DataFrame:
    """Cosine similarity of each query *fake* to its nearest feature in the bank's fake half,
    and to its nearest real one. Columns path, fake_similarity, real_similarity, margin
    (the nearest-neighbour k=1 score), sorted from most to least similar to the fake bank.

    The bank is searched in bounded memory (:mod:`ufd_lib.classifiers.nn_search`): a float16
    bank whose classes are contiguous is never copied, and never widened to float32 whole."""
    mask = queries.labels == 1
    fake, real = NearestNeighbourClassifier(k=1, device=device).fit(bank.features, bank.labels).bank_similarities(
        queries.features[mask])
    paths = [p for p, m in zip(queries.paths, mask) if m]
    table = pd.DataFrame({"path": paths, "fake_similarity": fake, "real_similarity": real, "margin": fake - real})
    return table.sort_values("fake_similarity", ascending=False, kind="stable").reset_index(drop=True)


def extremes(ranking: pd.DataFrame, n: int) -> pd.DataFrame:
    """The n first (``nearest``) and n last (``farthest``) rows of a ranking, with their rank
    (1 = most similar); a ranking shorter than 2n is split in half."""
    n = min(n, len(ranking) // 2)
    ranked = ranking.assign(rank=np.arange(1, len(ranking) + 1))
    return pd.concat([ranked.head(n).assign(which="nearest"), ranked.tail(n).assign(which="farthest")],
                     ignore_index=True)[["which", "rank"] + list(ranking.columns)]
