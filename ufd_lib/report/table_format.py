"""How a table's numbers are written for people: whole numbers as integers, other numbers
rounded with no negative zero, missing values as empty cells (never ``nan``).

The digits shown are chosen per column so that no value loses its sign or its magnitude: a
column gets as many decimals as its smallest non-zero value needs to keep two significant
digits (so a margin of -0.0023 is never shown as 0.00), learning rates are written in scientific
notation, and settings (a JPEG quality, a blur sigma) as they were given (100, not 100.00)."""
from __future__ import annotations

import numpy as np
import pandas as pd

# Column names that hold counts: ``n_real``, ``expected_fake``, ``bank_real``, ``epoch``, ``k``...
COUNT_PREFIXES = ("n_", "expected_", "bank_")
COUNT_NAMES = ("k", "epoch", "epochs", "count", "images", "bank_size")


def is_count_column(name) -> bool:
    name = str(name).lower()
    return name.startswith(COUNT_PREFIXES) or name in COUNT_NAMES


# Columns that hold a setting rather than a measurement, written as given: ``level`` (a JPEG
# quality or a blur sigma), ``jpeg_quality``, ``blur_sigma``...
SETTING_WORDS = ("level", "quality", "sigma")
# Columns that hold learning rates, written in scientific notation.
RATE_NAMES = ("lr", "learning_rate", "learning rate")
SIGNIFICANT_DIGITS = 2  # kept of the smallest non-zero value of a column, at least
MAX_FIXED_DECIMALS = 6  # beyond this, scientific notation


def is_setting_column(name) -> bool:
    return any(word in str(name).lower() for word in SETTING_WORDS)


def is_rate_column(name) -> bool:
    return str(name).lower() in RATE_NAMES


def _round_keeping_digits(value: float, decimals: int, digits: int = 6) -> float:
    """``value`` rounded to ``decimals`` places, or to ``digits`` significant digits where those
    need more places (a value of 1e-8 is not rounded to 0)."""
    if not np.isfinite(value) or value == 0:
        return value + 0.0
    needed = digits - 1 - int(np.floor(np.log10(abs(value))))
    return round(value, max(decimals, needed)) + 0.0


def tidy_numbers(table: pd.DataFrame, decimals: int = 6) -> pd.DataFrame:
    """Float columns rounded to ``decimals`` places, or 6 significant digits where those need
    more places (``-0.0`` becomes ``0.0``); a count column (:func:`is_count_column`) of whole
    numbers that pandas stored as float (because of a gap or an average) becomes a nullable
    integer column. A percentage that happens to be whole stays a float, so 99.00 is never shown
    as 99."""
    table = table.copy()
    for column in table.columns:
        values = table[column]
        if not pd.api.types.is_float_dtype(values):
            continue
        values = values.map(lambda value: _round_keeping_digits(value, decimals)).astype(float)
        present = values.dropna()
        if is_count_column(column) and (present == np.round(present)).all():
            values = values.astype("Int64")
        table[column] = values
    return table


def column_decimals(values, decimals: int = 2) -> int | None:
    """The fewest places, at least ``decimals``, at which every non-zero finite value keeps its
    sign and :data:`SIGNIFICANT_DIGITS` significant digits; None when more than
    :data:`MAX_FIXED_DECIMALS` would be needed (write them in scientific notation)."""
    present = np.abs(np.asarray([v for v in values if isinstance(v, (float, np.floating)) and np.isfinite(v)], float))
    present = present[present > 0]
    if not present.size:
        return decimals
    needed = SIGNIFICANT_DIGITS - 1 - int(np.floor(np.log10(present.min())))
    return max(decimals, needed) if needed <= MAX_FIXED_DECIMALS else None


def _missing(value) -> bool:
    return value is None or value is pd.NA or (isinstance(value, (float, np.floating)) and np.isnan(value))


def _column_text(name, values: list, decimals: int) -> list[str]:
    """The cells of one column as text (see the module docstring)."""
    numbers = [v for v in values if isinstance(v, (float, np.floating)) and not _missing(v)]
    if is_rate_column(name):
        form = "{:.1e}".format
    elif is_setting_column(name):
        form = "{:g}".format
    else:
        places = column_decimals(numbers, decimals)
        form = f"{{:.{SIGNIFICANT_DIGITS - 1}e}}".format if places is None else f"{{:.{places}f}}".format
    return ["" if _missing(v) else form(float(v) + 0.0) if isinstance(v, (float, np.floating)) else str(v)
            for v in values]


def display_table(table: pd.DataFrame, decimals: int = 2) -> pd.DataFrame:
    """Every cell as text: integers as integers, other numbers to at least ``decimals`` places,
    with the places, notation and settings chosen per column (module docstring); a numeric
    index is written the same way."""
    table = tidy_numbers(table)
    index = table.index
    if pd.api.types.is_float_dtype(index):
        index = pd.Index(_column_text(index.name, list(index), decimals), name=index.name)
    return pd.DataFrame({column: _column_text(column, list(table[column].astype(object)), decimals)
                         for column in table.columns}, index=index)
