"""CSV cells that a spreadsheet cannot run and any reader can decode.

A text cell starting with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return (a set name,
a file name) is written with a leading ``'``, which spreadsheets read as "text follows" and
hide (the OWASP advice against CSV injection). A file name whose bytes are not UTF-8 (Python
holds them as lone surrogates) is written with those bytes escaped as ``\\xNN``, so the file is
valid UTF-8. Numbers are written as numbers; only text cells, index entries and column names
change. A reader that needs the name as given drops one leading ``'`` from such a cell.
"""
from __future__ import annotations

import pandas as pd

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def printable(text: str) -> str:
    """``text`` with the undecodable bytes of a file name (lone surrogates) as ``\\xNN``."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def safe_cell(value):
    """Text as :func:`printable`, with a ``'`` in front when a spreadsheet would read it as a
    formula; anything else as it is."""
    if not isinstance(value, str):
        return value
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        value = printable(value)
    return "'" + value if value.startswith(FORMULA_STARTS) else value


def spreadsheet_safe(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy of ``frame`` whose text cells, index entries and column names are :func:`safe_cell`."""
    frame = frame.rename(index=safe_cell, columns=safe_cell)
    text = [column for column in frame.columns
            if frame[column].dtype == object or pd.api.types.is_string_dtype(frame[column].dtype)]
    return frame.assign(**{column: frame[column].map(safe_cell) for column in text}) if text else frame


def map_text(frame: pd.DataFrame, transform) -> pd.DataFrame:
    """A copy of ``frame`` with ``transform`` (str → str) applied to its text cells, index entries
    and column names; other values are left as they are."""
    def escape(value):
        return transform(value) if isinstance(value, str) else value

    frame = frame.rename(index=escape, columns=escape)
    text = [column for column in frame.columns
            if frame[column].dtype == object or pd.api.types.is_string_dtype(frame[column].dtype)]
    return frame.assign(**{column: frame[column].map(escape) for column in text}) if text else frame


def printable_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy of ``frame`` whose text cells, index entries and column names are :func:`printable`."""
    return map_text(frame, printable)
