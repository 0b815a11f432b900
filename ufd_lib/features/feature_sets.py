"""Feature sets: the features of labelled images, read through the feature cache.

image set (:class:`~ufd_lib.data.image_sets.ImageSetSpec`) → labelled images → cached
features → :class:`FeatureSet` (features, labels and paths in one order). The notebooks, the
command line and every analysis obtain features here.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ufd_lib.data.discovery import LabelledImage, discover_images
from ufd_lib.data.image_sets import Benchmark, ImageSetSpec
from ufd_lib.features.encoders import Encoder
from ufd_lib.features.extraction.decoding_workers import kept_decoding_workers
from ufd_lib.features.extraction.extract import (
    EngineOptions,
    ExtractionReport,
    extract_features,
    fill_cache,
    open_cache,
)
from ufd_lib.features.extraction.layer_caches import layer_caches

# Key of the final embedding among per-layer feature sets (the layers are keyed by their number).
FINAL = "final"


@dataclass
class ExtractionOptions(EngineOptions):
    """The engine's options plus what the feature-set level decides: which images of a set are
    read (``sampling``: ``all``, or ``official``, the released code's capped draw) and where the
    cache lives (``cache_root``; None: :func:`ufd_lib.config.cache_dir`)."""

    sampling: str = "all"
    cache_root: Path | None = None


@dataclass
class FeatureSet:
    """Features of one image set. features: float32 (n, d); labels: int (n,), 0 real 1 fake;
    paths: the n files, in feature order; skipped: (path, reason) of files left out; sampling:
    how the images were chosen (``"all"`` or ``"official"``, :mod:`ufd_lib.data.discovery`);
    listed_real: how many leading images come from the real list (None: those labelled real),
    the first half of the release's best-threshold search."""

    name: str
    features: np.ndarray
    labels: np.ndarray
    paths: list[str]
    skipped: list[tuple[str, str]] = field(default_factory=list)
    sampling: str = "all"
    listed_real: int | None = None


def featurize(
    encoder: Encoder, spec: ImageSetSpec, options: ExtractionOptions, report: ExtractionReport | None = None
) -> FeatureSet:
    """Discover the images of ``spec`` and return their features (from the cache where possible).

    When ``report`` is given, the extraction's counts and skipped files are added to it. Files
    that discovery leaves out (``sampling="official"``: those the release would not read) are
    listed in the result's ``skipped`` too.
    """
    discovered = discover_images(spec, options.sampling)
    feature_set = featurize_images(encoder, spec.name, discovered.images, options, report)
    feature_set.skipped = discovered.skipped + feature_set.skipped
    if discovered.listed_real is not None:
        evaluated = set(feature_set.paths)  # extraction keeps or skips a path, wherever it is listed
        feature_set.listed_real = sum(image.path in evaluated for image in discovered.images[:discovered.listed_real])
    return feature_set


def featurize_images(
    encoder: Encoder, name: str, images: list[LabelledImage], options: ExtractionOptions,
    report: ExtractionReport | None = None,
) -> FeatureSet:
    """Features of an explicit list of labelled images, through the feature cache; the result's
    ``sampling`` is ``options.sampling`` (the rule the caller chose the images by)."""
    cache = open_cache(encoder, options.perturbation, options.cache_root)
    features, kept, this_report = extract_features(encoder, [image.path for image in images], cache, options,
                                                   description=name)
    if report is not None:
        report.merge(this_report)
    labels = np.array([image.label for image, keep in zip(images, kept) if keep], dtype=int)
    paths = [image.path for image, keep in zip(images, kept) if keep]
    return FeatureSet(name, features, labels, paths, this_report.skipped, options.sampling)


@dataclass
class BenchmarkFeatures:
    """Cached features of every set of a benchmark, and what extracting them cost."""

    train: FeatureSet
    val: FeatureSet
    test_sets: list[FeatureSet]
    report: ExtractionReport


@kept_decoding_workers()
def featurize_benchmark(encoder: Encoder, benchmark: Benchmark, options: ExtractionOptions) -> BenchmarkFeatures:
    """Features of the training, validation and test sets (encoding only what the cache lacks).
    ``options.sampling`` chooses the test sets' images; the training and validation sets use all
    their images, as the release samples only its evaluation."""
    report = ExtractionReport()
    every_image = dataclasses.replace(options, sampling="all")
    train = featurize(encoder, benchmark.train, every_image, report)
    val = featurize(encoder, benchmark.val, every_image, report)
    test_sets = [featurize(encoder, spec, options, report) for spec in benchmark.test_sets]
    return BenchmarkFeatures(train, val, test_sets, report)


def subset(feature_set: FeatureSet, indices: np.ndarray, name: str | None = None) -> FeatureSet:
    """The rows ``indices`` of a feature set (skipped files are not carried over)."""
    indices = np.asarray(indices, dtype=int)
    return FeatureSet(name or feature_set.name, feature_set.features[indices], feature_set.labels[indices],
                      [feature_set.paths[i] for i in indices])


def featurize_images_with_layers(
    encoder: Encoder, name: str, images: list[LabelledImage], options: ExtractionOptions, layers: Iterable[int],
    report: ExtractionReport | None = None,
) -> dict[int | str, FeatureSet]:
    """The final embedding (key :data:`FINAL`) and the CLS token of each of ``layers`` (keys: the
    layer numbers) of an explicit list of labelled images, through the feature cache: images that
    lack any of them are encoded once, all layers from the same forward pass. Every set holds the
    same images in the same order; layer features are float32 (n, ``encoder.layer_tokens.width``)
    read from their float16 store; ``sampling`` is ``options.sampling``. Raises ValueError when
    the encoder has no such layers."""
    wanted = encoder.check_layers(layers)
    options = dataclasses.replace(options, layers=wanted)
    cache = open_cache(encoder, options.perturbation, options.cache_root)
    kept, digests, this_report = fill_cache(encoder, [image.path for image in images], cache, options,
                                            description=name)
    if report is not None:
        report.merge(this_report)
    keys = [digests[i] for i in np.flatnonzero(kept)]
    labels = np.array([image.label for image, keep in zip(images, kept) if keep], dtype=int)
    paths = [image.path for image, keep in zip(images, kept) if keep]
    stores = {FINAL: cache, **layer_caches(cache, wanted, encoder.layer_tokens.width)}
    return {key: FeatureSet(name, store.load(keys), labels, list(paths), this_report.skipped, options.sampling)
            for key, store in stores.items()}


@kept_decoding_workers()
def featurize_benchmark_layers(
    encoder: Encoder, benchmark: Benchmark, options: ExtractionOptions, layers: Iterable[int],
    train_indices: Sequence[int] | None = None,
) -> dict[int | str, BenchmarkFeatures]:
    """Per-layer features of the training, validation and test sets: layer number (and
    :data:`FINAL`) → :class:`BenchmarkFeatures`. train_indices: the training images kept (indices
    into the training set's images, all of them, as :func:`featurize_benchmark` takes them), e.g.
    a balanced subset that fits a disk budget; None keeps them all. The validation set is whole,
    and ``options.sampling`` chooses the test sets' images, as in :func:`featurize_benchmark`.
    Each entry's ``report`` is the one extraction's."""
    report = ExtractionReport()
    every_image = dataclasses.replace(options, sampling="all")

    def of(spec: ImageSetSpec, chosen: ExtractionOptions, indices: Sequence[int] | None = None):
        discovered = discover_images(spec, chosen.sampling)
        images = discovered.images if indices is None else [discovered.images[i] for i in indices]
        sets = featurize_images_with_layers(encoder, spec.name, images, chosen, layers, report)
        listed = discovered.images[:discovered.listed_real] if discovered.listed_real is not None else None
        for feature_set in sets.values():
            feature_set.skipped = discovered.skipped + feature_set.skipped
            if listed is not None:
                evaluated = set(feature_set.paths)
                feature_set.listed_real = sum(image.path in evaluated for image in listed)
        return sets

    train, val = of(benchmark.train, every_image, train_indices), of(benchmark.val, every_image)
    tests = [of(spec, options) for spec in benchmark.test_sets]
    return {key: BenchmarkFeatures(train[key], val[key], [test[key] for test in tests], report) for key in train}
