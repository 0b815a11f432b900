"""Stage 4, scores → metrics: average precision and accuracies per test set (add a metric in
:mod:`metrics`), scoring of fitted classifiers, the numbers the paper reports, bootstrap intervals
(:mod:`bootstrap`), calibrators (:mod:`calibration`) and precision–recall curves (:mod:`pr_curves`)."""
