"""The evaluation pipeline shared by the command line and the notebooks:
image sets → cached features → classifier scores → metrics tables and run record.
"""
from __future__ import annotations

import json
import platform
import sys
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

import numpy as np
import pandas as pd

from . import config
from .discovery import LabelledImage, collect_images
from .encoders import Encoder
from .extract import ExtractionReport, extract_features, open_cache
from .image_sets import ImageSetSpec
from .metrics import metrics_table, test_set_metrics
from .preprocess import Perturbation


@dataclass
class FeatureSet:
    """Features of one image set. features: float32 (n, d); labels: int (n,), 0 real 1 fake;
    paths: the n files, in feature order; skipped: (path, reason) of files left out."""

    name: str
    features: np.ndarray
    labels: np.ndarray
    paths: list[str]
    skipped: list[tuple[str, str]] = field(default_factory=list)


@dataclass
class ExtractionOptions:
    """How features are produced; everything but the encoder and the image set."""

    perturbation: Perturbation = field(default_factory=Perturbation)
    sampling: str = "all"
    batch_size: int = 64
    num_workers: int = 0
    strict: bool = False
    max_pixels: int = config.MAX_IMAGE_PIXELS
    cache_root: Path | None = None
    progress: bool = True


def featurize(
    encoder: Encoder, spec: ImageSetSpec, options: ExtractionOptions, report: ExtractionReport | None = None
) -> FeatureSet:
    """Discover the images of ``spec`` and return their features (from the cache where possible).

    When ``report`` is given, the extraction's counts and skipped files are added to it.
    """
    return featurize_images(encoder, spec.name, collect_images(spec, options.sampling), options, report)


def featurize_images(
    encoder: Encoder, name: str, images: list[LabelledImage], options: ExtractionOptions,
    report: ExtractionReport | None = None,
) -> FeatureSet:
    """Features of an explicit list of labelled images, through the feature cache."""
    cache = open_cache(encoder, options.perturbation, options.cache_root)
    features, kept, this_report = extract_features(
        encoder, [image.path for image in images], cache,
        perturbation=options.perturbation, batch_size=options.batch_size, num_workers=options.num_workers,
        strict=options.strict, max_pixels=options.max_pixels, progress=options.progress, description=name,
    )
    if report is not None:
        report.merge(this_report)
    labels = np.array([image.label for image, keep in zip(images, kept) if keep], dtype=int)
    paths = [str(image.path) for image, keep in zip(images, kept) if keep]
    return FeatureSet(name, features, labels, paths, this_report.skipped)


def fake_scores(classifier, features: np.ndarray) -> tuple[np.ndarray, float]:
    """Scores (n,) where larger means more fake, and the classifier's decision threshold.

    Works with any scikit-learn classifier: ``predict_proba`` (probability of class 1,
    threshold 0.5) when it has one, else ``decision_function`` (threshold 0).
    """
    if len(features) == 0:
        return np.zeros(0), getattr(classifier, "threshold", 0.0)
    if hasattr(classifier, "predict_proba"):
        return classifier.predict_proba(features)[:, 1], getattr(classifier, "threshold", config.PROBE_THRESHOLD)
    return classifier.decision_function(features), getattr(classifier, "threshold", config.KNN_THRESHOLD)


@dataclass
class EvaluationResult:
    """metrics: one row per test set plus ``mean`` (:data:`ufd_lib.metrics.METRIC_COLUMNS`);
    scores: test_set, path, label, score; skipped: test_set, path, reason."""

    metrics: pd.DataFrame
    scores: pd.DataFrame
    skipped: pd.DataFrame


def evaluate_sets(classifier, test_sets: list[FeatureSet]) -> EvaluationResult:
    """Score every test set with a fitted classifier and compute the paper's metrics."""
    rows, score_frames, skipped = [], [], []
    for test_set in test_sets:
        scores, threshold = fake_scores(classifier, test_set.features)
        rows.append(test_set_metrics(test_set.name, test_set.labels, scores, threshold))
        score_frames.append(pd.DataFrame(
            {"test_set": test_set.name, "path": test_set.paths, "label": test_set.labels, "score": scores}
        ))
        skipped += [(test_set.name, path, reason) for path, reason in test_set.skipped]
    scores = pd.concat(score_frames, ignore_index=True) if score_frames else pd.DataFrame(
        columns=["test_set", "path", "label", "score"])
    return EvaluationResult(
        metrics=metrics_table(rows),
        scores=scores,
        skipped=pd.DataFrame(skipped, columns=["test_set", "path", "reason"]),
    )


def library_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for package in ("ufd", "torch", "torchvision", "openai-clip", "numpy", "scikit-learn", "pandas", "pillow"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = "not installed"
    return versions


def run_record(encoder: Encoder, report: ExtractionReport, settings: dict) -> dict:
    """The provenance written to ``run.json``."""
    return {
        "command": sys.argv,
        "encoder": encoder.name,
        "checkpoint_sha256": encoder.checkpoint_sha256,
        "device": str(encoder.device),
        "images_encoded": report.images_encoded,
        "images_from_cache": report.images_from_cache,
        "images_skipped": len(report.skipped),
        "encode_seconds": round(report.encode_seconds, 3),
        "images_per_second": report.images_per_second,
        "settings": settings,
        "versions": library_versions(),
    }


def write_evaluation(result: EvaluationResult, record: dict, out_dir: Path) -> None:
    """Write metrics.csv, scores.csv, skipped.csv and run.json into ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    result.metrics.to_csv(out_dir / "metrics.csv", index=False, float_format="%.6f")
    result.scores.to_csv(out_dir / "scores.csv", index=False, float_format="%.8g")
    result.skipped[["path", "reason"]].to_csv(out_dir / "skipped.csv", index=False)
    (out_dir / "run.json").write_text(json.dumps(record, indent=2, default=str) + "\n")
