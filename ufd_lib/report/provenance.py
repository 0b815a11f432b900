"""Provenance: the library versions and settings behind a result, and the files of one
``ufd evaluate`` run (metrics.csv, scores.csv, skipped.csv, run.json)."""
from __future__ import annotations

import json
import platform
import sys
from importlib import metadata
from pathlib import Path

from ufd_lib.evaluation.scoring import EvaluationResult
from ufd_lib.features.encoders import Encoder
from ufd_lib.features.extract import ExtractionReport


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
        "files_hashed": report.files_hashed,
        "files_recognised": report.files_recognised,
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
