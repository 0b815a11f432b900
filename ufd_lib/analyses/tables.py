"""Summary tables shared by the analyses: means per generator family and over all test sets,
in percent, the paper's units."""
from __future__ import annotations

import pandas as pd

from ufd_lib.evaluation.scoring import EvaluationResult


def family_means(table: pd.DataFrame, families: dict[str, str]) -> pd.DataFrame:
    """Mean of each column over the test sets of each generator family (rows: families)."""
    by_set = table.drop(index="mean", errors="ignore")
    groups = pd.Series({name: families.get(name, "unknown") for name in by_set.index})
    return by_set.groupby(groups, sort=False).mean()


ALL_SETS = "all test sets"


def family_summary(result: EvaluationResult, families: dict[str, str]) -> pd.DataFrame:
    """Mean AP and accuracy (percent) per generator family, then over all test sets.
    Columns: family, ap, acc."""
    metrics = result.metrics.set_index("test_set")[["ap", "acc"]] * 100
    by_family = family_means(metrics, families)
    by_family.loc[ALL_SETS] = metrics.loc["mean"]
    return by_family.rename_axis("family").reset_index()


def family_image_counts(result: EvaluationResult, families: dict[str, str]) -> pd.Series:
    """Images (real + fake) per generator family, then over all test sets: the count behind each
    row of :func:`family_summary`."""
    by_set = result.metrics.set_index("test_set").drop(index="mean", errors="ignore")
    images = by_set["n_real"] + by_set["n_fake"]
    groups = pd.Series({name: families.get(name, "unknown") for name in by_set.index})
    counts = images.groupby(groups, sort=False).sum()
    counts[ALL_SETS] = images.sum()
    return counts.astype(int)


def ordered_columns(frame: pd.DataFrame, setting_columns: list[str]) -> pd.DataFrame:
    rest = [c for c in frame.columns if c not in setting_columns]
    return frame[setting_columns + rest]


def wide(table: pd.DataFrame, setting: str, metric: str) -> pd.DataFrame:
    """Long ablation table → settings (rows) × families (columns) of one metric."""
    return table.pivot_table(index=setting, columns="family", values=metric, sort=False)
