"""Run artefacts: tables (CSV + Markdown) and figures (PNG + PDF) written by the notebooks into
``<output_dir>/tables`` and ``<output_dir>/figures``, each file written atomically and then
recorded with its caption in ``artifacts.jsonl``; every record refreshes ``index.html``, so a
notebook re-run by hand updates the index page too.

Tables are written so that they cannot be misread: whole-number columns (counts, epochs) as
integers, other numbers rounded (6 decimals in CSV, 2 in Markdown and on the index page) with
no negative zero, and missing values as empty cells, never ``nan``; CSV text cells never start
a spreadsheet formula (:mod:`ufd_lib.report.csv_cells`).
"""
from __future__ import annotations

import io
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd

from ufd_lib.atomic_files import atomic_write_bytes, atomic_write_text
from ufd_lib.report.artifact_log import ARTIFACTS, append_entry, read_artifacts
from ufd_lib.report.csv_cells import printable_frame, spreadsheet_safe
from ufd_lib.report.index_page import refresh_index
from ufd_lib.report.table_format import display_table, tidy_numbers

__all__ = ["ARTIFACTS", "read_artifacts", "save_figure", "save_notice", "save_table"]


def _record(output_dir: Path, entry: dict) -> None:
    append_entry(output_dir, entry)
    refresh_index(output_dir)


def save_table(table: pd.DataFrame, output_dir: Path | str, name: str, caption: str, notebook: str,
               index: bool = True, note: str | None = None) -> Path:
    """Write ``tables/<name>.csv`` and ``.md``. note: "about these numbers", shown under the
    table in Markdown and on the index page (what a column means, why cells are empty)."""
    output_dir = Path(output_dir)
    (output_dir / "tables").mkdir(parents=True, exist_ok=True)
    if isinstance(table.columns, pd.MultiIndex):
        table = table.set_axis([" / ".join(map(str, column)) for column in table.columns], axis=1)
    table = tidy_numbers(printable_frame(table))  # file names whose bytes are not UTF-8, escaped
    path = output_dir / "tables" / f"{name}.csv"
    atomic_write_text(path, spreadsheet_safe(table).to_csv(index=index))
    shown = display_table(table)
    alignment = (["left"] if index else []) + [
        "right" if pd.api.types.is_numeric_dtype(table[column]) else "left" for column in table.columns]
    markdown = shown.to_markdown(index=index, disable_numparse=True, colalign=alignment)
    about = f"\n\nAbout these numbers: {note}" if note else ""
    atomic_write_text(output_dir / "tables" / f"{name}.md", f"{caption}\n\n{markdown}{about}\n")
    entry = {"kind": "table", "name": name, "caption": caption, "notebook": notebook, "index": index}
    _record(output_dir, {**entry, "note": note} if note else entry)
    return path


def save_figure(figure: plt.Figure, output_dir: Path | str, name: str, caption: str, notebook: str) -> Path:
    """Write ``figures/<name>.png`` (150 dpi) and ``.pdf``."""
    output_dir = Path(output_dir)
    (output_dir / "figures").mkdir(parents=True, exist_ok=True)
    path = output_dir / "figures" / f"{name}.png"
    for target, options in ((path, {"dpi": 150}), (path.with_suffix(".pdf"), {})):
        buffer = io.BytesIO()
        figure.savefig(buffer, format=target.suffix[1:], bbox_inches="tight", **options)
        atomic_write_bytes(target, buffer.getvalue())
    _record(output_dir, {"kind": "figure", "name": name, "caption": caption, "notebook": notebook})
    return path


def save_notice(output_dir: Path | str, notebook: str, text: str) -> None:
    """Record a notice for the index page: which weights a notebook used, and what it replaced
    or skipped and why (kept once per notebook and text when a rerun records it again)."""
    _record(Path(output_dir), {"kind": "notice", "notebook": notebook, "text": text})
