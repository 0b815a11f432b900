"""Numbers written with their meaning: no value shown loses its sign or magnitude, learning
rates in scientific notation, settings and counts as given."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import lost_values

from ufd_lib.report.table_format import display_table, tidy_numbers


def test_margins_keep_their_sign_and_learning_rates_their_magnitude():
    table = pd.DataFrame({"margin": [0.41, -0.0023, -0.004], "lr": [1e-3, 1e-4, 1e-5], "ap": [99.0, 50.5, 0.004]})
    shown = display_table(table)
    assert shown["margin"].tolist() == ["0.4100", "-0.0023", "-0.0040"]
    assert shown["lr"].tolist() == ["1.0e-03", "1.0e-04", "1.0e-05"]
    assert shown["ap"].tolist() == ["99.0000", "50.5000", "0.0040"]
    assert lost_values(table) == []


def test_settings_and_counts_are_written_as_given():
    table = pd.DataFrame({"kind": ["JPEG quality", "blur sigma"], "level": [100.0, 1.5], "n_real": [3.0, np.nan],
                          "acc": [99.0, 100.0]})
    shown = display_table(table)
    assert shown["level"].tolist() == ["100", "1.5"] and shown["n_real"].tolist() == ["3", ""]
    assert shown["acc"].tolist() == ["99.00", "100.00"]  # a whole percentage stays a percentage
    indexed = display_table(table.set_index("level"))
    assert list(indexed.index) == ["100", "1.5"]
    assert lost_values(table) == [] and lost_values(table.set_index("level")) == []


def test_two_decimals_stay_where_they_suffice_and_tiny_values_turn_scientific():
    assert display_table(pd.DataFrame({"ap": [12.345, -3.5, 0.0]}))["ap"].tolist() == ["12.35", "-3.50", "0.00"]
    assert display_table(pd.DataFrame({"d": [1.0, 3e-9]}))["d"].tolist() == ["1.0e+00", "3.0e-09"]


def test_csv_rounding_keeps_tiny_values():
    tidy = tidy_numbers(pd.DataFrame({"lr": [1e-8, 0.123456789], "x": [-0.0, 2.0]}))
    assert tidy["lr"].tolist() == [1e-8, 0.123457] and str(tidy["x"][0]) == "0.0"


def test_the_checker_finds_a_lost_sign():
    import ufd_lib.report.table_format as table_format

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(table_format, "column_decimals", lambda values, decimals=2: 2)
        assert lost_values(pd.DataFrame({"margin": [-0.002, 0.5]})) == ["margin: -0.002 shown as '-0.00'"]

