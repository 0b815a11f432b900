"""Run artefacts: tables (CSV + Markdown) and figures (PNG + PDF) written by the notebooks into
``<output_dir>/tables`` and ``<output_dir>/figures``, each recorded with its caption in
``artifacts.jsonl`` for the index page."""
from __future__ import annotations

import json
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd


ARTIFACTS = "artifacts.jsonl"


def _record(output_dir: Path, entry: dict) -> None:
    with open(output_dir / ARTIFACTS, "a") as handle:
        handle.write(json.dumps(entry) + "\n")


def save_table(table: pd.DataFrame, output_dir: Path | str, name: str, caption: str, notebook: str,
               index: bool = True) -> Path:
    """Write ``tables/<name>.csv`` and ``.md`` (floats to 2 decimals in Markdown)."""
    output_dir = Path(output_dir)
    (output_dir / "tables").mkdir(parents=True, exist_ok=True)
    if isinstance(table.columns, pd.MultiIndex):
        table = table.set_axis([" / ".join(map(str, column)) for column in table.columns], axis=1)
    path = output_dir / "tables" / f"{name}.csv"
    table.to_csv(path, index=index)
    (output_dir / "tables" / f"{name}.md").write_text(
        f"{caption}\n\n" + table.to_markdown(index=index, floatfmt=".2f") + "\n"
    )
    _record(output_dir, {"kind": "table", "name": name, "caption": caption, "notebook": notebook, "index": index})
    return path


def save_figure(figure: plt.Figure, output_dir: Path | str, name: str, caption: str, notebook: str) -> Path:
    """Write ``figures/<name>.png`` (150 dpi) and ``.pdf``."""
    output_dir = Path(output_dir)
    (output_dir / "figures").mkdir(parents=True, exist_ok=True)
    path = output_dir / "figures" / f"{name}.png"
    figure.savefig(path, dpi=150, bbox_inches="tight")
    figure.savefig(path.with_suffix(".pdf"), bbox_inches="tight")
    _record(output_dir, {"kind": "figure", "name": name, "caption": caption, "notebook": notebook})
    return path


def read_artifacts(output_dir: Path) -> list[dict]:
    """Recorded artifacts, the last record of each name winning, in first-recorded order."""
    path = Path(output_dir) / ARTIFACTS
    if not path.exists():
        return []
    latest: dict[tuple[str, str], dict] = {}
    for line in path.read_text().splitlines():
        entry = json.loads(line)
        latest[(entry["kind"], entry["name"])] = entry
    return list(latest.values())


def save_notice(output_dir: Path | str, notebook: str, text: str) -> None:
    """Record a notice for the index page: which weights a notebook used, and what it replaced
    or skipped and why. ``name`` (the notebook and the text) lets :func:`read_artifacts` keep one
    copy of a notice that a rerun records again."""
    _record(Path(output_dir), {"kind": "notice", "name": f"{notebook}: {text}", "notebook": notebook, "text": text})
