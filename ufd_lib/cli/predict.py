"""``ufd predict``: the probability that each image is fake, by a linear probe."""
from __future__ import annotations

import json
import sys
from pathlib import Path

from ufd_lib import config
from ufd_lib.classifiers.linear_probe import LinearProbe
from ufd_lib.cli.args import UsageError, extraction_options
from ufd_lib.evaluation.scoring import fake_scores
from ufd_lib.features.encoders import load_encoder
from ufd_lib.features.extract import extract_features, open_cache


def _predict_paths(inputs: list[Path]) -> list[Path]:
    paths = []
    for item in inputs:
        if item.is_dir():
            paths += sorted((p for p in item.rglob("*") if p.suffix.lower() in config.IMAGE_EXTENSIONS and p.is_file()), key=str)
        elif item.is_file():
            paths.append(item)
        else:
            raise UsageError(f"{str(item)!r}: no such file or directory")
    return paths


def run(args) -> int:
    paths = _predict_paths(args.images)
    probe = LinearProbe.load(args.probe)
    options = extraction_options(args)
    encoder = load_encoder(args.encoder, args.device)
    cache = open_cache(encoder, options.perturbation, options.cache_root)
    features, kept, report = extract_features(encoder, paths, cache, options)
    probabilities, threshold = fake_scores(probe, features)
    kept_paths = [p for p, keep in zip(paths, kept) if keep]
    for path, probability in zip(kept_paths, probabilities):
        label = "fake" if probability > threshold else "real"
        if args.json:
            print(json.dumps({"path": str(path), "probability_fake": float(probability), "label": label}))
        else:
            print(f"{path}\t{probability:.6f}\t{label}")
    for path, reason in report.skipped:
        print(f"ufd: skipped {path}: {reason}", file=sys.stderr)
    return 1 if report.skipped else 0
