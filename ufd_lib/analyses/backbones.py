"""Backbones (notebook 08): the same nearest neighbour and linear probe on other frozen feature
spaces, each backbone named by its encoder registry string."""
from __future__ import annotations

import gc
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from ufd_lib import config
from ufd_lib.analyses.main_results import fit_methods
from ufd_lib.analyses.tables import family_summary, ordered_columns
from ufd_lib.data.discovery import balanced_subsample
from ufd_lib.evaluation.scoring import evaluate_sets
from ufd_lib.features.encoders import Encoder, EncoderUnavailable, load_encoder, random_stand_in, weights_notice
from ufd_lib.features.feature_sets import ExtractionOptions, featurize_benchmark


def load_backbone(spec: str, device: str | None = None) -> tuple[Encoder | None, str]:
    """(encoder, notice). When the pretrained weights cannot be had, the random-weight network
    of the same architecture stands in and the notice says so; with no stand-in the encoder is
    None. The registry names each pretrained entry's stand-in (:func:`random_stand_in`). Tables
    label rows with the encoder actually used, so a stand-in is never mistaken."""
    try:
        encoder = load_encoder(spec, device)
        return encoder, f"{spec}: loaded; {weights_notice(encoder)}"
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


def backbone_comparison(backbones, benchmark, options: ExtractionOptions, probe_lr: float = config.PROBE_LR,
                        k: int = 1, bank_points_per_class: int = 200, seed: int = 0,
                        device: str | None = None) -> BackboneComparison:
    """For each backbone: features of the benchmark (through the cache), nearest neighbour (k)
    and the linear probe trained on its training features, evaluated per family of
    ``benchmark.families``; plus a balanced sample of its training bank. One backbone's features
    are held at a time."""
    frames, samples, notices = [], {}, []
    for spec in backbones:
        encoder, notice = load_backbone(spec, device)
        notices.append(notice)
        if encoder is None:
            continue
        features = featurize_benchmark(encoder, benchmark, options)
        methods = fit_methods(features, (k,), None, probe_lr, device)
        for method, classifier in methods.items():
            summary = family_summary(evaluate_sets(classifier, features.test_sets), benchmark.families)
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
    summary = ordered_columns(pd.concat(frames, ignore_index=True), ["backbone", "requested", "method"]) \
        if frames else pd.DataFrame(columns=["backbone", "requested", "method", "family", "ap", "acc", "dim"])
    return BackboneComparison(summary, samples, notices)
