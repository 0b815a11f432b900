"""Run outputs: tables (CSV + Markdown), figures (PNG + PDF) and the HTML index page.

Every table and figure a notebook saves is recorded in ``<output>/artifacts.jsonl`` with its
caption and notebook, so the index page can show all of them in reading order.
"""
from __future__ import annotations

import html
import json
from datetime import datetime, timezone
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


def write_index(output_dir: Path, title: str, settings: dict, versions: dict) -> Path:
    """``index.html``: every recorded table and figure, grouped by notebook, with the settings
    and library versions that produced them."""
    output_dir = Path(output_dir)
    parts = [f"<h1>{html.escape(title)}</h1>",
             f"<p>Generated {datetime.now(timezone.utc):%Y-%m-%d %H:%M UTC}.</p>",
             "<h2>Settings</h2>", _key_values(settings), "<h2>Versions</h2>", _key_values(versions)]
    notebook = None
    for entry in read_artifacts(output_dir):
        if entry["notebook"] != notebook:
            notebook = entry["notebook"]
            parts.append(f'<h2>{html.escape(notebook)} <small>(<a href="notebooks/{html.escape(notebook)}.ipynb">'
                         "executed notebook</a>)</small></h2>")
        caption = html.escape(entry["caption"])
        folder, suffix = ("figures", ".png") if entry["kind"] == "figure" else ("tables", ".csv")
        if not (output_dir / folder / f"{entry['name']}{suffix}").exists():
            parts.append(f"<p><em>{caption}: {folder}/{html.escape(entry['name'])}{suffix} is missing; "
                         f"rerun <code>ufd reproduce --only {html.escape(notebook)}</code>.</em></p>")
            continue
        if entry["kind"] == "figure":
            name = html.escape(entry["name"])
            parts.append(f'<figure><img src="figures/{name}.png" alt="{caption}" style="max-width:100%">'
                         f'<figcaption>{caption} (<a href="figures/{name}.pdf">PDF</a>)</figcaption></figure>')
        else:
            table = pd.read_csv(output_dir / "tables" / f"{entry['name']}.csv",
                                index_col=0 if entry.get("index", True) else None)
            parts.append(f"<h3>{caption}</h3>" + table.to_html(float_format=lambda v: f"{v:.2f}", na_rep="–",
                                                               border=0, classes="table",
                                                               index=entry.get("index", True)))
            parts.append(f'<p><a href="tables/{html.escape(entry["name"])}.csv">CSV</a> · '
                         f'<a href="tables/{html.escape(entry["name"])}.md">Markdown</a></p>')
    style = ("body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}"
             "table{border-collapse:collapse;font-size:13px}td,th{padding:2px 8px;border-bottom:1px solid #ddd;"
             "text-align:right}figure{margin:1.5em 0}figcaption{color:#444;font-size:14px}")
    page = (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{style}</style></head><body>{''.join(parts)}</body></html>")
    path = output_dir / "index.html"
    path.write_text(page)
    return path


def _key_values(values: dict) -> str:
    rows = "".join(f"<tr><th style='text-align:left'>{html.escape(str(k))}</th><td style='text-align:left'>"
                   f"{html.escape(str(v))}</td></tr>" for k, v in values.items())
    return f"<table>{rows}</table>"
