"""The index page of a reproduction: ``index.html`` listing every table and figure the
notebooks recorded, with the settings and library versions that made them."""
from __future__ import annotations

import html
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from ufd_lib.report.artifacts import read_artifacts


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
        if entry["kind"] == "notice":
            parts.append(f"<p><strong>Note:</strong> {html.escape(entry['text'])}</p>")
            continue
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
