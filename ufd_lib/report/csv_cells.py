"""CSV cells that a spreadsheet cannot run: a text cell starting with ``=``, ``+``, ``-``,
``@``, a tab or a carriage return (a set name, a file name) is written with a leading ``'``,
which spreadsheets read as "text follows" and hide (the OWASP advice against CSV injection).
Numbers are written as numbers; only text cells, index entries and column names change.
A reader of the CSV files that needs the name as given drops one leading ``'`` from such a cell.
"""
from __future__ import annotations

import pandas as pd

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def safe_cell(value):
    """``value`` with a ``'`` in front when it is text a spreadsheet would read as a formula."""
    return "'" + value if isinstance(value, str) and value.startswith(FORMULA_STARTS) else value


def spreadsheet_safe(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy of ``frame`` whose text cells, index entries and column names are :func:`safe_cell`."""
    frame = frame.rename(index=safe_cell, columns=safe_cell)
    text = [column for column in frame.columns
            if frame[column].dtype == object or pd.api.types.is_string_dtype(frame[column].dtype)]
    return frame.assign(**{column: frame[column].map(safe_cell) for column in text}) if text else frame
