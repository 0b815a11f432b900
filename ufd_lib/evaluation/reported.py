"""The numbers the paper reports, as data with their source
(``ufd_lib/evaluation/reported_results.csv``, described in ``REPORTED.md`` beside it).

Ojha, Li, Lee, CVPR 2023 (arXiv 2302.10174). Values are percent, as printed.
"""
from __future__ import annotations

from importlib import resources

import pandas as pd

# The paper's test sets in the order of its Tables 2 and 3.
PAPER_TEST_SETS = (
    "ProGAN", "CycleGAN", "BigGAN", "StyleGAN", "GauGAN", "StarGAN", "Deepfakes", "SITD", "SAN",
    "CRN", "IMLE", "Guided", "LDM_200", "LDM_200_cfg", "LDM_100", "Glide_100_27", "Glide_50_27",
    "Glide_100_10", "DALL-E",
)
# Groups the paper's text averages over (Sec. 6.1): the six GAN sets and the eight
# diffusion/autoregressive sets.
PAPER_GROUPS = {
    "mean[GAN family]": PAPER_TEST_SETS[:6],
    "mean[LDM+Glide+Guided+DALL-E]": PAPER_TEST_SETS[11:],
}
PAPER_KINDS = ("paper-text", "paper-table (via reprint)")


def reported_results() -> pd.DataFrame:
    """Every traced number: columns kind, table, method, variant, test_set, metric, value, source, note.

    ``value`` is numeric where the source prints a number and NaN for approximations such as "~93".
    """
    with resources.files("ufd_lib.evaluation").joinpath("reported_results.csv").open() as handle:
        table = pd.read_csv(handle)
    table["value_text"] = table["value"].astype(str)
    table["value"] = pd.to_numeric(table["value"], errors="coerce")
    return table


def paper_numbers(method: str, metric: str) -> pd.DataFrame:
    """The paper's own numbers (not cross-checks) for one method ("Ours LC", "Ours NN", ...)
    and metric ("AP" or "acc"): columns test_set, value, value_text, kind, source; one row per
    test set or group, the first traced row winning. ``value`` is NaN where the paper gives
    only an approximation (``value_text`` such as "~95" or "82-84")."""
    table = reported_results()
    rows = table[(table["method"] == method) & (table["metric"] == metric) & table["kind"].isin(PAPER_KINDS)]
    rows = rows.sort_values("value", key=lambda values: values.isna(), kind="stable")  # exact values first
    return (rows[["test_set", "value", "value_text", "kind", "source"]].drop_duplicates("test_set")
            .reset_index(drop=True))
