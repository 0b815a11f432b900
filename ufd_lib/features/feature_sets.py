"""Feature sets: the features of labelled images, read through the feature cache.

image set (:class:`~ufd_lib.data.image_sets.ImageSetSpec`) → labelled images → cached
features → :class:`FeatureSet` (features, labels and paths in one order). The notebooks, the
command line and every analysis obtain features here.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ufd_lib.data.discovery import LabelledImage, discover_images
from ufd_lib.data.image_sets import Benchmark, ImageSetSpec
from ufd_lib.features.encoders import Encoder
from ufd_lib.features.extraction.decoding_workers import kept_decoding_workers
from ufd_lib.features.extraction.extract import EngineOptions, ExtractionReport, extract_features, open_cache


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
    paths: the n files, in feature order; skipped: (path, reason) of files left out."""

    name: str
    features: np.ndarray
    labels: np.ndarray
    paths: list[str]
    skipped: list[tuple[str, str]] = field(default_factory=list)


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
    return feature_set


def featurize_images(
    encoder: Encoder, name: str, images: list[LabelledImage], options: ExtractionOptions,
    report: ExtractionReport | None = None,
) -> FeatureSet:
    """Features of an explicit list of labelled images, through the feature cache."""
    cache = open_cache(encoder, options.perturbation, options.cache_root)
    features, kept, this_report = extract_features(encoder, [image.path for image in images], cache, options,
                                                   description=name)
    if report is not None:
        report.merge(this_report)
    labels = np.array([image.label for image, keep in zip(images, kept) if keep], dtype=int)
    paths = [image.path for image, keep in zip(images, kept) if keep]
    return FeatureSet(name, features, labels, paths, this_report.skipped)


@dataclass
class BenchmarkFeatures:
    """Cached features of every set of a benchmark, and what extracting them cost."""

    train: FeatureSet
    val: FeatureSet
    test_sets: list[FeatureSet]
    report: ExtractionReport


@kept_decoding_workers()
def featurize_benchmark(encoder: Encoder, benchmark: Benchmark, options: ExtractionOptions) -> BenchmarkFeatures:
    """Features of the training, validation and test sets (encoding only what the cache lacks)."""
    report = ExtractionReport()
    train = featurize(encoder, benchmark.train, options, report)
    val = featurize(encoder, benchmark.val, options, report)
    test_sets = [featurize(encoder, spec, options, report) for spec in benchmark.test_sets]
    return BenchmarkFeatures(train, val, test_sets, report)


def subset(feature_set: FeatureSet, indices: np.ndarray, name: str | None = None) -> FeatureSet:
    """The rows ``indices`` of a feature set (skipped files are not carried over)."""
    indices = np.asarray(indices, dtype=int)
    return FeatureSet(name or feature_set.name, feature_set.features[indices], feature_set.labels[indices],
                      [feature_set.paths[i] for i in indices])
