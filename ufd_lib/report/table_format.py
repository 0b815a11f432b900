"""How a table's numbers are written for people: whole numbers as integers, other numbers
rounded with no negative zero, missing values as empty cells (never ``nan``)."""
from __future__ import annotations

import numpy as np
import pandas as pd


# Column names that hold counts: ``n_real``, ``expected_fake``, ``bank_real``, ``epoch``, ``k``...
COUNT_PREFIXES = ("n_", "expected_", "bank_")
COUNT_NAMES = ("k", "epoch", "epochs", "count", "images", "bank_size")


def is_count_column(name) -> bool:
    name = str(name).lower()
    return name.startswith(COUNT_PREFIXES) or name in COUNT_NAMES


def tidy_numbers(table: pd.DataFrame, decimals: int = 6) -> pd.DataFrame:
    """Float columns rounded to ``decimals`` (``-0.0`` becomes ``0.0``); a count column
    (:func:`is_count_column`) of whole numbers that pandas stored as float (because of a gap or
    an average) becomes a nullable integer column. A percentage that happens to be whole stays
    a float, so 99.00 is never shown as 99."""
    table = table.copy()
    for column in table.columns:
        values = table[column]
        if not pd.api.types.is_float_dtype(values):
            continue
        values = values.round(decimals) + 0.0
        present = values.dropna()
        if is_count_column(column) and (present == np.round(present)).all():
            values = values.astype("Int64")
        table[column] = values
    return table


def _cell(value, decimals: int) -> str:
    if value is None or value is pd.NA or (isinstance(value, float) and np.isnan(value)):
        return ""
    if isinstance(value, (float, np.floating)):
        return f"{round(float(value), decimals) + 0.0:.{decimals}f}"
    return str(value)


def display_table(table: pd.DataFrame, decimals: int = 2) -> pd.DataFrame:
    """Every cell as text: integers as integers, other numbers to ``decimals`` places."""
    table = tidy_numbers(table)
    return pd.DataFrame({column: [_cell(value, decimals) for value in table[column].astype(object)]
                         for column in table.columns}, index=table.index)
