"""Robustness (notebook 07): average precision and accuracy under test-time JPEG and blur, per
method and generator family."""
from __future__ import annotations

from dataclasses import dataclass, replace

import pandas as pd

from ufd_lib.analyses.tables import family_image_counts, family_summary, ordered_columns
from ufd_lib.data.discovery import sample_images
from ufd_lib.data.image_sets import ImageSetSpec
from ufd_lib.evaluation.scoring import evaluate_sets
from ufd_lib.features.encoders import Encoder
from ufd_lib.features.extraction.decoding_workers import kept_decoding_workers
from ufd_lib.features.feature_sets import ExtractionOptions, featurize_images
from ufd_lib.features.preprocess import Perturbation

ROBUSTNESS_NOTE = ("level: JPEG quality (PIL, 100 = best) or Gaussian blur sigma in pixels (0 = none), applied "
                   "before the centre crop. ap, acc: percent, mean over the family's test sets. n_images: the test "
                   "images behind the row (its family's sets; all test sets for the last row of each point).")


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


@kept_decoding_workers()
def robustness_sweep(methods: dict[str, tuple[Encoder, object]], test_sets: list[ImageSetSpec],
                     families: dict[str, str], options: ExtractionOptions, points: list[Degradation],
                     images_per_class: int | None = None, seed: int = 0, log=None) -> pd.DataFrame:
    """AP and accuracy of fitted classifiers on degraded test images.

    methods: name → (encoder producing its features, classifier fitted on clean training
    features). Each degradation is a :class:`Perturbation` in the extraction options, so it is
    part of the feature cache key: a sweep never mixes features of different degradations.
    images_per_class: images of each class per test set (None = all), the same images at
    every point. Rows: method × kind × level × family; columns method, kind, level, family,
    ap, acc (percent), n_images (the images behind that row: its family's, or all test sets')."""
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
            result = evaluate_sets(classifier, feature_sets)
            summary = family_summary(result, families)
            counts = family_image_counts(result, families)
            frames.append(summary.assign(method=method, kind=point.kind, level=point.level,
                                         n_images=summary["family"].map(counts).to_numpy()))
    return ordered_columns(pd.concat(frames, ignore_index=True), ["method", "kind", "level"])
