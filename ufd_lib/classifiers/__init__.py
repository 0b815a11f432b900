"""Stage 3, features → scores: nearest neighbour over the real and fake feature banks (on the
bounded-memory search of :mod:`nn_search`), the linear probe, and the end-to-end trained
detector the paper compares against. Classifiers speak scikit-learn's ``fit``/``predict_proba``."""
