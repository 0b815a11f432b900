"""The paper's analyses and ablations as functions of cached features (notebooks 05–10).

- nearest-neighbour ablations: pool size k, feature-bank size, number of training categories;
- linear-probe training augmentation: unaugmented features against cached augmented views;
- robustness: average precision under test-time JPEG and blur, per method and family;
- backbones: the same linear probe and nearest neighbour on other frozen feature spaces;
- samples for t-SNE maps, and the unseen fakes nearest to / farthest from the fake bank.

Every result table is long: one row per setting and generator family (plus ``all test sets``,
the mean over every test set), with ``ap`` and ``acc`` in percent, the paper's units. Subsets
are drawn reproducibly: a fixed seed, and nested (a smaller subset is part of every larger one).
"""
from __future__ import annotations

import gc
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from . import config
from .discovery import LabelledImage, collect_images
from .encoders import RANDOM_CLIP_SHAPES, Encoder, EncoderUnavailable, load_encoder
from .evaluation import EvaluationResult, ExtractionOptions, FeatureSet, evaluate_sets, featurize_images
from .experiments import BenchmarkFeatures, family_means, featurize_benchmark, fit_methods
from .image_sets import ImageSetSpec
from .knn import NearestNeighbourClassifier, l2_normalise, topk_similarity
from .linear_probe import LinearProbe
from .preprocess import Perturbation

ALL_SETS = "all test sets"


# --- subsets ---


def balanced_subsample(labels: np.ndarray, per_class: int, seed: int = 0) -> np.ndarray:
    """Indices (sorted) of ``per_class`` images of each class (0 real, 1 fake), or all of a
    class that has fewer. Each class is shuffled once with ``seed`` and its first ``per_class``
    kept, so the subsets of one seed are nested and do not depend on the other class."""
    labels = np.asarray(labels)
    chosen = []
    for label in (0, 1):
        members = np.flatnonzero(labels == label)
        order = np.random.default_rng([seed, label]).permutation(len(members))
        chosen.append(members[order[:per_class]])
    return np.sort(np.concatenate(chosen))


def subset(feature_set: FeatureSet, indices: np.ndarray, name: str | None = None) -> FeatureSet:
    """The rows ``indices`` of a feature set (skipped files are not carried over)."""
    indices = np.asarray(indices, dtype=int)
    return FeatureSet(name or feature_set.name, feature_set.features[indices], feature_set.labels[indices],
                      [feature_set.paths[i] for i in indices])


def image_categories(paths: list[str], root: Path | str) -> np.ndarray:
    """Category of each training image: the first folder below the training set's root
    (``train/progan/<category>/{0_real,1_fake}/...``); ``""`` for images directly in a class folder."""
    root = Path(root)
    categories = []
    for path in paths:
        try:
            relative = Path(path).relative_to(root).parts
        except ValueError:  # the root was given through a symlink or a relative path
            relative = Path(path).resolve().relative_to(root.resolve()).parts
        categories.append("" if relative[0] in (config.REAL_DIR, config.FAKE_DIR) else relative[0])
    return np.asarray(categories)


def category_order(categories: np.ndarray, seed: int = 0) -> list[str]:
    """The distinct categories (sorted, then shuffled once with ``seed``): the first n are the
    categories of the n-category ablation, so smaller category sets are nested in larger ones."""
    distinct = sorted(set(categories.tolist()))
    return [distinct[i] for i in np.random.default_rng(seed).permutation(len(distinct))]


def sample_images(spec: ImageSetSpec, per_class: int | None, seed: int = 0,
                  sampling: str = "all") -> list[LabelledImage]:
    """The images of a set, or ``per_class`` of each class chosen with :func:`balanced_subsample`.
    The same list and seed give the same choice, so test sets sharing a real folder share the
    sampled reals (and their cached features)."""
    images = collect_images(spec, sampling)
    if per_class is None:
        return images
    keep = balanced_subsample(np.array([image.label for image in images]), per_class, seed)
    return [images[i] for i in keep]


# --- summaries ---


def family_summary(result: EvaluationResult, families: dict[str, str]) -> pd.DataFrame:
    """Mean AP and accuracy (percent) per generator family, then over all test sets.
    Columns: family, ap, acc."""
    metrics = result.metrics.set_index("test_set")[["ap", "acc"]] * 100
    by_family = family_means(metrics, families)
    by_family.loc[ALL_SETS] = metrics.loc["mean"]
    return by_family.rename_axis("family").reset_index()


def _evaluate_nn(train: FeatureSet, test_sets: list[FeatureSet], k: int, families: dict[str, str],
                 device: str | None) -> pd.DataFrame:
    classifier = NearestNeighbourClassifier(k=k, device=device).fit(train.features, train.labels)
    summary = family_summary(evaluate_sets(classifier, test_sets), families)
    return summary.assign(n_real=int((train.labels == 0).sum()), n_fake=int((train.labels == 1).sum()))


# --- nearest-neighbour ablations ---


def k_ablation(features: BenchmarkFeatures, k_values, families: dict[str, str],
               device: str | None = None) -> pd.DataFrame:
    """Nearest neighbour with the whole training set as bank, for each pool size k.
    Rows: k × family; columns k, family, ap, acc, n_real, n_fake (bank sizes)."""
    frames = [_evaluate_nn(features.train, features.test_sets, int(k), families, device).assign(k=int(k))
              for k in k_values]
    return _ordered(pd.concat(frames, ignore_index=True), ["k"])


def bank_size_ablation(features: BenchmarkFeatures, fractions, families: dict[str, str], k: int = 1,
                       seed: int = 0, device: str | None = None) -> pd.DataFrame:
    """Nearest neighbour on a balanced random share of the training bank (nested subsets).

    A fraction f keeps round(f · n / 2) real and as many fake features (n: training images),
    at least k of each. Rows: fraction × family; columns fraction, bank_size, family, ap, acc,
    n_real, n_fake."""
    train = features.train
    frames = []
    for fraction in fractions:
        per_class = max(k, int(round(fraction * len(train.labels) / 2)))
        bank = subset(train, balanced_subsample(train.labels, per_class, seed))
        frame = _evaluate_nn(bank, features.test_sets, k, families, device)
        frames.append(frame.assign(fraction=float(fraction), bank_size=len(bank.labels)))
    return _ordered(pd.concat(frames, ignore_index=True), ["fraction", "bank_size"])


def category_ablation(features: BenchmarkFeatures, train_root: Path | str, counts, families: dict[str, str],
                      k: int = 1, seed: int = 0, device: str | None = None) -> pd.DataFrame:
    """Nearest neighbour with the bank restricted to the first n training categories of
    :func:`category_order`, for each n in ``counts`` (capped at the categories present; every
    image of the chosen categories is kept, so the bank grows with n, as in the paper).
    Rows: n × family; columns n_categories, categories, family, ap, acc, n_real, n_fake."""
    train = features.train
    categories = image_categories(train.paths, train_root)
    order = category_order(categories, seed)
    wanted = sorted({min(int(n), len(order)) for n in counts})
    frames = []
    for n in wanted:
        chosen = order[:n]
        bank = subset(train, np.flatnonzero(np.isin(categories, chosen)))
        frame = _evaluate_nn(bank, features.test_sets, k, families, device)
        frames.append(frame.assign(n_categories=n, categories=", ".join(sorted(chosen))))
    return _ordered(pd.concat(frames, ignore_index=True), ["n_categories", "categories"])


def _ordered(frame: pd.DataFrame, setting_columns: list[str]) -> pd.DataFrame:
    rest = [c for c in frame.columns if c not in setting_columns]
    return frame[setting_columns + rest]


def wide(table: pd.DataFrame, setting: str, metric: str) -> pd.DataFrame:
    """Long ablation table → settings (rows) × families (columns) of one metric."""
    return table.pivot_table(index=setting, columns="family", values=metric, sort=False)


# --- linear-probe training augmentation ---


def augmentation_ablation(features: BenchmarkFeatures, views: np.ndarray, view_counts, families: dict[str, str],
                          probe_lr: float = config.PROBE_LR, device: str | None = None) -> pd.DataFrame:
    """The linear probe trained on the unaugmented training features (0 views) or on the first
    V cached augmented views of each training image, one sampled per image and epoch
    (:meth:`LinearProbe.fit`), for each V in ``view_counts``; early stopping on the unaugmented
    validation features. The 0-view probe is notebook 03's ``LC``.

    views: float16/float32 (V_max, n, d) views of ``features.train``
    (:func:`ufd_lib.augmentation.featurize_views`), V_max >= every count. Rows: views × family;
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
    return _ordered(pd.concat(frames, ignore_index=True), ["views", "train_encodings", "epochs"])


# --- robustness ---


@dataclass(frozen=True)
class Degradation:
    """One point of the robustness sweep: kind (``JPEG quality`` or ``blur sigma``), its level
    and the perturbation applied before the crop."""

    kind: str
    level: float
    perturbation: Perturbation


def degradations(jpeg_qualities, blur_sigmas) -> list[Degradation]:
    """The sweep: JPEG re-encoding at each quality, Gaussian blur at each sigma (0 = none)."""
    return ([Degradation("JPEG quality", float(q), Perturbation(jpeg_quality=int(q))) for q in jpeg_qualities]
            + [Degradation("blur sigma", float(s), Perturbation(blur_sigma=float(s))) for s in blur_sigmas])


def robustness_sweep(methods: dict[str, tuple[Encoder, object]], test_sets: list[ImageSetSpec],
                     families: dict[str, str], options: ExtractionOptions, points: list[Degradation],
                     images_per_class: int | None = None, seed: int = 0, log=None) -> pd.DataFrame:
    """AP and accuracy of fitted classifiers on degraded test images.

    methods: name → (encoder producing its features, classifier fitted on clean training
    features). Each degradation is a :class:`Perturbation` in the extraction options, so it is
    part of the feature cache key: a sweep never mixes features of different degradations.
    images_per_class: images of each class per test set (None = all), the same images at
    every point. Rows: method × kind × level × family; columns method, kind, level, family,
    ap, acc (percent), n_images."""
    samples = {spec.name: sample_images(spec, images_per_class, seed, options.sampling) for spec in test_sets}
    encoders = {id(encoder): encoder for encoder, _ in methods.values()}
    frames = []
    for point in points:
        if log:
            log(f"{point.kind} {point.level:g}")
        point_options = replace(options, perturbation=point.perturbation, progress=False)
        features = {key: [featurize_images(encoder, spec.name, samples[spec.name], point_options) for spec in test_sets]
                    for key, encoder in encoders.items()}
        for method, (encoder, classifier) in methods.items():
            feature_sets = features[id(encoder)]
            summary = family_summary(evaluate_sets(classifier, feature_sets), families)
            frames.append(summary.assign(method=method, kind=point.kind, level=point.level,
                                         n_images=sum(len(s.labels) for s in feature_sets)))
    return _ordered(pd.concat(frames, ignore_index=True), ["method", "kind", "level"])


# --- backbones ---


def random_stand_in(spec: str) -> str | None:
    """The random-weight encoder of the same architecture as a pretrained one, where one exists."""
    prefix, _, argument = spec.partition(":")
    if prefix == "torchvision":
        return f"random-torchvision:{argument}"
    if prefix == "clip" and argument in RANDOM_CLIP_SHAPES:
        return f"random-clip:{argument}"
    return None


def load_backbone(spec: str, device: str | None = None) -> tuple[Encoder | None, str]:
    """(encoder, notice). When the pretrained weights cannot be had, the random-weight network
    of the same architecture stands in and the notice says so; with no stand-in the encoder is
    None. Tables label rows with the encoder actually used, so a stand-in is never mistaken."""
    try:
        encoder = load_encoder(spec, device)
        return encoder, f"{spec}: loaded (weights {encoder.checkpoint_sha256[:16]}…)"
    except EncoderUnavailable as error:
        stand_in = random_stand_in(spec)
        if stand_in is None:
            return None, f"{spec}: UNAVAILABLE and left out — {error}"
        return (load_encoder(stand_in, device),
                f"{spec}: pretrained weights unavailable, {stand_in} (RANDOM weights) used instead — {error}")


def has_spread(features: np.ndarray, tolerance: float = 1e-6) -> bool:
    """Whether L2-normalised rows differ at all. A random-weight network can emit (near-)zero or
    constant features, which no classifier can use and which crash t-SNE's tree."""
    norms = np.linalg.norm(features, axis=1, keepdims=True)
    if len(features) < 2 or not (norms > 0).all():
        return False
    return float(np.ptp(features / norms, axis=0).max()) > tolerance


@dataclass
class BackboneComparison:
    """summary: backbone × method × family rows (columns backbone, requested, method, family,
    ap, acc, dim); bank_samples: backbone → (features (n, d), labels (n,)) of the training-bank
    sample for its t-SNE panel; notices: how each backbone was loaded."""

    summary: pd.DataFrame
    bank_samples: dict[str, tuple[np.ndarray, np.ndarray]]
    notices: list[str]


def backbone_comparison(backbones, benchmark, options: ExtractionOptions, families: dict[str, str],
                        probe_lr: float = config.PROBE_LR, k: int = 1, bank_points_per_class: int = 200,
                        seed: int = 0, device: str | None = None, log=print) -> BackboneComparison:
    """For each backbone: features of the benchmark (through the cache), nearest neighbour (k)
    and the linear probe trained on its training features, evaluated per family; plus a
    balanced sample of its training bank. One backbone's features are held at a time."""
    frames, samples, notices = [], {}, []
    for spec in backbones:
        encoder, notice = load_backbone(spec, device)
        notices.append(notice)
        if log:
            log(notice)
        if encoder is None:
            continue
        features = featurize_benchmark(encoder, benchmark, options)
        methods = fit_methods(features, (k,), None, probe_lr, device)
        for method, classifier in methods.items():
            summary = family_summary(evaluate_sets(classifier, features.test_sets), families)
            frames.append(summary.assign(backbone=encoder.name, requested=spec, method=method, dim=encoder.embed_dim))
        keep = balanced_subsample(features.train.labels, bank_points_per_class, seed)
        if has_spread(features.train.features[keep]):
            samples[encoder.name] = (features.train.features[keep], features.train.labels[keep])
        else:
            notices.append(f"{encoder.name}: every training feature points the same way (or is zero), so it "
                           "separates nothing and gets no map")
        del encoder, features, methods
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    summary = _ordered(pd.concat(frames, ignore_index=True), ["backbone", "requested", "method"]) if frames else \
        pd.DataFrame(columns=["backbone", "requested", "method", "family", "ap", "acc", "dim"])
    return BackboneComparison(summary, samples, notices)


# --- samples for maps, and the fakes nearest to / farthest from the fake bank ---


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


def find_test_set(benchmark, name: str) -> ImageSetSpec:
    """The benchmark's test set called ``name`` (a clear error listing the names otherwise)."""
    for spec in benchmark.test_sets:
        if spec.name == name:
            return spec
    raise ValueError(f"no test set {name!r}; the benchmark has {', '.join(s.name for s in benchmark.test_sets)}")


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


def fake_bank_similarity(bank: FeatureSet, queries: FeatureSet) -> pd.DataFrame:
    """Cosine similarity of each query *fake* to its nearest feature in the bank's fake half,
    and to its nearest real one. Columns path, fake_similarity, real_similarity, margin
    (the nearest-neighbour k=1 score), sorted from most to least similar to the fake bank."""
    mask = queries.labels == 1
    query = l2_normalise(queries.features[mask])
    nearest = {}
    for label, word in ((1, "fake"), (0, "real")):
        bank_half = l2_normalise(bank.features[bank.labels == label])
        nearest[word] = topk_similarity(query, bank_half, 1, 65536).numpy() if len(query) else np.zeros(0)
    fake, real = nearest["fake"], nearest["real"]
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
