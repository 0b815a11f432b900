"""ufd: a reference replication of UnivFD (Ojha, Li, Lee, CVPR 2023) — fake image detection in
the frozen feature space of CLIP ViT-L/14.

The package follows the pipeline, one sub-package per stage, each importing only those above
it in this list:

- :mod:`ufd_lib.data`: image files → labelled image lists (layouts, manifests, downloads);
- :mod:`ufd_lib.features`: images → cached features (encoders, preprocessing, extraction);
- :mod:`ufd_lib.classifiers`: features → scores (nearest neighbour, linear probe, trained detector);
- :mod:`ufd_lib.evaluation`: scores → metrics (AP, accuracies, the paper's reported numbers);
- :mod:`ufd_lib.analyses`: the paper's experiments, one module per notebook question;
- :mod:`ufd_lib.report`: tables, figures, the index page and provenance;
- :mod:`ufd_lib.runs`: profiles, the notebooks' run context, ``ufd reproduce``;
- :mod:`ufd_lib.reliability` and :mod:`ufd_lib.cli` on top.

The names below are the surface a notebook or a script needs; they load on first use, so
``import ufd_lib`` stays instant::

    from ufd_lib import load_encoder, featurize, LinearProbe, evaluate_sets

A notebook starts with ``run = open_run(..., notebook="03_main_results")`` and writes what it
shows through ``run.save_table``, ``run.save_figure`` and ``run.note``; the analyses it runs
come from their modules, ``ufd_lib.analyses.<question>``, and its pictures from
``ufd_lib.report.figures``.
"""
from __future__ import annotations

import importlib

_PUBLIC = {
    "load_encoder": "ufd_lib.features.encoders",
    "Encoder": "ufd_lib.features.encoders",
    "ImageSetSpec": "ufd_lib.data.image_sets",
    "collect_images": "ufd_lib.data.discovery",
    "ExtractionOptions": "ufd_lib.features.feature_sets",
    "FeatureSet": "ufd_lib.features.feature_sets",
    "featurize": "ufd_lib.features.feature_sets",
    "featurize_images": "ufd_lib.features.feature_sets",
    "featurize_benchmark": "ufd_lib.features.feature_sets",
    "kept_decoding_workers": "ufd_lib.features.extraction.decoding_workers",
    "Perturbation": "ufd_lib.features.preprocess",
    "NearestNeighbourClassifier": "ufd_lib.classifiers.nearest_neighbour",
    "LinearProbe": "ufd_lib.classifiers.linear_probe",
    "evaluate_sets": "ufd_lib.evaluation.scoring",
    "fake_scores": "ufd_lib.evaluation.scoring",
    "average_precision": "ufd_lib.evaluation.metrics",
    "test_set_metrics": "ufd_lib.evaluation.metrics",
    "feature_counts": "ufd_lib.analyses.inventory",
    "featurize_views": "ufd_lib.features.augmentation",
    "ExtractionReport": "ufd_lib.features.extraction.extract",
    "open_cache": "ufd_lib.features.extraction.extract",
    "find_test_set": "ufd_lib.data.image_sets",
    "RELEASED_PROBE": "ufd_lib.classifiers.released",
    "detector_or_notice": "ufd_lib.classifiers.trained_detector",
    "save_table": "ufd_lib.report.artifacts",
    "save_figure": "ufd_lib.report.artifacts",
    "save_notice": "ufd_lib.report.artifacts",
    "open_run": "ufd_lib.runs.context",
    "RunContext": "ufd_lib.runs.context",
    "data_inventory": "ufd_lib.analyses.inventory",
    "example_images": "ufd_lib.analyses.inventory",
    "family_table": "ufd_lib.analyses.inventory",
    "get_profile": "ufd_lib.runs.profiles",
    "reproduce": "ufd_lib.runs.reproduce",
}

__all__ = sorted(_PUBLIC)


def __getattr__(name: str):
    if name not in _PUBLIC:
        raise AttributeError(f"module 'ufd_lib' has no attribute {name!r}")
    value = getattr(importlib.import_module(_PUBLIC[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
