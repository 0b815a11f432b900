"""Stage 4, scores → metrics: average precision and accuracies per test set (add a metric in
:mod:`metrics`), scoring of fitted classifiers, precision–recall curves, and the numbers the
paper reports."""
