"""Notebook 05's question: does a detector trained end to end on one generator's fakes
recognise fakes of the families it never saw (the paper's Table 1)?

test sets → the detector's own features and head → real, fake and mean accuracy and AP.
"""
from __future__ import annotations

import pandas as pd

from ufd_lib.analyses.main_results import accuracy_table, metric_table
from ufd_lib.classifiers.trained_detector import TrainedDetector
from ufd_lib.data.image_sets import ImageSetSpec
from ufd_lib.evaluation.scoring import EvaluationResult, evaluate_sets
from ufd_lib.features.feature_sets import ExtractionOptions, featurize


def evaluate_detector(detector: TrainedDetector, test_sets: list[ImageSetSpec],
                      options: ExtractionOptions) -> EvaluationResult:
    """Every test set through the detector's backbone (cached like any encoder) and its head."""
    return evaluate_sets(detector.head, [featurize(detector.encoder, spec, options) for spec in test_sets])


def real_fake_table(result: EvaluationResult) -> pd.DataFrame:
    """Table 1's view: test sets (rows, ``mean`` last) × ``real``, ``fake``, ``mean`` accuracy
    at the detector's threshold and ``AP``, all in percent."""
    accuracy = accuracy_table({"detector": result})["detector"]
    return accuracy.assign(AP=metric_table({"detector": result}, "ap")["detector"])
