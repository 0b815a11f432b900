"""The paper's main experiment (Tables 2 and 3, notebook 03): nearest neighbour and the linear
probe fitted on the training features, evaluated on every test set, set beside the paper.

benchmark features → fitted classifiers → per-method metrics → the paper's tables.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ufd_lib import config
from ufd_lib.classifiers.linear_probe import LinearProbe
from ufd_lib.classifiers.nearest_neighbour import NearestNeighbourClassifier
from ufd_lib.evaluation.reported import PAPER_GROUPS, PAPER_TEST_SETS, paper_numbers
from ufd_lib.evaluation.scoring import EvaluationResult, evaluate_sets
from ufd_lib.features.feature_sets import BenchmarkFeatures


def fit_methods(features: BenchmarkFeatures, k_values: tuple[int, ...], released_probe: Path | None,
                probe_lr: float = config.PROBE_LR, device: str | None = None) -> dict[str, object]:
    """The paper's detectors fitted on the training features, by method name.

    ``NN k=K``: nearest neighbour with the whole training set as real and fake banks.
    ``LC``: the linear probe trained here (early stopping on the validation set).
    ``LC released``: the official probe weights, when the file exists.
    """
    train = features.train
    methods: dict[str, object] = {
        f"NN k={k}": NearestNeighbourClassifier(k=k, device=device).fit(train.features, train.labels)
        for k in k_values
    }
    methods["LC"] = LinearProbe(lr=probe_lr, device=device).fit(
        train.features, train.labels, features.val.features, features.val.labels
    )
    if released_probe is not None and Path(released_probe).is_file():
        methods["LC released"] = LinearProbe.load(released_probe)
    return methods


def evaluate_methods(methods: dict[str, object], features: BenchmarkFeatures) -> dict[str, EvaluationResult]:
    return {name: evaluate_sets(classifier, features.test_sets) for name, classifier in methods.items()}


def metric_table(results: dict[str, EvaluationResult], metric: str) -> pd.DataFrame:
    """Test sets (rows, ``mean`` last) × methods (columns) of one metric column, in percent."""
    return pd.DataFrame(
        {name: result.metrics.set_index("test_set")[metric] * 100 for name, result in results.items()}
    )


# "About these numbers" notes of the accuracy tables, by ``accuracy_table`` prefix.
ACCURACY_NOTES = {
    "": "real / fake: share of real (fake) images called real (fake) at the classifier's own threshold (0.5 on "
        "the probe's probability, 0 on the nearest-neighbour cosine margin); mean: their average, the paper's "
        "accuracy. Percent.",
    "oracle_": "Threshold chosen on each test set itself (ours): every score a candidate, fake if score >= t, the "
               "best mean of real and fake accuracy, the lowest threshold on ties. An upper bound, not a result "
               "a deployed detector could reach. Percent.",
    "released_": "Threshold chosen on each test set as the released validate.py does: midpoint when the classes "
                 "separate, else the last score with the best plain accuracy (fake if score >= t); then reported "
                 "with fake if score > t, and 'mean' is plain accuracy over all images. Percent.",
}


def accuracy_table(results: dict[str, EvaluationResult], prefix: str = "") -> pd.DataFrame:
    """The paper's accuracy table: test sets × (method, real / fake / mean), in percent.

    prefix: ``""`` for the classifier's own threshold, ``"oracle_"`` for our oracle threshold,
    ``"released_"`` for the release's best threshold (note: :data:`ACCURACY_NOTES`).
    """
    parts = {
        (name, label): result.metrics.set_index("test_set")[f"{prefix}{column}"] * 100
        for name, result in results.items()
        for label, column in (("real", "acc_real"), ("fake", "acc_fake"), ("mean", "acc"))
    }
    return pd.DataFrame(parts)


# Our metrics column for each metric the paper reports. The paper's "accuracy" is the mean of
# the real-class and fake-class accuracies at the classifier's own threshold (0.5 on the probe's
# probability), i.e. ``acc``, not the oracle or the release's best-threshold accuracy.
COMPARED_COLUMNS = {"AP": "ap", "acc": "acc"}
COMPARISON_ROWS = (*PAPER_TEST_SETS, *PAPER_GROUPS, "mean")
NOT_TRACED = "not traced"


def _paper_method(method: str) -> str:
    """The paper's method our method is compared with: every probe with "Ours LC", every k with
    "Ours NN" (the paper does not say which k its NN family means use)."""
    return "Ours LC" if method.startswith("LC") else "Ours NN"


def _method_order(methods) -> list[str]:
    """Probes first (``LC``, then ``LC released``), then the others in their given (k) order."""
    return sorted(methods, key=lambda name: (not name.startswith("LC"), name != "LC"))


def _ours(result: EvaluationResult, column: str) -> pd.Series:
    """Our value (percent) for each comparison row: the paper's test sets we have by name, and
    a group mean only where every member is present."""
    by_set = result.metrics.set_index("test_set")[column].drop(index="mean", errors="ignore") * 100
    ours = by_set.reindex(list(PAPER_TEST_SETS))
    for group, members in {**PAPER_GROUPS, "mean": PAPER_TEST_SETS}.items():
        ours[group] = ours[list(members)].mean() if ours[list(members)].notna().all() else np.nan
    return ours


NOT_COMPARABLE = "not comparable: encoder is not OpenAI's ViT-L/14"


def paper_comparison(results: dict[str, EvaluationResult], metric: str, compare_with_paper: bool,
                     papers_encoder: bool = True) -> pd.DataFrame:
    """One metric ("AP" or "acc") of every method beside the paper's number, in percent.

    Rows: method (``LC``, ``LC released``, ``NN k=…``) × the 19 test sets in the paper's order,
    its two family means and the overall ``mean``. Columns: method, test_set, paper, ours,
    difference (ours − paper, percentage points), kind (where the paper's number comes from,
    ``not traced`` when none was found; approximations such as "~95" are named in it and have
    no ``paper`` value). ``ours`` and ``difference`` are empty when ``compare_with_paper`` is
    false (test sets that are not the paper's) and for sets or groups this run lacks; ``difference``
    is empty when ``papers_encoder`` is false (the encoder is not OpenAI's ViT-L/14 file, so the
    numbers are not comparable; :data:`NOT_COMPARABLE` says so above the table)."""
    rows = []
    for method in _method_order(results):
        paper = paper_numbers(_paper_method(method), metric).set_index("test_set")
        ours = _ours(results[method], COMPARED_COLUMNS[metric]) if compare_with_paper else pd.Series(dtype=float)
        for test_set in COMPARISON_ROWS:
            value = paper["value"].get(test_set, np.nan)
            kind = paper["kind"].get(test_set, NOT_TRACED)
            if test_set in paper.index and np.isnan(value):
                kind = f"{kind} (approximate: {paper.loc[test_set, 'value_text']})"
            mine = ours.get(test_set, np.nan)
            rows.append({"method": method, "test_set": test_set, "paper": value, "ours": mine,
                         "difference": mine - value if papers_encoder else np.nan, "kind": kind})
    return pd.DataFrame(rows, columns=["method", "test_set", "paper", "ours", "difference", "kind"])


def comparison_caption(words: str, compare_with_paper: bool, papers_encoder: bool) -> str:
    """The caption (shown above the table) of a :func:`paper_comparison` table; ``words`` names
    the metric."""
    caption = f"Every method's {words} (%) beside the paper's"
    return f"{caption} — {NOT_COMPARABLE}" if compare_with_paper and not papers_encoder else caption


def comparison_note(metric: str, compare_with_paper: bool) -> str:
    """The "about these numbers" note of a :func:`paper_comparison` table."""
    measured = ("average precision, fake as the positive class" if metric == "AP" else
                "the paper's accuracy: the mean of the real-class and fake-class accuracies at the classifier's "
                "own threshold (0.5 on the probe's probability, 0 on the nearest-neighbour cosine margin)")
    why_empty = "" if compare_with_paper else (
        "This run's test sets are not the paper's (the smoke profile's are synthetic stand-ins encoded by a "
        "random-weight CLIP), so 'ours' and 'difference' are left empty: the paper's numbers are listed for "
        "reference only. ")
    return (f"{why_empty}Percent; {measured}; difference = ours − paper in percentage points. 'LC' and 'LC "
            "released' are compared with the paper's linear probe, every 'NN k=…' with its nearest neighbour (the "
            "paper does not say which k its family means use). mean[GAN family] = ProGAN, CycleGAN, BigGAN, "
            "StyleGAN, GauGAN, StarGAN; mean[LDM+Glide+Guided+DALL-E] = the eight diffusion and autoregressive "
            "sets; mean = all 19. kind: 'paper-text' = read in the paper's text; 'paper-table (via reprint)' = a "
            "cell of the paper's Table 2 or 3 as reprinted by a later paper (medium confidence); '(approximate: …)'"
            " = the paper writes only an approximation or a range, so there is no difference; 'not traced' = no "
            "reported number was found. Sources: ufd_lib/evaluation/reported_results.csv.")


def probe_history(methods: dict[str, object]) -> pd.DataFrame:
    """Per-epoch loss, validation accuracy and learning rate of the probe trained here."""
    return pd.DataFrame(methods["LC"].history_)
